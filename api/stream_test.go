package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStreamsAreBounded attacks the alert stream with more clients than
// MaxStreams: each open stream holds a goroutine, a buffer and a
// subscription, so the one beyond the bound gets 503 (JSON, counted as
// too_many) instead of another of each, and a slot freed is taken again.
func TestStreamsAreBounded(t *testing.T) {
	env := newAlertEnv(t)
	env.srv.Close()
	env.api.MaxStreams = 2
	srv := httptest.NewServer(env.api.Handler())
	defer srv.Close()
	defer env.api.CloseStreams()
	open := func(ctx context.Context) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/alerts/stream", nil)
		req.Header.Set("Authorization", "Bearer tok-viewer")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first, cancelFirst := context.WithCancel(context.Background())
	for _, ctx := range []context.Context{first, context.Background()} {
		resp := open(ctx)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream within the bound: %d", resp.StatusCode)
		}
	}
	resp := open(context.Background())
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("stream beyond the bound: %d %s, want a JSON 503", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n := testutil.ToFloat64(env.api.stream.dropped.WithLabelValues("too_many")); n != 1 {
		t.Errorf("too_many counted %v times, want 1", n)
	}
	cancelFirst()
	poll(t, "first stream gone", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 1 })
	poll(t, "a freed slot taken again", func() bool {
		resp := open(context.Background())
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
