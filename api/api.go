// Package api serves gridwatch over HTTP: health and readiness checks,
// Prometheus metrics and the /api/v1 JSON API.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// Store answers the telemetry queries; *storage.DB is one.
type Store interface {
	TelemetrySeries(ctx context.Context, q storage.SeriesQuery) ([]storage.Bucket, error)
	LatestTelemetry(ctx context.Context, device string) ([]storage.Latest, error)
}

// Check is one readiness check; a nil error means ready.
type Check func(ctx context.Context) error

// Server is the HTTP API.
type Server struct {
	// Store answers telemetry queries. Required.
	Store Store
	// Lookup finds registered devices. Required.
	Lookup func(id string) (devices.Device, bool)
	// Checks are run by /readyz, by name; all must pass.
	Checks map[string]Check
	// Gatherer is what /metrics exposes; nil exposes nothing.
	Gatherer prometheus.Gatherer
	// AdminToken, when set, is the bearer token /api/v1 requires.
	AdminToken string
	// CheckTimeout bounds each readiness check. It defaults to 2 seconds.
	CheckTimeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	if s.CheckTimeout <= 0 {
		s.CheckTimeout = 2 * time.Second
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /api/v1/devices/{id}/telemetry", s.deviceTelemetry)
	v1.HandleFunc("GET /api/v1/devices/{id}/latest", s.deviceLatest)
	v1.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	mux.Handle("/api/v1/", s.authenticate(v1))
	return mux
}

// authenticate requires the admin bearer token when one is configured.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.AdminToken == "" {
		return next
	}
	want := []byte(s.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gridwatch"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readyz runs every check and reports each by name.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(s.Checks))
	for name := range s.Checks {
		names = append(names, name)
	}
	sort.Strings(names)
	status, code := "ready", http.StatusOK
	results := make(map[string]string, len(names))
	for _, name := range names {
		ctx, cancel := context.WithTimeout(r.Context(), s.CheckTimeout)
		err := s.Checks[name](ctx)
		cancel()
		if err != nil {
			results[name] = err.Error()
			status, code = "not ready", http.StatusServiceUnavailable
			continue
		}
		results[name] = "ok"
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": results})
}

// apiError is the body of every error response.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, message
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
