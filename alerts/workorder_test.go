package alerts_test

import (
	"errors"
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
