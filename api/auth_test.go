package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

var prefixScopeCases = []struct {
	scope, grid string
	want        bool
}{
	{"D01", "D01", true},
	{"D01", "D01-S02", true},
	{"D01", "D01-S02-G03", true},
	{"D01-S02", "D01-S02-G03", true},
	{"D01", "D010", false},
	{"D01", "D02-S01", false},
	{"D01-S02", "D01", false},
	{"D01-S02", "D01-S03-G01", false},
	{"110105-003", "110105-003-012", true},
}

func TestPrefixScope(t *testing.T) {
	for _, tc := range prefixScopeCases {
		if got := PrefixScope(tc.scope, tc.grid); got != tc.want {
			t.Errorf("PrefixScope(%q, %q) = %v, want %v", tc.scope, tc.grid, got, tc.want)
		}
	}
}

func FuzzPrefixScope(f *testing.F) {
	for _, tc := range prefixScopeCases {
		f.Add(tc.scope, tc.grid)
	}
	f.Fuzz(func(t *testing.T, scope, grid string) {
		if !PrefixScope(grid, grid) {
			t.Errorf("%q does not hold itself", grid)
		}
		// Whatever holds grid holds its children.
		if PrefixScope(scope, grid) && !PrefixScope(scope, grid+"-X") {
			t.Errorf("%q holds %q but not its child", scope, grid)
		}
		if PrefixScope(scope, grid) && !strings.HasPrefix(grid, scope) {
			t.Errorf("%q holds %q, which it does not start", scope, grid)
		}
	})
}

func TestReadTokens(t *testing.T) {
	good := HashToken("tok-1")
	cases := []struct {
		name, doc string
		want      []Token
		errs      []string // each must appear in the error
	}{
		{"empty", "", nil, nil},
		{"ok", "- {name: ops, role: operator, grid: D01, token_hash: " + good + "}\n",
			[]Token{{Name: "ops", Role: RoleOperator, Grid: "D01", Hash: good}}, nil},
		{"bad fields", "- {name: '', role: boss, token_hash: abc}\n", nil, []string{`unknown role "boss"`}},
		{"checks", "- {role: viewer, token_hash: abc}\n- {name: a, role: viewer, token_hash: " + good + "}\n- {name: a, role: viewer, token_hash: " + good + "}\n",
			nil, []string{"tokens[0] (\"\"): name must not be empty", `tokens[0] ("")`, "token_hash must start with \"sha256:\"", `tokens[2] ("a"): name repeats tokens[1]`, "token_hash repeats tokens[1]"}},
		{"no role", "- {name: a, token_hash: " + good + "}\n", nil, []string{"role must be viewer, reporter, unit, operator, dispatcher, supervisor or admin"}},
		{"unit token", "- {name: u, role: unit, unit: U-ROAD, token_hash: " + good + "}\n",
			[]Token{{Name: "u", Role: RoleUnit, Unit: "U-ROAD", Hash: good}}, nil},
		{"unit token without its unit", "- {name: u, role: unit, token_hash: " + good + "}\n", nil, []string{`tokens[0] ("u"): unit must name the unit`}},
		{"unit of another role", "- {name: u, role: dispatcher, unit: U-ROAD, token_hash: " + good + "}\n", nil, []string{"unit is only for the role unit, not dispatcher"}},
		{"short hash", "- {name: a, role: admin, token_hash: 'sha256:abcd'}\n", nil, []string{"64 hex digits"}},
		{"unknown key", "- {name: a, role: admin, token: x, token_hash: " + good + "}\n", nil, []string{"field token not found"}},
	}
	for _, tc := range cases {
		got, err := ReadTokens(strings.NewReader(tc.doc))
		if tc.errs == nil {
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%s: %+v %v, want %+v", tc.name, got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidTokens) {
			t.Errorf("%s: error %v does not wrap ErrInvalidTokens", tc.name, err)
			continue
		}
		for _, want := range tc.errs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, want)
			}
		}
	}
}

func TestNewTokenHashes(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, tokenPrefix) || len(a) < 40 {
		t.Errorf("tokens %q and %q", a, b)
	}
	if _, err := parseTokenHash(HashToken(a)); err != nil || HashToken(a) == HashToken(b) {
		t.Errorf("hash %q: %v", HashToken(a), err)
	}
}

