package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/storage"
)

// openAPIDoc is what the tests read of the OpenAPI document.
type openAPIDoc struct {
	OpenAPI    string                           `json:"openapi"`
	Paths      map[string]map[string]*openAPIOp `json:"paths"`
	Components struct {
		Parameters map[string]openAPIParam    `json:"parameters"`
		Responses  map[string]openAPIResponse `json:"responses"`
	} `json:"components"`
}

// openAPIOp is one operation: a method of a path.
type openAPIOp struct {
	Parameters  []openAPIParam             `json:"parameters"`
	RequestBody json.RawMessage            `json:"requestBody"`
	Responses   map[string]openAPIResponse `json:"responses"`
}

type openAPIParam struct {
	Ref      string `json:"$ref"`
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
	Schema   struct {
		Type    string `json:"type"`
		Minimum *int64 `json:"minimum"`
		Maximum *int64 `json:"maximum"`
	} `json:"schema"`
}

type openAPIResponse struct {
	Ref     string `json:"$ref"`
	Content map[string]struct {
		Schema struct {
			Ref string `json:"$ref"`
		} `json:"schema"`
	} `json:"content"`
}

// errorSchema is the schema of the API's error body, apiError.
const errorSchema = "#/components/schemas/Error"

// fetchOpenAPI reads the document as the server serves it: public, no
// token.
func fetchOpenAPI(t *testing.T, srv *httptest.Server) *openAPIDoc {
	t.Helper()
	resp, err := http.Get(srv.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc openAPIDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); resp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %d %v %q", resp.StatusCode, err, doc.OpenAPI)
	}
	return &doc
}

// op returns the operation of a route pattern such as "GET /readyz", or
// nil.
func (d *openAPIDoc) op(pattern string) *openAPIOp {
	method, path, _ := strings.Cut(pattern, " ")
	return d.Paths[path][strings.ToLower(method)]
}

// param resolves a parameter's $ref.
func (d *openAPIDoc) param(t *testing.T, p openAPIParam) openAPIParam {
	t.Helper()
	if p.Ref == "" {
		return p
	}
	def, ok := d.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
	if !ok {
		t.Fatalf("parameter %s is not in components", p.Ref)
	}
	return def
}

// response resolves a response's $ref.
func (d *openAPIDoc) response(t *testing.T, r openAPIResponse) openAPIResponse {
	t.Helper()
	if r.Ref == "" {
		return r
	}
	def, ok := d.Components.Responses[strings.TrimPrefix(r.Ref, "#/components/responses/")]
	if !ok {
		t.Fatalf("response %s is not in components", r.Ref)
	}
	return def
}

// docEnv builds API servers over one alert engine, with every part
// configured, so that each route gives the answers its code has.
type docEnv struct {
	alerts *alertEnv
	// cases is the case loop, made by the first server; caseID is a
	// case in the D01 scope with photo attached.
	cases         *cases.Service
	photos        *cases.Photos
	caseID, photo string
}

// caseLoop returns the case loop of the document tests, with its case.
func (e *docEnv) caseLoop(t *testing.T) *cases.Service {
	t.Helper()
	if e.cases != nil {
		return e.cases
	}
	e.cases = newCaseService(t, &casestest.Store{})
	e.photos = &cases.Photos{Dir: t.TempDir()}
	hash, err := e.photos.Put(bytes.NewReader(pngPhoto(t)))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := e.cases.Report(context.Background(), cases.Report{Source: cases.SourcePatrol,
		Actor: cases.Actor{Name: "reporter", Role: cases.RoleReporter}, Category: waterCover, Grid: gridIn, Evidence: []string{hash}})
	if err != nil {
		t.Fatal(err)
	}
	e.caseID, e.photo = c.ID, hash
	return e.cases
}

// camIn is the camera of the document tests, inside the D01 scope.
var camIn = devices.Device{ID: "cam-in", Type: "camera", Grid: "D01-S01-G02"}

