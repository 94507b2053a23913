package alerts_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

const lifecycleRules = `
rules:
  - name: gas_high
    match: {types: [gas]}
    metric: ch4_ppm
    condition: value > 5000
    clear: value < 1000
    severity: major
    escalate: {after: 20m, to: critical}
    no_group: true
`

// TestLifecycle walks one alert through firing, time escalation, repeats,
// clearing with de-escalation, and a new firing after it cleared, which is
// a new alert: an alert is a detection record, resolved for good when its
// condition clears, with no work order.
func TestLifecycle(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, nil, c)
	sub := e.Subscribe(64)
	obs := func(v float64) {
		e.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: v, TS: c.Now().UnixMilli()})
	}
	advance := func(d time.Duration) {
		for end := c.Now().Add(d); c.Now().Before(end); {
			c.Add(time.Minute)
			e.RunTimers()
		}
	}
	list := func() []alerts.Alert {
		t.Helper()
		p, err := e.List(alerts.Filter{Sort: "fired"})
		if err != nil {
			t.Fatal(err)
		}
		return p.Alerts
	}
	kinds := func(id string) []alerts.EventKind {
		t.Helper()
		_, evs, err := e.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		var out []alerts.EventKind
		for _, ev := range evs {
			out = append(out, ev.Kind)
		}
		return out
	}

	obs(8000)
	first := list()
	if len(first) != 1 || first[0].Condition != alerts.ConditionFiring || first[0].Severity != alerts.SeverityMajor || first[0].Version != 1 {
		t.Fatalf("after a breach: %+v; want one major alert firing at version 1", first)
	}
	id := first[0].ID
	advance(19 * time.Minute)
	obs(9000)
	if a := list()[0]; a.Escalated || a.Count != 2 || a.Version != 1 {
		t.Fatalf("after 19m and a repeat: escalated %v, count %d, version %d; want not yet, 2, 1", a.Escalated, a.Count, a.Version)
	}
	advance(time.Minute)
	if a := list()[0]; a.Severity != alerts.SeverityCritical || !a.Escalated {
		t.Fatalf("after 20m firing: severity %s escalated %v, want critical, escalated", a.Severity, a.Escalated)
	}
	advance(3 * time.Hour) // nothing more happens to a firing alert: no deadlines, no reminders
	obs(500)
	got := list()
	if len(got) != 1 || got[0].Condition != alerts.ConditionCleared || !got[0].Cleared.Equal(c.Now()) || got[0].Severity != alerts.SeverityMajor || got[0].Escalated {
		t.Fatalf("after recovery: %+v; want it cleared now, back to major", got)
	}
	obs(7000)
	got = list()
	if len(got) != 2 || got[0].ID != id || got[0].Condition != alerts.ConditionCleared || got[1].Condition != alerts.ConditionFiring || !got[1].Fired.Equal(c.Now()) {
		t.Fatalf("after a new breach: %+v; want the first alert cleared and a new one firing", got)
	}
	if want := []alerts.EventKind{"fire", "escalate", "clear", "deescalate"}; !slices.Equal(kinds(id), want) {
		t.Fatalf("trace of the first alert %v, want %v", kinds(id), want)
	}
	var published []alerts.EventKind
	for len(sub.C) > 0 {
		published = append(published, (<-sub.C).Event.Kind)
	}
	if want := []alerts.EventKind{"fire", "escalate", "clear", "deescalate", "fire"}; !slices.Equal(published, want) || sub.Dropped() != 0 {
		t.Fatalf("subscription got %v (dropped %d), want %v", published, sub.Dropped(), want)
	}
}

