package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestActionSurvivesKill attacks "a 2xx to any action means it is on disk"
// (issue 10 item 4) from outside the process: a `gridwatch serve`
// subprocess raises an alert, staff acknowledge it over HTTP, and the server
// is killed with SIGKILL the moment the 200 arrives. ClickHouse, read
// directly while the server is dead, must hold the acknowledged alert and
// its ack event, and after a restart the API must show it acknowledged at
// the version the 200's ETag named.
func TestActionSurvivesKill(t *testing.T) {
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
	gw := newGridwatchProcess(t, addr, database, devs, "--rules.file", rules)
	gw.start(t)
	api := "http://" + gw.http + "/api/v1/alerts"
	alertOf := func() (alerts.Alert, bool) {
		resp, err := http.Get(api + "?device=" + d.ID)
		if err != nil {
			return alerts.Alert{}, false // still starting
		}
		defer resp.Body.Close()
		var page alerts.Page
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil || len(page.Alerts) != 1 {
			return alerts.Alert{}, false
		}
		return page.Alerts[0], true
	}
	publishTo(t, "tcp://"+gw.mqtt, d, fmt.Sprintf(`{%q: 1}`, metricNames(d.Type)[0]))
	var a alerts.Alert
	waitFor(t, time.Minute, func() bool { var ok bool; a, ok = alertOf(); return ok })

	req, _ := http.NewRequest(http.MethodPost, api+"/"+a.ID+"/ack", nil)
	req.Header.Set("If-Match", fmt.Sprintf(`"%d"`, a.Version))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	gw.kill(t)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ack: %d, want 200\n%s", resp.StatusCode, gw.logTail())
	}
	etag := resp.Header.Get("ETag")
	if etag != fmt.Sprintf(`"%d"`, a.Version+1) {
		t.Fatalf("ack's ETag %s, want \"%d\"", etag, a.Version+1)
	}

	db, err := storage.Open(context.Background(), storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored, events, err := db.LoadAlerts(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	acked := false
	for _, ev := range events {
		acked = acked || ev.AlertID == a.ID && ev.Kind == alerts.EventAck && ev.Version == a.Version+1
	}
	if len(stored) != 1 || stored[0].Status != alerts.StatusAcknowledged || stored[0].Version != a.Version+1 || !acked {
		t.Fatalf("ClickHouse after the kill: alerts %+v, ack event stored %v; want the alert acknowledged at version %d and its event",
			stored, acked, a.Version+1)
	}

	gw.start(t)
	waitFor(t, time.Minute, func() bool { var ok bool; a, ok = alertOf(); return ok })
	if a.Status != alerts.StatusAcknowledged || fmt.Sprintf(`"%d"`, a.Version) != etag {
		t.Fatalf("after the restart: %s at version %d; want acknowledged at %s", a.Status, a.Version, etag)
	}
	gw.stop(t)
}
