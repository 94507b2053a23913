package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/alerts/notify"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
	"github.com/gridwatch/gridwatch/devices"
)

// Grids of the case tests: one inside the D01 scope of the scoped tokens,
// one outside it.
const (
	gridIn  = "D01-S01-G01"
	gridOut = "D02-S01-G01"
	// waterCover is a category routed to the water unit, U-WATER.
	waterCover = "C0101"
)

// hotlineSecret signs the hotline webhook of the tests.
var hotlineSecret = []byte("0123456789abcdef-hotline")

// newCaseService starts a case loop on the shipped calendar and
// categories, routing water to U-WATER and everything else to U-CITY.
func newCaseService(t *testing.T, store *casestest.Store) *cases.Service {
	t.Helper()
	cats := cases.DefaultCategories()
	svc := &cases.Service{
		Store:  store,
		Timing: cases.Schedule{Calendar: cases.DefaultCalendar(), Categories: cats},
		Category: func(code string) (string, bool) {
			c, ok := cats.Get(code)
			return c.Route, ok
		},
		Route: func(route, _ string) string {
			if route == "water" {
				return "U-WATER"
			}
			return "U-CITY"
		},
		// North of 50° lies outside the D01 scope.
		Locate: func(lat, _ float64) (string, bool) {
			if lat > 50 {
				return gridOut, true
			}
			return gridIn, true
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc
}

// caseEnv is the API of newAlertEnv with a case loop and photos.
type caseEnv struct {
	*alertEnv
	svc *cases.Service
}

func newCaseEnv(t *testing.T) *caseEnv {
	t.Helper()
	env := newAlertEnv(t)
	svc := newCaseService(t, &casestest.Store{})
	// A second server over the same tokens, with the case parts.
	s := &Server{Store: env.api.Store, Lookup: env.api.Lookup, AdminToken: env.api.AdminToken, Tokens: env.api.Tokens,
		Cases: svc, Photos: &cases.Photos{Dir: t.TempDir()}, HotlineSecret: hotlineSecret,
		Registry: fakeRegistry{units: []devices.Unit{{Code: "U-WATER"}, {Code: "U-CITY"}}}}
	env.api = s
	env.srv = httptest.NewServer(s.Handler())
	t.Cleanup(env.srv.Close)
	t.Cleanup(s.CloseStreams)
	return &caseEnv{alertEnv: env, svc: svc}
}

var admin = cases.Actor{Name: "admin", Role: cases.RoleAdmin}

// report opens a case reported by the reporter token in grid.
func (env *caseEnv) report(t *testing.T, grid string) cases.Case {
	t.Helper()
	c, _, err := env.svc.Report(context.Background(), cases.Report{Source: cases.SourcePatrol,
		Actor: cases.Actor{Name: "reporter", Role: cases.RoleReporter}, Category: waterCover, Grid: grid, Description: "cover gone"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drive takes the actions on the case as the admin.
func (env *caseEnv) drive(t *testing.T, id string, steps ...cases.Action) cases.Case {
	t.Helper()
	c, _, err := env.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range steps {
		cur, _, err := env.svc.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		a.Case, a.Version, a.Actor = id, cur.Version, admin
		if c, err = env.svc.Act(context.Background(), a); err != nil {
			t.Fatalf("%s: %v", a.Kind, err)
		}
	}
	return c
}

// Steps to the statuses the actions of the matrix start from.
var (
	toRegistered = []cases.Action{{Kind: cases.EventRegister}}
	toDispatched = append(slices.Clone(toRegistered), cases.Action{Kind: cases.EventDispatch})
	toHandling   = append(slices.Clone(toDispatched), cases.Action{Kind: cases.EventSign})
	toHandled    = append(slices.Clone(toHandling), cases.Action{Kind: cases.EventHandle})
	toVerified   = append(slices.Clone(toHandled), cases.Action{Kind: cases.EventVerifyPass})
)

// TestCaseRBACMatrix checks every token role against every case action,
// on a case of the right status: the roles issue 11 gives each action may
// take it (200), a unit token acts only on its unit's cases and sees no
// other (404), a reporter verifies and evaluates only its own reports, and
// every other role gets 403.
func TestCaseRBACMatrix(t *testing.T) {
	env := newCaseEnv(t)
	tokens := []string{"viewer", "reporter", "unit", "operator", "dispatcher", "supervisor", "admin"}
	centre := []string{"operator", "dispatcher", "supervisor", "admin"}
	verifiers := append([]string{"reporter"}, centre...)
	unitStaff := []string{"unit", "admin"}
	supervisors := []string{"supervisor", "admin"}
	extend := cases.Limit{N: 1, Unit: cases.WorkingDays}
	matrix := []struct {
		action  cases.EventKind
		before  []cases.Action
		body    string
		allowed []string
	}{
		{cases.EventRegister, nil, `"force":true`, centre},
		{cases.EventVoid, nil, `"note":"prank"`, centre},
		{cases.EventMerge, toRegistered, `"into":"%s"`, centre},
		{cases.EventDispatch, toRegistered, ``, centre},
		{cases.EventSign, toDispatched, ``, unitStaff},
		{cases.EventReturn, toDispatched, `"note":"not ours"`, unitStaff},
		{cases.EventNote, toHandling, `"note":"on it"`, append([]string{"reporter", "unit"}, centre...)},
		{cases.EventExtendRequest, toHandling, `"note":"asphalt","extend":"1 working_days"`, unitStaff},
		{cases.EventExtendApprove, append(slices.Clone(toHandling), cases.Action{Kind: cases.EventExtendRequest, Note: "x", Extend: &extend}), ``, supervisors},
		{cases.EventExtendReject, append(slices.Clone(toHandling), cases.Action{Kind: cases.EventExtendRequest, Note: "x", Extend: &extend}), `"note":"no"`, supervisors},
		{cases.EventSuspendRequest, toHandling, `"note":"permit"`, unitStaff},
		{cases.EventSuspendApprove, append(slices.Clone(toHandling), cases.Action{Kind: cases.EventSuspendRequest, Note: "x"}), ``, supervisors},
		{cases.EventSuspendReject, append(slices.Clone(toHandling), cases.Action{Kind: cases.EventSuspendRequest, Note: "x"}), `"note":"no"`, supervisors},
		{cases.EventResume, append(slices.Clone(toHandling), cases.Action{Kind: cases.EventSuspendRequest, Note: "x"}, cases.Action{Kind: cases.EventSuspendApprove}),
			``, []string{"unit", "dispatcher", "supervisor", "admin"}},
		{cases.EventHandle, toHandling, `"note":"fixed"`, unitStaff},
		{cases.EventVerifyPass, toHandled, ``, verifiers},
		{cases.EventVerifyFail, toHandled, `"note":"still open"`, verifiers},
		{cases.EventClose, toVerified, ``, centre},
		{cases.EventEvaluate, append(slices.Clone(toVerified), cases.Action{Kind: cases.EventClose}), `"satisfaction":4`, verifiers},
		{cases.EventSupervise, toHandling, ``, supervisors},
	}
	for _, m := range matrix {
		for _, token := range tokens {
			c := env.report(t, gridIn)
			c = env.drive(t, c.ID, m.before...)
			body := m.body
			if strings.Contains(body, "%s") {
				body = fmt.Sprintf(body, env.drive(t, env.report(t, gridIn).ID, toRegistered...).ID)
			}
			if body != "" {
				body = "," + body
			}
			want := http.StatusForbidden
			switch {
			case slices.Contains(m.allowed, token):
				want = http.StatusOK
			case token == "unit" && c.Unit != "U-WATER":
				want = http.StatusNotFound
			}
			code, resp := env.call(t, http.MethodPost, "/api/v1/cases/"+c.ID+"/"+string(m.action), "tok-"+token,
				fmt.Sprintf(`{"version":%d%s}`, c.Version, body))
			if code != want {
				t.Errorf("%s as %s: %d %s, want %d", m.action, token, code, resp, want)
			}
		}
	}
}

// TestCaseVisibility checks who sees which case: a scoped token nothing
// outside its grid, a unit token only its unit's cases, in the list, by id
// and in the CSV export.
func TestCaseVisibility(t *testing.T) {
	env := newCaseEnv(t)
	in := env.drive(t, env.report(t, gridIn).ID, toDispatched...) // to U-WATER
	out := env.report(t, gridOut)
	other := env.drive(t, env.report(t, gridIn).ID, cases.Action{Kind: cases.EventRegister, Force: true},
		cases.Action{Kind: cases.EventDispatch, Unit: "U-CITY"})
	for token, want := range map[string][]string{
		"tok-viewer": {in.ID, other.ID}, "tok-unit": {in.ID}, "tok-city": {in.ID, out.ID, other.ID},
	} {
		code, body := env.call(t, http.MethodGet, "/api/v1/cases", token, "")
		var page cases.Page
		if err := json.Unmarshal([]byte(body), &page); code != http.StatusOK || err != nil {
			t.Fatalf("list as %s: %d %s", token, code, body)
		}
		var got []string
		for _, c := range page.Cases {
			got = append(got, c.ID)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("list as %s: %v, want %v", token, got, want)
		}
		for _, id := range []string{in.ID, out.ID, other.ID} {
			code, _ := env.call(t, http.MethodGet, "/api/v1/cases/"+id, token, "")
			if (code == http.StatusOK) != slices.Contains(want, id) || (code != http.StatusOK && code != http.StatusNotFound) {
				t.Errorf("get %s as %s: %d", id, token, code)
			}
		}
		_, csv := env.call(t, http.MethodGet, "/api/v1/cases/export.csv", token, "")
		if lines := strings.Count(strings.TrimSpace(csv), "\n"); lines != len(want) {
			t.Errorf("export as %s: %d rows, want %d:\n%s", token, lines, len(want), csv)
		}
	}
	// Filters.
	code, body := env.call(t, http.MethodGet, "/api/v1/cases?status=dispatched&unit=U-CITY", "tok-city", "")
	if code != http.StatusOK || !strings.Contains(body, other.ID) || strings.Contains(body, in.ID) {
		t.Errorf("filtered list: %d %s", code, body)
	}
}

// TestCaseReportAndActions drives a case over HTTP: a report answered 201
// with its ETag, an action by If-Match, a stale version 409, a duplicate
// refused with its candidates named.
func TestCaseReportAndActions(t *testing.T) {
	env := newCaseEnv(t)
	req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/api/v1/cases", strings.NewReader(
		`{"category":"`+waterCover+`","grid":"`+gridIn+`","description":"cover gone","location":{"lat":34.77,"lon":111.2}}`))
	req.Header.Set("Authorization", "Bearer tok-reporter")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var c cases.Case
	_ = json.NewDecoder(resp.Body).Decode(&c)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("ETag") != `"1"` || c.Source != cases.SourcePatrol || c.Reporter != "reporter" {
		t.Fatalf("report: %d %q %+v", resp.StatusCode, resp.Header.Get("ETag"), c)
	}
	req, _ = http.NewRequest(http.MethodPost, env.srv.URL+"/api/v1/cases/"+c.ID+"/register", nil)
	req.Header.Set("Authorization", "Bearer tok-dispatcher")
	req.Header.Set("If-Match", `"1"`)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != `"2"` {
		t.Fatalf("register by If-Match: %d %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases/"+c.ID+"/void", "tok-dispatcher", `{"version":1,"note":"x"}`); code != http.StatusConflict {
		t.Errorf("stale void: %d %s", code, body)
	}
	code, body := env.call(t, http.MethodPost, "/api/v1/cases", "tok-reporter",
		`{"category":"`+waterCover+`","grid":"`+gridIn+`","location":{"lat":34.7701,"lon":111.2}}`)
	if code != http.StatusCreated {
		t.Fatalf("second report: %d %s", code, body)
	}
	var dup cases.Case
	_ = json.Unmarshal([]byte(body), &dup)
	code, body = env.call(t, http.MethodPost, "/api/v1/cases/"+dup.ID+"/register", "tok-dispatcher", `{"version":1}`)
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"duplicate"`) || !strings.Contains(body, c.ID) {
		t.Errorf("register of a duplicate: %d %s", code, body)
	}
	reg := env.drive(t, dup.ID, cases.Action{Kind: cases.EventRegister, Force: true})
	for unit, want := range map[string]int{"U-NOWHERE": http.StatusUnprocessableEntity, "U-CITY": http.StatusOK} {
		code, body := env.call(t, http.MethodPost, "/api/v1/cases/"+dup.ID+"/dispatch", "tok-dispatcher", fmt.Sprintf(`{"version":%d,"unit":%q}`, reg.Version, unit))
		if code != want {
			t.Errorf("dispatch to %s: %d %s, want %d", unit, code, body, want)
		}
	}
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases", "tok-reporter", `{"category":"`+waterCover+`","grid":"`+gridOut+`"}`); code != http.StatusForbidden {
		t.Errorf("report outside the scope: %d %s", code, body)
	}
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases", "tok-reporter", `{"category":"`+waterCover+`","location":{"lat":60,"lon":111}}`); code != http.StatusForbidden {
		t.Errorf("report located outside the scope: %d %s", code, body)
	}
	code, body = env.call(t, http.MethodPost, "/api/v1/cases", "tok-reporter", `{"category":"`+waterCover+`","location":{"lat":30,"lon":111}}`)
	var moved cases.Case
	if err := json.Unmarshal([]byte(body), &moved); code != http.StatusCreated || err != nil || moved.Grid != gridIn {
		t.Fatalf("report located inside the scope: %d %s", code, body)
	}
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases/"+moved.ID+"/register", "tok-dispatcher",
		`{"version":1,"force":true,"location":{"lat":60,"lon":111}}`); code != http.StatusForbidden {
		t.Errorf("registration moving the case outside the dispatcher's scope: %d %s", code, body)
	}
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases", "tok-viewer", `{"category":"`+waterCover+`","grid":"`+gridIn+`"}`); code != http.StatusForbidden {
		t.Errorf("report by a viewer: %d %s", code, body)
	}
}

// pngPhoto returns a small PNG picture.
func pngPhoto(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCasePhotos checks that a photo uploaded and attached is served to
// the tokens that see the case, and only for that case; evidence that was
// never uploaded is refused.
func TestCasePhotos(t *testing.T) {
	env := newCaseEnv(t)
	code, body := env.call(t, http.MethodPost, "/api/v1/cases/photos", "tok-reporter", string(pngPhoto(t)))
	var up struct{ Hash string }
	if err := json.Unmarshal([]byte(body), &up); code != http.StatusCreated || err != nil || !cases.ValidHash(up.Hash) {
		t.Fatalf("upload: %d %s", code, body)
	}
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases/photos", "tok-reporter", "GIF89a not really"); code != http.StatusUnsupportedMediaType {
		t.Errorf("upload of a GIF: %d %s", code, body)
	}
	if n := testutil.ToFloat64(env.api.actions.refused.WithLabelValues("bad_photo")); n != 1 {
		t.Errorf("refused photos counted %v, want 1", n)
	}
	code, body = env.call(t, http.MethodPost, "/api/v1/cases", "tok-reporter",
		`{"category":"`+waterCover+`","grid":"`+gridIn+`","evidence":["`+up.Hash+`"]}`)
	var c cases.Case
	if err := json.Unmarshal([]byte(body), &c); code != http.StatusCreated || err != nil {
		t.Fatalf("report with a photo: %d %s", code, body)
	}
	bare := env.report(t, gridIn)
	missing := "sha256:" + strings.Repeat("ab", 32)
	if code, body := env.call(t, http.MethodPost, "/api/v1/cases", "tok-reporter",
		`{"category":"`+waterCover+`","grid":"`+gridIn+`","evidence":["`+missing+`"]}`); code != http.StatusUnprocessableEntity {
		t.Errorf("report with evidence never uploaded: %d %s", code, body)
	}
	for _, tc := range []struct {
		token, id string
		want      int
	}{
		{"tok-viewer", c.ID, http.StatusOK},
		{"tok-unit", c.ID, http.StatusNotFound}, // not dispatched to its unit
		{"tok-viewer", bare.ID, http.StatusNotFound},
	} {
		code, body := env.call(t, http.MethodGet, "/api/v1/cases/"+tc.id+"/photos/"+up.Hash, tc.token, "")
		if code != tc.want || (code == http.StatusOK && body != string(pngPhoto(t))) {
			t.Errorf("photo of %s as %s: %d, want %d", tc.id, tc.token, code, tc.want)
		}
	}
}

// TestHotlineWebhook checks the hotline door: a signed ticket opens a case,
// the same ticket again returns it, a bad signature is refused.
func TestHotlineWebhook(t *testing.T) {
	env := newCaseEnv(t)
	ticket := []byte(`{"origin":"12345-20260302-0001","reporter":"caller 138****0000","description":"manhole cover missing","address":"Hubin Rd 12","grid":"` + gridIn + `"}`)
	send := func(body []byte, sig string) (int, cases.Case) {
		req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/api/v1/cases/hotline", bytes.NewReader(body))
		req.Header.Set(notify.SignatureHeader, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c cases.Case
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &c)
		return resp.StatusCode, c
	}
	code, first := send(ticket, notify.Sign(hotlineSecret, ticket))
	if code != http.StatusCreated || first.Source != cases.SourceHotline || first.Reporter != "caller 138****0000" || first.Origin != "12345-20260302-0001" {
		t.Fatalf("ticket: %d %+v", code, first)
	}
	if code, again := send(ticket, notify.Sign(hotlineSecret, ticket)); code != http.StatusOK || again.ID != first.ID {
		t.Fatalf("ticket again: %d %s, want 200 %s", code, again.ID, first.ID)
	}
	if code, _ := send(ticket, notify.Sign([]byte("another secret of 16+"), ticket)); code != http.StatusUnauthorized {
		t.Fatalf("wrong signature: %d", code)
	}
	if code, _ := send(ticket, ""); code != http.StatusUnauthorized {
		t.Fatalf("no signature: %d", code)
	}
}

// TestOpenAPIDescribesCaseAnswers sends the case endpoints the requests
// the generic probes do not make (stale and missing versions, refused and
// forbidden actions, a store that fails, a loop shutting down, the
// hotline's answers) and checks each answer is in the document.
func TestOpenAPIDescribesCaseAnswers(t *testing.T) {
	e := &docEnv{alerts: newAlertEnv(t)}
	_, srv := e.server(t, nil)
	doc := fetchOpenAPI(t, srv)
	path := "/api/v1/cases/" + e.caseID
	ticket := `{"origin":"T-1","description":"noise at night","grid":"` + gridIn + `"}`
	signed := []string{notify.SignatureHeader, notify.Sign(hotlineSecret, []byte(ticket))}
	for _, r := range []docRequest{
		{name: "stale version", pattern: "POST /api/v1/cases/{id}/register", path: path + "/register", body: `{"version":99}`, want: http.StatusConflict},
		{name: "no version", pattern: "POST /api/v1/cases/{id}/register", path: path + "/register", want: http.StatusPreconditionRequired},
		{name: "sign of a received case", pattern: "POST /api/v1/cases/{id}/sign", path: path + "/sign", token: "tok-bootstrap", body: `{"version":1}`, want: http.StatusUnprocessableEntity},
		{name: "sign by the centre", pattern: "POST /api/v1/cases/{id}/sign", path: path + "/sign", token: "tok-dispatcher", body: `{"version":1}`, want: http.StatusForbidden},
		{name: "a case report", pattern: "POST /api/v1/cases", path: "/api/v1/cases", body: `{"category":"C0101","grid":"` + gridIn + `"}`, want: http.StatusCreated},
		{name: "a report without a place", pattern: "POST /api/v1/cases", path: "/api/v1/cases", body: `{"category":"C0101"}`, want: http.StatusUnprocessableEntity},
		{name: "a photo", pattern: "POST /api/v1/cases/photos", path: "/api/v1/cases/photos", body: string(pngPhoto(t)), want: http.StatusCreated},
		{name: "the case's photo", pattern: "GET /api/v1/cases/{id}/photos/{hash}", path: path + "/photos/" + e.photo, want: http.StatusOK},
		{name: "a ticket", pattern: "POST /api/v1/cases/hotline", path: "/api/v1/cases/hotline", body: ticket, header: signed, want: http.StatusCreated},
		{name: "the ticket again", pattern: "POST /api/v1/cases/hotline", path: "/api/v1/cases/hotline", body: ticket, header: signed, want: http.StatusOK},
		{name: "an unsigned ticket", pattern: "POST /api/v1/cases/hotline", path: "/api/v1/cases/hotline", body: ticket, want: http.StatusUnauthorized},
		{name: "a bad overdue", pattern: "GET /api/v1/cases", path: "/api/v1/cases?overdue=maybe", want: http.StatusBadRequest},
	} {
		r.method, _, _ = strings.Cut(r.pattern, " ")
		if r.token == "" {
			r.token = "tok-city"
		}
		checkDocumented(t, doc, r, sendDoc(t, srv, r))
	}

	store := &casestest.Store{}
	failing := &docEnv{alerts: e.alerts}
	failing.cases = newCaseService(t, store)
	c, _, err := failing.cases.Report(context.Background(), cases.Report{Source: cases.SourceOperator,
		Actor: cases.Actor{Name: "op", Role: cases.RoleOperator}, Category: waterCover, Grid: gridIn})
	if err != nil {
		t.Fatal(err)
	}
	failing.caseID = c.ID
	_, failingSrv := failing.server(t, nil)
	store.Fail(errDown)
	closing := &docEnv{alerts: e.alerts}
	_, closingSrv := closing.server(t, nil)
	_ = closing.cases.Close()
	for _, tc := range []struct {
		name string
		srv  *httptest.Server
		env  *docEnv
	}{{"store down", failingSrv, failing}, {"loop shutting down", closingSrv, closing}} {
		for _, r := range []docRequest{
			{pattern: "POST /api/v1/cases/{id}/register", path: "/api/v1/cases/" + tc.env.caseID + "/register", body: `{"version":1}`},
			{pattern: "POST /api/v1/cases", path: "/api/v1/cases", body: `{"category":"C0101","grid":"` + gridIn + `"}`},
		} {
			r.name, r.token, r.want = tc.name, "tok-city", http.StatusServiceUnavailable
			r.method, _, _ = strings.Cut(r.pattern, " ")
			checkDocumented(t, doc, r, sendDoc(t, tc.srv, r))
		}
	}
}

// TestCaseIfMatch checks the If-Match rules of case actions, the alerts':
// a weak tag 412, one that is no version 400, one that differs from the
// body's 400, a stale one 409 with the current version as ETag.
func TestCaseIfMatch(t *testing.T) {
	env := newCaseEnv(t)
	c := env.report(t, gridIn)
	for _, tc := range []struct {
		ifMatch, body string
		want          int
	}{
		{`W/"1"`, ``, http.StatusPreconditionFailed},
		{`abc`, ``, http.StatusBadRequest},
		{`"1"`, `{"version":2}`, http.StatusBadRequest},
		{`"7"`, ``, http.StatusConflict},
		{`"99999999999"`, ``, http.StatusConflict},
		{`"1"`, ``, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/api/v1/cases/"+c.ID+"/register", strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer tok-dispatcher")
		req.Header.Set("If-Match", tc.ifMatch)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || (tc.want == http.StatusConflict && resp.Header.Get("ETag") != `"1"`) {
			t.Errorf("If-Match %s: %d (ETag %s), want %d", tc.ifMatch, resp.StatusCode, resp.Header.Get("ETag"), tc.want)
		}
	}
}

// TestCaseStreamShowsWhatTheTokenSees checks the case stream: a unit token
// gets the events of the cases dispatched to its unit and none of another
// unit's, each as id {case}/{seq} with the event's kind.
func TestCaseStreamShowsWhatTheTokenSees(t *testing.T) {
	env := newCaseEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.srv.URL+"/api/v1/cases/stream", nil)
	req.Header.Set("Authorization", "Bearer tok-unit")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(bufio.NewReader(resp.Body))
	poll(t, "stream client registered", func() bool { return testutil.ToFloat64(env.api.stream.clients) == 1 })
	other := env.drive(t, env.report(t, gridIn).ID, cases.Action{Kind: cases.EventRegister, Force: true},
		cases.Action{Kind: cases.EventDispatch, Unit: "U-CITY"})
	mine := env.drive(t, env.report(t, gridIn).ID, cases.Action{Kind: cases.EventRegister, Force: true}, cases.Action{Kind: cases.EventDispatch})
	var got sseEvent
	for got.event == "" || got.event == "heartbeat" {
		select {
		case got = <-events:
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
	}
	var ch cases.Change
	if err := json.Unmarshal([]byte(got.data), &ch); err != nil {
		t.Fatalf("data %q: %v", got.data, err)
	}
	if got.event != "dispatch" || ch.Case.ID != mine.ID || got.id != fmt.Sprintf("%s/%d", mine.ID, mine.Version) || ch.Case.ID == other.ID {
		t.Fatalf("first event %+v, change %+v; want the dispatch of %s", got, ch, mine.ID)
	}
}

// TestCaseDispatchToUnknownUnit: a dispatch to a unit that is not in the
// units table gets 422 unknown_unit naming it, is counted and changes
// nothing; one to a unit of the table is taken. A weak If-Match is counted
// too.
func TestCaseDispatchToUnknownUnit(t *testing.T) {
	env := newCaseEnv(t)
	c := env.drive(t, env.report(t, gridIn).ID, cases.Action{Kind: cases.EventRegister, Force: true})
	path := "/api/v1/cases/" + c.ID + "/dispatch"
	code, body := env.call(t, http.MethodPost, path, "tok-dispatcher", fmt.Sprintf(`{"version": %d, "unit": "U-WATR"}`, c.Version))
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil || code != http.StatusUnprocessableEntity ||
		e.Error.Code != "unknown_unit" || !strings.Contains(e.Error.Message, `"U-WATR"`) || !strings.Contains(e.Error.Message, "units table") {
		t.Errorf("dispatch to an unknown unit: %d %s, want 422 unknown_unit naming it", code, body)
	}
	if got := testutil.ToFloat64(env.api.actions.refused.WithLabelValues("unknown_unit")); got != 1 {
		t.Errorf("gridwatch_api_actions_refused_total{reason=\"unknown_unit\"} = %v, want 1", got)
	}
	if after, _, _ := env.svc.Get(context.Background(), c.ID); after.Version != c.Version || after.Unit != "" {
		t.Errorf("case after a refused dispatch: v%d to %q, want v%d undispatched", after.Version, after.Unit, c.Version)
	}
	req, _ := http.NewRequest(http.MethodPost, env.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer tok-dispatcher")
	req.Header.Set("If-Match", fmt.Sprintf(`W/"%d"`, c.Version))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("weak If-Match: %v %v, want 412", resp, err)
	} else {
		resp.Body.Close()
	}
	if got := testutil.ToFloat64(env.api.actions.refused.WithLabelValues("weak_etag")); got != 1 {
		t.Errorf("gridwatch_api_actions_refused_total{reason=\"weak_etag\"} = %v, want 1", got)
	}
	if code, body := env.call(t, http.MethodPost, path, "tok-dispatcher", fmt.Sprintf(`{"version": %d, "unit": "U-WATER"}`, c.Version)); code != http.StatusOK {
		t.Fatalf("dispatch to a unit of the table: %d %s", code, body)
	}
	if after, _, _ := env.svc.Get(context.Background(), c.ID); after.Unit != "U-WATER" || after.Status != cases.StatusDispatched {
		t.Errorf("case after dispatch: %s to %q, want dispatched to U-WATER", after.Status, after.Unit)
	}
}
