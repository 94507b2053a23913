package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// fakeStore is a Store whose answers the test sets.
type fakeStore struct {
	series func(storage.SeriesQuery) ([]storage.Bucket, error)
	latest func(device string) ([]storage.Latest, error)
}

func (f fakeStore) TelemetrySeries(_ context.Context, q storage.SeriesQuery) ([]storage.Bucket, error) {
	return f.series(q)
}

func (f fakeStore) LatestTelemetry(_ context.Context, device string) ([]storage.Latest, error) {
	return f.latest(device)
}

var now = time.UnixMilli(1732233600123).UTC()

func newTestServer(store fakeStore, token string) *httptest.Server {
	reg := devices.NewRegistry([]devices.Device{{ID: "aq-1", Type: "air_quality", Grid: "G1", Secret: "do-not-echo"}})
	s := &Server{
		Store:      store,
		Lookup:     reg.Lookup,
		Checks:     map[string]Check{"clickhouse": func(context.Context) error { return nil }},
		Gatherer:   prometheus.NewRegistry(),
		AdminToken: token,
		Now:        func() time.Time { return now },
	}
	return httptest.NewServer(s.Handler())
}

func do(t *testing.T, srv *httptest.Server, path, token string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", path, err)
	}
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body, string(raw)
}

func TestTelemetrySeries(t *testing.T) {
	var got storage.SeriesQuery
	store := fakeStore{series: func(q storage.SeriesQuery) ([]storage.Bucket, error) {
		got = q
		return []storage.Bucket{{Start: time.UnixMilli(1732233600000), Avg: 2, Min: 1, Max: 3, Count: 4}}, nil
	}}
	srv := newTestServer(store, "")
	defer srv.Close()

	code, body, raw := do(t, srv, "/api/v1/devices/aq-1/telemetry?metric=pm25&from=2024-11-22T00:00:00.000Z&to=1732233660000&step=30s", "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, raw)
	}
	want := storage.SeriesQuery{Device: "aq-1", Metric: "pm25", From: time.UnixMilli(1732233600000), To: time.UnixMilli(1732233660000), Step: 30 * time.Second}
	if !got.From.Equal(want.From) || !got.To.Equal(want.To) || got.Device != want.Device || got.Metric != want.Metric || got.Step != want.Step {
		t.Errorf("query = %+v, want %+v", got, want)
	}
	if !strings.Contains(raw, `"buckets":[{"ts":1732233600000,"time":"2024-11-22T00:00:00Z","avg":2,"min":1,"max":3,"count":4}]`) {
		t.Errorf("body = %s", raw)
	}
	if body["step_ms"] != float64(30000) {
		t.Errorf("step_ms = %v", body["step_ms"])
	}

	// Defaults: the last hour in 1-minute steps, starting on a whole minute.
	do(t, srv, "/api/v1/devices/aq-1/telemetry?metric=pm25", "")
	if !got.To.Equal(now) || !got.From.Equal(time.UnixMilli(1732230000000)) || got.Step != time.Minute {
		t.Errorf("default query = %+v", got)
	}
}

func TestErrorsAreJSONWithCodes(t *testing.T) {
	store := fakeStore{
		series: func(q storage.SeriesQuery) ([]storage.Bucket, error) {
			if q.Metric == "boom" {
				return nil, errors.New("clickhouse: connection refused to 10.0.0.1 password=hunter2")
			}
			return nil, fmt.Errorf("too many buckets: %w", storage.ErrBadQuery)
		},
		latest: func(string) ([]storage.Latest, error) { return nil, nil },
	}
	srv := newTestServer(store, "")
	defer srv.Close()
	cases := []struct {
		path     string
		status   int
		code     string
		contains string
	}{
		{"/api/v1/devices/nope/telemetry?metric=pm25", 404, "not_found", `device "nope" is not registered`},
		{"/api/v1/devices/nope/latest", 404, "not_found", "not registered"},
		{"/api/v1/devices/aq-1/telemetry", 400, "bad_request", "'metric' is required"},
		{"/api/v1/devices/aq-1/telemetry?metric=pm25&from=yesterday", 400, "bad_request", "'from'"},
		{"/api/v1/devices/aq-1/telemetry?metric=pm25&to=soon", 400, "bad_request", "'to'"},
		{"/api/v1/devices/aq-1/telemetry?metric=pm25&step=0s", 400, "bad_request", "'step'"},
		{"/api/v1/devices/aq-1/telemetry?metric=pm25&step=fast", 400, "bad_request", "'step'"},
		{"/api/v1/devices/aq-1/telemetry?metric=pm25&step=1ms", 400, "bad_request", "too many buckets"},
		{"/api/v1/devices/aq-1/telemetry?metric=boom", 500, "internal", "see the server log"},
		{"/api/v1/nothing", 404, "not_found", "no such endpoint"},
		{"/nothing", 404, "not_found", "no such endpoint: GET /nothing"},
	}
	for _, tc := range cases {
		code, body, raw := do(t, srv, tc.path, "")
		e, _ := body["error"].(map[string]any)
		if code != tc.status || e["code"] != tc.code || !strings.Contains(fmt.Sprint(e["message"]), tc.contains) {
			t.Errorf("GET %s = %d %s, want %d %s containing %q", tc.path, code, raw, tc.status, tc.code, tc.contains)
		}
		if strings.Contains(raw, "hunter2") || strings.Contains(raw, "do-not-echo") {
			t.Errorf("GET %s leaks a secret: %s", tc.path, raw)
		}
	}
}