// TestLinkCase checks the link of an alert to its case: set once the case
// loop answered, on the alert as List and Get show it, as a case event of
// its trace that subscribers hear of, once; an unknown alert is not
// found.
func TestLinkCase(t *testing.T) {
	c := &clock{t: t0}
	e := newEngine(t, mustRules(t, lifecycleRules), []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}, nil, c)
	e.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
	p, err := e.List(alerts.Filter{})
	if err != nil || len(p.Alerts) != 1 || p.Alerts[0].Case != "" {
		t.Fatalf("List = %+v, %v; want one alert without a case", p.Alerts, err)
	}
	a := p.Alerts[0]
	sub := e.Subscribe(8)
	for range 2 {
		if err := e.LinkCase(a.ID, "C-1"); err != nil {
			t.Fatal(err)
		}
	}
	got, trace, err := e.Get(a.ID)
	if err != nil || got.Case != "C-1" || got.Version != a.Version+1 || len(trace) != 2 ||
		trace[1].Kind != alerts.EventCase || trace[1].To != "C-1" || trace[1].Actor != alerts.ActorSystem {
		t.Fatalf("after LinkCase twice: %+v with trace %+v, %v; want case C-1 at version %d, one case event", got, trace, err, a.Version+1)
	}
	if len(sub.C) != 1 {
		t.Fatalf("%d transitions published, want the case event only", len(sub.C))
	}
	if tr := <-sub.C; tr.Event.Kind != alerts.EventCase || tr.Alert.Case != "C-1" {
		t.Errorf("transition %+v; want the case event with the linked alert", tr)
	}
	if p, _ := e.List(alerts.Filter{}); p.Alerts[0].Case != "C-1" {
		t.Errorf("List after LinkCase: %+v", p.Alerts[0])
	}
	if err := e.LinkCase("nope", "C-1"); !errors.Is(err, alerts.ErrNotFound) {
		t.Errorf("LinkCase of an unknown alert: %v, want ErrNotFound", err)
	}
}

// fakeStore is a Store whose saves call its function fields (nil: succeed)
// and whose loads find what loaded holds.
type fakeStore struct {
	saveAlerts func([]alerts.Alert) error
	loaded     []alerts.Alert // what LoadAlerts returns
}

func (s *fakeStore) SaveAlerts(_ context.Context, rows []alerts.Alert) error {
	if s.saveAlerts == nil {
		return nil
	}
	return s.saveAlerts(rows)
}

func (s *fakeStore) SaveEvents(context.Context, []alerts.Event) error { return nil }

func (s *fakeStore) LoadAlerts(context.Context, time.Time) ([]alerts.Alert, []alerts.Event, error) {
	return s.loaded, nil, nil
}
func (s *fakeStore) LoadOpenAlerts(context.Context, []string) ([]alerts.Alert, []alerts.Event, error) {
	return nil, nil, nil
}
func (s *fakeStore) SaveSilence(context.Context, alerts.Silence) error { return nil }
func (s *fakeStore) LoadSilences(context.Context, time.Time) ([]alerts.Silence, error) {
	return nil, nil
}

// TestRestoredAlertsNotSavedAgain checks that alerts restored at start are
// listed and are not saved again by the flush: they are stored already.
func TestRestoredAlertsNotSavedAgain(t *testing.T) {
	c := &clock{t: t0}
	var saved atomic.Int64
	store := &fakeStore{
		loaded: []alerts.Alert{{ID: "a1", Version: 3, Rule: "gas_high", Device: "gas-1", Grid: "G1",
			Condition: alerts.ConditionFiring, Fired: t0, Updated: t0}},
		saveAlerts: func(as []alerts.Alert) error { saved.Add(int64(len(as))); return nil },
	}
	e := newEngine(t, mustRules(t, lifecycleRules), []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}, store, c)
	if a, _, err := e.Get("a1"); err != nil || a.Condition != alerts.ConditionFiring || a.Version != 3 {
		t.Fatalf("restored alert: %+v, %v", a, err)
	}
	if err := e.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := saved.Load(); n != 0 {
		t.Errorf("the flush after a restore saved %d alert rows, want 0", n)
	}
}
