package simulators

import (
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

var readingsCases = []struct {
	payload string
	want    int
	ok      bool
}{
	{`{"ts":1732233600123,"pm25":35.2,"pm10":51}`, 2, true},
	{`{"pm25":35.2}`, 1, true},
	{` [{"ts":1,"a":1},{"b":2,"c":3}] `, 3, true},
	{`{}`, 0, true},
	{`{"ts":1}`, 0, true},
	{`null`, 0, false},
	{`42`, 0, false},
	{`{"ts":`, 0, false},
	{``, 0, false},
	{`[1,2]`, 0, false},
}

func TestCountReadings(t *testing.T) {
	for _, c := range readingsCases {
		if n, ok := countReadings([]byte(c.payload)); n != c.want || ok != c.ok {
			t.Errorf("countReadings(%s) = %d, %v; want %d, %v", c.payload, n, ok, c.want, c.ok)
		}
	}
}

func FuzzCountReadings(f *testing.F) {
	for _, c := range readingsCases {
		f.Add([]byte(c.payload))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if n, ok := countReadings(payload); n < 0 || (!ok && n != 0) {
			t.Fatalf("countReadings(%q) = %d, %v", payload, n, ok)
		}
	})
}

func TestBareBrokerCounts(t *testing.T) {
	b := &BareBroker{Listen: "127.0.0.1:0", Readings: true}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	devs, _ := City{Devices: 8}.Generate()
	s, err := (&Fleet{Broker: "tcp://" + b.Addr(), Devices: devs, QoS: 1, Messages: 1000}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Messages != 1000 || s.Errors != 0 {
		t.Fatalf("stats %+v, want 1000 messages sent", s)
	}
	wantReceived(t, b.counter, s)
	if c := b.Counts(); c.Active <= 0 || c.MessagesPerSecond() <= 0 {
		t.Fatalf("counts %+v: want the active time measured", c)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCounterCountsAreCoherent checks what tests and the bench rely on when
// they wait for a message count: a reader who sees n messages also sees at
// least the bytes and readings of those n, however the hook's calls and the
// reads interleave.
func TestCounterCountsAreCoherent(t *testing.T) {
	const publishers, each = 4, 20000
	payload := []byte(`{"ts":1,"a":1,"b":2}`)
	c := &Counter{Readings: true}
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				c.OnPublish(nil, packets.Packet{Payload: payload})
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		got := c.Counts()
		if got.Readings < 2*got.Messages || got.Bytes < int64(len(payload))*got.Messages {
			t.Fatalf("counts %+v: fewer readings or bytes than the messages counted carry", got)
		}
		select {
		case <-done:
			if got := c.Counts(); got.Messages != publishers*each || got.Readings != 2*publishers*each {
				t.Fatalf("counts %+v after %d messages", got, publishers*each)
			}
			return
		default:
		}
	}
}