func TestLatest(t *testing.T) {
	store := fakeStore{latest: func(device string) ([]storage.Latest, error) {
		return []storage.Latest{{Metric: "pm25", TS: time.UnixMilli(1732233600123), Value: 35.2}}, nil
	}}
	srv := newTestServer(store, "")
	defer srv.Close()
	code, _, raw := do(t, srv, "/api/v1/devices/aq-1/latest", "")
	want := `{"device":"aq-1","grid":"G1","metrics":[{"metric":"pm25","ts":1732233600123,"time":"2024-11-22T00:00:00.123Z","value":35.2}],"type":"air_quality"}`
	if code != 200 || raw != want {
		t.Errorf("latest = %d %s, want %s", code, raw, want)
	}
}

func TestAdminToken(t *testing.T) {
	store := fakeStore{latest: func(string) ([]storage.Latest, error) { return nil, nil }}
	srv := newTestServer(store, "tok-123")
	defer srv.Close()
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"tok-123", 200}} {
		if code, _, raw := do(t, srv, "/api/v1/devices/aq-1/latest", tc.token); code != tc.want {
			t.Errorf("token %q: %d %s, want %d", tc.token, code, raw, tc.want)
		}
	}
	// Health checks stay open to load balancers and probes.
	if code, _, _ := do(t, srv, "/healthz", ""); code != 200 {
		t.Errorf("/healthz without token = %d, want 200", code)
	}
}

func TestReadyzReportsEachCheck(t *testing.T) {
	s := &Server{Store: fakeStore{}, Lookup: devices.NewRegistry(nil).Lookup, Checks: map[string]Check{
		"clickhouse": func(context.Context) error { return errors.New("schema is not at the latest version") },
		"other":      func(context.Context) error { return nil },
	}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	code, _, raw := do(t, srv, "/readyz", "")
	want := `{"checks":{"clickhouse":"schema is not at the latest version","other":"ok"},"status":"not ready"}`
	if code != 503 || raw != want {
		t.Errorf("/readyz = %d %s, want 503 %s", code, raw, want)
	}

	// A check that ignores its deadline fails at the deadline.
	hung := make(chan struct{})
	defer close(hung)
	slow := &Server{Store: fakeStore{}, Lookup: devices.NewRegistry(nil).Lookup, CheckTimeout: 50 * time.Millisecond,
		Checks: map[string]Check{"hung": func(context.Context) error { <-hung; return nil }}}
	slowSrv := httptest.NewServer(slow.Handler())
	defer slowSrv.Close()
	code, _, raw = do(t, slowSrv, "/readyz", "")
	want = `{"checks":{"hung":"no answer within 50ms"},"status":"not ready"}`
	if code != 503 || raw != want {
		t.Errorf("/readyz with a hung check = %d %s, want 503 %s", code, raw, want)
	}

	s.Detail = func() map[string]any { return map[string]any{"spool": map[string]int{"segments": 3}} }
	withDetail := httptest.NewServer(s.Handler())
	defer withDetail.Close()
	code, _, raw = do(t, withDetail, "/readyz", "")
	want = `{"checks":{"clickhouse":"schema is not at the latest version","other":"ok"},"detail":{"spool":{"segments":3}},"status":"not ready"}`
	if code != 503 || raw != want {
		t.Errorf("/readyz with detail = %d %s, want 503 %s", code, raw, want)
	}
}
