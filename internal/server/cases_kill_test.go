package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestCaseActionsSurviveKill attacks "no action is answered before it is
// stored" for the case loop from outside the process: a `gridwatch serve`
// subprocess takes a report and then each action of the loop over HTTP,
// and is killed with SIGKILL the moment each 2xx arrives. ClickHouse, read
// while the server is dead, must hold the case at the version the answer's
// ETag named, with the action's event, and after a restart the API must
// show the case so.
func TestCaseActionsSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	addr, database := storagetest.Database(t)
	units := filepath.Join(t.TempDir(), "units.yaml")
	if err := os.WriteFile(units, []byte("- {code: U-WATER, name: water bureau, categories: [water]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No reminder within the test: it would advance the version.
	gw := newGridwatchProcess(t, addr, database, e2eDevices(t, 1), "--units.file", units, "--cases.remind_before", "1ns")
	db, err := storage.Open(context.Background(), storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	base := "http://" + gw.http + "/api/v1/cases"
	post := func(path, ifMatch, body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	steps := []struct {
		action string
		body   string
		status cases.Status
	}{
		{"", `{"category":"C0101","grid":"D01-S01-G01","address":"Hubin Rd 12","description":"cover gone"}`, cases.StatusReceived},
		{"register", `{}`, cases.StatusRegistered},
		{"dispatch", `{"unit":"U-WATER"}`, cases.StatusDispatched},
		{"sign", ``, cases.StatusHandling},
		{"handle", `{"note":"replaced"}`, cases.StatusHandled},
		{"verify_pass", ``, cases.StatusVerified},
		{"close", ``, cases.StatusClosed},
	}
	var id, etag string
	for i, st := range steps {
		gw.start(t)
		path := ""
		if st.action != "" {
			path = "/" + id + "/" + st.action
		}
		var resp *http.Response
		waitFor(t, time.Minute, func() bool {
			if _, err := http.Get("http://" + gw.http + "/healthz"); err != nil {
				return false // still starting
			}
			resp = post(path, etag, st.body)
			return true
		})
		var c cases.Case
		_ = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		gw.kill(t)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("step %d %q: %d\n%s", i, st.action, resp.StatusCode, gw.logTail())
		}
		id, etag = c.ID, resp.Header.Get("ETag")
		if want := fmt.Sprintf(`"%d"`, i+1); etag != want {
			t.Fatalf("step %d %q: ETag %s, want %s", i, st.action, etag, want)
		}
		stored, events, err := db.LoadCase(context.Background(), id)
		if err != nil {
			t.Fatalf("after the kill at step %d %q: %v", i, st.action, err)
		}
		if stored.Status != st.status || stored.Version != uint32(i+1) || len(events) != i+1 ||
			(st.action != "" && string(events[i].Kind) != st.action) {
			t.Fatalf("ClickHouse after the kill at step %d %q: %s at version %d with %d events; want %s at %d",
				i, st.action, stored.Status, stored.Version, len(events), st.status, i+1)
		}
	}
	gw.start(t)
	var c cases.Case
	waitFor(t, time.Minute, func() bool {
		resp, err := http.Get(base + "/" + id)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&c) == nil
	})
	if c.Status != cases.StatusClosed || fmt.Sprintf(`"%d"`, c.Version) != etag {
		t.Fatalf("after the last restart: %s at version %d, want closed at %s", c.Status, c.Version, etag)
	}
	gw.stop(t)
}