// server returns a started API server with every part configured, after
// configure changed what the case needs. Its headers are bounded by 1 KiB,
// so that a probe reaches the bound cheaply (net/http lets a few KiB more
// through, on a kept-alive connection more still: the probe sends 32 KiB).
func (e *docEnv) server(t *testing.T, configure func(*Server)) (*Server, *httptest.Server) {
	t.Helper()
	reg := devices.NewRegistry(append(slices.Clone(alertDevices), camIn))
	s := &Server{
		Store: fakeStore{
			series: func(storage.SeriesQuery) ([]storage.Bucket, error) { return nil, nil },
			latest: func(string) ([]storage.Latest, error) { return nil, nil },
		},
		Lookup:         reg.Lookup,
		Devices:        reg.All,
		Checks:         map[string]Check{"clickhouse": func(context.Context) error { return nil }},
		Gatherer:       prometheus.NewRegistry(),
		AdminToken:     e.alerts.api.AdminToken,
		Tokens:         e.alerts.api.Tokens,
		Alerts:         e.alerts.engine,
		Cameras:        fakeCameras{latest: []storage.CameraHealth{{Camera: camIn.ID, Grid: camIn.Grid, Status: "ok", TS: time.UnixMilli(1)}}},
		Stills:         fakeStills{camera: camIn.ID, jpeg: []byte("\xff\xd8\xff\xd9"), at: time.UnixMilli(1)},
		Registry:       fakeRegistry{grids: []devices.Grid{{Code: "D01", Level: devices.LevelDistrict}}},
		Cases:          e.caseLoop(t),
		Photos:         e.photos,
		HotlineSecret:  hotlineSecret,
		CaseCategories: cases.DefaultCategories().All,
		Exports:        fakeExporter(func(io.Writer) error { return nil }),
		CaseStats:      fakeCaseStats{},
		Spool:          fakeSpool{},
		GB28181: func() []gb28181.DeviceState {
			return []gb28181.DeviceState{{ID: camIn.ID, Online: true, Transport: "udp"}}
		},
	}
	if configure != nil {
		configure(s)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.MaxHeaderBytes = 1 << 10
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(s.CloseStreams)
	return s, srv
}

// fill puts ids into a route's path: those of the test's alert, device,
// camera and grid (a silence id matches none), or unknown ones.
func (e *docEnv) fill(path string, unknown bool) string {
	return regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllStringFunc(path, func(m string) string {
		switch {
		case unknown:
			return "no-such"
		case strings.HasPrefix(path, "/api/v1/alerts/"):
			return e.alerts.ids[devIn]
		case m == "{hash}":
			return e.photo
		case strings.HasPrefix(path, "/api/v1/cases/"):
			return e.caseID
		case strings.HasPrefix(path, "/api/v1/devices/"):
			return devIn
		case strings.HasPrefix(path, "/api/v1/cameras/"):
			return camIn.ID
		case strings.HasPrefix(path, "/api/v1/grids/"):
			return "D01"
		case strings.HasPrefix(path, "/api/v1/export/"):
			return "telemetry"
		case strings.HasPrefix(path, "/api/v1/spool/"):
			return quarantinedFile
		}
		return "no-such"
	})
}

// docRequest is one request of the document tests.
type docRequest struct {
	name          string
	method, path  string // path with its query; a generic probe's is a query to add
	token, body   string
	header        []string // name, value pairs; "Host" sets the request's host
	pattern       string   // the route that answers
	want          int      // the status expected, or 0 for any
	unknownIDs    bool
	forGET, forOp bool // generic probes: only for GET routes, only for others
}

// docAnswer is what a request got.
type docAnswer struct {
	status      int
	contentType string
	body        []byte
}

// sendDoc sends r to srv and returns the answer, all of it but an event
// stream's.
func sendDoc(t *testing.T, srv *httptest.Server, r docRequest) docAnswer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for i := 0; i+1 < len(r.header); i += 2 {
		if r.header[i] == "Host" {
			req.Host = r.header[i+1]
		} else {
			req.Header.Set(r.header[i], r.header[i+1])
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s (%s): %v", r.method, r.path, r.name, err)
	}
	defer resp.Body.Close()
	a := docAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	// An event stream does not end: its first bytes say enough.
	if mt, _, _ := mime.ParseMediaType(a.contentType); mt != "text/event-stream" {
		if a.body, err = io.ReadAll(resp.Body); err != nil {
			t.Fatalf("%s %s (%s): body: %v", r.method, r.path, r.name, err)
		}
	}
	return a
}

// checkDocumented fails unless the document lists the answer's status for
// the route, with its media type, and an error answer carries the body
// the document names: the API's JSON error for all but plainErrors.
func checkDocumented(t *testing.T, doc *openAPIDoc, r docRequest, a docAnswer) {
	t.Helper()
	what := fmt.Sprintf("%s %s (%s) answered %d", r.method, r.path, r.name, a.status)
	if r.want != 0 && a.status != r.want {
		t.Errorf("%s %s, want %d", what, short(a.body), r.want)
		return
	}
	op := doc.op(r.pattern)
	if op == nil {
		t.Errorf("%s: route %s is not in openapi.json", what, r.pattern)
		return
	}
	if a.status == http.StatusRequestEntityTooLarge && op.RequestBody == nil {
		t.Errorf("%s: the route reads a body, which openapi.json does not document", what)
	}
	documented, ok := op.Responses[strconv.Itoa(a.status)]
	if !ok {
		t.Errorf("%s %s, which openapi.json does not document for %s", what, short(a.body), r.pattern)
		return
	}
	res := doc.response(t, documented)
	if len(res.Content) == 0 {
		if len(a.body) != 0 {
			t.Errorf("%s with a body, where openapi.json documents none: %s", what, short(a.body))
		}
		return
	}
	mt, _, _ := mime.ParseMediaType(a.contentType)
	content, ok := res.Content[mt]
	if !ok {
		t.Errorf("%s as %q, where openapi.json documents %v", what, a.contentType, slices.Sorted(maps.Keys(res.Content)))
		return
	}
	if content.Schema.Ref != errorSchema {
		return
	}
	var e apiError
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("%s with %s, not the documented error body: %v", what, short(a.body), err)
	}
}

