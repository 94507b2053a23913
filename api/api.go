// Package api serves gridwatch over HTTP: health and readiness checks,
// Prometheus metrics and the /api/v1 JSON API.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
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
	// Detail, when set, adds figures to /readyz under "detail", beside the
	// checks' verdicts.
	Detail func() map[string]any
	// Gatherer is what /metrics exposes; nil exposes nothing.
	Gatherer prometheus.Gatherer
	// AdminToken is the bootstrap bearer token: an admin of the whole city.
	AdminToken string
	// Tokens are the other accepted bearer tokens (api.tokens_file). With
	// neither AdminToken nor Tokens the API is Open.
	Tokens []Token
	// MaxSilence bounds how long a silence or maintenance window may last
	// (api.max_silence). It defaults to DefaultMaxSilence.
	MaxSilence time.Duration
	// InScope decides which grids a scoped token sees. It defaults to
	// PrefixScope.
	InScope InScopeFunc
	// Alerts serves the alert endpoints; nil leaves them out.
	Alerts Alerts
	// CaseStats serves the case evaluation (/api/v1/stats/cases/…); nil
	// leaves it out.
	CaseStats CaseStats
	// CaseEvaluation sets the composite's weights and the unit scores.
	CaseEvaluation cases.Evaluation
	// CaseLocation is the timezone of the printable ranking's period. It
	// defaults to UTC.
	CaseLocation *time.Location
	// Cases serves the case endpoints; nil leaves them out.
	Cases Cases
	// Photos keeps the photos of cases; nil leaves out the photo
	// endpoints, and evidence is refused.
	Photos *cases.Photos
	// HotlineSecret keys the HMAC signature of the 12345 hotline's
	// webhook (cases.hotline_secret); empty leaves the webhook out.
	HotlineSecret []byte
	// Cameras serves the camera endpoints; without it they answer 503.
	Cameras Cameras
	// Devices lists the registered devices, for the camera list. Required
	// with Cameras.
	Devices func() []devices.Device
	// GB28181 lists the devices registered with the GB/T 28181 registrar
	// (gb28181.Registrar.Devices); without it its endpoint answers 503.
	GB28181 func() []gb28181.DeviceState
	// Stills serves the cameras' stills (GET /api/v1/cameras/{id}/still);
	// without it that answers 503.
	Stills Stills
	// Basemap is the picture under the console's maps
	// (GET /api/v1/grids/basemap); without it that answers 404.
	Basemap *Basemap
	// Registry serves the grid and unit endpoints and the devices' status;
	// without it, or without Devices, the device, grid and unit endpoints
	// answer 503.
	Registry Registry
	// Spool replays the disk spool's quarantined segments; nil leaves its
	// endpoint out.
	Spool Spool
	// Heartbeat is how often an idle alert stream gets a comment line. It
	// defaults to DefaultHeartbeat.
	Heartbeat time.Duration
	// StreamBuffer is how many transitions may wait for a stream client. It
	// defaults to DefaultStreamBuffer.
	StreamBuffer int
	// StreamWriteTimeout is how long a stream client may take to accept a
	// write. It defaults to DefaultStreamWriteTimeout.
	StreamWriteTimeout time.Duration
	// MaxStreams bounds the alert streams open at once. It defaults to
	// DefaultMaxStreams.
	MaxStreams int
	// BodyTimeout bounds the time a client may take to send a request body,
	// so a slow sender cannot hold a handler for ever. It defaults to
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Exports serves GET /api/v1/export/{table}; without it that answers
	// 503.
	Exports Exporter
	// MaxExports bounds the table exports running at once; beyond, 503. It
	// defaults to DefaultMaxExports.
	MaxExports int
	// ExportWriteTimeout is how long an export's client may take to accept
	// a write. It defaults to DefaultExportWriteTimeout.
	ExportWriteTimeout time.Duration
	// Registerer receives the API's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	// CheckTimeout bounds each readiness check. It defaults to 2 seconds.
	CheckTimeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// CaseCategories lists the case categories for GET
	// /api/v1/cases/categories; nil leaves the route out.
	CaseCategories func() []cases.Category
	// Console, when set, serves the web console at GET / and GET
	// /assets/…: pages for people, outside the API and its document. It
	// signs in with the API's bearer tokens (GET /api/v1/whoami).
	Console http.Handler

	// patterns lists the route patterns Handler registered, the public ones
	// and those of /api/v1.
	patterns       []string
	stream         *streamMetrics
	actions        *actionMetrics
	hotlineRefused prometheus.Counter
	streamSlots    chan struct{} // one per open stream
	exports        *exportMetrics
	exportSlots    chan struct{} // one per running table export
	streamsDone    chan struct{}
	closeStreams   sync.Once
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
	if s.InScope == nil {
		s.InScope = PrefixScope
	}
	if s.Heartbeat <= 0 {
		s.Heartbeat = DefaultHeartbeat
	}
	if s.StreamBuffer <= 0 {
		s.StreamBuffer = DefaultStreamBuffer
	}
	if s.StreamWriteTimeout <= 0 {
		s.StreamWriteTimeout = DefaultStreamWriteTimeout
	}
	if s.MaxStreams <= 0 {
		s.MaxStreams = DefaultMaxStreams
	}
	s.streamSlots = make(chan struct{}, s.MaxStreams)
	if s.MaxSilence <= 0 {
		s.MaxSilence = DefaultMaxSilence
	}
	if s.BodyTimeout <= 0 {
		s.BodyTimeout = DefaultBodyTimeout
	}
	if s.MaxExports <= 0 {
		s.MaxExports = DefaultMaxExports
	}
	s.exportSlots = make(chan struct{}, s.MaxExports)
	if s.ExportWriteTimeout <= 0 {
		s.ExportWriteTimeout = DefaultExportWriteTimeout
	}
	s.stream = newStreamMetrics(s.Registerer)
	s.actions = newActionMetrics(s.Registerer)
	s.exports = newExportMetrics(s.Registerer)
	s.hotlineRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gridwatch_api_hotline_refused_total", Help: "Hotline webhook requests refused for a missing or wrong signature.",
	})
	if s.Registerer != nil {
		s.Registerer.MustRegister(s.hotlineRefused)
	}
	s.streamsDone = make(chan struct{})
	mux := http.NewServeMux()
	public := &routes{mux: mux}
	public.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	public.Handle("GET /readyz", http.HandlerFunc(s.readyz))
	if s.Gatherer != nil {
		public.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	// The API description is public, like the health checks.
	public.Handle("GET /api/v1/openapi.json", http.HandlerFunc(serveOpenAPI))
	// Whatever matches no route gets a JSON error too, a method a route
	// does not take (POST /readyz) included.
	mux.HandleFunc("/", noSuchEndpoint)
	if s.Console != nil {
		mux.Handle("GET /{$}", s.Console)
		mux.Handle("GET /assets/", s.Console)
	}
	v1 := &routes{mux: http.NewServeMux()}
	v1.HandleFunc("GET /api/v1/devices/{id}/telemetry", s.deviceTelemetry)
	v1.HandleFunc("GET /api/v1/devices/{id}/latest", s.deviceLatest)
	v1.HandleFunc("GET /api/v1/whoami", whoami)
	v1.HandleFunc("GET /api/v1/export/{table}", s.exportTable)
	s.alertRoutes(v1)
	s.caseRoutes(v1, public)
	s.cameraRoutes(v1)
	s.gb28181Routes(v1)
	s.deviceRoutes(v1)
	s.basemapRoutes(v1)
	s.caseStatsRoutes(v1)
	s.spoolRoutes(v1)
	s.patterns = append(public.patterns, v1.patterns...)
	v1.mux.HandleFunc("/api/v1/", noSuchEndpoint)
	auth := newAuthenticator(s.AdminToken, s.Tokens, s.InScope, s.Logger)
	if s.Open() {
		auth.open = &principal{name: "anonymous", role: RoleAdmin, inScope: s.InScope}
	}
	mux.Handle("/api/v1/", auth.middleware(v1.mux))
	return mux
}

