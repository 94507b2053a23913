package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/internal/logbuf"
	"github.com/gridwatch/gridwatch/internal/mosquittotest"
)

// upstreamBroker starts a mosquitto with device d1 and gridwatch nodes
// gridwatch-1 and gridwatch-2 (the shipped ACL's), under -short skipped.
func upstreamBroker(t *testing.T) *mosquittotest.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs mosquitto, skipped under -short")
	}
	return mosquittotest.Start(t, mosquittotest.Config{
		Devices: []mosquittotest.User{{Name: "d1", Password: "d1-secret"}},
		Readers: []mosquittotest.User{{Name: "gridwatch-1", Password: "gridwatch-1-secret"}, {Name: "gridwatch-2", Password: "gridwatch-2-secret"}},
	})
}

// startUpstream runs an Upstream as node (its client id and username) on
// ms with ingest, and waits until it is subscribed.
func startUpstream(t *testing.T, ms *mosquittotest.Server, node string, ingest IngestFunc, opts ...func(*Upstream)) *Upstream {
	t.Helper()
	u := &Upstream{Brokers: []string{ms.URL()}, ClientID: node, Username: node, Password: node + "-secret",
		Ingest: ingest, DurableAck: true, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(u)
	}
	if err := u.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	waitFor(t, node+" subscribed", func() bool { return u.Ready(context.Background()) == nil })
	return u
}

// devicePublish publishes payloads from device d1 at QoS 1 through ms; the
// PUBACKs are mosquitto's.
func devicePublish(t *testing.T, ms *mosquittotest.Server, payloads ...string) {
	t.Helper()
	devicePublishTo(t, ms, "devices/d1/telemetry", payloads...)
}

// devicePublishTo is devicePublish to topic.
func devicePublishTo(t *testing.T, ms *mosquittotest.Server, topic string, payloads ...string) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(ms.URL()).SetClientID("d1").
		SetUsername("d1").SetPassword("d1-secret").SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer c.Disconnect(250)
	for _, p := range payloads {
		if tok := c.Publish(topic, 1, false, p); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("device publish: %v", tok.Error())
		}
	}
}

// TestUpstreamAcksOnlyStored checks durable acks on a real mosquitto: a
// delivery whose readings are not written yet is not acknowledged, in
// order (the second, written, waits for the first), so a node that stops
// leaves both with its session, and the next start under the same client
// id gets them again, flagged DUP.
func TestUpstreamAcksOnlyStored(t *testing.T) {
	ms := upstreamBroker(t)
	first := newGate()
	second := newGate()
	close(second.open)
	rec := &received{stored: func(p string) Stored { return map[string]*gate{"1": first, "2": second}[p] }}
	u := startUpstream(t, ms, "gridwatch-1", rec.ingest, func(u *Upstream) { u.ShutdownGrace = 300 * time.Millisecond })
	devicePublish(t, ms, "1", "2")
	waitFor(t, "two deliveries", func() bool { return len(rec.snapshot()) == 2 })
	// Checking that something does not happen needs a wait: 300 ms.
	time.Sleep(300 * time.Millisecond)
	if n := testutil.ToFloat64(u.metrics.acked); n != 0 {
		t.Fatalf("%v deliveries acknowledged while the first is not written, want 0", n)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}

	again := &received{}
	u2 := startUpstream(t, ms, "gridwatch-1", again.ingest)
	waitFor(t, "the two again", func() bool { return len(again.snapshot()) == 2 })
	want := []string{"d1 devices/d1/telemetry 1 dup", "d1 devices/d1/telemetry 2 dup"}
	if got := again.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("redelivered %q, want %q", got, want)
	}
	waitFor(t, "both acknowledged", func() bool { return testutil.ToFloat64(u2.metrics.acked) == 2 })
	if n := testutil.ToFloat64(u2.metrics.redelivered); n != 2 {
		t.Errorf("redeliveries counted %v, want 2", n)
	}
}

// TestUpstreamNotStoredIsDeliveredAgain checks that a delivery ingest could
// not store is left unacknowledged, and that the node reconnects so that
// mosquitto, which resends only on a new connection, delivers it again.
func TestUpstreamNotStoredIsDeliveredAgain(t *testing.T) {
	ms := upstreamBroker(t)
	rec := &received{}
	var calls atomic.Int32
	ingestOnce := func(ctx context.Context, id, topic string, payload []byte, dup bool) (Stored, error) {
		s, _ := rec.ingest(ctx, id, topic, payload, dup)
		if calls.Add(1) == 1 {
			return nil, fmt.Errorf("spool full: %w", ingest.ErrNotStored)
		}
		return s, nil
	}
	u := startUpstream(t, ms, "gridwatch-1", ingestOnce)
	devicePublish(t, ms, "7")
	waitFor(t, "the delivery acknowledged", func() bool { return testutil.ToFloat64(u.metrics.acked) == 1 })
	want := []string{"d1 devices/d1/telemetry 7", "d1 devices/d1/telemetry 7 dup"}
	if got := rec.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ingest saw %q, want %q", got, want)
	}
	if n := testutil.ToFloat64(u.metrics.messages.WithLabelValues("not_stored")); n != 1 {
		t.Errorf("not_stored %v, want 1", n)
	}
	waitFor(t, "connected again", func() bool { return u.Ready(context.Background()) == nil })
}