// TestOpenWithoutTokens keeps the development setup: with no token
// configured, /api/v1 answers a request from this host without one.
func TestOpenWithoutTokens(t *testing.T) {
	env := newAlertEnv(t)
	s := &Server{Store: fakeStore{}, Lookup: env.api.Lookup, Alerts: env.engine}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/api/v1/alerts/"+env.ids[devOut]+"/comment", "application/json", strings.NewReader(`{"version":1,"note":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
		t.Errorf("open API answered %d", resp.StatusCode)
	}
}

// TestOpenAPIAnswersThisHostOnly attacks the README's promise that without
// an API token "every request from this host is an admin" and nobody
// else's is served, where the listener is broader than loopback (0.0.0.0):
// a request from another address, or one a proxy forwarded, is refused
// even though an X-Forwarded-For header claims 127.0.0.1, and so is one a
// web page makes a browser here send (DNS rebinding, cross-site request
// forgery); one straight from a loopback address (127.0.0.1, 127.0.0.2) is
// served.
func TestOpenAPIAnswersThisHostOnly(t *testing.T) {
	s := &Server{Store: fakeStore{latest: func(string) ([]storage.Latest, error) { return nil, nil }},
		Lookup: devices.NewRegistry([]devices.Device{{ID: "aq-1", Type: "air_quality", Grid: "G1"}}).Lookup}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	// get asks for a device's latest values from source to the server at
	// dest, with the headers given.
	get := func(source, dest string, header ...string) (int, string) {
		t.Helper()
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
		client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort(dest, port))
		}}}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api/v1/devices/aq-1/latest", nil)
		for i := 0; i+1 < len(header); i += 2 {
			if header[i] == "Host" {
				req.Host = header[i+1]
			} else {
				req.Header.Set(header[i], header[i+1])
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("from %s: %v", source, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, source := range []string{"127.0.0.1", "127.0.0.2"} {
		if code, body := get(source, "127.0.0.1"); code != http.StatusOK {
			t.Errorf("from %s: %d %s, want 200", source, code, body)
		}
	}
	// A browser on this host serves a page of this host, or one that
	// names this host.
	for _, h := range [][]string{{"Host", "localhost:8080"}, {"Host", "127.0.0.1"}, {"Host", "[::1]:8080"}, {"Origin", "http://localhost:8080"}, {"Origin", "http://127.0.0.1:3000"}} {
		if code, body := get("127.0.0.1", "127.0.0.1", h...); code != http.StatusOK {
			t.Errorf("%s: %s: %d %s, want 200", h[0], h[1], code, body)
		}
	}
	for _, h := range [][]string{
		{"X-Forwarded-For", "127.0.0.1"}, {"Forwarded", "for=127.0.0.1"}, {"X-Real-Ip", "127.0.0.1"},
		// DNS rebinding: evil.example resolved to 127.0.0.1.
		{"Host", "evil.example"}, {"Host", "evil.example:8080"},
		// Cross-site request forgery from a page in a browser here.
		{"Origin", "http://evil.example"}, {"Origin", "null"},
	} {
		if code, body := get("127.0.0.1", "127.0.0.1", h...); code != http.StatusForbidden || !strings.Contains(body, "open_api_local_only") {
			t.Errorf("%s: %s: %d %s, want 403 open_api_local_only", h[0], h[1], code, body)
		}
	}
	// A real peer from another address: this host's own non-loopback
	// address, where it has one; the unit case below covers the rule
	// either way.
	if addr := nonLoopbackAddr(t); addr != "" {
		if code, body := get(addr, addr); code != http.StatusForbidden || !strings.Contains(body, "came from "+addr) {
			t.Errorf("from %s: %d %s, want 403 naming the peer", addr, code, body)
		}
	} else {
		t.Log("no non-loopback IPv4 address on this host: the real-peer case is left out")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/devices/aq-1/latest", nil)
	req.RemoteAddr = "192.0.2.77:40000"
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("from 192.0.2.77: %d %s, want 403", rec.Code, rec.Body)
	}
}

// nonLoopbackAddr returns one of this host's IPv4 addresses that is not
// loopback, or "".
func nonLoopbackAddr(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Logf("interface addresses: %v", err)
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// TestTokenHolder checks the token check other front doors (MQTT) use: the
// name must match the token, and with no token configured nobody passes.
func TestTokenHolder(t *testing.T) {
	holder := TokenHolder("boot", []Token{{Name: "mgr", Role: RoleViewer, Grid: "D01", Hash: HashToken("tok-mgr")}}, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		name, token, scope string
		ok                 bool
	}{
		{"mgr", "tok-mgr", "D01", true},
		{"admin", "boot", "", true},
		{"admin", "tok-mgr", "", false},
		{"mgr", "boot", "", false},
		{"mgr", "", "", false},
	} {
		if scope, ok := holder(tc.name, []byte(tc.token)); scope != tc.scope || ok != tc.ok {
			t.Errorf("holder(%q, %q) = %q, %v; want %q, %v", tc.name, tc.token, scope, ok, tc.scope, tc.ok)
		}
	}
	if _, ok := TokenHolder("", nil, slog.New(slog.DiscardHandler))("anonymous", nil); ok {
		t.Error("with no token configured, a holder passed")
	}
}

// BenchmarkTokenLookup measures the promise behind authenticator.lookup
// that its time says nothing about which token nearly matched: a token
// that is a configured one but for its last byte, one that shares nothing
// with any, and a configured one, among 100 credentials, side by side in
// one run. It reports each case's ns/op and the slowest over the fastest,
// which stays near 1 (the token is hashed first, and every credential is
// compared in constant time without stopping at a match).
func BenchmarkTokenLookup(b *testing.B) {
	tokens := make([]Token, 100)
	for i := range tokens {
		tokens[i] = Token{Name: fmt.Sprint("t", i), Role: RoleViewer, Hash: HashToken(fmt.Sprintf("gwt_token_%03d", i))}
	}
	a := newAuthenticator("", tokens, PrefixScope, slog.Default())
	cases := []struct{ name, token string }{
		{"near miss", "gwt_token_05X"},
		{"far miss", "zzzzzzzzzzzzz"},
		{"match", "gwt_token_050"},
	}
	// The cases take turns in rounds, so that a warming or loaded machine
	// weighs on each alike.
	const rounds = 10
	perOp := make([]float64, len(cases))
	for r := 0; r < rounds; r++ {
		for i, c := range cases {
			start := time.Now()
			for n := 0; n < b.N/rounds+1; n++ {
				if p := a.lookup(c.token); (p != nil) != (c.name == "match") {
					b.Fatalf("%s: lookup = %v", c.name, p)
				}
			}
			perOp[i] += float64(time.Since(start).Nanoseconds()) / float64((b.N/rounds+1)*rounds)
		}
	}
	for i, c := range cases {
		b.ReportMetric(perOp[i], strings.ReplaceAll(c.name, " ", "_")+"_ns/op")
	}
	b.ReportMetric(slices.Max(perOp)/slices.Min(perOp), "slowest/fastest")
}

// TestWhoami checks what the console shows after sign-in: the token's
// name, role and scope, and 401 for a token the server does not hold.
// The console itself is served beside the API at / and /assets/, while
// every other path still gets the API's JSON 404.
func TestWhoami(t *testing.T) {
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "console "+r.URL.Path) })
	s := &Server{Store: fakeStore{}, Lookup: devices.NewRegistry(nil).Lookup, AdminToken: "boot-0123456789abcdef",
		Tokens: []Token{{Name: "mgr", Role: RoleOperator, Grid: "D01", Hash: HashToken("tok-mgr")}}, Console: console}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, tc := range []struct{ token, want string }{
		{"tok-mgr", `{"grid":"D01","name":"mgr","role":"operator","unit":""}`},
		{"boot-0123456789abcdef", `{"grid":"","name":"admin","role":"admin","unit":""}`},
	} {
		if code, body := get("/api/v1/whoami", tc.token); code != http.StatusOK || body != tc.want {
			t.Errorf("whoami with %s: %d %s, want %s", tc.token, code, body, tc.want)
		}
	}
	if code, _ := get("/api/v1/whoami", "tok-other"); code != http.StatusUnauthorized {
		t.Errorf("whoami with an unknown token: %d, want 401", code)
	}
	for path, want := range map[string]string{"/": "console /", "/assets/app.js": "console /assets/app.js"} {
		if code, body := get(path, ""); code != http.StatusOK || body != want {
			t.Errorf("GET %s: %d %q, want the console", path, code, body)
		}
	}
	if code, body := get("/index.html", ""); code != http.StatusNotFound || !strings.Contains(body, `"not_found"`) {
		t.Errorf("GET /index.html: %d %s, want the API's JSON 404", code, body)
	}
}
