package simulators

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
)

// TestStaffWorksTheSteps runs the staff against a fake API holding cases
// at every step: it reports twice and registers its operator's case, then
// moves the oldest case of each step that holds more than Keep, and
// evaluates the closed cases not yet evaluated, each at the version listed.
func TestStaffWorksTheSteps(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	held := []cases.Case{
		{ID: "D1", Status: cases.StatusDispatched, Version: 3, Received: t0},
		{ID: "D2", Status: cases.StatusDispatched, Version: 3, Received: t0.Add(time.Minute)},
		{ID: "D3", Status: cases.StatusDispatched, Version: 3, Received: t0.Add(2 * time.Minute)},
		{ID: "H1", Status: cases.StatusHandling, Version: 4, Received: t0},
		{ID: "V1", Status: cases.StatusVerified, Version: 7, Received: t0.Add(time.Minute)},
		{ID: "V2", Status: cases.StatusVerified, Version: 6, Received: t0},
		{ID: "V3", Status: cases.StatusVerified, Version: 8, Received: t0.Add(2 * time.Minute)},
		{ID: "C1", Status: cases.StatusClosed, Version: 9, Received: t0},
		{ID: "C2", Status: cases.StatusClosed, Version: 10, Received: t0, Satisfaction: 5},
	}
	var mu sync.Mutex
	var got []string
	acted := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/cases":
			_ = json.NewEncoder(w).Encode(cases.Page{Cases: held})
			return
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/cases":
			got = append(got, "report "+body["source"].(string))
			_ = json.NewEncoder(w).Encode(cases.Case{ID: "R-" + body["source"].(string), Version: 1, Status: cases.StatusReceived})
		default:
			line := strings.TrimPrefix(r.URL.Path, "/api/v1/cases/")
			for _, k := range []string{"version", "satisfaction"} {
				if v, ok := body[k]; ok {
					raw, _ := json.Marshal(v)
					line += " " + k + "=" + string(raw)
				}
			}
			got = append(got, line)
			_, _ = w.Write([]byte("{}"))
		}
		acted <- struct{}{}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Staff{URL: srv.URL, At: cases.Point{Lat: 30.2, Lon: 120.1}, Every: 10 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Two reports and a registration, then one tick: a sign-for, a closure
	// and an evaluation.
	for range 6 {
		select {
		case <-acted:
		case <-time.After(30 * time.Second):
			t.Fatalf("the staff did not act: %v", got)
		}
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"report patrol", "report operator", "R-operator/register version=1", "D1/sign version=3", "V2/close version=6", "C1/evaluate version=9"} {
		if !slices.ContainsFunc(got, func(line string) bool { return strings.HasPrefix(line, want) }) {
			t.Errorf("no %q among %q", want, got)
		}
	}
	for _, line := range got {
		if strings.HasPrefix(line, "H1/") || strings.HasPrefix(line, "C2/") || strings.HasPrefix(line, "D2/") {
			t.Errorf("%q: a step holding no more than Keep, a later case or an evaluated one was moved", line)
		}
	}
}
