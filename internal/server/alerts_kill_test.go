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

// TestAlertCaseActionSurvivesKill attacks "a 2xx to any action means it is
// on disk" on the path staff take from an alert, from outside the process:
// a `gridwatch serve` subprocess raises an alert, the alert raises its
// case, staff act on that case over HTTP, and the server is killed with
// SIGKILL the moment the 200 arrives. ClickHouse, read directly while the
// server is dead, must hold the case at the version the 200's ETag named
// with the action's event, and after a restart the API must show it so,
// while the alert, linked to its case, answers its old work-order action
// with 410 Gone naming the case.
func TestAlertCaseActionSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	addr, database := storagetest.Database(t)
	devs := e2eDevices(t, 1)
	d := devs[0]
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	doc := fmt.Sprintf("rules:\n  - name: kill_test\n    match: {devices: [%s]}\n    metric: %s\n    condition: value >= 0\n    severity: major\n    no_group: true\n",
		d.ID, metricNames(d.Type)[0])
	if err := os.WriteFile(rules, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// No reminder within the test: it would advance the version.
	gw := newGridwatchProcess(t, addr, database, devs, "--rules.file", rules, "--cases.remind_before", "1ns")
	gw.start(t)
	base := "http://" + gw.http + "/api/v1"
	caseOf := func() (cases.Case, bool) {
		resp, err := http.Get(base + "/cases?source=alert")
		if err != nil {
			return cases.Case{}, false // still starting
		}
		defer resp.Body.Close()
		var page cases.Page
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil || len(page.Cases) != 1 || page.Cases[0].Device != d.ID {
			return cases.Case{}, false
		}
		return page.Cases[0], true
	}
	db, err := storage.Open(context.Background(), storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	publishTo(t, "tcp://"+gw.mqtt, d, fmt.Sprintf(`{%q: 1}`, metricNames(d.Type)[0]))
	var c cases.Case
	waitFor(t, time.Minute, func() bool { var ok bool; c, ok = caseOf(); return ok })
	// The engine saves its alerts every second, the link to the case too:
	// the action comes once ClickHouse has it.
	waitFor(t, time.Minute, func() bool {
		stored, _, err := db.LoadAlerts(context.Background(), time.Time{})
		return err == nil && len(stored) == 1 && stored[0].ID == c.Origin && stored[0].Case == c.ID
	})

	// The system may still be registering and dispatching the case: a 409
	// is answered by reloading it.
	var resp *http.Response
	waitFor(t, time.Minute, func() bool {
		cur, ok := caseOf()
		if !ok {
			return false
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/cases/"+cur.ID+"/note", strings.NewReader(`{"note":"crew on the way"}`))
		req.Header.Set("If-Match", fmt.Sprintf(`"%d"`, cur.Version))
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c = cur
		return resp.StatusCode != http.StatusConflict
	})
	gw.kill(t)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("note on the alert's case: %d, want 200\n%s", resp.StatusCode, gw.logTail())
	}
	etag := resp.Header.Get("ETag")
	if etag != fmt.Sprintf(`"%d"`, c.Version+1) {
		t.Fatalf("the note's ETag %s, want \"%d\"", etag, c.Version+1)
	}

	stored, events, err := db.LoadCase(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Version != c.Version+1 || len(events) != int(c.Version+1) || events[len(events)-1].Kind != cases.EventNote ||
		stored.Origin == "" {
		t.Fatalf("ClickHouse after the kill: case %+v with %d events; want it at version %d, its last event the note, its origin the alert",
			stored, len(events), c.Version+1)
	}

	gw.start(t)
	waitFor(t, time.Minute, func() bool { var ok bool; c, ok = caseOf(); return ok })
	if fmt.Sprintf(`"%d"`, c.Version) != etag {
		t.Fatalf("after the restart: the case at version %d; want %s", c.Version, etag)
	}
	ack, err := http.Post(base+"/alerts/"+stored.Origin+"/ack", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	ack.Body.Close()
	if link := ack.Header.Get("Link"); ack.StatusCode != http.StatusGone || link != `</api/v1/cases/`+c.ID+`>; rel="related"` {
		t.Fatalf("the alert's old ack: %s, Link %q; want 410 Gone naming case %s", ack.Status, link, c.ID)
	}
	gw.stop(t)
}
