package server

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// The attack suite's registry: one device and one camera in the D01
// scope, one of each outside it. The name of the first device is a
// spreadsheet formula.
var (
	attackIn     = devices.Device{ID: "wl-in", Type: "water_level", Grid: "D01-S01-G01", Name: `=HYPERLINK("http://evil.example/","click")`, Secret: "in-secret-0123456789abcdef"}
	attackOut    = devices.Device{ID: "wl-out", Type: "water_level", Grid: "D02-S01-G01", Name: "outside", Secret: "out-secret-0123456789abcdef"}
	attackCamIn  = devices.Device{ID: "cam-in", Type: "camera", Grid: "D01-S01-G01", RTSPURL: "rtsp://127.0.0.1:1/in", RTSPUser: "op", RTSPPassword: "cam-password-in"}
	attackCamOut = devices.Device{ID: "cam-out", Type: "camera", Grid: "D02-S01-G01", RTSPURL: "rtsp://127.0.0.1:1/out", RTSPUser: "op", RTSPPassword: "cam-password-out"}
)

// attackTokens are the suite's API tokens by name; each token is "tok-" and
// its name.
var attackTokens = []api.Token{
	{Name: "viewer", Role: api.RoleViewer, Grid: "D01"},
	{Name: "operator", Role: api.RoleOperator, Grid: "D01"},
	{Name: "city", Role: api.RoleAdmin},
}