// short is the start of a body, for a message.
func short(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// genericProbes are sent to every route of a server: a GET route gets
// those not forOp, another route those not forGET.
func genericProbes() []docRequest {
	return []docRequest{
		{name: "no token"},
		{name: "wrong token", token: "tok-wrong"},
		{name: "viewer", token: "tok-viewer"},
		{name: "operator", token: "tok-city", body: "{}"},
		{name: "unknown ids", token: "tok-bootstrap", unknownIDs: true, body: "{}"},
		{name: "headers over the bound", token: "tok-city", header: []string{"X-Padding", strings.Repeat("x", 32<<10)}},
		{name: "body over MaxBodyBytes", token: "tok-city", forOp: true, body: `{"note":"` + strings.Repeat("x", MaxBodyBytes) + `"}`},
		{name: "a second JSON value", token: "tok-city", forOp: true, body: `{} {}`},
		{name: "an unknown field", token: "tok-city", forOp: true, body: `{"nope":1}`},
		{name: "malformed JSON", token: "tok-city", forOp: true, body: `{`},
		{name: "from after to", token: "tok-city", forGET: true, path: "?from=2000&to=1000"},
		{name: "a bad time", token: "tok-city", forGET: true, path: "?from=yesterday"},
		{name: "a bad limit", token: "tok-city", forGET: true, path: "?limit=many"},
	}
}

// probe sends each probe to every route of s and checks that the
// document describes each answer.
func (e *docEnv) probe(t *testing.T, doc *openAPIDoc, s *Server, srv *httptest.Server, probes []docRequest) {
	t.Helper()
	for _, pattern := range s.patterns {
		method, path, _ := strings.Cut(pattern, " ")
		for _, p := range probes {
			if method == http.MethodGet && p.forOp || method != http.MethodGet && p.forGET {
				continue
			}
			p.method, p.pattern = method, pattern
			p.path = e.fill(path, p.unknownIDs) + p.path
			if method == http.MethodGet {
				p.body = ""
			}
			checkDocumented(t, doc, p, sendDoc(t, srv, p))
		}
	}
}

// TestOpenAPIListsEveryRoute checks the OpenAPI document against the
// routes Handler registers, public ones included, both ways, with their
// path parameters: the README promises the document describes the API.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	e := &docEnv{alerts: newAlertEnv(t)}
	s, srv := e.server(t, nil)
	doc := fetchOpenAPI(t, srv)
	pathParam := regexp.MustCompile(`\{([a-z]+)\}`)
	for _, p := range s.patterns {
		op := doc.op(p)
		if op == nil {
			t.Errorf("route %s is not in openapi.json", p)
			continue
		}
		_, path, _ := strings.Cut(p, " ")
		var inPath []string
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			inPath = append(inPath, m[1])
		}
		var declared []string
		for _, param := range op.Parameters {
			if param = doc.param(t, param); param.In == "path" {
				declared = append(declared, param.Name)
				if !param.Required {
					t.Errorf("%s: path parameter %s is not required", p, param.Name)
				}
			}
		}
		if !slices.Equal(inPath, declared) {
			t.Errorf("%s: path parameters %v, openapi.json declares %v", p, inPath, declared)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if p := strings.ToUpper(method) + " " + path; !slices.Contains(s.patterns, p) {
				t.Errorf("openapi.json lists %s, which is not a route", p)
			}
		}
	}
}

