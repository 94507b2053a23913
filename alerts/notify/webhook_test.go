package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/alerts"
)

func transition(id string, version uint64) alerts.Transition {
	return alerts.Transition{
		Event: alerts.Event{AlertID: id, Version: version, Kind: alerts.EventFire, Actor: alerts.ActorSystem, TS: time.UnixMilli(1732233600123).UTC()},
		Alert: alerts.Alert{ID: id, Version: version, Rule: "water_high", Grid: "D01-S02-G03", Severity: alerts.SeverityMajor, BaseSeverity: alerts.SeverityMajor, Condition: alerts.ConditionFiring},
	}
}

// poll waits until cond holds, failing the test after 10 seconds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // Generous: a passing run does not wait for it.
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receiver is a webhook endpoint answering the statuses in script in turn,
// then 200, and keeping what it was sent.
type receiver struct {
	mu       sync.Mutex
	script   []int
	attempts int
	bodies   [][]byte
	headers  []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	rc.bodies = append(rc.bodies, b)
	rc.headers = append(rc.headers, r.Header.Clone())
	if len(rc.script) > 0 {
		code := rc.script[0]
		rc.script = rc.script[1:]
		w.WriteHeader(code)
	}
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.attempts
}

func startWebhook(t *testing.T, url string, maxElapsed time.Duration, reg prometheus.Registerer) *Webhook {
	t.Helper()
	w := &Webhook{URL: url, Secret: []byte("s3cret"), InitialInterval: time.Millisecond, MaxElapsed: maxElapsed, Metrics: NewMetrics(reg), Logger: quiet}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func TestWebhookRetriesThenDeliversSigned(t *testing.T) {
	rc := &receiver{script: []int{http.StatusServiceUnavailable, http.StatusBadGateway}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	w := startWebhook(t, srv.URL, time.Minute, reg)

	w.Notify(transition("a1", 3))
	poll(t, "third attempt", func() bool { return rc.count() == 3 })
	poll(t, "sent counter", func() bool { return testutil.ToFloat64(w.Metrics.sent.WithLabelValues("webhook")) == 1 })

	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, body := range rc.bodies {
		h := rc.headers[i]
		if !Verify([]byte("s3cret"), body, h.Get(SignatureHeader)) {
			t.Errorf("attempt %d: signature %q does not verify", i, h.Get(SignatureHeader))
		}
		if Verify([]byte("other"), body, h.Get(SignatureHeader)) {
			t.Errorf("attempt %d: signature verifies under the wrong secret", i)
		}
		if h.Get(DeliveryHeader) != "a1/3" || h.Get(EventHeader) != "fire" || h.Get("Content-Type") != "application/json" {
			t.Errorf("attempt %d: headers %v", i, h)
		}
	}
	var got alerts.Transition
	if err := json.Unmarshal(rc.bodies[2], &got); err != nil || got.Alert.ID != "a1" || got.Alert.Severity != alerts.SeverityMajor {
		t.Errorf("body = %s (%v)", rc.bodies[2], err)
	}
	if r := testutil.ToFloat64(w.Metrics.retries.WithLabelValues("webhook")); r != 2 {
		t.Errorf("retries = %v, want 2", r)
	}
	if f := testutil.ToFloat64(w.Metrics.failed.WithLabelValues("webhook")); f != 0 {
		t.Errorf("failed = %v, want 0", f)
	}
}

func TestWebhookSendsMessages(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	w := startWebhook(t, srv.URL, time.Minute, nil)
	w.Send(Message{Delivery: "score/water/2026-03-02", Event: "case_score", Topic: "cases/scores/water", Body: []byte(`{"unit":"water"}`)})
	poll(t, "delivery", func() bool { return rc.count() == 1 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	h := rc.headers[0]
	if string(rc.bodies[0]) != `{"unit":"water"}` || !Verify([]byte("s3cret"), rc.bodies[0], h.Get(SignatureHeader)) ||
		h.Get(DeliveryHeader) != "score/water/2026-03-02" || h.Get(EventHeader) != "case_score" {
		t.Fatalf("got %s with %v", rc.bodies[0], h)
	}
}

func TestWebhookCountsFinalFailures(t *testing.T) {
	cases := []struct {
		name         string
		status       int
		wantAttempts func(int) bool
	}{
		// A refusal is final: no retry.
		{"refused", http.StatusBadRequest, func(n int) bool { return n == 1 }},
		// A server error is retried until MaxElapsed.
		{"down", http.StatusInternalServerError, func(n int) bool { return n > 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				attempts.Add(1)
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			// Retries go on for 2 s after the first attempt: a round trip
			// on a loaded machine can outlast a shorter bound on its own.
			w := startWebhook(t, srv.URL, 2*time.Second, nil)
			w.Notify(transition("a1", 1))
			poll(t, "failed counter", func() bool { return testutil.ToFloat64(w.Metrics.failed.WithLabelValues("webhook")) == 1 })
			if n := int(attempts.Load()); !tc.wantAttempts(n) {
				t.Errorf("attempts = %d", n)
			}
		})
	}
}

func TestWebhookQueueFullAndShutdownAreCounted(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	w := &Webhook{URL: srv.URL, Secret: []byte("k"), QueueSize: 2, ShutdownGrace: 50 * time.Millisecond, InitialInterval: time.Millisecond}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Notify(transition("a1", 1)) // taken by the worker, which then hangs
	poll(t, "worker busy", func() bool { return len(w.queue) == 0 })
	for v := uint64(2); v <= 5; v++ { // two fit, two overflow
		w.Notify(transition("a1", v))
	}
	if d := testutil.ToFloat64(w.Metrics.dropped.WithLabelValues("webhook", "queue_full")); d != 2 {
		t.Errorf("queue_full drops = %v, want 2", d)
	}
	_ = w.Close() // the hanging one and the two queued end as shutdown drops
	_ = w.Close()
	w.Notify(transition("a1", 6))
	if d := testutil.ToFloat64(w.Metrics.dropped.WithLabelValues("webhook", "shutdown")); d != 4 {
		t.Errorf("shutdown drops = %v, want 4", d)
	}
}

// quiet discards the logs of failures the tests cause on purpose.
var quiet = slog.New(slog.DiscardHandler)
