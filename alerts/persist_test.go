package alerts_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

const restartRules = lifecycleRules + `
  - name: flood
    match: {types: [water_level]}
    metric: level_cm
    condition: value > 30
    for: 10m
    severity: major
    no_group: true
`

// TestRestartIntegration stops an engine with a firing alert linked to its
// case, a cleared one and a pending `for` timer and starts another on the
// same ClickHouse: the alerts come back with their versions, links and
// traces, the firing one keeps its instance and its escalation clock, and
// the timer fires on time without a new reading.
func TestRestartIntegration(t *testing.T) {
	db := openStore(t)
	rules := mustRules(t, restartRules)
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}, {ID: "gas-2", Type: "gas", Grid: "G1"}, {ID: "wl-1", Type: "water_level", Grid: "G1"}}
	c := &clock{t: t0}

	first := newEngine(t, rules, devs, db, c)
	first.Observe(alerts.Observation{Device: "gas-2", Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
	first.Observe(alerts.Observation{Device: "gas-2", Metric: "ch4_ppm", Value: 100, TS: c.Now().UnixMilli()},
		alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()},
		alerts.Observation{Device: "wl-1", Metric: "level_cm", Value: 50, TS: c.Now().UnixMilli()})
	page, err := first.List(alerts.Filter{Rule: "gas_high", Sort: "fired"})
	if err != nil || len(page.Alerts) != 2 || page.Alerts[0].Condition != alerts.ConditionCleared || page.Alerts[1].Condition != alerts.ConditionFiring {
		t.Fatalf("List = %+v, %v; want gas-2's alert cleared and gas-1's firing", page.Alerts, err)
	}
	if err := first.LinkCase(page.Alerts[1].ID, "C-7"); err != nil {
		t.Fatal(err)
	}
	if page.Alerts[1], _, err = first.Get(page.Alerts[1].ID); err != nil || page.Alerts[1].Case != "C-7" {
		t.Fatalf("after LinkCase: %+v, %v", page.Alerts[1], err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	c.Add(5 * time.Minute)
	second := newEngine(t, rules, devs, db, c)
	for _, want := range page.Alerts {
		got, trace, err := second.Get(want.ID)
		if err != nil {
			t.Fatalf("after restart: %v", err)
		}
		if got.Condition != want.Condition || got.Version != want.Version || got.Case != want.Case || !got.Fired.Equal(want.Fired) ||
			!got.Cleared.Equal(want.Cleared) || len(trace) != int(want.Version) {
			t.Fatalf("restored %+v with trace %+v; want %+v", got, trace, want)
		}
	}
	c.Add(5*time.Minute - time.Second)
	second.RunTimers()
	if p, _ := second.List(alerts.Filter{Rule: "flood"}); len(p.Alerts) != 0 {
		t.Fatalf("flood fired before its 10m: %+v", p.Alerts)
	}
	c.Add(time.Second)
	second.RunTimers()
	p, _ := second.List(alerts.Filter{Rule: "flood"})
	if len(p.Alerts) != 1 || !p.Alerts[0].Fired.Equal(t0.Add(10*time.Minute)) || p.Alerts[0].Device != "wl-1" {
		t.Fatalf("flood alerts after 10m = %+v; want one, fired at %s", p.Alerts, t0.Add(10*time.Minute))
	}
	// gas_high escalates 20m after it fired, across the restart.
	c.Add(10 * time.Minute)
	second.RunTimers()
	if a, _, _ := second.Get(page.Alerts[1].ID); !a.Escalated || a.Severity != alerts.SeverityCritical {
		t.Fatalf("gas-1's alert 20m after it fired: %+v; want escalated to critical", a)
	}
	// The firing alert keeps its instance: a repeat counts on it.
	second.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 9500, TS: c.Now().UnixMilli()})
	if p, _ := second.List(alerts.Filter{Rule: "gas_high", Device: "gas-1"}); len(p.Alerts) != 1 || p.Alerts[0].Count != 2 {
		t.Fatalf("gas alerts after a repeat = %+v; want one with count 2", p.Alerts)
	}
}

// openStore returns a migrated database of its own on the test ClickHouse.
func openStore(t *testing.T) *storage.DB {
	t.Helper()
	addr, dbName := storagetest.Database(t)
	db, err := storage.Open(t.Context(), storage.Options{Addr: addr, Database: dbName, Password: storagetest.Password(t)}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestSilencesSurviveRestartIntegration restarts engines on one ClickHouse:
// silences in force come back with their ids and keep muting, one removed
// early and ones that ended do not.
func TestSilencesSurviveRestartIntegration(t *testing.T) {
	db := openStore(t)
	rules := mustRules(t, lifecycleRules)
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}, {ID: "gas-2", Type: "gas", Grid: "G2"}}
	c := &clock{t: t0}

	first := newEngine(t, rules, devs, db, c)
	window, err := first.AddSilence(t.Context(), alerts.Silence{Device: "gas-1", Maintenance: true, Ends: t0.Add(time.Hour), Actor: "op", Reason: "pipe work"})
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := first.AddSilence(t.Context(), alerts.Silence{Grid: "G2", Ends: t0.Add(2*time.Hour + 1234567*time.Nanosecond), Actor: "op"})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := first.AddSilence(t.Context(), alerts.Silence{Rule: "gas_high", Ends: t0.Add(3 * time.Hour), Actor: "op"})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.RemoveSilence(t.Context(), removed.ID); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	c.Add(10 * time.Minute)
	second := newEngine(t, rules, devs, db, c)
	got := second.Silences()
	if len(got) != 2 || got[0] != window || got[1] != quiet {
		t.Fatalf("silences after a restart = %+v; want %+v and %+v", got, window, quiet)
	}
	second.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
	if p, _ := second.List(alerts.Filter{}); len(p.Alerts) != 0 {
		t.Fatalf("alerts of a device in a restored maintenance window: %+v", p.Alerts)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}

	c.Add(time.Hour)
	third := newEngine(t, rules, devs, db, c)
	if got := third.Silences(); len(got) != 1 || got[0].ID != quiet.ID {
		t.Fatalf("silences after the window ended = %+v; want %s only", got, quiet.ID)
	}
}