// TestUpstreamReconnectsAfterBrokerRestart kills mosquitto (its sessions
// are gone: persistence is off) and checks that the node connects again,
// subscribes again and takes new deliveries, and that /readyz's check
// said not connected meanwhile.
func TestUpstreamReconnectsAfterBrokerRestart(t *testing.T) {
	ms := upstreamBroker(t)
	rec := &received{}
	u := startUpstream(t, ms, "gridwatch-1", rec.ingest, func(u *Upstream) { u.MaxReconnectInterval = time.Second })
	ms.Kill(t)
	waitFor(t, "not ready", func() bool { return u.Ready(context.Background()) != nil })
	if testutil.ToFloat64(u.metrics.connected) != 0 {
		t.Error("gridwatch_upstream_connected is 1 with the broker down")
	}
	ms.Restart(t)
	waitFor(t, "ready again", func() bool { return u.Ready(context.Background()) == nil })
	devicePublish(t, ms, "after")
	waitFor(t, "a delivery after the restart", func() bool { return len(rec.snapshot()) == 1 })
	if n := testutil.ToFloat64(u.metrics.disconnects); n < 1 {
		t.Errorf("disconnects %v, want >= 1", n)
	}
}

// TestUpstreamSharesAndHidesItsPassword runs two nodes in the share group:
// deliveries are split between them, each message to one node; and a node
// whose password is wrong says so in its readiness without the password,
// in its error or its logs.
func TestUpstreamSharesAndHidesItsPassword(t *testing.T) {
	ms := upstreamBroker(t)
	a, b := &received{}, &received{}
	startUpstream(t, ms, "gridwatch-1", a.ingest)
	startUpstream(t, ms, "gridwatch-2", b.ingest)
	var payloads []string
	for i := range 20 {
		payloads = append(payloads, fmt.Sprint(i))
	}
	devicePublish(t, ms, payloads...)
	waitFor(t, "20 deliveries", func() bool { return len(a.snapshot())+len(b.snapshot()) == 20 })
	if len(a.snapshot()) == 0 || len(b.snapshot()) == 0 {
		t.Errorf("deliveries split %d/%d, want some on each node", len(a.snapshot()), len(b.snapshot()))
	}
	seen := map[string]bool{}
	for _, m := range append(a.snapshot(), b.snapshot()...) {
		if seen[m] {
			t.Errorf("%q delivered twice", m)
		}
		seen[m] = true
	}

	var logs logbuf.Buffer
	const wrong = "wrong-secret-0123"
	u := &Upstream{Brokers: []string{ms.URL()}, ClientID: "gridwatch-2", Username: "gridwatch-2", Password: wrong,
		Ingest: a.ingest, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if err := u.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	waitFor(t, "a refused login", func() bool { return testutil.ToFloat64(u.metrics.connects.WithLabelValues("failed")) > 0 })
	err := u.Ready(context.Background())
	if err == nil {
		t.Fatal("ready with a wrong password")
	}
	t.Logf("readiness: %v", err)
	for what, s := range map[string]string{"readiness": err.Error(), "logs": logs.String()} {
		if strings.Contains(s, wrong) {
			t.Errorf("the %s show the password: %s", what, s)
		}
	}
}

// TestUpstreamFollowsStatus checks that a registered device's status
// messages reach Status, and that one neither online nor offline does not.
func TestUpstreamFollowsStatus(t *testing.T) {
	ms := upstreamBroker(t)
	var mu sync.Mutex
	var got []devices.StatusChange
	u := startUpstream(t, ms, "gridwatch-1", (&received{}).ingest, func(u *Upstream) {
		u.Topics = []string{DefaultUpstreamTopic, DefaultUpstreamStatusTopic}
		u.Lookup = func(id string) (devices.Device, bool) { return devices.Device{ID: id}, id == "d1" }
		u.Status = func(c devices.StatusChange) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, c)
		}
	})
	devicePublishTo(t, ms, "devices/d1/status", "maybe", " Offline\n")
	waitFor(t, "two status messages", func() bool {
		return testutil.ToFloat64(u.metrics.messages.WithLabelValues("status"))+
			testutil.ToFloat64(u.metrics.messages.WithLabelValues("status_ignored")) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Device != "d1" || got[0].Online || got[0].Reason != devices.StatusReported {
		t.Fatalf("status changes %+v, want d1 offline (reported) only", got)
	}
}
