package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gate is a Stored written when the test opens it.
type gate struct {
	open chan struct{}
	err  error // set before open is closed
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Wait(ctx context.Context) error {
	select {
	case <-g.open:
		return g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestDurableAck checks the durable mode: a client's reader is not held
// while its messages are written, PUBACKs go out in the order the messages
// came and only once written, and a message whose write fails gets none.
func TestDurableAck(t *testing.T) {
	gates := map[string]*gate{"1": newGate(), "2": newGate(), "3": newGate(), "4": newGate()}
	rec := &received{stored: func(payload string) Stored { return gates[payload] }}
	b, _ := startBroker(t, rec, func(b *Broker) { b.DurableAck = true })
	c, err := connect(t, b.Addr(), "aq-1", "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatal(err)
	}
	var toks []paho.Token
	for _, p := range []string{"1", "2", "3", "4"} {
		toks = append(toks, c.Publish("devices/aq-1/telemetry", 1, false, p))
	}
	// All four reach ingest while none is written: the reader goes on.
	waitFor(t, "four messages at ingest", func() bool { return len(rec.snapshot()) == 4 })

	// Messages 2 and 3 are written first, but wait for 1's PUBACK. Checking
	// that something does not happen needs a wait: 300 ms.
	close(gates["2"].open)
	close(gates["3"].open)
	if toks[1].WaitTimeout(300 * time.Millisecond) {
		t.Fatal("message 2 was acknowledged before message 1")
	}
	close(gates["1"].open)
	for i, tok := range toks[:3] {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("message %d: no PUBACK once written (%v)", i+1, tok.Error())
		}
	}

	gates["4"].err = errors.New("disk full")
	close(gates["4"].open)
	if toks[3].WaitTimeout(300 * time.Millisecond) {
		t.Fatal("message 4 was acknowledged although its write failed")
	}
	waitFor(t, "the refusal counted", func() bool {
		return testutil.ToFloat64(b.metrics.messages.WithLabelValues("telemetry", "refused_qos1")) == 1
	})
	if got := testutil.ToFloat64(b.metrics.messages.WithLabelValues("telemetry", "ingested")); got != 3 {
		t.Errorf("ingested = %v, want 3", got)
	}
}