// Open reports whether the API has no token at all: then every /api/v1
// request from this host acts as an unscoped admin, and every other one
// is refused (see authenticator.open).
func (s *Server) Open() bool {
	return s.AdminToken == "" && len(s.Tokens) == 0
}

// noSuchEndpoint answers a request no route takes.
func noSuchEndpoint(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
}

// routes registers handlers on a mux, the /api/v1 ones each behind the role
// it needs, and keeps their patterns: the OpenAPI document must describe
// them all.
type routes struct {
	mux      *http.ServeMux
	patterns []string
}

// HandleFunc registers h for pattern behind the role its method implies:
// viewer for GET, admin for anything else. It has http.ServeMux's
// signature, so a route needing nothing else registers as it would there.
func (rt *routes) HandleFunc(pattern string, h http.HandlerFunc) {
	role := RoleAdmin
	if strings.HasPrefix(pattern, http.MethodGet+" ") {
		role = RoleViewer
	}
	rt.Require(role, pattern, h)
}

// Require registers h for pattern behind role.
func (rt *routes) Require(role Role, pattern string, h http.HandlerFunc) {
	rt.Handle(pattern, requireRole(role, h))
}

// Handle registers h for pattern as it is: the public routes, which need
// no token.
func (rt *routes) Handle(pattern string, h http.Handler) {
	rt.mux.Handle(pattern, h)
	rt.patterns = append(rt.patterns, pattern)
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
		err := s.runCheck(r.Context(), s.Checks[name])
		if err != nil {
			results[name] = err.Error()
			status, code = "not ready", http.StatusServiceUnavailable
			continue
		}
		results[name] = "ok"
	}
	body := map[string]any{"status": status, "checks": results}
	if s.Detail != nil {
		body["detail"] = s.Detail()
	}
	writeJSON(w, code, body)
}

// runCheck runs check bounded by CheckTimeout. A check that does not
// return in time (a client library ignoring the deadline) is left to finish
// on its own, and fails.
func (s *Server) runCheck(ctx context.Context, check Check) error {
	ctx, cancel := context.WithTimeout(ctx, s.CheckTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s", s.CheckTimeout)
	}
}

// Request body bounds.
const (
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	MaxBodyBytes = 64 << 10
	// DefaultBodyTimeout is the default of Server.BodyTimeout.
	DefaultBodyTimeout = 30 * time.Second
)

// readJSON decodes the request body into v, refusing unknown fields, a
// second value, a body over MaxBodyBytes (413) and one not sent within
// BodyTimeout. On failure it answers the request and returns false.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	rc := http.NewResponseController(w)
	// A writer without deadlines (a test recorder) has nothing to bound.
	_ = rc.SetReadDeadline(time.Now().Add(s.BodyTimeout))
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body may hold at most %d bytes", tooBig.Limit))
		return false
	case err != nil:
		// The deadline stays: after the answer the server reads what is
		// left of the body, which a slow client must not drag out.
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return false
	}
	_ = rc.SetReadDeadline(time.Time{})
	return true
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