// attackServer starts a server with attackTokens, a flood rule and the
// attack registry, and fires the flood alert of both water gauges. It
// returns the server and the alert ids by device.
func attackServer(t *testing.T, opts ...func(*Config)) (*Server, map[string]string) {
	t.Helper()
	addr, db := storagetest.Database(t)
	dir := t.TempDir()
	var tokens strings.Builder
	for _, tk := range attackTokens {
		fmt.Fprintf(&tokens, "- {name: %s, role: %s, grid: %q, token_hash: %s}\n", tk.Name, tk.Role, tk.Grid, api.HashToken("tok-"+tk.Name))
	}
	tokensFile := filepath.Join(dir, "tokens.yaml")
	rulesFile := filepath.Join(dir, "rules.yaml")
	for file, body := range map[string]string{
		tokensFile: tokens.String(),
		rulesFile:  "rules:\n  - name: flood\n    match: {types: [water_level]}\n    metric: level_cm\n    condition: value > 30\n    severity: major\n",
	} {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, addr, db, []devices.Device{attackIn, attackOut, attackCamIn, attackCamOut}, append([]func(*Config){func(c *Config) {
		c.API.TokensFile, c.Rules.File = tokensFile, rulesFile
		c.Cameras.Enabled = false
	}}, opts...)...)
	ids := map[string]string{}
	for _, d := range []devices.Device{attackIn, attackOut} {
		publish(t, srv, d, `{"level_cm": 50}`)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(ids) < 2 {
		var page struct {
			Alerts []struct{ ID, Device string }
		}
		if code, _ := call(t, srv, http.MethodGet, "/api/v1/alerts", "tok-city", "", &page); code == http.StatusOK {
			for _, a := range page.Alerts {
				ids[a.Device] = a.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("flood alerts after 60s: %v, want both gauges'", ids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv, ids
}

// call sends a request with token ("" for none) and body, decodes a JSON
// answer into v when v is not nil, and returns the status and raw body.
// Every answer must be JSON unless it is a CSV or GeoJSON export.
func call(t *testing.T, srv *Server, method, path, token, body string, v any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+srv.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req, v)
}

// send does req and reads its answer like call.
func send(t *testing.T, req *http.Request, v any) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, req.URL.Path, err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode >= 400 && ct != "application/json" {
		t.Errorf("%s %s: %d with Content-Type %q, want JSON errors: %s", req.Method, req.URL, resp.StatusCode, ct, raw)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("%s %s: %d body %q is not {\"error\": {\"code\", \"message\"}}", req.Method, req.URL, resp.StatusCode, raw)
		}
	}
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s %s: decode %q: %v", req.Method, req.URL, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// TestHTTPPromisesUnderAttack attacks every promise of the README's "HTTP
// API" section with a real HTTP client against the whole server: bearer
// tokens, roles, grid scopes, JSON errors, bounded bodies and queries,
// exports that neither leak secrets nor carry formulas, and a server that
// slow clients cannot hold.
func TestHTTPPromisesUnderAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped under -short")
	}
	srv, ids := attackServer(t)
	in, out := ids[attackIn.ID], ids[attackOut.ID]

	// README: "Bearer tokens … 401" — a wrong, missing or malformed
	// token is refused, with a challenge, whatever the endpoint.
	t.Run("tokens", func(t *testing.T) {
		for _, auth := range []string{
			"", "Bearer", "Bearer ", "Bearer  tok-city", "Bearer tok-cit", "Bearer tok-cityx", "Bearer TOK-CITY",
			"Basic dG9rLWNpdHk6", "tok-city", "Bearer tok-city tok-city", "Bearer " + api.HashToken("tok-city"),
			"Bearer tok-city\t",
		} {
			for _, path := range []string{"/api/v1/alerts", "/api/v1/devices/" + attackIn.ID, "/api/v1/nothing"} {
				req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+path, nil)
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				// Go trims the header's surrounding white space, as HTTP
				// says (RFC 9110 5.5): a trailing tab is no part of the
				// token.
				want := http.StatusUnauthorized
				if auth == "Bearer tok-city\t" {
					want = map[string]int{"/api/v1/nothing": http.StatusNotFound}[path]
					if want == 0 {
						want = http.StatusOK
					}
				}
				if resp.StatusCode != want || want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("GET %s with Authorization %q: %d (challenge %q), want %d", path, auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
				}
			}
		}
		// The scheme is case-insensitive (RFC 9110 11.1), the token not.
		if code, body := sendAuth(t, srv, "bearer tok-city"); code != http.StatusOK {
			t.Errorf(`"bearer tok-city": %d %s, want 200`, code, body)
		}
		// A method a public route does not take is a JSON error too (send
		// checks every error's body).
		if code, _ := call(t, srv, http.MethodPost, "/readyz", "", "", nil); code != http.StatusNotFound {
			t.Errorf("POST /readyz: %d, want a JSON 404", code)
		}
		// The public endpoints need no token.
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"} {
			if code, _ := call(t, srv, http.MethodGet, path, "", "", nil); code != http.StatusOK {
				t.Errorf("GET %s without a token: %d, want 200", path, code)
			}
		}
	})

	// README: "viewer < … < operator < … < admin; 403 when too weak".
	t.Run("roles", func(t *testing.T) {
		for _, c := range []struct{ method, path, body string }{
			{http.MethodPost, "/api/v1/silences", `{"duration": "1h"}`},
			{http.MethodDelete, "/api/v1/silences/whatever", ""},
		} {
			if code, body := call(t, srv, c.method, c.path, "tok-viewer", c.body, nil); code != http.StatusForbidden || !strings.Contains(body, "operator role") {
				t.Errorf("viewer %s %s: %d %s, want 403 naming the operator role", c.method, c.path, code, body)
			}
		}
		// The alert work orders are gone, for every role: 410 naming the
		// case actions.
		for _, token := range []string{"tok-viewer", "tok-operator", "tok-city"} {
			if code, body := call(t, srv, http.MethodPost, "/api/v1/alerts/"+in+"/ack", token, `{"version": 1}`, nil); code != http.StatusGone || !strings.Contains(body, "/api/v1/cases/") {
				t.Errorf("%s POST /api/v1/alerts/%s/ack: %d %s, want 410 naming the case actions", token, in, code, body)
			}
		}
	})

	// README: "a grid scope … alerts, devices and cameras outside it answer
	// 404, as if absent" — reads, actions, silences and lists alike.
	t.Run("scope", func(t *testing.T) {
		var sil struct{ ID string }
		if code, body := call(t, srv, http.MethodPost, "/api/v1/silences", "tok-city", `{"grid": "D02", "duration": "1h"}`, &sil); code != http.StatusCreated {
			t.Fatalf("city silence: %d %s", code, body)
		}
		for _, c := range []struct{ method, path, body string }{
			{http.MethodGet, "/api/v1/devices/" + attackOut.ID, ""},
			{http.MethodGet, "/api/v1/devices/" + attackOut.ID + "/latest", ""},
			{http.MethodGet, "/api/v1/devices/" + attackOut.ID + "/telemetry?metric=level_cm", ""},
			{http.MethodGet, "/api/v1/cameras/" + attackCamOut.ID + "/health", ""},
			{http.MethodGet, "/api/v1/grids/" + attackOut.Grid, ""},
			{http.MethodGet, "/api/v1/alerts/" + out, ""},
			{http.MethodPost, "/api/v1/alerts/" + out + "/ack", `{"version": 1}`},
			{http.MethodPost, "/api/v1/alerts/" + out + "/comment", `{"version": 1, "note": "x"}`},
			{http.MethodPost, "/api/v1/silences", `{"grid": "D02", "duration": "1h"}`},
			{http.MethodPost, "/api/v1/silences", `{"device": "` + attackOut.ID + `", "duration": "1h"}`},
			{http.MethodDelete, "/api/v1/silences/" + sil.ID, ""},
		} {
			if code, body := call(t, srv, c.method, c.path, "tok-operator", c.body, nil); code != http.StatusNotFound {
				t.Errorf("D01 operator %s %s: %d %s, want 404", c.method, c.path, code, body)
			}
		}
		for _, path := range []string{
			"/api/v1/alerts", "/api/v1/alerts?grid=D02", "/api/v1/alerts?device=" + attackOut.ID, "/api/v1/alerts/export.csv",
			"/api/v1/devices", "/api/v1/devices?grid=D02", "/api/v1/devices/export.csv", "/api/v1/cameras",
			"/api/v1/silences", "/api/v1/stats/cases/grids", "/api/v1/cameras/availability?by=camera",
		} {
			code, body := call(t, srv, http.MethodGet, path, "tok-viewer", "", nil)
			if code != http.StatusOK || strings.Contains(body, attackOut.ID) || strings.Contains(body, attackCamOut.ID) || strings.Contains(body, out) || strings.Contains(body, sil.ID) {
				t.Errorf("D01 viewer GET %s: %d %s, want 200 without anything of D02", path, code, body)
			}
		}
	})

	// README: errors are JSON with a code — and an id in the path cannot
	// climb out of its collection or its scope.
	t.Run("path traversal", func(t *testing.T) {
		for _, path := range []string{
			"/api/v1/devices/..%2f" + attackOut.ID, "/api/v1/devices/..%2F..%2Fdevices%2F" + attackOut.ID + "/latest",
			"/api/v1/devices/%2e%2e/latest", "/api/v1/alerts/..%2f" + out, "/api/v1/alerts/" + in + "%2f..%2f" + out,
			"/api/v1/cameras/..%2f" + attackCamOut.ID + "/health", "/api/v1/grids/D01%2f..%2fD02-S01-G01",
			"/api/v1/devices/%00", "/api/v1/devices/" + strings.Repeat("a", 8000),
		} {
			code, body := call(t, srv, http.MethodGet, path, "tok-viewer", "", nil)
			if code != http.StatusNotFound || strings.Contains(body, attackOut.Name) || strings.Contains(body, `"grid":"D02`) {
				t.Errorf("GET %s: %d %s, want 404", path, code, body)
			}
		}
	})

	// README: bodies are JSON of the documented fields; a huge one is cut
	// off at 64 KiB with 413, a malformed one or one with unknown fields
	// gets 400 naming the problem.
	t.Run("bodies", func(t *testing.T) {
		huge := `{"note": "` + strings.Repeat("x", 10<<20) + `"}`
		for _, c := range []struct {
			path, body string
			want       int
			contains   string
		}{
			{"/api/v1/silences", huge, http.StatusRequestEntityTooLarge, "at most 65536 bytes"},
			{"/api/v1/cases", huge, http.StatusRequestEntityTooLarge, "at most 65536 bytes"},
			{"/api/v1/silences", `{"duration": "1h"`, http.StatusBadRequest, "body:"},
			{"/api/v1/silences", `{"duration": 3600}`, http.StatusBadRequest, "body:"},
			{"/api/v1/silences", `{"duration": "1h", "admin": true}`, http.StatusBadRequest, "unknown field"},
			{"/api/v1/silences", `{"duration": "1h"} {"duration": "2h"}`, http.StatusBadRequest, "more than one"},
			{"/api/v1/silences", `[]`, http.StatusBadRequest, "body:"},
			{"/api/v1/cases", `{"description": 1}`, http.StatusBadRequest, "body:"},
			{"/api/v1/cases", `{"description": "x", "actor": "someone else"}`, http.StatusBadRequest, "unknown field"},
			{"/api/v1/cases", `{"location": -1}`, http.StatusBadRequest, "body:"},
		} {
			code, body := call(t, srv, http.MethodPost, c.path, "tok-operator", c.body, nil)
			if len(body) > 200 {
				body = body[:200]
			}
			if code != c.want || !strings.Contains(body, c.contains) {
				t.Errorf("POST %s %.40q: %d %s, want %d containing %q", c.path, c.body, code, body, c.want, c.contains)
			}
		}
	})

	// README: query parameters have documented ranges; out of them is a
	// 400 naming the parameter, never a scan of everything.
	t.Run("queries", func(t *testing.T) {
		for _, c := range []struct{ path, contains string }{
			{"/api/v1/devices?limit=1e12", "'limit'"},
			{"/api/v1/devices?limit=1000000000000", "'limit'"},
			{"/api/v1/devices?limit=0", "'limit'"},
			{"/api/v1/devices?offset=-1", "'offset'"},
			{"/api/v1/alerts?limit=1e12", "'limit'"},
			{"/api/v1/alerts?limit=-5", "'limit'"},
			{"/api/v1/alerts?limit=1000000000000", "'limit'"},
			{"/api/v1/alerts?severity=apocalyptic", "'severity'"},
			{"/api/v1/alerts?cursor=garbage", "cursor"},
			{"/api/v1/alerts?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"},
			{"/api/v1/cameras/" + attackCamIn.ID + "/health?limit=1e12", "'limit'"},
			{"/api/v1/cameras/" + attackCamIn.ID + "/health?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "before"},
			{"/api/v1/cameras/availability?by=nobody", "by"},
			{"/api/v1/devices/" + attackIn.ID + "/telemetry?metric=level_cm&step=0", "'step'"},
			{"/api/v1/devices/" + attackIn.ID + "/telemetry?metric=level_cm&step=-1m", "'step'"},
			{"/api/v1/devices/" + attackIn.ID + "/telemetry?metric=level_cm&step=1ms&from=0", "buckets"},
			{"/api/v1/devices/" + attackIn.ID + "/telemetry?metric=level_cm&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "before"},
			{"/api/v1/devices/" + attackIn.ID + "/telemetry?metric=level_cm&from=99999999999999999999", "'from'"},
			{"/api/v1/alerts?status=new", "'status'"},
			{"/api/v1/stats/cases/units?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "before"},
		} {
			code, body := call(t, srv, http.MethodGet, c.path, "tok-city", "", nil)
			if code != http.StatusBadRequest || !strings.Contains(body, c.contains) {
				t.Errorf("GET %s: %d %s, want 400 containing %q", c.path, code, body, c.contains)
			}
		}
	})

	// README: exports never carry secrets or RTSP credentials, and (CSV
	// injection) a cell a spreadsheet would run as a formula is defused.
	t.Run("exports", func(t *testing.T) {
		_, body := call(t, srv, http.MethodGet, "/api/v1/devices/export.csv", "tok-city", "", nil)
		rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("devices export %q: %v", body, err)
		}
		names := map[string]string{}
		for _, row := range rows[1:] {
			names[row[0]] = row[5]
		}
		if got := names[attackIn.ID]; got != "'"+attackIn.Name {
			t.Errorf("exported name of %s = %q, want %q (defused)", attackIn.ID, got, "'"+attackIn.Name)
		}
		for _, path := range []string{"/api/v1/devices/export.csv", "/api/v1/devices", "/api/v1/cameras", "/api/v1/devices/" + attackCamIn.ID, "/api/v1/alerts/export.csv"} {
			_, body := call(t, srv, http.MethodGet, path, "tok-city", "", nil)
			for _, secret := range []string{attackIn.Secret, attackOut.Secret, attackCamIn.RTSPPassword, attackCamOut.RTSPPassword} {
				if strings.Contains(body, secret) {
					t.Errorf("GET %s leaks a secret: %s", path, body)
				}
			}
		}
	})

	// The server cannot be held by a client that sends its headers or its
	// body slowly (slow-loris), nor by huge headers.
	t.Run("slow clients", func(t *testing.T) {
		t.Parallel()
		// The server's clock starts when it accepts, which can come before
		// Dial returns here: start is taken before dialling.
		start := time.Now()
		conn, err := net.Dial("tcp", srv.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		// Trickle a header byte a second, never finishing; the server must
		// close the connection once readHeaderTimeout has passed.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_, _ = io.Copy(io.Discard, conn)
		}()
		for done := false; !done; {
			select {
			case <-closed:
				done = true
			case <-time.After(time.Second):
				if time.Since(start) > readHeaderTimeout+50*time.Second {
					t.Fatalf("connection still open %s after a header began, want closed after %s", time.Since(start), readHeaderTimeout)
				}
				_, _ = io.WriteString(conn, "X")
			}
		}
		if took := time.Since(start); took < readHeaderTimeout {
			t.Errorf("connection closed after %s, before readHeaderTimeout %s", took, readHeaderTimeout)
		}
		huge, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/api/v1/alerts", nil)
		huge.Header.Set("Authorization", "Bearer tok-city")
		huge.Header.Set("X-Padding", strings.Repeat("p", 2*maxHeaderBytes))
		resp, err := http.DefaultClient.Do(huge)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("headers of %d bytes: %d, want 431", 2*maxHeaderBytes, resp.StatusCode)
		}
	})
}