// plainErrors are the error answers the document describes with another
// body than the API's JSON error: 431, which net/http writes as plain text
// before any handler runs; a failure of the Prometheus handler; and the
// readiness report, whose 503 says which check failed.
var plainErrors = map[string]bool{"GET /metrics 500": true, "GET /readyz 503": true}

// TestOpenAPIErrorsHaveTheErrorBody checks that every error response the
// document lists has the JSON error body, {"error": {"code", "message"}},
// as the README promises ("Errors are JSON"), except plainErrors.
func TestOpenAPIErrorsHaveTheErrorBody(t *testing.T) {
	e := &docEnv{alerts: newAlertEnv(t)}
	_, srv := e.server(t, nil)
	doc := fetchOpenAPI(t, srv)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for status, r := range op.Responses {
				code, err := strconv.Atoi(status)
				if err != nil {
					t.Errorf("%s %s: response %q is not a status", method, path, status)
					continue
				}
				key := strings.ToUpper(method) + " " + path + " " + status
				res := doc.response(t, r)
				switch {
				case code < 400 || plainErrors[key]:
				case code == http.StatusRequestHeaderFieldsTooLarge:
					if _, ok := res.Content["text/plain"]; !ok || len(res.Content) != 1 {
						t.Errorf("%s: net/http answers 431 in text/plain, openapi.json documents %v", key, slices.Sorted(maps.Keys(res.Content)))
					}
				case len(res.Content) != 1 || res.Content["application/json"].Schema.Ref != errorSchema:
					t.Errorf("%s: error response without the Error schema", key)
				}
			}
		}
	}
}

// TestOpenAPIQueryBounds checks every integer query parameter's documented
// bounds against the code: a value just outside them gets 400, the bounds
// themselves do not.
func TestOpenAPIQueryBounds(t *testing.T) {
	e := &docEnv{alerts: newAlertEnv(t)}
	s, srv := e.server(t, nil)
	doc := fetchOpenAPI(t, srv)
	for _, pattern := range s.patterns {
		method, path, _ := strings.Cut(pattern, " ")
		op := doc.op(pattern)
		if method != http.MethodGet || op == nil || strings.HasSuffix(path, "/stream") {
			continue
		}
		for _, param := range op.Parameters {
			param = doc.param(t, param)
			if param.In != "query" || param.Schema.Type != "integer" {
				continue
			}
			if param.Schema.Minimum == nil || param.Schema.Maximum == nil {
				t.Errorf("%s: integer parameter %s without both bounds", pattern, param.Name)
				continue
			}
			lo, hi := *param.Schema.Minimum, *param.Schema.Maximum
			for _, v := range []int64{lo - 1, lo, hi, hi + 1} {
				r := docRequest{name: fmt.Sprintf("%s=%d", param.Name, v), method: method, pattern: pattern, token: "tok-city",
					path: e.fill(path, false) + fmt.Sprintf("?%s=%d&metric=level_cm", param.Name, v)}
				a := sendDoc(t, srv, r)
				if outside := v < lo || v > hi; outside != (a.status == http.StatusBadRequest) {
					t.Errorf("%s %s: %d %s; openapi.json bounds it to %d..%d", pattern, r.name, a.status, short(a.body), lo, hi)
				}
			}
		}
	}
}

// failingCameras is a camera store that is down.
type failingCameras struct{}

var errDown = errors.New("clickhouse: connection refused")

func (failingCameras) LatestCameraHealth(context.Context) ([]storage.CameraHealth, error) {
	return nil, errDown
}

func (failingCameras) CameraHistory(context.Context, string, time.Time, time.Time, int) ([]storage.CameraHealth, error) {
	return nil, errDown
}

func (failingCameras) CameraAvailability(context.Context, time.Time, time.Time, bool) ([]storage.Availability, error) {
	return nil, errDown
}

