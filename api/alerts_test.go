package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// Devices of the alert tests: one inside the D01 scope, one outside it.
const (
	devIn  = "w-in"
	devOut = "w-out"
)

var alertDevices = []devices.Device{
	{ID: devIn, Type: "water_level", Grid: "D01-S01-G01"},
	{ID: devOut, Type: "water_level", Grid: "D02-S01-G01"},
}

// alertUnits is the units table of the alert tests.
var alertUnits = []devices.Unit{{Code: "water-d01", Categories: []string{"water"}, Districts: []string{"D01"}}}

// testTokens are the tokens of the alert tests, by name; each token is its
// name with a "tok-" prefix.
var testTokens = []Token{
	{Name: "viewer", Role: RoleViewer, Grid: "D01"},
	{Name: "operator", Role: RoleOperator, Grid: "D01"},
	{Name: "admin", Role: RoleAdmin, Grid: "D01"},
	{Name: "city", Role: RoleOperator},
	{Name: "reporter", Role: RoleReporter, Grid: "D01"},
	{Name: "unit", Role: RoleUnit, Grid: "D01", Unit: "U-WATER"},
	{Name: "dispatcher", Role: RoleDispatcher, Grid: "D01"},
	{Name: "supervisor", Role: RoleSupervisor, Grid: "D01"},
}

// alertEnv is an API with a real alert engine holding one firing alert per
// test device.
type alertEnv struct {
	srv    *httptest.Server
	api    *Server
	engine *alerts.Engine
	ids    map[string]string // alert id by device
}

func newAlertEnv(t *testing.T) *alertEnv {
	t.Helper()
	return newAlertEnvStoring(t, nil)
}

// newAlertEnvStoring is newAlertEnv with an engine saving to store; nil
// keeps the alerts in memory.
func newAlertEnvStoring(t *testing.T, store alerts.Store) *alertEnv {
	t.Helper()
	rules, err := alerts.ParseRules([]byte(`
rules:
  - name: flood
    match: {types: [water_level]}
    metric: level_cm
    condition: value > 30
    severity: major
`))
	if err != nil {
		t.Fatal(err)
	}
	reg := devices.NewRegistry(alertDevices)
	// Like a server without a grids file: no hierarchy, the engine and the
	// API both scope by the codes.
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, InScope: PrefixScope, StormMin: -1, Tick: time.Hour, FlushEvery: time.Hour,
		Store: store}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	tokens := make([]Token, len(testTokens))
	for i, tk := range testTokens {
		tk.Hash = HashToken("tok-" + tk.Name)
		tokens[i] = tk
	}
	s := &Server{
		Store:      fakeStore{latest: func(string) ([]storage.Latest, error) { return nil, nil }},
		Lookup:     reg.Lookup,
		AdminToken: "tok-bootstrap",
		Tokens:     tokens,
		Alerts:     e,
		Registry:   fakeRegistry{units: alertUnits},
		Heartbeat:  20 * time.Millisecond,
	}
	env := &alertEnv{api: s, engine: e, ids: map[string]string{}}
	env.srv = httptest.NewServer(s.Handler())
	t.Cleanup(env.srv.Close)
	t.Cleanup(s.CloseStreams)
	for _, d := range alertDevices {
		env.fire(t, d.ID)
	}
	return env
}

// fire makes device's flood alert fire and returns its id.
func (env *alertEnv) fire(t *testing.T, device string) string {
	t.Helper()
	env.engine.Observe(alerts.Observation{Device: device, Metric: "level_cm", Value: 50, TS: time.Now().UnixMilli()})
	page, err := env.engine.List(alerts.Filter{Device: device})
	if err != nil || len(page.Alerts) != 1 {
		t.Fatalf("alert of %s: %+v %v", device, page, err)
	}
	env.ids[device] = page.Alerts[0].ID
	return page.Alerts[0].ID
}

func (env *alertEnv) version(t *testing.T, device string) uint64 {
	t.Helper()
	a, _, err := env.engine.Get(env.ids[device])
	if err != nil {
		t.Fatal(err)
	}
	return a.Version
}

