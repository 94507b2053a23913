package cases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// memStore is a Store in memory; fail, when set, fails every save.
type memStore struct {
	mu     sync.Mutex
	rows   map[string]Case
	events []Event
	fail   error
	saves  int
}

func (m *memStore) SaveCases(_ context.Context, cs []Case, _ uint64, evs []Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	if m.fail != nil {
		return m.fail
	}
	if m.rows == nil {
		m.rows = map[string]Case{}
	}
	m.events = append(m.events, evs...)
	for _, c := range cs {
		m.rows[c.ID] = c.clone()
	}
	return nil
}

func (m *memStore) LoadCases(_ context.Context, closedSince time.Time) ([]Case, []Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cs []Case
	var evs []Event
	for _, c := range m.rows {
		if c.Open() || !c.Updated.Before(closedSince) {
			cs = append(cs, c.clone())
			for _, ev := range m.events {
				if ev.CaseID == c.ID && ev.Seq <= c.Version {
					evs = append(evs, ev)
				}
			}
		}
	}
	return cs, evs, nil
}

func (m *memStore) LoadCase(_ context.Context, id string) (Case, []Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.rows[id]
	if !ok {
		return Case{}, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var evs []Event
	for _, ev := range m.events {
		if ev.CaseID == id {
			evs = append(evs, ev)
		}
	}
	return c, evs, nil
}

// naturalTiming is a Timing in natural time: sign-for within 1 h, handling within
// 24 h, closing within 48 h.
type naturalTiming struct{}

func (naturalTiming) Due(_ string, step Step, from time.Time) time.Time {
	return from.Add(map[Step]time.Duration{StepSign: time.Hour, StepHandle: 24 * time.Hour, StepClose: 48 * time.Hour}[step])
}

func (naturalTiming) Extend(due time.Time, x Limit) (time.Time, error) {
	if x.Unit != NaturalHours {
		return time.Time{}, fmt.Errorf("unit %q is not natural_hours", x.Unit)
	}
	return due.Add(time.Duration(x.N * float64(time.Hour))), nil
}

func (naturalTiming) Resume(_ string, due, paused, resumed time.Time) time.Time {
	return resumed.Add(due.Sub(paused))
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// newService starts a service on store with units routed by category:
// "road" cases go to unit U-ROAD.
func newService(t *testing.T, store *memStore, clk *clock) *Service {
	t.Helper()
	s := &Service{
		Store: store, Timing: naturalTiming{}, Now: clk.Now, TickEvery: time.Hour,
		Logger: slog.New(slog.DiscardHandler),
		Category: func(code string) (string, bool) {
			return map[string]string{"road": "municipal", "manhole": "municipal", "light": "lighting"}[code],
				slices.Contains([]string{"road", "manhole", "light"}, code)
		},
		Route: func(cat, grid string) string {
			return map[string]string{"municipal": "U-ROAD", "lighting": "U-LIGHT"}[cat]
		},
		Locate: func(lat, lon float64) (string, bool) { return "G1", lat > 0 },
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var (
	patroller = Actor{Name: "li", Role: RoleReporter}
	dispatch  = Actor{Name: "wang", Role: RoleDispatcher}
	roadUnit  = Actor{Name: "road-staff", Role: RoleUnit, Unit: "U-ROAD"}
	lightUnit = Actor{Name: "light-staff", Role: RoleUnit, Unit: "U-LIGHT"}
	boss      = Actor{Name: "zhao", Role: RoleSupervisor}
	viewer    = Actor{Name: "v", Role: RoleViewer}
)

// do takes an action at the case's current version and fails the test on
// error.
func do(t *testing.T, s *Service, id string, a Action) Case {
	t.Helper()
	c, _, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	a.Case, a.Version = id, c.Version
	got, err := s.Act(context.Background(), a)
	if err != nil {
		t.Fatalf("%s by %s: %v", a.Kind, a.Actor.Name, err)
	}
	return got
}

func report(t *testing.T, s *Service, lat float64) Case {
	t.Helper()
	c, created, err := s.Report(context.Background(), Report{Source: SourcePatrol, Actor: patroller,
		Category: "road", Description: "pothole", Location: &Point{Lat: lat, Lon: 116.4}})
	if err != nil || !created {
		t.Fatalf("report: %v (created %v)", err, created)
	}
	return c
}

// TestLifecycleHappyPath walks a patrol report through the whole loop and
// checks the trace: every step an event, versions counting them, the
// deadlines each step is measured against.
func TestLifecycleHappyPath(t *testing.T) {
	store, clk := &memStore{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	if c.Status != StatusReceived || c.Grid != "G1" || c.Version != 1 || c.Reporter != "li" {
		t.Fatalf("reported case = %+v", c)
	}
	c = do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
	c = do(t, s, c.ID, Action{Kind: EventDispatch, Actor: dispatch})
	if c.Unit != "U-ROAD" || !c.SignDue.Equal(t0.Add(time.Hour)) {
		t.Fatalf("dispatched case = %+v", c)
	}
	clk.Add(10 * time.Minute)
	c = do(t, s, c.ID, Action{Kind: EventSign, Actor: roadUnit})
	clk.Add(2 * time.Hour)
	c = do(t, s, c.ID, Action{Kind: EventHandle, Actor: roadUnit, Note: "filled", Evidence: []string{"sha256:aa"}})
	c = do(t, s, c.ID, Action{Kind: EventVerifyPass, Actor: patroller})
	c = do(t, s, c.ID, Action{Kind: EventClose, Actor: dispatch})
	c = do(t, s, c.ID, Action{Kind: EventEvaluate, Actor: patroller, Satisfaction: 5})
	if c.Status != StatusClosed || c.Version != 8 || c.Satisfaction != 5 || !slices.Equal(c.Evidence, []string{"sha256:aa"}) {
		t.Fatalf("closed case = %+v", c)
	}
	_, evs, _ := s.Get(context.Background(), c.ID)
	var kinds []EventKind
	for i, ev := range evs {
		kinds = append(kinds, ev.Kind)
		if ev.Seq != uint32(i+1) || !ev.OnTime() || ev.Category != "road" || ev.Grid != "G1" {
			t.Errorf("event %d = %+v", i, ev)
		}
	}
	want := []EventKind{EventReceive, EventRegister, EventDispatch, EventSign, EventHandle, EventVerifyPass, EventClose, EventEvaluate}
	if !slices.Equal(kinds, want) {
		t.Fatalf("trace %v, want %v", kinds, want)
	}
	if evs[3].Unit != "U-ROAD" || evs[3].Actor != "road-staff" || evs[3].Role != "unit" || !evs[3].Due.Equal(t0.Add(time.Hour)) {
		t.Errorf("sign event = %+v", evs[3])
	}
	if len(store.events) != 8 || store.rows[c.ID].Version != 8 {
		t.Errorf("store holds %d events, case at version %d", len(store.events), store.rows[c.ID].Version)
	}
}

// TestLifecycleRules is the table of who may take which action in which
// status, and what each exception path leads to.
func TestLifecycleRules(t *testing.T) {
	type step struct {
		a      Action
		err    error  // nil: must succeed
		status Status // after a success
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a viewer cannot register", []step{{a: Action{Kind: EventRegister, Actor: viewer}, err: ErrForbidden}}},
		{"a unit cannot register", []step{{a: Action{Kind: EventRegister, Actor: roadUnit}, err: ErrForbidden}}},
		{"sign before dispatch", []step{{a: Action{Kind: EventRegister, Actor: dispatch}, status: StatusRegistered},
			{a: Action{Kind: EventSign, Actor: roadUnit}, err: ErrForbidden}}},
		{"another unit cannot sign", []step{{a: Action{Kind: EventRegister, Actor: dispatch}, status: StatusRegistered},
			{a: Action{Kind: EventDispatch, Actor: dispatch}, status: StatusDispatched},
			{a: Action{Kind: EventSign, Actor: lightUnit}, err: ErrForbidden}}},
		{"return needs a reason, then re-dispatch", []step{{a: Action{Kind: EventRegister, Actor: dispatch}, status: StatusRegistered},
			{a: Action{Kind: EventDispatch, Actor: dispatch}, status: StatusDispatched},
			{a: Action{Kind: EventReturn, Actor: roadUnit}, err: ErrInvalidAction},
			{a: Action{Kind: EventReturn, Actor: roadUnit, Note: "not ours: a lamp"}, status: StatusRegistered},
			{a: Action{Kind: EventDispatch, Actor: dispatch, Unit: "U-LIGHT"}, status: StatusDispatched},
			{a: Action{Kind: EventSign, Actor: lightUnit}, status: StatusHandling}}},
		{"void needs a reason", []step{{a: Action{Kind: EventVoid, Actor: dispatch}, err: ErrInvalidAction},
			{a: Action{Kind: EventVoid, Actor: dispatch, Note: "prank"}, status: StatusVoided},
			{a: Action{Kind: EventRegister, Actor: dispatch}, err: ErrInvalidAction}}},
		{"unknown category", []step{{a: Action{Kind: EventRegister, Actor: dispatch, Category: "ufo"}, err: ErrInvalidAction}}},
		{"handling exceptions", []step{{a: Action{Kind: EventRegister, Actor: dispatch}, status: StatusRegistered},
			{a: Action{Kind: EventDispatch, Actor: dispatch}, status: StatusDispatched},
			{a: Action{Kind: EventSign, Actor: roadUnit}, status: StatusHandling},
			{a: Action{Kind: EventExtendApprove, Actor: boss}, err: ErrInvalidAction},
			{a: Action{Kind: EventExtendRequest, Actor: roadUnit, Note: "asphalt"}, err: ErrInvalidAction},
			{a: Action{Kind: EventExtendRequest, Actor: roadUnit, Note: "asphalt", Extend: &Limit{N: 1, Unit: WorkingDays}}, err: ErrInvalidAction},
			{a: Action{Kind: EventExtendRequest, Actor: roadUnit, Note: "asphalt", Extend: &Limit{N: 12, Unit: NaturalHours}}, status: StatusHandling},
			{a: Action{Kind: EventSuspendRequest, Actor: roadUnit, Note: "also"}, err: ErrInvalidAction},
			{a: Action{Kind: EventExtendApprove, Actor: roadUnit}, err: ErrForbidden},
			{a: Action{Kind: EventExtendApprove, Actor: dispatch}, err: ErrForbidden},
			{a: Action{Kind: EventExtendApprove, Actor: boss}, status: StatusHandling},
			{a: Action{Kind: EventSuspendRequest, Actor: roadUnit, Note: "court order"}, status: StatusHandling},
			{a: Action{Kind: EventSuspendReject, Actor: boss}, err: ErrInvalidAction},
			{a: Action{Kind: EventSuspendApprove, Actor: boss}, status: StatusSuspended},
			{a: Action{Kind: EventHandle, Actor: roadUnit}, err: ErrInvalidAction},
			{a: Action{Kind: EventResume, Actor: roadUnit}, status: StatusHandling},
			{a: Action{Kind: EventHandle, Actor: roadUnit}, status: StatusHandled},
			{a: Action{Kind: EventVerifyFail, Actor: boss}, err: ErrInvalidAction},
			{a: Action{Kind: EventVerifyFail, Actor: boss, Note: "still a hole"}, status: StatusHandling},
			{a: Action{Kind: EventHandle, Actor: roadUnit}, status: StatusHandled},
			{a: Action{Kind: EventVerifyPass, Actor: Actor{Name: "someone", Role: RoleReporter}}, err: ErrForbidden},
			{a: Action{Kind: EventVerifyPass, Actor: patroller}, status: StatusVerified},
			{a: Action{Kind: EventEvaluate, Actor: patroller, Satisfaction: 4}, err: ErrInvalidAction},
			{a: Action{Kind: EventClose, Actor: roadUnit}, err: ErrForbidden},
			{a: Action{Kind: EventClose, Actor: dispatch}, status: StatusClosed},
			{a: Action{Kind: EventEvaluate, Actor: patroller, Satisfaction: 9}, err: ErrInvalidAction},
			{a: Action{Kind: EventEvaluate, Actor: patroller, Satisfaction: 4}, status: StatusClosed},
			{a: Action{Kind: EventEvaluate, Actor: patroller, Satisfaction: 4}, err: ErrInvalidAction},
			{a: Action{Kind: EventNote, Actor: patroller, Note: "thanks"}, err: ErrInvalidAction}}},
		{"supervision by a supervisor only", []step{{a: Action{Kind: EventSupervise, Actor: dispatch}, err: ErrForbidden},
			{a: Action{Kind: EventSupervise, Actor: boss}, status: StatusReceived}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, &memStore{}, &clock{t: t0})
			c := report(t, s, 39.9)
			for i, st := range tc.steps {
				cur, _, _ := s.Get(context.Background(), c.ID)
				st.a.Case, st.a.Version = c.ID, cur.Version
				got, err := s.Act(context.Background(), st.a)
				switch {
				case st.err != nil && !errors.Is(err, st.err):
					t.Fatalf("step %d (%s by %s): err %v, want %v", i, st.a.Kind, st.a.Actor.Name, err, st.err)
				case st.err == nil && err != nil:
					t.Fatalf("step %d (%s by %s): %v", i, st.a.Kind, st.a.Actor.Name, err)
				case st.err == nil && got.Status != st.status:
					t.Fatalf("step %d (%s): status %s, want %s", i, st.a.Kind, got.Status, st.status)
				case st.err != nil:
					if after, _, _ := s.Get(context.Background(), c.ID); after.Version != cur.Version {
						t.Fatalf("step %d: a refused action changed the case to version %d", i, after.Version)
					}
				}
			}
		})
	}
}

// TestReturnCountsAgainstTheDispatcher checks that a return records the
// returning unit and clears the unit for re-routing.
func TestReturnCountsAgainstTheDispatcher(t *testing.T) {
	s := newService(t, &memStore{}, &clock{t: t0})
	c := report(t, s, 39.9)
	do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
	do(t, s, c.ID, Action{Kind: EventDispatch, Actor: dispatch})
	c = do(t, s, c.ID, Action{Kind: EventReturn, Actor: roadUnit, Note: "misrouted"})
	_, evs, _ := s.Get(context.Background(), c.ID)
	ret := evs[len(evs)-1]
	if c.Unit != "" || c.Returns != 1 || c.Dispatcher != "wang" || ret.Unit != "U-ROAD" || ret.From != StatusDispatched || ret.To != StatusRegistered {
		t.Fatalf("case %+v, return event %+v", c, ret)
	}
}

// TestConflict checks optimistic concurrency: an action at a stale version
// fails with the current one and changes nothing.
func TestConflict(t *testing.T) {
	s := newService(t, &memStore{}, &clock{t: t0})
	c := report(t, s, 39.9)
	_, err := s.Act(context.Background(), Action{Case: c.ID, Kind: EventRegister, Version: c.Version, Actor: dispatch})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Act(context.Background(), Action{Case: c.ID, Kind: EventVoid, Version: c.Version, Actor: dispatch, Note: "x"})
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Current != 2 || conflict.Given != 1 {
		t.Fatalf("stale action: %v", err)
	}
}

// TestNotSavedChangesNothing checks "acked means stored": a failing store
// refuses the action, and the case stays as it was.
func TestNotSavedChangesNothing(t *testing.T) {
	store := &memStore{}
	s := newService(t, store, &clock{t: t0})
	c := report(t, s, 39.9)
	store.fail = errors.New("disk on fire")
	_, err := s.Act(context.Background(), Action{Case: c.ID, Kind: EventRegister, Version: c.Version, Actor: dispatch})
	if !errors.Is(err, ErrNotSaved) {
		t.Fatalf("err %v, want ErrNotSaved", err)
	}
	if got, evs, _ := s.Get(context.Background(), c.ID); got.Status != StatusReceived || got.Version != 1 || len(evs) != 1 {
		t.Fatalf("after a failed save: %+v, %d events", got, len(evs))
	}
	if _, _, err := s.Report(context.Background(), Report{Source: SourcePatrol, Actor: patroller, Category: "road", Grid: "G1"}); !errors.Is(err, ErrNotSaved) {
		t.Fatalf("report with a failing store: %v", err)
	}
	if p, _ := s.List(Filter{}); len(p.Cases) != 1 {
		t.Fatalf("a failed report is listed: %d cases", len(p.Cases))
	}
	store.fail = nil
	do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
}

// TestRestart checks that a new service on the same store holds what the
// old one answered.
func TestRestart(t *testing.T) {
	store, clk := &memStore{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
	do(t, s, c.ID, Action{Kind: EventDispatch, Actor: dispatch})
	_ = s.Close()
	s2 := newService(t, store, clk)
	got, evs, err := s2.Get(context.Background(), c.ID)
	if err != nil || got.Status != StatusDispatched || got.Version != 3 || len(evs) != 3 {
		t.Fatalf("after restart: %+v %d events %v", got, len(evs), err)
	}
	do(t, s2, c.ID, Action{Kind: EventSign, Actor: roadUnit})
}

// TestDuplicateAndMerge checks that registering a report near an open case
// of the same category is refused as a possible duplicate, and that a merge
// voids it with the trace on both.
func TestDuplicateAndMerge(t *testing.T) {
	s := newService(t, &memStore{}, &clock{t: t0})
	first := report(t, s, 39.9)
	do(t, s, first.ID, Action{Kind: EventRegister, Actor: dispatch})
	second := report(t, s, 39.9002) // about 22 m north
	far := report(t, s, 39.91)      // about 1.1 km
	do(t, s, far.ID, Action{Kind: EventRegister, Actor: dispatch})
	_, err := s.Act(context.Background(), Action{Case: second.ID, Kind: EventRegister, Version: second.Version, Actor: dispatch})
	var dup *DuplicateError
	if !errors.As(err, &dup) || !slices.Equal(dup.Candidates, []string{first.ID}) {
		t.Fatalf("register of a duplicate: %v", err)
	}
	merged := do(t, s, second.ID, Action{Kind: EventMerge, Actor: dispatch, Into: first.ID})
	if merged.Status != StatusVoided || merged.MergedInto != first.ID {
		t.Fatalf("merged case %+v", merged)
	}
	target, evs, _ := s.Get(context.Background(), first.ID)
	if last := evs[len(evs)-1]; last.Kind != EventMerge || target.Status != StatusRegistered || target.Version != 3 {
		t.Fatalf("target %+v, last event %+v", target, last)
	}
	forced := report(t, s, 39.9001)
	if c := do(t, s, forced.ID, Action{Kind: EventRegister, Actor: dispatch, Force: true}); c.Status != StatusRegistered {
		t.Fatalf("forced registration: %+v", c)
	}
}

// TestDeadlines checks the system's deadline events: one reminder before,
// overdue at the deadline, bounded reminders after, escalation.
func TestDeadlines(t *testing.T) {
	store, clk := &memStore{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
	do(t, s, c.ID, Action{Kind: EventDispatch, Actor: dispatch}) // sign-for due t0+1h
	kinds := func() []EventKind {
		_, evs, _ := s.Get(context.Background(), c.ID)
		var out []EventKind
		for _, ev := range evs[3:] {
			out = append(out, ev.Kind)
		}
		return out
	}
	s.Tick(context.Background())
	if k := kinds(); len(k) != 0 {
		t.Fatalf("events before any deadline: %v", k)
	}
	clk.Add(40 * time.Minute)
	s.Tick(context.Background())
	s.Tick(context.Background())
	if k := kinds(); !slices.Equal(k, []EventKind{EventRemind}) {
		t.Fatalf("20 min before: %v", k)
	}
	clk.Add(21 * time.Minute)
	s.Tick(context.Background())
	if k := kinds(); !slices.Equal(k, []EventKind{EventRemind, EventOverdue}) {
		t.Fatalf("1 min after: %v", k)
	}
	// Every RemindEvery after the deadline a reminder, MaxReminders (3) in
	// all; the escalation EscalateAfter (4 h) after it; then nothing more.
	clk.Add(time.Hour) // due + 2h01
	s.Tick(context.Background())
	clk.Add(2 * time.Hour) // due + 4h01
	s.Tick(context.Background())
	clk.Add(10 * time.Hour)
	s.Tick(context.Background())
	want := []EventKind{EventRemind, EventOverdue, EventRemind, EventRemind, EventEscalate}
	if k := kinds(); !slices.Equal(k, want) {
		t.Fatalf("later: %v, want %v", k, want)
	}
	got, _, _ := s.Get(context.Background(), c.ID)
	if !got.Escalated || !got.Supervised || !slices.Equal(got.Overdue, []string{"sign"}) {
		t.Fatalf("case %+v", got)
	}
	// Signing late is recorded against the missed deadline.
	got = do(t, s, c.ID, Action{Kind: EventSign, Actor: roadUnit})
	_, evs, _ := s.Get(context.Background(), c.ID)
	if sign := evs[len(evs)-1]; sign.OnTime() {
		t.Fatalf("late sign-for on time: %+v", sign)
	}
}

// TestMissedRemindersAreNotReplayed checks that a service down through
// several reminder intervals sends one reminder when it is back, not one
// per interval missed.
func TestMissedRemindersAreNotReplayed(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &memStore{}, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
	do(t, s, c.ID, Action{Kind: EventDispatch, Actor: dispatch})
	clk.Add(11 * time.Hour)
	s.Tick(context.Background())
	clk.Add(time.Hour)
	s.Tick(context.Background())
	_, evs, _ := s.Get(context.Background(), c.ID)
	var kinds []EventKind
	for _, ev := range evs[3:] {
		kinds = append(kinds, ev.Kind)
	}
	if want := []EventKind{EventOverdue, EventRemind, EventEscalate}; !slices.Equal(kinds, want) {
		t.Fatalf("after 11 h down: %v, want %v", kinds, want)
	}
}

// TestSuspensionStopsTheClock checks that a suspension's time is not
// counted against the handling deadline.
func TestSuspensionStopsTheClock(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &memStore{}, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, Action{Kind: EventRegister, Actor: dispatch})
	do(t, s, c.ID, Action{Kind: EventDispatch, Actor: dispatch})
	do(t, s, c.ID, Action{Kind: EventSign, Actor: roadUnit})
	do(t, s, c.ID, Action{Kind: EventSuspendRequest, Actor: roadUnit, Note: "waiting for a permit"})
	clk.Add(4 * time.Hour)
	do(t, s, c.ID, Action{Kind: EventSuspendApprove, Actor: boss}) // 20 h left
	clk.Add(72 * time.Hour)
	s.Tick(context.Background())
	c = do(t, s, c.ID, Action{Kind: EventResume, Actor: boss})
	if want := clk.Now().Add(20 * time.Hour); !c.HandleDue.Equal(want) || c.IsOverdue() {
		t.Fatalf("handle due %v, want %v; overdue %v", c.HandleDue, want, c.Overdue)
	}
}

// TestAlertIntake checks the alert door: a firing alert raises a case the
// system registers and dispatches; the same alert again changes nothing;
// another alert of the device and category joins it; a handled case whose
// condition stays clear verifies itself.
func TestAlertIntake(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &memStore{}, clk)
	ctx := context.Background()
	a := AlertInfo{ID: "A1", Source: SourceAlert, Device: "mh-1", Grid: "G7", Category: "manhole", Summary: "cover tilted", Firing: true}
	if err := s.ObserveAlert(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.ObserveAlert(ctx, a); err != nil {
		t.Fatal(err)
	}
	p, _ := s.List(Filter{})
	if len(p.Cases) != 1 {
		t.Fatalf("%d cases", len(p.Cases))
	}
	c := p.Cases[0]
	if c.Status != StatusDispatched || c.Unit != "U-ROAD" || c.Version != 3 || c.Origin != "A1" || c.Reporter != "mh-1" {
		t.Fatalf("alert case %+v", c)
	}
	a2 := a
	a2.ID = "A2"
	if err := s.ObserveAlert(ctx, a2); err != nil {
		t.Fatal(err)
	}
	c, _, _ = s.Get(ctx, c.ID)
	if c.Version != 4 || !slices.Equal(c.Joined, []string{"A2"}) {
		t.Fatalf("joined case %+v", c)
	}
	do(t, s, c.ID, Action{Kind: EventSign, Actor: roadUnit})
	do(t, s, c.ID, Action{Kind: EventHandle, Actor: roadUnit})
	cleared := a
	cleared.Firing, cleared.ClearedAt = false, clk.Now()
	if err := s.ObserveAlert(ctx, cleared); err != nil {
		t.Fatal(err)
	}
	clk.Add(30 * time.Minute)
	s.Tick(ctx)
	if c, _, _ = s.Get(ctx, c.ID); c.Status != StatusHandled {
		t.Fatalf("verified before ClearFor: %s", c.Status)
	}
	clk.Add(31 * time.Minute)
	s.Tick(ctx)
	c, evs, _ := s.Get(ctx, c.ID)
	if last := evs[len(evs)-1]; c.Status != StatusVerified || last.Kind != EventVerifyPass || last.Actor != "system" {
		t.Fatalf("self-verification: %s, %+v", c.Status, last)
	}
}

// TestHotlineOrigin checks that a ticket handed in twice is one case.
func TestHotlineOrigin(t *testing.T) {
	s := newService(t, &memStore{}, &clock{t: t0})
	r := Report{Source: SourceHotline, Actor: Actor{Name: "hotline", Role: RoleOperator}, Reporter: "caller-88",
		Origin: "12345-0001", Description: "streetlight out", Address: "Nanjing Rd 5"}
	c1, created1, err1 := s.Report(context.Background(), r)
	c2, created2, err2 := s.Report(context.Background(), r)
	if err1 != nil || err2 != nil || !created1 || created2 || c1.ID != c2.ID || c1.Reporter != "caller-88" {
		t.Fatalf("%v %v %v %v %s %s", err1, err2, created1, created2, c1.ID, c2.ID)
	}
	if _, _, err := s.Report(context.Background(), Report{Source: SourceAlert, Actor: patroller, Grid: "G1"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("an alert report from a person: %v", err)
	}
	if _, _, err := s.Report(context.Background(), Report{Source: SourceHotline, Actor: r.Actor, Grid: "G1"}); !errors.Is(err, ErrInvalidAction) {
		t.Fatalf("a ticket without a description: %v", err)
	}
}

// TestListFiltersAndPages checks the filters and that cursor paging visits
// every case once.
func TestListFiltersAndPages(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &memStore{}, clk)
	var ids []string
	for i := range 7 {
		clk.Add(time.Minute)
		ids = append(ids, report(t, s, 39.9+float64(i)).ID)
	}
	do(t, s, ids[2], Action{Kind: EventVoid, Actor: dispatch, Note: "dup"})
	var seen []string
	f := Filter{Limit: 3}
	for {
		p, err := s.List(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Cases {
			seen = append(seen, c.ID)
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("paged %v, want %v", seen, want)
	}
	if p, _ := s.List(Filter{Status: []Status{StatusVoided}}); len(p.Cases) != 1 || p.Cases[0].ID != ids[2] {
		t.Fatalf("status filter: %+v", p.Cases)
	}
	if p, _ := s.List(Filter{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}); len(p.Cases) != 2 {
		t.Fatalf("from/to: %d cases", len(p.Cases))
	}
	if _, err := s.List(Filter{Cursor: "nonsense"}); !errors.Is(err, ErrBadFilter) {
		t.Fatalf("bad cursor: %v", err)
	}
}