// sendAuth asks for the alert list with the Authorization header auth.
func sendAuth(t *testing.T, srv *Server, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+srv.HTTPAddr()+"/api/v1/alerts", nil)
	req.Header.Set("Authorization", auth)
	return send(t, req, nil)
}

// TestLossesVisibleEndToEnd attacks "every loss is visible" (issue 10 item
// 13) on the whole server: every counter of lossTable is registered on the
// served registry; the device-status batcher counts on it (it counted on
// an unregistered one); and rate-limited and ACL-refused publishes, data
// not stored, show in /readyz's losses.
func TestLossesVisibleEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped under -short")
	}
	// The prober and the GB/T 28181 registrar register their counters when
	// they start: cameras on, the registrar listening.
	srv, _ := attackServer(t, func(c *Config) {
		c.MQTT.MessageRate, c.MQTT.MessageBurst = 1, 1
		c.Cameras.Enabled = true
		c.GB28181.UDPListen = "127.0.0.1:0"
	})
	for _, ls := range lossTable {
		probe := prometheus.NewCounter(prometheus.CounterOpts{Name: ls.name, Help: "probe"})
		if err := srv.metrics.Register(probe); err == nil {
			srv.metrics.Unregister(probe)
			t.Errorf("loss counter %s is not registered on the served registry", ls.name)
		}
	}
	// attackServer's publishes connected both gauges: status changes.
	waitMetric(t, srv, `gridwatch_batcher_rows_added_total{table="device_status"}`)

	c := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL(srv)).
		SetClientID(attackIn.ID).SetUsername(attackIn.ID).SetPassword(attackIn.Secret).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(250)
	for i := 0; i < 5; i++ {
		c.Publish("devices/"+attackIn.ID+"/telemetry", 0, false, `{"level_cm": 10}`).WaitTimeout(5 * time.Second)
	}
	c.Publish("devices/"+attackOut.ID+"/telemetry", 0, false, `{"level_cm": 10}`).WaitTimeout(5 * time.Second)
	want := []string{`gridwatch_mqtt_limited_total{limit="message_rate"}`, `gridwatch_mqtt_acl_denied_total{action="publish"}`}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ready readiness
		call(t, srv, http.MethodGet, "/readyz", "", "", &ready)
		missing := 0
		for _, series := range want {
			if ready.Detail.Losses[series] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz losses %v after 60s, want %v among them", ready.Detail.Losses, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMetric polls /metrics until series has a non-zero value.
func waitMetric(t *testing.T, srv *Server, series string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, body := call(t, srv, http.MethodGet, "/metrics", "", "", nil)
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok && v != "0" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in /metrics after 60s", series)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOpenServerListensOnLoopback attacks the README's "without an API
// token the HTTP API listens on 127.0.0.1 only" on the whole server: the
// default kind of address (":port", all interfaces) is narrowed to
// 127.0.0.1, a request from there is served as an admin, and one that a
// web page could have made a browser send (another Host) is refused.
func TestOpenServerListensOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped under -short")
	}
	addr, db := storagetest.Database(t)
	srv := startServer(t, addr, db, []devices.Device{attackIn}, func(c *Config) { c.HTTP.Listen = ":0" })
	if host, _, _ := net.SplitHostPort(srv.HTTPAddr()); host != "127.0.0.1" {
		t.Fatalf("open API listens on %s, want 127.0.0.1", srv.HTTPAddr())
	}
	if code, body := call(t, srv, http.MethodPost, "/api/v1/silences", "", `{"duration": "1h"}`, nil); code != http.StatusCreated {
		t.Errorf("open API, silence from this host: %d %s, want 201", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.HTTPAddr()+"/api/v1/silences", strings.NewReader(`{"duration": "1h"}`))
	req.Host = "rebound.example"
	if code, body := send(t, req, nil); code != http.StatusForbidden {
		t.Errorf("open API, silence for Host rebound.example: %d %s, want 403", code, body)
	}
}