// call sends a request with token (none when empty) and returns the status
// and body.
func (env *alertEnv) call(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, env.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

// TestRBACMatrix checks every role against every kind of endpoint, inside
// and outside the token's grid scope: 401 without a valid token, 403 for a
// role too weak, 404 outside the scope, 409 for a stale version.
func TestRBACMatrix(t *testing.T) {
	env := newAlertEnv(t)
	type endpoint struct {
		name    string
		minRole Role
		// req builds the request for the alert or device of device; fresh
		// gives the current version.
		method, path func(device string) string
		body         func(version uint64) string
		// scoped is false for endpoints that take no grid-bound resource.
		scoped bool
	}
	get := func(string) string { return http.MethodGet }
	post := func(string) string { return http.MethodPost }
	none := func(uint64) string { return "" }
	endpoints := []endpoint{
		{name: "get alert", minRole: RoleViewer, method: get, path: func(d string) string { return "/api/v1/alerts/" + env.ids[d] }, body: none, scoped: true},
		{name: "comment", minRole: RoleOperator, method: post, path: func(d string) string { return "/api/v1/alerts/" + env.ids[d] + "/comment" },
			body: func(v uint64) string { return fmt.Sprintf(`{"version":%d,"note":"on my way"}`, v) }, scoped: true},
		{name: "device latest", minRole: RoleViewer, method: get, path: func(d string) string { return "/api/v1/devices/" + d + "/latest" }, body: none, scoped: true},
		{name: "device telemetry", minRole: RoleViewer, method: get, path: func(d string) string { return "/api/v1/devices/" + d + "/telemetry?metric=x&step=bad" }, body: none, scoped: true},
		{name: "list", minRole: RoleViewer, method: get, path: func(string) string { return "/api/v1/alerts" }, body: none},
		{name: "grid stats", minRole: RoleViewer, method: get, path: func(string) string { return "/api/v1/stats/grids" }, body: none},
		{name: "export", minRole: RoleViewer, method: get, path: func(string) string { return "/api/v1/alerts/export.csv" }, body: none},
	}
	type principalCase struct {
		token string
		role  Role // 0: not authenticated
	}
	principals := []principalCase{{"", 0}, {"tok-wrong", 0}, {"tok-viewer", RoleViewer}, {"tok-reporter", RoleReporter}, {"tok-unit", RoleUnit},
		{"tok-operator", RoleOperator}, {"tok-dispatcher", RoleDispatcher}, {"tok-supervisor", RoleSupervisor}, {"tok-admin", RoleAdmin}}
	for _, ep := range endpoints {
		for _, pc := range principals {
			for _, device := range []string{devIn, devOut} {
				want := http.StatusOK
				switch {
				case pc.role == 0:
					want = http.StatusUnauthorized
				case pc.role < ep.minRole:
					want = http.StatusForbidden
				case ep.scoped && device == devOut:
					want = http.StatusNotFound
				case ep.name == "device telemetry":
					want = http.StatusBadRequest // in scope, so the query is read
				}
				code, body := env.call(t, ep.method(device), ep.path(device), pc.token, ep.body(env.version(t, device)))
				if code != want {
					t.Errorf("%s as %q on %s: %d %s, want %d", ep.name, pc.token, device, code, body, want)
				}
			}
		}
	}

	// A stale version is a conflict, whatever the token.
	for _, token := range []string{"tok-operator", "tok-admin", "tok-city", "tok-bootstrap"} {
		stale := env.version(t, devIn)
		env.call(t, http.MethodPost, "/api/v1/alerts/"+env.ids[devIn]+"/comment", "tok-city", fmt.Sprintf(`{"version":%d,"note":"first"}`, stale))
		code, body := env.call(t, http.MethodPost, "/api/v1/alerts/"+env.ids[devIn]+"/ack", token, fmt.Sprintf(`{"version":%d}`, stale))
		if code != http.StatusConflict || !strings.Contains(body, `"conflict"`) {
			t.Errorf("stale ack as %s: %d %s, want 409", token, code, body)
		}
	}
	// Unscoped tokens see everything.
	for _, token := range []string{"tok-city", "tok-bootstrap"} {
		if code, body := env.call(t, http.MethodGet, "/api/v1/alerts/"+env.ids[devOut], token, ""); code != http.StatusOK {
			t.Errorf("get outside D01 as %s: %d %s", token, code, body)
		}
	}
	// Unit statistics count the alerts of the token's scope only.
	for token, want := range map[string]int{"tok-viewer": 1, "tok-city": 2} {
		code, body := env.call(t, http.MethodGet, "/api/v1/stats/units", token, "")
		var got struct{ Stats []statsJSON }
		if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil || len(got.Stats) != 1 || got.Stats[0].Received != want {
			t.Errorf("unit stats as %s: %d %s, want 200 with %d alerts received", token, code, body, want)
		}
	}
}

func TestActionsAndVersions(t *testing.T) {
	env := newAlertEnv(t)
	id := env.ids[devIn]
	path := "/api/v1/alerts/" + id
	v := env.version(t, devIn)

	cases := []struct {
		name, action, ifMatch, body string
		want                        int
		wantStatus                  alerts.Status
	}{
		{"no version", "ack", "", "", http.StatusPreconditionRequired, alerts.StatusNew},
		{"bad If-Match", "ack", "soon", "", http.StatusBadRequest, alerts.StatusNew},
		{"unknown field", "ack", "", `{"version":1,"colour":"red"}`, http.StatusBadRequest, alerts.StatusNew},
		{"resolve before ack", "resolve", fmt.Sprintf(`"%d"`, v), "", http.StatusUnprocessableEntity, alerts.StatusNew},
		// RFC 9110 13.1.1: If-Match compares strongly; a weak tag never
		// matches, even of the current version.
		{"weak If-Match", "ack", fmt.Sprintf(`W/"%d"`, v), "", http.StatusPreconditionFailed, alerts.StatusNew},
		{"ack by If-Match", "ack", fmt.Sprintf(`"%d"`, v), "", http.StatusOK, alerts.StatusAcknowledged},
		{"ack again with the old version", "ack", fmt.Sprintf(`"%d"`, v), "", http.StatusConflict, alerts.StatusAcknowledged},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodPost, env.srv.URL+path+"/"+tc.action, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer tok-operator")
		if tc.ifMatch != "" {
			req.Header.Set("If-Match", tc.ifMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		a, _, _ := env.engine.Get(id)
		if resp.StatusCode != tc.want || a.Status != tc.wantStatus {
			t.Errorf("%s: %d, status %s; want %d, %s", tc.name, resp.StatusCode, a.Status, tc.want, tc.wantStatus)
		}
		if tc.want == http.StatusConflict && resp.Header.Get("ETag") != fmt.Sprintf(`"%d"`, a.Version) {
			t.Errorf("%s: ETag %q, want the current version %d", tc.name, resp.Header.Get("ETag"), a.Version)
		}
	}

	// The timeline records the actor: the token's name.
	code, body := env.call(t, http.MethodGet, path, "tok-viewer", "")
	var got alertJSON
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("get: %d %s", code, body)
	}
	last := got.Timeline[len(got.Timeline)-1]
	if last.Kind != alerts.EventAck || last.Actor != "operator" || got.Version != last.Version {
		t.Errorf("last event %+v of alert v%d", last, got.Version)
	}
}

// TestWeakIfMatchRefused: a weak entity tag in If-Match gets 412
// precondition_failed whatever version it names, and is counted.
func TestWeakIfMatchRefused(t *testing.T) {
	env := newAlertEnv(t)
	v := env.version(t, devIn)
	for _, m := range []string{fmt.Sprintf(`W/"%d"`, v), `W/"999"`} {
		req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/api/v1/alerts/"+env.ids[devIn]+"/ack", nil)
		req.Header.Set("Authorization", "Bearer tok-operator")
		req.Header.Set("If-Match", m)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPreconditionFailed || e.Error.Code != "precondition_failed" || !strings.Contains(e.Error.Message, "weak") {
			t.Errorf("If-Match %s: %d %+v, want 412 precondition_failed naming the weak tag", m, resp.StatusCode, e.Error)
		}
	}
	if got := testutil.ToFloat64(env.api.actions.refused.WithLabelValues("weak_etag")); got != 2 {
		t.Errorf("gridwatch_api_actions_refused_total{reason=\"weak_etag\"} = %v, want 2", got)
	}
	if a, _, _ := env.engine.Get(env.ids[devIn]); a.Status != alerts.StatusNew || a.Version != v {
		t.Errorf("alert after weak If-Match: %s v%d, want new v%d (unchanged)", a.Status, a.Version, v)
	}
}

// TestDispatchToUnknownUnit: a dispatch to a unit that is not in the units
// table gets 422 unknown_unit naming it, is counted and changes nothing;
// one to a unit of the table is taken.
func TestDispatchToUnknownUnit(t *testing.T) {
	env := newAlertEnv(t)
	path := "/api/v1/alerts/" + env.ids[devIn] + "/dispatch"
	v := env.version(t, devIn)
	code, body := env.call(t, http.MethodPost, path, "tok-operator", fmt.Sprintf(`{"version": %d, "unit": "water-d1"}`, v))
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil || code != http.StatusUnprocessableEntity ||
		e.Error.Code != "unknown_unit" || !strings.Contains(e.Error.Message, `"water-d1"`) || !strings.Contains(e.Error.Message, "units table") {
		t.Errorf("dispatch to an unknown unit: %d %s, want 422 unknown_unit naming it", code, body)
	}
	if got := testutil.ToFloat64(env.api.actions.refused.WithLabelValues("unknown_unit")); got != 1 {
		t.Errorf("gridwatch_api_actions_refused_total{reason=\"unknown_unit\"} = %v, want 1", got)
	}
	if a, _, _ := env.engine.Get(env.ids[devIn]); a.Status != alerts.StatusNew || a.Unit != "" {
		t.Errorf("alert after a refused dispatch: %s to %q, want new and undispatched", a.Status, a.Unit)
	}
	if code, body := env.call(t, http.MethodPost, path, "tok-operator", fmt.Sprintf(`{"version": %d, "unit": "water-d01"}`, v)); code != http.StatusOK {
		t.Fatalf("dispatch to a unit of the table: %d %s", code, body)
	}
	if a, _, _ := env.engine.Get(env.ids[devIn]); a.Status != alerts.StatusDispatched || a.Unit != "water-d01" {
		t.Errorf("alert after dispatch: %s to %q, want dispatched to water-d01", a.Status, a.Unit)
	}
}

// failingAlertStore is an alert Store whose saves fail while fail is set.
type failingAlertStore struct{ fail atomic.Bool }

func (s *failingAlertStore) err() error {
	if s.fail.Load() {
		return errors.New("clickhouse: connection refused")
	}
	return nil
}
func (s *failingAlertStore) SaveAlerts(context.Context, []alerts.Alert) error { return s.err() }
func (s *failingAlertStore) SaveEvents(context.Context, []alerts.Event) error { return s.err() }
func (s *failingAlertStore) LoadAlerts(context.Context, time.Time) ([]alerts.Alert, []alerts.Event, error) {
	return nil, nil, nil
}
func (s *failingAlertStore) SaveSilence(context.Context, alerts.Silence) error { return s.err() }
func (s *failingAlertStore) LoadSilences(context.Context, time.Time) ([]alerts.Silence, error) {
	return nil, nil
}

// TestActionNotSavedIs503 attacks "a 2xx to any action means it is on disk"
// (issue 10 item 4): while the alert store fails, every work-order action
// answers 503 with a body saying nothing changed, and nothing did; once it
// works, the same request succeeds.
func TestActionNotSavedIs503(t *testing.T) {
	store := &failingAlertStore{}
	env := newAlertEnvStoring(t, store)
	id := env.ids[devIn]
	path := "/api/v1/alerts/" + id + "/"
	before, trace, _ := env.engine.Get(id)
	store.fail.Store(true)
	for _, kind := range alertActions {
		code, body := env.call(t, http.MethodPost, path+string(kind), "tok-operator",
			fmt.Sprintf(`{"version":%d,"note":"n","unit":"water-d01"}`, before.Version))
		if kind == alerts.ActionResolve || kind == alerts.ActionClose || kind == alerts.ActionReopen {
			// Not allowed from new: refused before any save.
			if code != http.StatusUnprocessableEntity {
				t.Errorf("%s of a new alert: %d %s, want 422", kind, code, body)
			}
			continue
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"not_saved"`) || !strings.Contains(body, "nothing changed") {
			t.Errorf("%s while the store fails: %d %s; want 503 not_saved", kind, code, body)
		}
		after, afterTrace, _ := env.engine.Get(id)
		if after.Version != before.Version || after.Status != before.Status || after.Unit != before.Unit || len(afterTrace) != len(trace) {
			t.Errorf("%s while the store fails changed the alert: v%d %s unit %q, %d events; want v%d %s unit %q, %d",
				kind, after.Version, after.Status, after.Unit, len(afterTrace), before.Version, before.Status, before.Unit, len(trace))
		}
	}
	store.fail.Store(false)
	if code, body := env.call(t, http.MethodPost, path+"ack", "tok-operator", fmt.Sprintf(`{"version":%d}`, before.Version)); code != http.StatusOK {
		t.Errorf("ack once the store works: %d %s", code, body)
	}
}

func TestListIsScoped(t *testing.T) {
	env := newAlertEnv(t)
	cases := []struct {
		token, query string
		want         []string
	}{
		{"tok-viewer", "", []string{devIn}},
		{"tok-viewer", "?grid=D01-S01", []string{devIn}},
		{"tok-viewer", "?grid=D02", nil},
		{"tok-city", "?grid=D02", []string{devOut}},
		{"tok-city", "?severity=major&status=new&sort=fired", []string{devIn, devOut}},
		{"tok-city", "?severity=minor", nil},
		{"tok-city", "?device=" + devOut, []string{devOut}},
	}
	for _, tc := range cases {
		code, body := env.call(t, http.MethodGet, "/api/v1/alerts"+tc.query, tc.token, "")
		var page alerts.Page
		if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
			t.Fatalf("list %s: %d %s", tc.query, code, body)
		}
		var got []string
		for _, a := range page.Alerts {
			got = append(got, a.Device)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("list%s as %s = %v, want %v", tc.query, tc.token, got, tc.want)
		}
	}
	for _, q := range []string{"?severity=huge", "?from=yesterday", "?limit=0", "?sort=colour", "?cursor=nope"} {
		if code, body := env.call(t, http.MethodGet, "/api/v1/alerts"+q, "tok-city", ""); code != 400 {
			t.Errorf("list%s = %d %s, want 400", q, code, body)
		}
	}
	// Paging: one alert per page, then no cursor.
	code, body := env.call(t, http.MethodGet, "/api/v1/alerts?limit=1", "tok-city", "")
	var page alerts.Page
	_ = json.Unmarshal([]byte(body), &page)
	if code != 200 || len(page.Alerts) != 1 || page.Next == "" {
		t.Fatalf("first page: %d %s", code, body)
	}
	_, body = env.call(t, http.MethodGet, "/api/v1/alerts?limit=1&cursor="+page.Next, "tok-city", "")
	var second alerts.Page
	_ = json.Unmarshal([]byte(body), &second)
	if len(second.Alerts) != 1 || second.Alerts[0].ID == page.Alerts[0].ID {
		t.Errorf("second page: %s", body)
	}
}

func TestExportCSV(t *testing.T) {
	env := newAlertEnv(t)
	code, body := env.call(t, http.MethodGet, "/api/v1/alerts/export.csv?sort=fired", "tok-city", "")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || err != nil || len(rows) != 3 {
		t.Fatalf("export: %d %v\n%s", code, err, body)
	}
	if strings.Join(rows[0], ",") != strings.Join(exportColumns, ",") {
		t.Errorf("header %v", rows[0])
	}
	if rows[1][0] != env.ids[devIn] || rows[1][3] != devIn || rows[1][7] != "major" || rows[1][9] != "new" {
		t.Errorf("row %v", rows[1])
	}
	// A scoped token exports its scope only.
	_, body = env.call(t, http.MethodGet, "/api/v1/alerts/export.csv", "tok-viewer", "")
	if rows, _ := csv.NewReader(strings.NewReader(body)).ReadAll(); len(rows) != 2 {
		t.Errorf("scoped export has %d rows, want header and 1", len(rows))
	}
	if got := cell("=HYPERLINK(\"x\")"); got != "'=HYPERLINK(\"x\")" {
		t.Errorf("cell defuses to %q", got)
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ id, event, data string }

// readEvents parses events from r onto a channel, skipping comments.
func readEvents(r *bufio.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 16)
	go func() {
		defer close(ch)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.event != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case strings.HasPrefix(line, ": heartbeat"):
				ev = sseEvent{event: "heartbeat"}
			}
		}
	}()
	return ch
}

func TestStreamDeliversScopedTransitionsAndStops(t *testing.T) {
	env := newAlertEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.srv.URL+"/api/v1/alerts/stream", nil)
	req.Header.Set("Authorization", "Bearer tok-viewer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(bufio.NewReader(resp.Body))
	poll(t, "stream client registered", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 1 })

	// Outside the scope first, then inside: only the second comes through.
	for _, d := range []string{devOut, devIn} {
		v := env.version(t, d)
		if _, err := env.engine.Act(ctx, alerts.Action{ID: env.ids[d], Kind: alerts.ActionAck, Version: v, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	var got sseEvent
	for got.event == "" || got.event == "heartbeat" {
		select {
		case got = <-events:
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
	}
	var tr alerts.Transition
	if err := json.Unmarshal([]byte(got.data), &tr); err != nil {
		t.Fatalf("data %q: %v", got.data, err)
	}
	if got.event != "ack" || tr.Alert.Device != devIn || got.id != fmt.Sprintf("%s/%d", env.ids[devIn], tr.Event.Version) {
		t.Errorf("event %+v, transition %+v", got, tr)
	}
	// Heartbeats keep an idle stream alive.
	for got.event != "heartbeat" {
		select {
		case got = <-events:
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat within 10s")
		}
	}

	// The client goes away: the handler ends and unsubscribes.
	cancel()
	poll(t, "stream handler gone", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 0 })

	// CloseStreams ends a live stream from the server side.
	req, _ = http.NewRequest(http.MethodGet, env.srv.URL+"/api/v1/alerts/stream", nil)
	req.Header.Set("Authorization", "Bearer tok-city")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	events = readEvents(bufio.NewReader(resp2.Body))
	poll(t, "second client", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 1 })
	env.api.CloseStreams()
	for range events { // drained until the server ends the response
	}
	poll(t, "stream closed by server", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 0 })
}

// TestStreamOverflowEndsStream attacks "a client too slow to keep up gets
// event: overflow and is disconnected" and "nothing lost silently": bursts
// of transitions (one engine batch each) overrun a one-transition buffer;
// the events the client got before the overflow have no gap in their
// versions, then come the overflow event, the end of the stream and the
// count.
func TestStreamOverflowEndsStream(t *testing.T) {
	env := newAlertEnv(t)
	env.api.StreamBuffer = 1
	req, _ := http.NewRequest(http.MethodGet, env.srv.URL+"/api/v1/alerts/stream", nil)
	req.Header.Set("Authorization", "Bearer tok-viewer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := readEvents(bufio.NewReader(resp.Body))
	poll(t, "stream client registered", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 1 })
	burst := make([]alerts.Observation, 400)
	for i := range burst {
		burst[i] = alerts.Observation{Device: devIn, Metric: "level_cm", Value: float64(10 + 40*(i%2)), TS: time.Now().UnixMilli()}
	}
	var last uint64
	deadline := time.After(time.Minute)
	for overflowed := false; !overflowed; {
		env.engine.Observe(burst...)
	drain:
		for {
			select {
			case ev, ok := <-events:
				switch {
				case !ok:
					t.Fatal("the stream ended without an overflow event")
				case ev.event == "overflow":
					overflowed = true
					break drain
				case ev.event == "heartbeat":
				default:
					var v uint64
					if _, err := fmt.Sscanf(ev.id[strings.LastIndexByte(ev.id, '/')+1:], "%d", &v); err != nil {
						t.Fatalf("event id %q: %v", ev.id, err)
					}
					if last != 0 && v != last+1 {
						t.Fatalf("event %s follows version %d: transitions lost without an overflow event", ev.id, last)
					}
					last = v
				}
			case <-time.After(100 * time.Millisecond):
				break drain // the burst is delivered: another one
			case <-deadline:
				t.Fatal("no overflow within a minute of bursts into a one-transition buffer")
			}
		}
	}
	for ev := range events {
		t.Fatalf("event %+v after the overflow: the stream should end", ev)
	}
	if n := testutil.ToFloat64(env.api.stream.dropped.WithLabelValues("overflow")); n != 1 {
		t.Errorf("overflow counted %v times, want 1", n)
	}
}

// poll waits until cond holds, failing the test after 10 seconds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
