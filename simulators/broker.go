package simulators

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gridwatch/gridwatch/broker"
)

// DefaultBareListen is where a BareBroker listens by default, next to
// gridwatch's 1883.
const DefaultBareListen = ":1884"

// Counts says what a Counter saw.
type Counts struct {
	// Messages is the number of messages published by clients.
	Messages int64 `json:"messages"`
	// Bytes is their total payload size.
	Bytes int64 `json:"bytes"`
	// Readings is the number of readings in them, when counted.
	Readings int64 `json:"readings"`
	// Undecodable counts payloads that were not JSON objects or arrays of
	// them, when readings are counted.
	Undecodable int64 `json:"undecodable"`
	// Active is the time from the first message to the last.
	Active time.Duration `json:"active_ns"`
}

// MessagesPerSecond is the rate of messages over Active.
func (c Counts) MessagesPerSecond() float64 { return perSecond(c.Messages, c.Active) }

// ReadingsPerSecond is the rate of readings over Active.
func (c Counts) ReadingsPerSecond() float64 { return perSecond(c.Readings, c.Active) }

// Counter is a mochi hook that counts the messages clients publish and
// their payload bytes, and with Readings set also their readings. It allows
// every message.
type Counter struct {
	mqtt.HookBase
	// Readings makes the counter decode every payload to count its readings:
	// the top-level keys other than "ts" of a JSON object, summed over the
	// objects of a JSON array. It costs a JSON decode per message.
	Readings bool

	messages, bytes, readings, undecodable atomic.Int64
	first, last                            atomic.Int64 // unix ns of the first and last message
}

// ID names the hook.
func (c *Counter) ID() string { return "gridsim-counter" }

// Provides says the counter hooks OnPublish only.
func (c *Counter) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish counts pk and lets it through.
func (c *Counter) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	now := time.Now().UnixNano()
	c.first.CompareAndSwap(0, now)
	c.last.Store(now)
	c.bytes.Add(int64(len(pk.Payload)))
	if c.Readings {
		if n, ok := countReadings(pk.Payload); ok {
			c.readings.Add(int64(n))
		} else {
			c.undecodable.Add(1)
		}
	}
	// The message is counted last, so that a reader who sees n messages
	// sees the bytes and readings of at least those n (Counts loads the
	// message count first).
	c.messages.Add(1)
	return pk, nil
}

// Counts returns what the counter has seen so far.
func (c *Counter) Counts() Counts {
	n := Counts{
		Messages:    c.messages.Load(),
		Bytes:       c.bytes.Load(),
		Readings:    c.readings.Load(),
		Undecodable: c.undecodable.Load(),
	}
	if first := c.first.Load(); first != 0 {
		n.Active = time.Duration(c.last.Load() - first)
	}
	return n
}

// countReadings counts the readings of a telemetry payload: the keys other
// than "ts" of a JSON object, or of each object of a JSON array.
func countReadings(payload []byte) (int, bool) {
	p := bytes.TrimSpace(payload)
	if len(p) > 0 && p[0] == '[' {
		var objs []map[string]json.RawMessage
		if json.Unmarshal(p, &objs) != nil {
			return 0, false
		}
		n := 0
		for _, o := range objs {
			n += readingsOf(o)
		}
		return n, true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(p, &obj) != nil || obj == nil {
		return 0, false
	}
	return readingsOf(obj), true
}

func readingsOf(o map[string]json.RawMessage) int {
	if _, ok := o["ts"]; ok {
		return len(o) - 1
	}
	return len(o)
}

// BareBroker is a bare mochi broker that allows every client and message
// and only counts them: the baseline gridwatch is benchmarked against.
type BareBroker struct {
	// Listen is the TCP address to listen on. It defaults to
	// DefaultBareListen.
	Listen string
	// Readings makes the broker count readings too, at the cost of a JSON
	// decode per message; see Counter.
	Readings bool
	// Progress receives a live line every second while Run runs; nil writes
	// nothing.
	Progress io.Writer
	// Logger is the broker's logger. It defaults to discarding.
	Logger *slog.Logger

	srv       *mqtt.Server
	tcp       listeners.Listener
	counter   *Counter
	closeOnce sync.Once
}

// Start listens and serves in the background until Close.
func (b *BareBroker) Start() error {
	if b.Listen == "" {
		b.Listen = DefaultBareListen
	}
	if b.Logger == nil {
		b.Logger = slog.New(slog.DiscardHandler)
	}
	b.srv = mqtt.New(&mqtt.Options{Logger: b.Logger})
	b.counter = &Counter{Readings: b.Readings}
	if err := b.srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("bare broker: add allow hook: %w", err)
	}
	if err := b.srv.AddHook(b.counter, nil); err != nil {
		return fmt.Errorf("bare broker: add counter hook: %w", err)
	}
	// Not mochi's own listeners.NewTCP: its Close can hang for ever when a
	// client disconnects meanwhile (broker.NewTCPListener).
	b.tcp = broker.NewTCPListener(b.srv, "tcp", b.Listen)
	if err := b.srv.AddListener(b.tcp); err != nil {
		return fmt.Errorf("bare broker: listen on %s: %w", b.Listen, err)
	}
	if err := b.srv.Serve(); err != nil {
		b.srv.Close()
		return fmt.Errorf("bare broker: serve: %w", err)
	}
	return nil
}

// Addr returns the address the broker listens on, once started.
func (b *BareBroker) Addr() string { return b.tcp.Address() }

// Counts returns what the broker has received so far.
func (b *BareBroker) Counts() Counts { return b.counter.Counts() }

// Close stops the broker and disconnects its clients. It is safe to call
// more than once.
func (b *BareBroker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		if b.srv != nil {
			err = b.srv.Close()
		}
	})
	return err
}

// Run starts the broker, writes live progress until ctx ends, then closes
// the broker and returns what it received.
func (b *BareBroker) Run(ctx context.Context) (Counts, error) {
	if err := b.Start(); err != nil {
		return Counts{}, err
	}
	b.Logger.Info("bare broker listening", "addr", b.Addr())
	var prev Counts
	p := newProgress(b.Progress)
	p.run(ctx, func(dt time.Duration) string {
		c := b.Counts()
		line := fmt.Sprintf("received %d msg  %.0f msg/s  %d bytes", c.Messages, perSecond(c.Messages-prev.Messages, dt), c.Bytes)
		if b.Readings {
			line += fmt.Sprintf("  %d readings  %.0f readings/s", c.Readings, perSecond(c.Readings-prev.Readings, dt))
		}
		prev = c
		return line
	})
	if err := b.Close(); err != nil {
		return b.Counts(), fmt.Errorf("bare broker: close: %w", err)
	}
	c := b.Counts()
	p.final(fmt.Sprintf("received %d messages (%d bytes) in %s active: %.0f msg/s", c.Messages, c.Bytes, c.Active.Round(time.Millisecond), c.MessagesPerSecond()))
	return c, nil
}
