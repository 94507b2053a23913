package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestAlertRaisesCaseIntegration follows a sensor reading through the
// whole loop in one server: a full waste bin fires its alert, which raises
// a case of the category the shipped table gives its rule, registered and
// dispatched by the system to the unit routed for the category in the
// bin's grid; the unit signs and handles it; the bin is emptied, its alert
// clears, and the case verifies itself once the condition stayed clear.
func TestAlertRaisesCaseIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; skipped under -short")
	}
	dir := t.TempDir()
	var units strings.Builder
	for _, cat := range devices.Categories() {
		fmt.Fprintf(&units, "- {code: U-%s, name: %s unit, categories: [%s]}\n", cat, cat, cat)
	}
	unitsFile := filepath.Join(dir, "units.yaml")
	if err := os.WriteFile(unitsFile, []byte(units.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-1-secret-0123456789"}
	addr, database := storagetest.Database(t)
	srv := startServer(t, addr, database, []devices.Device{bin}, func(c *Config) {
		c.Units.File = unitsFile
		c.Cases.TickEvery, c.Cases.ClearFor = 100*time.Millisecond, time.Second
		// No reminder within the test: it would advance the version.
		c.Cases.RemindBefore = time.Nanosecond
	})
	category := cases.DefaultCategories().ForDevice("waste_bin", "waste_bin_full")
	publish(t, srv, bin, `{"fill_pct": 97, "temp_c": 20}`)
	var c cases.Case
	waitFor(t, 2*time.Minute, func() bool {
		var page cases.Page
		if getJSON(t, srv, "/api/v1/cases?source=alert", &page) != http.StatusOK || len(page.Cases) != 1 {
			return false
		}
		c = page.Cases[0]
		return true
	})
	p, _ := srv.alerting.engine.List(alerts.Filter{Device: bin.ID})
	if len(p.Alerts) != 1 || c.Origin != p.Alerts[0].ID || c.Category != category.Code || c.Status != cases.StatusDispatched ||
		c.Unit != "U-"+category.Route || c.Grid != bin.Grid || c.Device != bin.ID || c.SignDue.IsZero() {
		t.Fatalf("case of the alert %+v: %+v", p.Alerts, c)
	}
	// The alert links to its case.
	waitFor(t, 2*time.Minute, func() bool {
		a, _, err := srv.alerting.engine.Get(p.Alerts[0].ID)
		return err == nil && a.Case == c.ID
	})
	act := func(kind string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.HTTPAddr()+"/api/v1/cases/"+c.ID+"/"+kind, nil)
		req.Header.Set("If-Match", fmt.Sprintf(`"%d"`, c.Version))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", kind, resp.Status)
		}
		getJSON(t, srv, "/api/v1/cases/"+c.ID, &c)
	}
	act("sign")
	act("handle")
	publish(t, srv, bin, `{"fill_pct": 5, "temp_c": 20}`)
	waitFor(t, 2*time.Minute, func() bool {
		getJSON(t, srv, "/api/v1/cases/"+c.ID, &c)
		return c.Status == cases.StatusVerified
	})
	var full struct {
		cases.Case
		Timeline []cases.Event `json:"timeline"`
	}
	getJSON(t, srv, "/api/v1/cases/"+c.ID, &full)
	var kinds []string
	for _, ev := range full.Timeline {
		kinds = append(kinds, ev.Actor+":"+string(ev.Kind))
	}
	// The API has no token: its actor is "anonymous".
	want := "system:receive system:register system:dispatch anonymous:sign anonymous:handle system:verify_pass"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("timeline %v, want %s", kinds, want)
	}
}
