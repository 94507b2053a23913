package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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
// role too weak, 404 outside the scope, 410 for what is gone.
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
		{name: "gone comment", minRole: RoleViewer, method: post, path: func(d string) string { return "/api/v1/alerts/" + env.ids[d] + "/comment" },
			body: func(v uint64) string { return fmt.Sprintf(`{"version":%d,"note":"on my way"}`, v) }, scoped: true},
		{name: "device latest", minRole: RoleViewer, method: get, path: func(d string) string { return "/api/v1/devices/" + d + "/latest" }, body: none, scoped: true},
		{name: "device telemetry", minRole: RoleViewer, method: get, path: func(d string) string { return "/api/v1/devices/" + d + "/telemetry?metric=x&step=bad" }, body: none, scoped: true},
		{name: "list", minRole: RoleViewer, method: get, path: func(string) string { return "/api/v1/alerts" }, body: none},
		{name: "gone grid stats", minRole: RoleViewer, method: get, path: func(string) string { return "/api/v1/stats/grids" }, body: none},
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
				case strings.HasPrefix(ep.name, "gone "):
					want = http.StatusGone
				}
				code, body := env.call(t, ep.method(device), ep.path(device), pc.token, ep.body(env.version(t, device)))
				if code != want {
					t.Errorf("%s as %q on %s: %d %s, want %d", ep.name, pc.token, device, code, body, want)
				}
			}
		}
	}

	// Unscoped tokens see everything.
	for _, token := range []string{"tok-city", "tok-bootstrap"} {
		if code, body := env.call(t, http.MethodGet, "/api/v1/alerts/"+env.ids[devOut], token, ""); code != http.StatusOK {
			t.Errorf("get outside D01 as %s: %d %s", token, code, body)
		}
	}
}

// TestAlertActionsGone attacks the changelog's promise for the clients of
// the alert work orders: every action they used (ack, dispatch, resolve,
// close, reopen, comment) answers 410 Gone naming the case endpoints,
// changes nothing, and tells nothing of an alert outside the token's scope
// (404); the alert statistics answer 410 naming the case evaluation.
func TestAlertActionsGone(t *testing.T) {
	env := newAlertEnv(t)
	before, trace, err := env.engine.Get(env.ids[devIn])
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range goneAlertActions {
		for _, token := range []string{"tok-viewer", "tok-operator", "tok-admin"} {
			code, body := env.call(t, http.MethodPost, "/api/v1/alerts/"+env.ids[devIn]+"/"+kind, token, fmt.Sprintf(`{"version":%d,"note":"n"}`, before.Version))
			var e apiError
			if err := json.Unmarshal([]byte(body), &e); err != nil || code != http.StatusGone || e.Error.Code != "gone" || !strings.Contains(e.Error.Message, "/api/v1/cases/{case}/") {
				t.Errorf("%s as %s: %d %s; want 410 gone naming the case actions", kind, token, code, body)
			}
		}
		if code, body := env.call(t, http.MethodPost, "/api/v1/alerts/"+env.ids[devOut]+"/"+kind, "tok-operator", ""); code != http.StatusNotFound {
			t.Errorf("%s of an alert outside the scope: %d %s; want 404", kind, code, body)
		}
	}
	if after, afterTrace, _ := env.engine.Get(env.ids[devIn]); after.Version != before.Version || len(afterTrace) != len(trace) {
		t.Errorf("the alert after the gone actions: v%d with %d events; want v%d with %d", after.Version, len(afterTrace), before.Version, len(trace))
	}
	// An alert linked to its case names it, as a Link header too.
	if err := env.engine.LinkCase(env.ids[devIn], "C-42"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/api/v1/alerts/"+env.ids[devIn]+"/ack", nil)
	req.Header.Set("Authorization", "Bearer tok-operator")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e apiError
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone || resp.Header.Get("Link") != `</api/v1/cases/C-42>; rel="related"` ||
		!strings.Contains(e.Error.Message, "POST /api/v1/cases/C-42/{action}") {
		t.Errorf("ack of a linked alert: %d, Link %q, %+v; want 410 naming case C-42", resp.StatusCode, resp.Header.Get("Link"), e.Error)
	}
	for pattern, moved := range goneStats {
		_, path, _ := strings.Cut(pattern, " ")
		if code, body := env.call(t, http.MethodGet, path, "tok-city", ""); code != http.StatusGone || !strings.Contains(body, moved) {
			t.Errorf("%s: %d %s; want 410 naming %s", path, code, body, moved)
		}
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
		{"tok-city", "?severity=major&condition=firing&sort=fired", []string{devIn, devOut}},
		{"tok-city", "?condition=cleared", nil},
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
	for _, q := range []string{"?severity=huge", "?from=yesterday", "?limit=0", "?sort=colour", "?cursor=nope", "?status=new", "?unit=water-d01"} {
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
	if rows[1][0] != env.ids[devIn] || rows[1][3] != devIn || rows[1][6] != "major" || rows[1][7] != "firing" || rows[1][8] != "" {
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
		env.engine.Observe(alerts.Observation{Device: d, Metric: "level_cm", Value: 10, TS: time.Now().UnixMilli()})
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
	if got.event != "clear" || tr.Alert.Device != devIn || got.id != fmt.Sprintf("%s/%d", env.ids[devIn], tr.Event.Version) {
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
// of transitions (one engine batch each: the alert clears and a new one
// fires, again and again) overrun a one-transition buffer; the events the
// client got before the overflow have no gap in the alerts' versions, then
// come the overflow event, the end of the stream and the count.
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
	last := map[string]uint64{} // the last version seen, by alert
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
					id, version, _ := strings.Cut(ev.id, "/")
					var v uint64
					if _, err := fmt.Sscanf(version, "%d", &v); err != nil {
						t.Fatalf("event id %q: %v", ev.id, err)
					}
					if prev, seen := last[id]; seen && v != prev+1 || !seen && len(last) > 0 && v != 1 {
						t.Fatalf("event %s follows version %d of its alert: transitions lost without an overflow event", ev.id, prev)
					}
					last[id] = v
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
