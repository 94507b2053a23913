package alerts_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

const lifecycleRules = `
sla:
  remind_every: 10m
  ack: {major: 30m, critical: 30m}
  resolve: {major: 2h, critical: 2h}
scoring: {ack_on_time: 1, resolve_on_time: 2, overdue: 3, threshold: 0}
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

// TestLifecycle walks one work order through reminders, time escalation, a
// missed deadline, stale and valid actions, de-escalation on recovery and
// the statistics, on a fake clock.
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
	one := func() alerts.Alert {
		t.Helper()
		p, err := e.List(alerts.Filter{})
		if err != nil || len(p.Alerts) != 1 {
			t.Fatalf("List = %v, %v; want one alert", p.Alerts, err)
		}
		return p.Alerts[0]
	}
	kinds := func() []alerts.EventKind {
		_, evs, err := e.Get(one().ID)
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
	a := one()
	if a.Status != alerts.StatusNew || a.Condition != alerts.ConditionFiring || a.Unit != "gas@G1" ||
		!a.AckDue.Equal(t0.Add(30*time.Minute)) || !a.ResolveDue.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("fired alert = %+v; want new, firing, routed to gas@G1, due in 30m and 2h", a)
	}
	advance(10 * time.Minute) // first reminder
	advance(10 * time.Minute) // second reminder; firing 20m: escalated
	if a = one(); a.Severity != alerts.SeverityCritical || !a.Escalated {
		t.Fatalf("after 20m firing: severity %s escalated %v, want critical, escalated", a.Severity, a.Escalated)
	}
	advance(10 * time.Minute) // 30m: ack deadline missed, third reminder
	a = one()
	if !a.AckOverdue || !a.Overdue(c.Now()) {
		t.Fatalf("after 30m unacknowledged: ack_overdue %v", a.AckOverdue)
	}

	_, err := e.Act(t.Context(), alerts.Action{ID: a.ID, Kind: alerts.ActionAck, Version: a.Version - 1, Actor: "op"})
	var conflict *alerts.ConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, alerts.ErrConflict) || conflict.Current != a.Version {
		t.Fatalf("ack with a stale version: %v; want a ConflictError at version %d", err, a.Version)
	}
	if _, err := e.Act(t.Context(), alerts.Action{ID: a.ID, Kind: alerts.ActionResolve, Version: a.Version, Actor: "op"}); !errors.Is(err, alerts.ErrInvalidAction) {
		t.Fatalf("resolve a new alert: %v; want ErrInvalidAction", err)
	}
	if _, err := e.Act(t.Context(), alerts.Action{ID: "nope", Kind: alerts.ActionAck, Version: 1, Actor: "op"}); !errors.Is(err, alerts.ErrNotFound) {
		t.Fatalf("ack a missing alert: %v; want ErrNotFound", err)
	}
	act := func(kind alerts.ActionKind, unit string, want alerts.Status) {
		t.Helper()
		cur := one()
		got, err := e.Act(t.Context(), alerts.Action{ID: cur.ID, Kind: kind, Version: cur.Version, Actor: "op", Unit: unit, Note: "n"})
		if err != nil || got.Status != want || got.Version != cur.Version+1 {
			t.Fatalf("%s: %+v, %v; want status %s at version %d", kind, got, err, want, cur.Version+1)
		}
	}
	act(alerts.ActionAck, "", alerts.StatusAcknowledged)
	advance(30 * time.Minute) // no reminders once acknowledged
	act(alerts.ActionDispatch, "gas-company", alerts.StatusDispatched)
	if a = one(); a.Unit != "gas-company" {
		t.Fatalf("dispatched to %q, want gas-company", a.Unit)
	}
	obs(500) // recovered: cleared and de-escalated, the work order stays
	if a = one(); a.Condition != alerts.ConditionCleared || a.Severity != alerts.SeverityMajor || a.Status != alerts.StatusDispatched {
		t.Fatalf("after recovery: %s %s %s; want cleared, major, dispatched", a.Condition, a.Severity, a.Status)
	}
	act(alerts.ActionResolve, "", alerts.StatusResolved)
	act(alerts.ActionClose, "", alerts.StatusClosed)
	stats, err := e.Stats(alerts.ByUnit, "", t0, t0.Add(24*time.Hour))
	if err != nil || len(stats) != 1 {
		t.Fatalf("Stats = %+v, %v", stats, err)
	}
	s := stats[0]
	// Acknowledged late, resolved on time: 2 points - 3 for the missed
	// deadline, below the threshold 0.
	if s.Key != "gas-company" || s.Received != 1 || s.AckedOnTime != 0 || s.ResolvedOnTime != 1 || s.Overdue != 1 ||
		s.MTTA != 30*time.Minute || s.Score != -1 || !s.Flagged || s.Rank != 1 {
		t.Fatalf("stats = %+v", s)
	}
	for scope, want := range map[string]int{"G1": 1, "G2": 0} {
		if scoped, err := e.Stats(alerts.ByUnit, scope, t0, t0.Add(24*time.Hour)); err != nil || len(scoped) != want {
			t.Fatalf("Stats within %s = %+v, %v; want %d units", scope, scoped, err, want)
		}
	}
	act(alerts.ActionReopen, "", alerts.StatusReopened)
	act(alerts.ActionComment, "", alerts.StatusReopened)

	want := []alerts.EventKind{"fire", "remind", "escalate", "remind", "overdue", "remind", "ack", "dispatch",
		"clear", "deescalate", "resolve", "close", "reopen", "comment"}
	if got := kinds(); !equal(got, want) {
		t.Fatalf("trace %v\nwant %v", got, want)
	}
	var published []alerts.EventKind
	for len(sub.C) > 0 {
		published = append(published, (<-sub.C).Event.Kind)
	}
	if !equal(published, want) || sub.Dropped() != 0 {
		t.Fatalf("subscription got %v (dropped %d), want %v", published, sub.Dropped(), want)
	}

}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fakeStore is a Store whose saves call its function fields (nil: succeed)
// and whose loads find nothing.
type fakeStore struct {
	saveAlerts func([]alerts.Alert) error
	saveEvents func([]alerts.Event) error
	loaded     []alerts.Alert // what LoadAlerts returns
}

func (s *fakeStore) SaveAlerts(_ context.Context, rows []alerts.Alert) error {
	if s.saveAlerts == nil {
		return nil
	}
	return s.saveAlerts(rows)
}

func (s *fakeStore) SaveEvents(_ context.Context, events []alerts.Event) error {
	if s.saveEvents == nil {
		return nil
	}
	return s.saveEvents(events)
}

func (s *fakeStore) LoadAlerts(context.Context, time.Time) ([]alerts.Alert, []alerts.Event, error) {
	return s.loaded, nil, nil
}
func (s *fakeStore) SaveSilence(context.Context, alerts.Silence) error { return nil }
func (s *fakeStore) LoadSilences(context.Context, time.Time) ([]alerts.Silence, error) {
	return nil, nil
}

// TestActionSavedBeforeAnswered attacks "a 2xx to any action means it is on
// disk" (issue 10 item 4): Act returns only once the Store holds the alert
// row and the event of the action, with no flush in between; a failing
// Store, of either table, fails the action with ErrNotSaved and changes
// nothing: not the alert, not its trace, not the subscribers.
func TestActionSavedBeforeAnswered(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}
	var (
		mu       sync.Mutex
		rows     []alerts.Alert
		events   []alerts.Event
		failWith = map[string]error{}
	)
	store := &fakeStore{
		saveAlerts: func(as []alerts.Alert) error {
			mu.Lock()
			defer mu.Unlock()
			if err := failWith["alerts"]; err != nil {
				return err
			}
			rows = append(rows, as...)
			return nil
		},
		saveEvents: func(evs []alerts.Event) error {
			mu.Lock()
			defer mu.Unlock()
			if err := failWith["events"]; err != nil {
				return err
			}
			events = append(events, evs...)
			return nil
		},
	}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, store, c) // FlushEvery: an hour
	e.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 8000, TS: c.Now().UnixMilli()})
	p, err := e.List(alerts.Filter{})
	if err != nil || len(p.Alerts) != 1 {
		t.Fatalf("List = %v, %v; want one alert", p.Alerts, err)
	}
	before := p.Alerts[0]
	_, trace, _ := e.Get(before.ID)
	sub := e.Subscribe(16)
	ack := alerts.Action{ID: before.ID, Kind: alerts.ActionAck, Version: before.Version, Actor: "op"}

	for _, table := range []string{"alerts", "events"} {
		mu.Lock()
		failWith = map[string]error{table: errors.New("clickhouse down")}
		mu.Unlock()
		if _, err := e.Act(t.Context(), ack); !errors.Is(err, alerts.ErrNotSaved) {
			t.Fatalf("ack while saving %s fails: %v, want ErrNotSaved", table, err)
		}
		after, afterTrace, _ := e.Get(before.ID)
		if after.Status != alerts.StatusNew || after.Version != before.Version || !after.Acked.IsZero() ||
			len(afterTrace) != len(trace) {
			t.Fatalf("after a failed save of %s: status %s version %d acked %v, %d events; want new, %d, unset, %d",
				table, after.Status, after.Version, after.Acked, len(afterTrace), before.Version, len(trace))
		}
		if len(sub.C) != 0 {
			t.Fatalf("after a failed save of %s: transition %+v published", table, <-sub.C)
		}
	}

	mu.Lock()
	failWith = map[string]error{}
	rows, events = nil, nil
	mu.Unlock()
	got, err := e.Act(t.Context(), ack)
	if err != nil {
		t.Fatalf("ack once the store works: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rows) != 1 || rows[0].Status != alerts.StatusAcknowledged || rows[0].Version != got.Version ||
		!rows[0].Acked.Equal(got.Acked) {
		t.Errorf("alert rows stored when Act returned: %+v; want the acknowledged alert at version %d", rows, got.Version)
	}
	if len(events) != 1 || events[0].Kind != alerts.EventAck || events[0].Version != got.Version || events[0].Actor != "op" {
		t.Errorf("events stored when Act returned: %+v; want the ack at version %d", events, got.Version)
	}
	if tr := <-sub.C; tr.Event.Kind != alerts.EventAck || tr.Alert.Version != got.Version {
		t.Errorf("published %+v, want the ack", tr)
	}
}

// TestActionsWhileSaving attacks optimistic concurrency and ingestion
// while an action's save is slow: actions racing on one version while the
// first is being saved get exactly one success and conflicts for the rest;
// ingestion does not wait for the save; and the alert's clearing, observed
// meanwhile, follows the action with the next version, so that the row the
// store got is the state the action answered.
func TestActionsWhileSaving(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}
	var (
		mu     sync.Mutex
		saved  []alerts.Alert
		gate   = make(chan struct{})
		inSave = make(chan struct{}, 1)
	)
	store := &fakeStore{saveAlerts: func(as []alerts.Alert) error {
		for _, a := range as {
			if a.Status == alerts.StatusAcknowledged && a.Condition == alerts.ConditionFiring {
				inSave <- struct{}{}
				<-gate // the ack's save hangs until released
			}
		}
		mu.Lock()
		saved = append(saved, as...)
		mu.Unlock()
		return nil
	}}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, store, c)
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before Close, which saves too
	e.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 8000, TS: c.Now().UnixMilli()})
	p, _ := e.List(alerts.Filter{})
	a := p.Alerts[0]

	const racers = 8
	results := make(chan error, racers)
	for range racers {
		go func() {
			_, err := e.Act(context.Background(), alerts.Action{ID: a.ID, Kind: alerts.ActionAck, Version: a.Version, Actor: "op"})
			results <- err
		}()
	}
	select { // one ack is being saved; the others wait for it
	case <-inSave:
	case <-time.After(time.Minute):
		t.Fatal("no save of the ack began within a minute: Act answers before saving")
	}

	observed := make(chan struct{})
	go func() {
		e.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 500, TS: c.Now().UnixMilli()})
		close(observed)
	}()
	select {
	case <-observed:
	case <-time.After(time.Minute):
		t.Fatal("Observe waited for an action's save")
	}
	if cur, _, _ := e.Get(a.ID); cur.Version != a.Version || cur.Condition != alerts.ConditionFiring {
		t.Fatalf("while the ack is saved: version %d condition %s; want %d, firing (the clear waits)", cur.Version, cur.Condition, a.Version)
	}
	release()
	oks, conflicts := 0, 0
	for range racers {
		switch err := <-results; {
		case err == nil:
			oks++
		case errors.Is(err, alerts.ErrConflict):
			conflicts++
		default:
			t.Errorf("racing ack: %v", err)
		}
	}
	if oks != 1 || conflicts != racers-1 {
		t.Fatalf("%d racing acks of version %d: %d succeeded, %d conflicted; want 1 and %d", racers, a.Version, oks, conflicts, racers-1)
	}
	got, trace, _ := e.Get(a.ID)
	n := len(trace)
	if n < 2 || trace[n-2].Kind != alerts.EventAck || trace[n-2].Version != a.Version+1 ||
		trace[n-1].Kind != alerts.EventClear || trace[n-1].Version != a.Version+2 {
		t.Fatalf("trace ends %+v; want the ack at %d then the clear at %d", trace[max(n-2, 0):], a.Version+1, a.Version+2)
	}
	if got.Status != alerts.StatusAcknowledged || got.Condition != alerts.ConditionCleared || got.Version != a.Version+2 {
		t.Fatalf("alert after: %s %s v%d; want acknowledged, cleared, v%d", got.Status, got.Condition, got.Version, a.Version+2)
	}
}

// TestRestoredAlertsNotSavedAgain checks that alerts restored at start are
// listed and are not saved again by the flush: they are stored already.
func TestRestoredAlertsNotSavedAgain(t *testing.T) {
	c := &clock{t: t0}
	var saved atomic.Int64
	store := &fakeStore{
		loaded: []alerts.Alert{{ID: "a1", Version: 3, Rule: "gas_high", Device: "gas-1", Grid: "G1",
			Condition: alerts.ConditionFiring, Status: alerts.StatusAcknowledged, Fired: t0, Updated: t0}},
		saveAlerts: func(as []alerts.Alert) error { saved.Add(int64(len(as))); return nil },
	}
	e := newEngine(t, mustRules(t, lifecycleRules), []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}, store, c)
	if a, _, err := e.Get("a1"); err != nil || a.Status != alerts.StatusAcknowledged || a.Version != 3 {
		t.Fatalf("restored alert: %+v, %v", a, err)
	}
	if err := e.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := saved.Load(); n != 0 {
		t.Errorf("the flush after a restore saved %d alert rows, want 0", n)
	}
}
