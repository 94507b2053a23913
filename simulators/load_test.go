package simulators

import (
	"errors"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

// Load sends exactly its messages, logged in as the devices, and what it
// counts is what the broker received: at QoS 0 the fence makes the count
// final when Run returns.
func TestLoadSendsExactly(t *testing.T) {
	for _, c := range []struct {
		name               string
		qos                byte
		messages, inflight int
	}{
		{"qos0", 0, 6000, 0},
		{"qos1", 1, 6000, 0},
		{"qos1 window of one", 1, 300, 1},
		{"fewer messages than devices", 1, 7, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			devs, err := City{Devices: 20, Seed: 3}.Generate()
			if err != nil {
				t.Fatal(err)
			}
			b := startBroker(t, devs)
			s, err := (&Load{Addr: strings.TrimPrefix(b.url, "tcp://"), Devices: devs, QoS: c.qos, Messages: c.messages, InFlight: c.inflight}).Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if s.Connected != 20 || s.ConnectErrors != 0 || s.Errors != 0 || s.Messages != int64(c.messages) {
				t.Fatalf("stats %+v, want 20 devices connected and %d messages sent without errors", s, c.messages)
			}
			metrics := metricsOf(t)
			var want int64
			for k, d := range devs {
				q := c.messages / len(devs)
				if k < c.messages%len(devs) {
					q++
				}
				want += int64(q * metrics[d.Type])
			}
			if s.Readings != want {
				t.Fatalf("stats count %d readings, want %d", s.Readings, want)
			}
			if got := b.counter.Counts(); got.Messages != s.Messages || got.Readings != s.Readings || got.Bytes != s.Bytes || got.Undecodable != 0 {
				t.Fatalf("when Run returned the broker had %+v; load stats %+v", got, s.Stats)
			}
		})
	}
}

// A device the broker refuses is counted and left out, with the broker's
// reason; when none connects, Run fails.
func TestLoadConnectErrors(t *testing.T) {
	devs, _ := City{Devices: 6}.Generate()
	b := startBroker(t, devs)
	addr := strings.TrimPrefix(b.url, "tcp://")
	wrong := append([]devices.Device(nil), devs...)
	wrong[2].Secret = "not-the-secret"
	s, err := (&Load{Addr: addr, Devices: wrong, QoS: 1, Messages: 60}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Connected != 5 || s.ConnectErrors != 1 || s.Messages != 50 {
		t.Fatalf("stats %+v, want 5 connected, 1 connect error, the others' 50 messages sent", s)
	}
	if got := b.counter.Counts(); got.Messages != 50 {
		t.Fatalf("broker received %d messages, want 50", got.Messages)
	}
	for i := range wrong {
		wrong[i].Secret = "not-the-secret"
	}
	_, err = (&Load{Addr: addr, Devices: wrong, Messages: 60}).Run(t.Context())
	if !errors.Is(err, ErrNoConnection) || !strings.Contains(err.Error(), "connection refused, return code") {
		t.Fatalf("err = %v, want ErrNoConnection with the broker's return code", err)
	}
}
