package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// TestSilences creates, lists and removes silences with scoped and
// unscoped tokens: a scoped token silences, sees and removes only within
// its grid subtree, and gets 404 outside it.
func TestSilences(t *testing.T) {
	env := newAlertEnv(t)
	ids := map[string]string{} // silence id by case name
	for _, tc := range []struct {
		name, token, body string
		want              int
		wantGrid          string
	}{
		{"viewer may not", "tok-viewer", `{"duration":"1h"}`, http.StatusForbidden, ""},
		{"no end", "tok-operator", `{"grid":"D01"}`, http.StatusBadRequest, ""},
		{"ends and duration", "tok-operator", `{"ends":"2099-01-01T00:00:00Z","duration":"1h"}`, http.StatusBadRequest, ""},
		{"unknown field", "tok-operator", `{"duration":"1h","colour":"red"}`, http.StatusBadRequest, ""},
		{"ended", "tok-operator", `{"ends":"2001-01-01T00:00:00Z"}`, http.StatusUnprocessableEntity, ""},
		{"grid outside scope", "tok-operator", `{"grid":"D02","duration":"1h"}`, http.StatusNotFound, ""},
		{"device outside scope", "tok-operator", `{"device":"` + devOut + `","duration":"1h"}`, http.StatusNotFound, ""},
		{"unknown device", "tok-city", `{"device":"nope","duration":"1h"}`, http.StatusNotFound, ""},
		{"scope by default", "tok-operator", `{"duration":"1h","reason":"works"}`, http.StatusCreated, "D01"},
		{"prefix but not a parent", "tok-operator", `{"grid":"D","duration":"1h"}`, http.StatusNotFound, ""},
		{"cell in scope", "tok-admin", `{"grid":"D01-S01","maintenance":true,"duration":"48h"}`, http.StatusCreated, "D01-S01"},
		{"device in scope", "tok-operator", `{"device":"` + devIn + `","duration":"1h"}`, http.StatusCreated, ""},
		{"city-wide", "tok-city", `{"grid":"D02","duration":"1h"}`, http.StatusCreated, "D02"},
		// Issue 10 item 8: a silence has a maximum duration.
		{"longer than api.max_silence", "tok-city", `{"grid":"D02","duration":"721h"}`, http.StatusBadRequest, ""},
		{"ends after api.max_silence", "tok-city", `{"grid":"D02","ends":"2999-01-01T00:00:00Z"}`, http.StatusBadRequest, ""},
	} {
		code, body := env.call(t, http.MethodPost, "/api/v1/silences", tc.token, tc.body)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
			continue
		}
		if code != http.StatusCreated {
			continue
		}
		var s alerts.Silence
		if err := json.Unmarshal([]byte(body), &s); err != nil || s.ID == "" || s.Grid != tc.wantGrid || s.Actor != tc.token[len("tok-"):] {
			t.Errorf("%s: created %s (%v); want grid %q, actor %s", tc.name, body, err, tc.wantGrid, tc.token)
		}
		ids[tc.name] = s.ID
	}
	list := func(token string) int {
		code, body := env.call(t, http.MethodGet, "/api/v1/silences", token, "")
		var got struct{ Silences []alerts.Silence }
		if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil {
			t.Fatalf("list as %s: %d %s", token, code, body)
		}
		return len(got.Silences)
	}
	if n := list("tok-viewer"); n != 3 {
		t.Errorf("a D01 viewer sees %d silences, want the 3 within D01", n)
	}
	if n := list("tok-city"); n != 4 {
		t.Errorf("a city token sees %d silences, want 4", n)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"city-wide", "tok-viewer", http.StatusForbidden},
		{"city-wide", "tok-operator", http.StatusNotFound},
		{"scope by default", "tok-operator", http.StatusNoContent},
		{"scope by default", "tok-operator", http.StatusNotFound},
		{"city-wide", "tok-city", http.StatusNoContent},
	} {
		if code, body := env.call(t, http.MethodDelete, "/api/v1/silences/"+ids[tc.name], tc.token, ""); code != tc.want {
			t.Errorf("delete %s as %s: %d %s, want %d", tc.name, tc.token, code, body, tc.want)
		}
	}
	if n := list("tok-city"); n != 2 {
		t.Errorf("after two deletes a city token sees %d silences, want 2", n)
	}
}

// TestSilenceMaximum attacks the promise that silences have a maximum
// duration (api.max_silence, 30 days by default): a longer one is refused
// with a 400 naming the limit and its key, one of exactly the limit is
// taken.
func TestSilenceMaximum(t *testing.T) {
	env := newAlertEnv(t)
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"duration":"720h"}`, http.StatusCreated},
		{`{"ends":"` + time.Now().Add(29*24*time.Hour).Format(time.RFC3339) + `"}`, http.StatusCreated},
		{`{"duration":"720h1s"}`, http.StatusBadRequest},
		{`{"duration":"87600h"}`, http.StatusBadRequest},
		{`{"ends":"9999-12-31T23:59:59Z"}`, http.StatusBadRequest},
		{`{"ends":"9223372036854775807"}`, http.StatusBadRequest},
	} {
		code, body := env.call(t, http.MethodPost, "/api/v1/silences", "tok-city", tc.body)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.body, code, body, tc.want)
		}
		if code == http.StatusBadRequest && !strings.Contains(body, "at most 720h0m0s (api.max_silence)") {
			t.Errorf("%s: error %s does not name the limit", tc.body, body)
		}
	}
}

// TestSlowBodyIsCutOff attacks the promise that a slow client cannot hold
// the server (slow-loris on the body): a POST that announces a body and
// sends it a byte at a time is answered once BodyTimeout has passed,
// instead of holding its handler for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	env := newAlertEnv(t)
	env.srv.Close()
	env.api.BodyTimeout = 300 * time.Millisecond
	srv := httptest.NewServer(env.api.Handler())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-city\r\nContent-Length: 1000\r\n\r\n{")
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- line
	}()
	for {
		select {
		case line := <-answered:
			if !strings.Contains(line, " 400 ") || time.Since(start) < env.api.BodyTimeout {
				t.Errorf("slow body answered %q after %s, want 400 after %s", line, time.Since(start), env.api.BodyTimeout)
			}
			return
		case <-time.After(50 * time.Millisecond):
			if time.Since(start) > time.Minute {
				t.Fatalf("slow body unanswered after %s", time.Since(start))
			}
			_, _ = io.WriteString(conn, " ")
		}
	}
}