// TestOpenAPIDescribesEveryAnswer attacks the promise that the document
// describes the API: every route gets the requests that make it refuse
// (no token, a weak role, the open mode's foreign requests, headers and
// bodies over the bounds, trailing JSON, unknown fields, parameters out of
// range, stale and missing versions, a silence beyond api.max_silence, too
// many streams, parts missing, down or shutting down), and each answer
// must be listed for its route with its media type and, for an error, the
// JSON error body.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	e := &docEnv{alerts: newAlertEnv(t)}
	full, fullSrv := e.server(t, nil)
	doc := fetchOpenAPI(t, fullSrv)
	e.probe(t, doc, full, fullSrv, genericProbes())

	open, openSrv := e.server(t, func(s *Server) { s.AdminToken, s.Tokens = "", nil })
	e.probe(t, doc, open, openSrv, []docRequest{
		{name: "open, from this host", body: "{}"},
		{name: "open, through a proxy", header: []string{"X-Forwarded-For", "127.0.0.1"}},
		{name: "open, for another host (DNS rebinding)", header: []string{"Host", "evil.example"}},
		{name: "open, from another site's page", header: []string{"Origin", "http://evil.example"}},
	})

	bare, bareSrv := e.server(t, func(s *Server) {
		s.Cameras, s.Devices, s.Registry, s.Exports, s.GB28181, s.Stills = nil, nil, nil, nil, nil, nil
	})
	e.probe(t, doc, bare, bareSrv, []docRequest{{name: "parts not configured", token: "tok-city", body: "{}"}})
	noUnits := docRequest{name: "dispatch without a units table", method: http.MethodPost, pattern: "POST /api/v1/cases/{id}/dispatch",
		path: "/api/v1/cases/" + e.caseID + "/dispatch", token: "tok-city", body: `{"version":1,"unit":"U-WATER"}`, want: http.StatusServiceUnavailable}
	checkDocumented(t, doc, noUnits, sendDoc(t, bareSrv, noUnits))

	failing, failingSrv := e.server(t, func(s *Server) {
		s.Store = fakeStore{
			series: func(storage.SeriesQuery) ([]storage.Bucket, error) { return nil, errDown },
			latest: func(string) ([]storage.Latest, error) { return nil, errDown },
		}
		s.Cameras = failingCameras{}
		s.Exports = fakeExporter(func(io.Writer) error { return errDown })
		s.CaseStats = fakeCaseStats{err: errDown}
		s.Stills = fakeStills{err: errDown}
		s.Checks = map[string]Check{"clickhouse": func(context.Context) error { return errDown }}
		s.Gatherer = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errDown })
	})
	e.probe(t, doc, failing, failingSrv, []docRequest{{name: "parts down", token: "tok-city", path: "?metric=level_cm"}})
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"a segment ClickHouse still refuses", &clickhouse.Exception{Code: 60, Message: "Table gridwatch.telemetry doesn't exist"}, http.StatusUnprocessableEntity},
		{"a segment while ClickHouse is down", errDown, http.StatusServiceUnavailable},
	} {
		_, srv := e.server(t, func(s *Server) { s.Spool = fakeSpool{err: c.err} })
		r := docRequest{name: c.name, method: http.MethodPost, pattern: "POST /api/v1/spool/quarantine/{file}/replay",
			path: "/api/v1/spool/quarantine/" + quarantinedFile + "/replay", token: "tok-bootstrap", want: c.want}
		checkDocumented(t, doc, r, sendDoc(t, srv, r))
	}

	// While the engine shuts down no silence is taken.
	closing := &docEnv{alerts: newAlertEnv(t)}
	_ = closing.alerts.engine.Close()
	_, closingSrv := closing.server(t, nil)
	shutting := docRequest{name: "engine shutting down", method: http.MethodPost, path: "/api/v1/silences", token: "tok-city",
		body: `{"duration":"1h"}`, pattern: "POST /api/v1/silences", want: http.StatusServiceUnavailable}
	checkDocumented(t, doc, shutting, sendDoc(t, closingSrv, shutting))

	_, streamsSrv := e.server(t, func(s *Server) { s.MaxStreams = 1 })
	held := docRequest{name: "the one stream allowed", method: http.MethodGet, path: "/api/v1/alerts/stream", token: "tok-city",
		pattern: "GET /api/v1/alerts/stream", want: http.StatusOK}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, streamsSrv.URL+held.path, nil)
	req.Header.Set("Authorization", "Bearer tok-city")
	resp, err := streamsSrv.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	beyond := held
	beyond.name, beyond.want = "a stream beyond MaxStreams", http.StatusServiceUnavailable
	checkDocumented(t, doc, beyond, sendDoc(t, streamsSrv, beyond))

	for _, r := range []docRequest{
		{name: "an alert status", pattern: "GET /api/v1/alerts", path: "/api/v1/alerts?status=new", want: http.StatusBadRequest},
		{name: "a bad severity", pattern: "GET /api/v1/alerts", path: "/api/v1/alerts?severity=worst", want: http.StatusBadRequest},
		{name: "a bad sort", pattern: "GET /api/v1/alerts", path: "/api/v1/alerts?sort=name", want: http.StatusBadRequest},
		{name: "a cursor not issued", pattern: "GET /api/v1/alerts", path: "/api/v1/alerts?cursor=zzz", want: http.StatusBadRequest},
		{name: "a bad export filter", pattern: "GET /api/v1/alerts/export.csv", path: "/api/v1/alerts/export.csv?severity=worst", want: http.StatusBadRequest},
		{name: "an export as csv", pattern: "GET /api/v1/export/{table}", path: "/api/v1/export/telemetry?format=csv", want: http.StatusBadRequest},
		{name: "an export by a scoped admin", pattern: "GET /api/v1/export/{table}", path: "/api/v1/export/telemetry", token: "tok-admin", want: http.StatusForbidden},
		{name: "an export", pattern: "GET /api/v1/export/{table}", path: "/api/v1/export/case_events?format=arrow", want: http.StatusOK},
		{name: "telemetry", pattern: "GET /api/v1/devices/{id}/telemetry", path: "/api/v1/devices/" + devIn + "/telemetry?metric=level_cm", want: http.StatusOK},
		{name: "telemetry without a metric", pattern: "GET /api/v1/devices/{id}/telemetry", path: "/api/v1/devices/" + devIn + "/telemetry", want: http.StatusBadRequest},
		{name: "a bad step", pattern: "GET /api/v1/devices/{id}/telemetry", path: "/api/v1/devices/" + devIn + "/telemetry?metric=level_cm&step=0s", want: http.StatusBadRequest},
		{name: "availability by street", pattern: "GET /api/v1/cameras/availability", path: "/api/v1/cameras/availability?by=street", want: http.StatusBadRequest},
		{name: "a bad offset", pattern: "GET /api/v1/devices", path: "/api/v1/devices?offset=-1", want: http.StatusBadRequest},
		{name: "silence beyond api.max_silence", pattern: "POST /api/v1/silences", path: "/api/v1/silences", body: `{"duration":"721h"}`, want: http.StatusBadRequest},
		{name: "silence with ends and duration", pattern: "POST /api/v1/silences", path: "/api/v1/silences", body: `{"duration":"1h","ends":"1"}`, want: http.StatusBadRequest},
		{name: "silence without an end", pattern: "POST /api/v1/silences", path: "/api/v1/silences", body: `{"rule":"flood"}`, want: http.StatusBadRequest},
		{name: "silence of a device outside the scope", pattern: "POST /api/v1/silences", path: "/api/v1/silences", token: "tok-operator", body: `{"device":"` + devOut + `","duration":"1h"}`, want: http.StatusNotFound},
		{name: "silence of a grid outside the scope", pattern: "POST /api/v1/silences", path: "/api/v1/silences", token: "tok-operator", body: `{"grid":"D02","duration":"1h"}`, want: http.StatusNotFound},
		{name: "silence of no rule", pattern: "POST /api/v1/silences", path: "/api/v1/silences", body: `{"rule":"flod","duration":"1h"}`, want: http.StatusUnprocessableEntity},
		{name: "silence that ended", pattern: "POST /api/v1/silences", path: "/api/v1/silences", body: `{"ends":"1"}`, want: http.StatusUnprocessableEntity},
		{name: "viewer silences", pattern: "POST /api/v1/silences", path: "/api/v1/silences", token: "tok-viewer", body: `{"duration":"1h"}`, want: http.StatusForbidden},
	} {
		r.method, _, _ = strings.Cut(r.pattern, " ")
		if r.token == "" {
			r.token = "tok-city"
		}
		checkDocumented(t, doc, r, sendDoc(t, fullSrv, r))
	}

	// A silence made is answered 201 and ended with 204.
	create := docRequest{name: "a silence", method: http.MethodPost, path: "/api/v1/silences", token: "tok-city",
		body: `{"duration":"1h"}`, pattern: "POST /api/v1/silences", want: http.StatusCreated}
	a := sendDoc(t, fullSrv, create)
	checkDocumented(t, doc, create, a)
	var sil alerts.Silence
	if err := json.Unmarshal(a.body, &sil); err != nil || sil.ID == "" {
		t.Fatalf("silence: %s %v", a.body, err)
	}
	end := docRequest{name: "end a silence", method: http.MethodDelete, path: "/api/v1/silences/" + sil.ID, token: "tok-city",
		pattern: "DELETE /api/v1/silences/{id}", want: http.StatusNoContent}
	checkDocumented(t, doc, end, sendDoc(t, fullSrv, end))
}
