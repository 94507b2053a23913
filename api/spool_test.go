package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

// quarantinedFile is the one segment fakeSpool's quarantine holds.
const quarantinedFile = "00000000000000000007.seg"

// fakeSpool is a Spool whose quarantine holds quarantinedFile, of 3 rows,
// whose replay fails with err; calls counts the replays asked for.
type fakeSpool struct {
	err   error
	calls *atomic.Int32
}

func (f fakeSpool) ReplayQuarantined(_ context.Context, file string) (int, error) {
	if f.calls != nil {
		f.calls.Add(1)
	}
	if file != quarantinedFile {
		return 0, fmt.Errorf("%w: %q", ErrNotQuarantined, file)
	}
	return 3, f.err
}

// TestAttackSpoolReplayNeedsAdmin attacks the replay endpoint: without a
// token, with a wrong one or a role below admin, the spool is never asked;
// the admin's replay is answered with the rows stored, and a name that is
// no quarantined segment gets 404.
func TestAttackSpoolReplayNeedsAdmin(t *testing.T) {
	calls := &atomic.Int32{}
	s := &Server{Lookup: devices.NewRegistry(nil).Lookup, AdminToken: "tok-bootstrap", Tokens: []Token{
		{Name: "viewer", Role: RoleViewer, Hash: HashToken("tok-viewer")},
		{Name: "operator", Role: RoleOperator, Hash: HashToken("tok-operator")},
	}, Spool: fakeSpool{calls: calls}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	post := func(file, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/spool/quarantine/"+file+"/replay", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for token, want := range map[string]int{"": http.StatusUnauthorized, "tok-wrong": http.StatusUnauthorized,
		"tok-viewer": http.StatusForbidden, "tok-operator": http.StatusForbidden} {
		if got := post(quarantinedFile, token); got != want {
			t.Errorf("replay with token %q: %d, want %d", token, got, want)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the spool was asked %d times by requests without an admin token", n)
	}
	if got := post(quarantinedFile, "tok-bootstrap"); got != http.StatusOK {
		t.Errorf("admin replay: %d, want 200", got)
	}
	if got := post("..%2F..%2Fsecret.key", "tok-bootstrap"); got != http.StatusNotFound {
		t.Errorf("replay of a path out of the quarantine: %d, want 404", got)
	}
}
