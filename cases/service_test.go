package cases_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
)

// naturalTiming is a Timing in natural time: sign-for within 1 h, handling within
// 24 h, closing within 48 h.
type naturalTiming struct{}

func (naturalTiming) Due(_ string, step cases.Step, from time.Time) time.Time {
	return from.Add(map[cases.Step]time.Duration{cases.StepSign: time.Hour, cases.StepHandle: 24 * time.Hour, cases.StepClose: 48 * time.Hour}[step])
}

func (naturalTiming) Extend(due time.Time, x cases.Limit) (time.Time, error) {
	if x.Unit != cases.NaturalHours {
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
func newService(t *testing.T, store *casestest.Store, clk *clock) *cases.Service {
	t.Helper()
	s := &cases.Service{
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
	patroller = cases.Actor{Name: "li", Role: cases.RoleReporter}
	dispatch  = cases.Actor{Name: "wang", Role: cases.RoleDispatcher}
	roadUnit  = cases.Actor{Name: "road-staff", Role: cases.RoleUnit, Unit: "U-ROAD"}
	lightUnit = cases.Actor{Name: "light-staff", Role: cases.RoleUnit, Unit: "U-LIGHT"}
	boss      = cases.Actor{Name: "zhao", Role: cases.RoleSupervisor}
	viewer    = cases.Actor{Name: "v", Role: cases.RoleViewer}
)

// do takes an action at the case's current version and fails the test on
// error.
func do(t *testing.T, s *cases.Service, id string, a cases.Action) cases.Case {
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

func report(t *testing.T, s *cases.Service, lat float64) cases.Case {
	t.Helper()
	c, created, err := s.Report(context.Background(), cases.Report{Source: cases.SourcePatrol, Actor: patroller,
		Category: "road", Description: "pothole", Location: &cases.Point{Lat: lat, Lon: 116.4}})
	if err != nil || !created {
		t.Fatalf("report: %v (created %v)", err, created)
	}
	return c
}

// TestLifecycleHappyPath walks a patrol report through the whole loop and
// checks the trace: every step an event, versions counting them, the
// deadlines each step is measured against.
func TestLifecycleHappyPath(t *testing.T) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	if c.Status != cases.StatusReceived || c.Grid != "G1" || c.Version != 1 || c.Reporter != "li" {
		t.Fatalf("reported case = %+v", c)
	}
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	if c.Unit != "U-ROAD" || !c.SignDue.Equal(t0.Add(time.Hour)) {
		t.Fatalf("dispatched case = %+v", c)
	}
	clk.Add(10 * time.Minute)
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventSign, Actor: roadUnit})
	clk.Add(2 * time.Hour)
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventHandle, Actor: roadUnit, Note: "filled", Evidence: []string{"sha256:aa"}})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventVerifyPass, Actor: patroller})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventClose, Actor: dispatch})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventEvaluate, Actor: patroller, Satisfaction: 5})
	if c.Status != cases.StatusClosed || c.Version != 8 || c.Satisfaction != 5 || !slices.Equal(c.Evidence, []string{"sha256:aa"}) {
		t.Fatalf("closed case = %+v", c)
	}
	_, evs, _ := s.Get(context.Background(), c.ID)
	var kinds []cases.EventKind
	for i, ev := range evs {
		kinds = append(kinds, ev.Kind)
		if ev.Seq != uint32(i+1) || !ev.OnTime() || ev.Category != "road" || ev.Grid != "G1" {
			t.Errorf("event %d = %+v", i, ev)
		}
	}
	want := []cases.EventKind{cases.EventReceive, cases.EventRegister, cases.EventDispatch, cases.EventSign, cases.EventHandle, cases.EventVerifyPass, cases.EventClose, cases.EventEvaluate}
	if !slices.Equal(kinds, want) {
		t.Fatalf("trace %v, want %v", kinds, want)
	}
	if evs[3].Unit != "U-ROAD" || evs[3].Actor != "road-staff" || evs[3].Role != "unit" || !evs[3].Due.Equal(t0.Add(time.Hour)) {
		t.Errorf("sign event = %+v", evs[3])
	}
	if row, _ := store.Row(c.ID); len(store.Events()) != 8 || row.Version != 8 {
		t.Errorf("store holds %d events, case at version %d", len(store.Events()), row.Version)
	}
}

// TestLifecycleRules is the table of who may take which action in which
// status, and what each exception path leads to.
func TestLifecycleRules(t *testing.T) {
	type step struct {
		a      cases.Action
		err    error        // nil: must succeed
		status cases.Status // after a success
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a viewer cannot register", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: viewer}, err: cases.ErrForbidden}}},
		{"a unit cannot register", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: roadUnit}, err: cases.ErrForbidden}}},
		{"sign before dispatch", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: dispatch}, status: cases.StatusRegistered},
			{a: cases.Action{Kind: cases.EventSign, Actor: roadUnit}, err: cases.ErrForbidden}}},
		{"another unit cannot sign", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: dispatch}, status: cases.StatusRegistered},
			{a: cases.Action{Kind: cases.EventDispatch, Actor: dispatch}, status: cases.StatusDispatched},
			{a: cases.Action{Kind: cases.EventSign, Actor: lightUnit}, err: cases.ErrForbidden}}},
		{"return needs a reason, then re-dispatch", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: dispatch}, status: cases.StatusRegistered},
			{a: cases.Action{Kind: cases.EventDispatch, Actor: dispatch}, status: cases.StatusDispatched},
			{a: cases.Action{Kind: cases.EventReturn, Actor: roadUnit}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventReturn, Actor: roadUnit, Note: "not ours: a lamp"}, status: cases.StatusRegistered},
			{a: cases.Action{Kind: cases.EventDispatch, Actor: dispatch, Unit: "U-LIGHT"}, status: cases.StatusDispatched},
			{a: cases.Action{Kind: cases.EventSign, Actor: lightUnit}, status: cases.StatusHandling}}},
		{"void needs a reason", []step{{a: cases.Action{Kind: cases.EventVoid, Actor: dispatch}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventVoid, Actor: dispatch, Note: "prank"}, status: cases.StatusVoided},
			{a: cases.Action{Kind: cases.EventRegister, Actor: dispatch}, err: cases.ErrInvalidAction}}},
		{"unknown category", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: dispatch, Category: "ufo"}, err: cases.ErrInvalidAction}}},
		{"handling exceptions", []step{{a: cases.Action{Kind: cases.EventRegister, Actor: dispatch}, status: cases.StatusRegistered},
			{a: cases.Action{Kind: cases.EventDispatch, Actor: dispatch}, status: cases.StatusDispatched},
			{a: cases.Action{Kind: cases.EventSign, Actor: roadUnit}, status: cases.StatusHandling},
			{a: cases.Action{Kind: cases.EventExtendApprove, Actor: boss}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventExtendRequest, Actor: roadUnit, Note: "asphalt"}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventExtendRequest, Actor: roadUnit, Note: "asphalt", Extend: &cases.Limit{N: 1, Unit: cases.WorkingDays}}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventExtendRequest, Actor: roadUnit, Note: "asphalt", Extend: &cases.Limit{N: 12, Unit: cases.NaturalHours}}, status: cases.StatusHandling},
			{a: cases.Action{Kind: cases.EventSuspendRequest, Actor: roadUnit, Note: "also"}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventExtendApprove, Actor: roadUnit}, err: cases.ErrForbidden},
			{a: cases.Action{Kind: cases.EventExtendApprove, Actor: dispatch}, err: cases.ErrForbidden},
			{a: cases.Action{Kind: cases.EventExtendApprove, Actor: boss}, status: cases.StatusHandling},
			{a: cases.Action{Kind: cases.EventSuspendRequest, Actor: roadUnit, Note: "court order"}, status: cases.StatusHandling},
			{a: cases.Action{Kind: cases.EventSuspendReject, Actor: boss}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventSuspendApprove, Actor: boss}, status: cases.StatusSuspended},
			{a: cases.Action{Kind: cases.EventHandle, Actor: roadUnit}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventResume, Actor: roadUnit}, status: cases.StatusHandling},
			{a: cases.Action{Kind: cases.EventHandle, Actor: roadUnit}, status: cases.StatusHandled},
			{a: cases.Action{Kind: cases.EventVerifyFail, Actor: boss}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventVerifyFail, Actor: boss, Note: "still a hole"}, status: cases.StatusHandling},
			{a: cases.Action{Kind: cases.EventHandle, Actor: roadUnit}, status: cases.StatusHandled},
			{a: cases.Action{Kind: cases.EventVerifyPass, Actor: cases.Actor{Name: "someone", Role: cases.RoleReporter}}, err: cases.ErrForbidden},
			{a: cases.Action{Kind: cases.EventVerifyPass, Actor: patroller}, status: cases.StatusVerified},
			{a: cases.Action{Kind: cases.EventEvaluate, Actor: patroller, Satisfaction: 4}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventClose, Actor: roadUnit}, err: cases.ErrForbidden},
			{a: cases.Action{Kind: cases.EventClose, Actor: dispatch}, status: cases.StatusClosed},
			{a: cases.Action{Kind: cases.EventEvaluate, Actor: patroller, Satisfaction: 9}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventEvaluate, Actor: patroller, Satisfaction: 4}, status: cases.StatusClosed},
			{a: cases.Action{Kind: cases.EventEvaluate, Actor: patroller, Satisfaction: 4}, err: cases.ErrInvalidAction},
			{a: cases.Action{Kind: cases.EventNote, Actor: patroller, Note: "thanks"}, err: cases.ErrInvalidAction}}},
		{"supervision by a supervisor only", []step{{a: cases.Action{Kind: cases.EventSupervise, Actor: dispatch}, err: cases.ErrForbidden},
			{a: cases.Action{Kind: cases.EventSupervise, Actor: boss}, status: cases.StatusReceived}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, &casestest.Store{}, &clock{t: t0})
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
	s := newService(t, &casestest.Store{}, &clock{t: t0})
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventReturn, Actor: roadUnit, Note: "misrouted"})
	_, evs, _ := s.Get(context.Background(), c.ID)
	ret := evs[len(evs)-1]
	if c.Unit != "" || c.Returns != 1 || c.Dispatcher != "wang" || ret.Unit != "U-ROAD" || ret.From != cases.StatusDispatched || ret.To != cases.StatusRegistered {
		t.Fatalf("case %+v, return event %+v", c, ret)
	}
}

// TestConflict checks optimistic concurrency: an action at a stale version
// fails with the current one and changes nothing.
func TestConflict(t *testing.T) {
	s := newService(t, &casestest.Store{}, &clock{t: t0})
	c := report(t, s, 39.9)
	_, err := s.Act(context.Background(), cases.Action{Case: c.ID, Kind: cases.EventRegister, Version: c.Version, Actor: dispatch})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Act(context.Background(), cases.Action{Case: c.ID, Kind: cases.EventVoid, Version: c.Version, Actor: dispatch, Note: "x"})
	var conflict *cases.ConflictError
	if !errors.As(err, &conflict) || conflict.Current != 2 || conflict.Given != 1 {
		t.Fatalf("stale action: %v", err)
	}
}

// TestNotSavedChangesNothing checks "acked means stored": a failing store
// refuses the action, and the case stays as it was.
func TestNotSavedChangesNothing(t *testing.T) {
	store := &casestest.Store{}
	s := newService(t, store, &clock{t: t0})
	c := report(t, s, 39.9)
	store.Fail(errors.New("disk on fire"))
	_, err := s.Act(context.Background(), cases.Action{Case: c.ID, Kind: cases.EventRegister, Version: c.Version, Actor: dispatch})
	if !errors.Is(err, cases.ErrNotSaved) {
		t.Fatalf("err %v, want cases.ErrNotSaved", err)
	}
	if got, evs, _ := s.Get(context.Background(), c.ID); got.Status != cases.StatusReceived || got.Version != 1 || len(evs) != 1 {
		t.Fatalf("after a failed save: %+v, %d events", got, len(evs))
	}
	if _, _, err := s.Report(context.Background(), cases.Report{Source: cases.SourcePatrol, Actor: patroller, Category: "road", Grid: "G1"}); !errors.Is(err, cases.ErrNotSaved) {
		t.Fatalf("report with a failing store: %v", err)
	}
	if p, _ := s.List(cases.Filter{}); len(p.Cases) != 1 {
		t.Fatalf("a failed report is listed: %d cases", len(p.Cases))
	}
	store.Fail(nil)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
}

// TestRestart checks that a new service on the same store holds what the
// old one answered.
func TestRestart(t *testing.T) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	_ = s.Close()
	s2 := newService(t, store, clk)
	got, evs, err := s2.Get(context.Background(), c.ID)
	if err != nil || got.Status != cases.StatusDispatched || got.Version != 3 || len(evs) != 3 {
		t.Fatalf("after restart: %+v %d events %v", got, len(evs), err)
	}
	do(t, s2, c.ID, cases.Action{Kind: cases.EventSign, Actor: roadUnit})
}

// TestDuplicateAndMerge checks that registering a report near an open case
// of the same category is refused as a possible duplicate, and that a merge
// voids it with the trace on both.
func TestDuplicateAndMerge(t *testing.T) {
	s := newService(t, &casestest.Store{}, &clock{t: t0})
	first := report(t, s, 39.9)
	do(t, s, first.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	second := report(t, s, 39.9002) // about 22 m north
	far := report(t, s, 39.91)      // about 1.1 km
	do(t, s, far.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	_, err := s.Act(context.Background(), cases.Action{Case: second.ID, Kind: cases.EventRegister, Version: second.Version, Actor: dispatch})
	var dup *cases.DuplicateError
	if !errors.As(err, &dup) || !slices.Equal(dup.Candidates, []string{first.ID}) {
		t.Fatalf("register of a duplicate: %v", err)
	}
	merged := do(t, s, second.ID, cases.Action{Kind: cases.EventMerge, Actor: dispatch, Into: first.ID})
	if merged.Status != cases.StatusVoided || merged.MergedInto != first.ID {
		t.Fatalf("merged case %+v", merged)
	}
	target, evs, _ := s.Get(context.Background(), first.ID)
	if last := evs[len(evs)-1]; last.Kind != cases.EventMerge || target.Status != cases.StatusRegistered || target.Version != 3 {
		t.Fatalf("target %+v, last event %+v", target, last)
	}
	forced := report(t, s, 39.9001)
	if c := do(t, s, forced.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch, Force: true}); c.Status != cases.StatusRegistered {
		t.Fatalf("forced registration: %+v", c)
	}
}

// TestDuplicatesByPlaceAndAddress checks the duplicate check at the edge
// of the radius (50 m) in every direction, at latitudes where a degree of
// longitude is short, after a registration moved a case, and by address.
func TestDuplicatesByPlaceAndAddress(t *testing.T) {
	const mPerDeg = 6378137 * math.Pi / 180 // geo.Distance's earth
	ctx := context.Background()
	at := func(t *testing.T, s *cases.Service, p cases.Point, addr string) cases.Case {
		t.Helper()
		r := cases.Report{Source: cases.SourcePatrol, Actor: patroller, Category: "road", Description: "pothole", Address: addr, Grid: "G1"}
		if p != (cases.Point{}) {
			r.Location = &p
		}
		c, _, err := s.Report(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	register := func(s *cases.Service, c cases.Case) []string {
		_, err := s.Act(ctx, cases.Action{Case: c.ID, Kind: cases.EventRegister, Version: c.Version, Actor: dispatch})
		var dup *cases.DuplicateError
		if errors.As(err, &dup) {
			return dup.Candidates
		} else if err != nil {
			t.Fatal(err)
		}
		return nil
	}
	for _, lat := range []float64{0.001, 39.9, 60, 75, -45} {
		for _, bearing := range []float64{0, 45, 90, 180, 270, 315} {
			for _, d := range []float64{45, 56} {
				t.Run(fmt.Sprintf("%g°/%g°/%gm", lat, bearing, d), func(t *testing.T) {
					s := newService(t, &casestest.Store{}, &clock{t: t0})
					first := at(t, s, cases.Point{Lat: lat, Lon: 116.4}, "")
					if got := register(s, first); got != nil {
						t.Fatalf("the first case has duplicates %v", got)
					}
					b := bearing * math.Pi / 180
					p := cases.Point{Lat: lat + d*math.Cos(b)/mPerDeg, Lon: 116.4 + d*math.Sin(b)/(mPerDeg*math.Cos(lat*math.Pi/180))}
					got := register(s, at(t, s, p, ""))
					if want := d < 50; want != slices.Equal(got, []string{first.ID}) {
						t.Fatalf("a case %g m off: duplicates %v", d, got)
					}
				})
			}
		}
	}
	t.Run("moved by its registration", func(t *testing.T) {
		s := newService(t, &casestest.Store{}, &clock{t: t0})
		moved := at(t, s, cases.Point{Lat: 39.9, Lon: 116.4}, "")
		if _, err := s.Act(ctx, cases.Action{Case: moved.ID, Kind: cases.EventRegister, Version: moved.Version, Actor: dispatch,
			Location: &cases.Point{Lat: 39.95, Lon: 116.4}}); err != nil {
			t.Fatal(err)
		}
		if got := register(s, at(t, s, cases.Point{Lat: 39.9, Lon: 116.4}, "")); got != nil {
			t.Fatalf("where the case was: duplicates %v", got)
		}
		if got := register(s, at(t, s, cases.Point{Lat: 39.9501, Lon: 116.4}, "")); !slices.Equal(got, []string{moved.ID}) {
			t.Fatalf("where the case is: duplicates %v", got)
		}
	})
	t.Run("by address", func(t *testing.T) {
		s := newService(t, &casestest.Store{}, &clock{t: t0})
		first := at(t, s, cases.Point{}, "12 Elm Street")
		register(s, first)
		if got := register(s, at(t, s, cases.Point{Lat: 39.9, Lon: 116.4}, " 12 elm street")); !slices.Equal(got, []string{first.ID}) {
			t.Fatalf("same address with a location: duplicates %v", got)
		}
		if got := register(s, at(t, s, cases.Point{}, "14 Elm Street")); got != nil {
			t.Fatalf("another address: duplicates %v", got)
		}
	})
}

// TestDeadlines checks the system's deadline events: one reminder before,
// overdue at the deadline, bounded reminders after, escalation.
func TestDeadlines(t *testing.T) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch}) // sign-for due t0+1h
	kinds := func() []cases.EventKind {
		_, evs, _ := s.Get(context.Background(), c.ID)
		var out []cases.EventKind
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
	if k := kinds(); !slices.Equal(k, []cases.EventKind{cases.EventRemind}) {
		t.Fatalf("20 min before: %v", k)
	}
	clk.Add(21 * time.Minute)
	s.Tick(context.Background())
	if k := kinds(); !slices.Equal(k, []cases.EventKind{cases.EventRemind, cases.EventOverdue}) {
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
	want := []cases.EventKind{cases.EventRemind, cases.EventOverdue, cases.EventRemind, cases.EventRemind, cases.EventEscalate}
	if k := kinds(); !slices.Equal(k, want) {
		t.Fatalf("later: %v, want %v", k, want)
	}
	got, _, _ := s.Get(context.Background(), c.ID)
	if !got.Escalated || !got.Supervised || !slices.Equal(got.Overdue, []string{"sign"}) {
		t.Fatalf("case %+v", got)
	}
	// Signing late is recorded against the missed deadline.
	got = do(t, s, c.ID, cases.Action{Kind: cases.EventSign, Actor: roadUnit})
	_, evs, _ := s.Get(context.Background(), c.ID)
	if sign := evs[len(evs)-1]; sign.OnTime() {
		t.Fatalf("late sign-for on time: %+v", sign)
	}
}

// TestRedispatchStartsItsOwnSignFor checks that a case dispatched again
// after its unit missed the sign-for is reported overdue again when the
// next unit misses its own: each assignment has its deadline.
func TestRedispatchStartsItsOwnSignFor(t *testing.T) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	overdue := func() int {
		n := 0
		for _, ev := range store.Events() {
			if ev.CaseID == c.ID && ev.Kind == cases.EventOverdue && ev.Note == string(cases.StepSign) {
				n++
			}
		}
		return n
	}
	clk.Add(61 * time.Minute)
	s.Tick(context.Background())
	if overdue() != 1 {
		t.Fatalf("%d overdue sign-for events after the first unit's deadline", overdue())
	}
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch, Unit: "U-LIGHT"})
	if c.IsOverdue() {
		t.Fatalf("dispatched again, the case is still overdue: %v", c.Overdue)
	}
	clk.Add(61 * time.Minute)
	s.Tick(context.Background())
	if overdue() != 2 {
		t.Fatalf("%d overdue sign-for events after the second unit's deadline, want 2", overdue())
	}
}

// TestMissedRemindersAreNotReplayed checks that a service down through
// several reminder intervals sends one reminder when it is back, not one
// per interval missed.
func TestMissedRemindersAreNotReplayed(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &casestest.Store{}, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	clk.Add(11 * time.Hour)
	s.Tick(context.Background())
	clk.Add(time.Hour)
	s.Tick(context.Background())
	_, evs, _ := s.Get(context.Background(), c.ID)
	var kinds []cases.EventKind
	for _, ev := range evs[3:] {
		kinds = append(kinds, ev.Kind)
	}
	if want := []cases.EventKind{cases.EventOverdue, cases.EventRemind, cases.EventEscalate}; !slices.Equal(kinds, want) {
		t.Fatalf("after 11 h down: %v, want %v", kinds, want)
	}
}

// TestRefusalNeedsARequest checks that a supervisor refuses only what was
// asked for: a refusal with nothing pending, or of the other kind of
// request, is refused with an error naming what is waiting, and a refusal
// ends the request so that the unit may ask again.
func TestRefusalNeedsARequest(t *testing.T) {
	s := newService(t, &casestest.Store{}, &clock{t: t0})
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventSign, Actor: roadUnit})
	refuse := func(kind cases.EventKind, want string) {
		t.Helper()
		cur, _, _ := s.Get(context.Background(), c.ID)
		_, err := s.Act(context.Background(), cases.Action{Case: c.ID, Version: cur.Version, Kind: kind, Actor: boss, Note: "no"})
		if !errors.Is(err, cases.ErrInvalidAction) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: err %v, want ErrInvalidAction saying %q", kind, err, want)
		}
		if after, _, _ := s.Get(context.Background(), c.ID); after.Version != cur.Version {
			t.Fatalf("%s: a refused refusal changed the case to version %d", kind, after.Version)
		}
	}
	refuse(cases.EventExtendReject, "extend_reject answers a pending extend_request, and none is waiting")
	refuse(cases.EventSuspendReject, "suspend_reject answers a pending suspend_request, and none is waiting")
	do(t, s, c.ID, cases.Action{Kind: cases.EventSuspendRequest, Actor: roadUnit, Note: "court order"})
	refuse(cases.EventExtendReject, "the request waiting is suspend_request")
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventSuspendReject, Actor: boss, Note: "no court order seen"})
	if c.Pending != "" || c.Status != cases.StatusHandling {
		t.Fatalf("after the refusal: pending %q, status %s", c.Pending, c.Status)
	}
	refuse(cases.EventSuspendReject, "none is waiting")
	do(t, s, c.ID, cases.Action{Kind: cases.EventExtendRequest, Actor: roadUnit, Note: "asphalt", Extend: &cases.Limit{N: 12, Unit: cases.NaturalHours}})
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventExtendReject, Actor: boss, Note: "do it today"})
	if c.Pending != "" || c.Extend != nil {
		t.Fatalf("after the refusal: pending %q, extend %v", c.Pending, c.Extend)
	}
	do(t, s, c.ID, cases.Action{Kind: cases.EventExtendRequest, Actor: roadUnit, Note: "rain", Extend: &cases.Limit{N: 6, Unit: cases.NaturalHours}})
}

// TestSuspensionStopsTheClock checks that a suspension's time is not
// counted against the handling deadline.
func TestSuspensionStopsTheClock(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &casestest.Store{}, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventRegister, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventDispatch, Actor: dispatch})
	do(t, s, c.ID, cases.Action{Kind: cases.EventSign, Actor: roadUnit})
	do(t, s, c.ID, cases.Action{Kind: cases.EventSuspendRequest, Actor: roadUnit, Note: "waiting for a permit"})
	clk.Add(4 * time.Hour)
	do(t, s, c.ID, cases.Action{Kind: cases.EventSuspendApprove, Actor: boss}) // 20 h left
	clk.Add(72 * time.Hour)
	s.Tick(context.Background())
	c = do(t, s, c.ID, cases.Action{Kind: cases.EventResume, Actor: boss})
	if want := clk.Now().Add(20 * time.Hour); !c.HandleDue.Equal(want) || c.IsOverdue() {
		t.Fatalf("handle due %v, want %v; overdue %v", c.HandleDue, want, c.Overdue)
	}
}

// TestAlertIntake checks the alert door: a firing alert raises a case the
// system registers and dispatches; the same alert again changes nothing;
// another alert of the device and category joins it; each answers the
// case's id; a handled case verifies itself once all its alerts cleared
// and stayed clear, not while one still fires.
func TestAlertIntake(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &casestest.Store{}, clk)
	ctx := context.Background()
	observe := func(a cases.AlertInfo) string {
		t.Helper()
		id, err := s.ObserveAlert(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := cases.AlertInfo{ID: "A1", Source: cases.SourceAlert, Device: "mh-1", Grid: "G7", Category: "manhole", Summary: "cover tilted", Firing: true, Since: t0}
	first, again := observe(a), observe(a)
	p, _ := s.List(cases.Filter{})
	if len(p.Cases) != 1 {
		t.Fatalf("%d cases", len(p.Cases))
	}
	c := p.Cases[0]
	if c.Status != cases.StatusDispatched || c.Unit != "U-ROAD" || c.Version != 3 || c.Origin != "A1" || c.Reporter != "mh-1" ||
		first != c.ID || again != c.ID {
		t.Fatalf("alert case %+v; ObserveAlert answered %q and %q", c, first, again)
	}
	a2 := a
	a2.ID = "A2"
	if id := observe(a2); id != c.ID {
		t.Fatalf("the joining alert's case: %q, want %s", id, c.ID)
	}
	c, _, _ = s.Get(ctx, c.ID)
	if c.Version != 4 || !slices.Equal(c.Joined, []string{"A2"}) {
		t.Fatalf("joined case %+v", c)
	}
	do(t, s, c.ID, cases.Action{Kind: cases.EventSign, Actor: roadUnit})
	do(t, s, c.ID, cases.Action{Kind: cases.EventHandle, Actor: roadUnit})
	cleared := a
	cleared.Firing, cleared.ClearedAt = false, clk.Now()
	observe(cleared)
	clk.Add(61 * time.Minute)
	s.Tick(ctx)
	if c, _, _ = s.Get(ctx, c.ID); c.Status != cases.StatusHandled {
		t.Fatalf("verified while A2 still fires: %s", c.Status)
	}
	cleared2 := a2
	cleared2.Firing, cleared2.ClearedAt = false, clk.Now()
	observe(cleared2)
	observe(cleared) // a reconciliation tells the first one again
	clk.Add(30 * time.Minute)
	s.Tick(ctx)
	if c, _, _ = s.Get(ctx, c.ID); c.Status != cases.StatusHandled {
		t.Fatalf("verified before ClearFor after the last alert cleared: %s", c.Status)
	}
	clk.Add(31 * time.Minute)
	s.Tick(ctx)
	c, evs, _ := s.Get(ctx, c.ID)
	if last := evs[len(evs)-1]; c.Status != cases.StatusVerified || last.Kind != cases.EventVerifyPass || last.Actor != "system" {
		t.Fatalf("self-verification: %s, %+v", c.Status, last)
	}
	// Closed: the alert seen firing since before the closure raises
	// nothing and still answers its case; firing again after it raises a
	// new case.
	do(t, s, c.ID, cases.Action{Kind: cases.EventClose, Actor: dispatch})
	if id := observe(a); id != c.ID {
		t.Fatalf("the alert of a closed case: %q, want %s", id, c.ID)
	}
	if p, _ := s.List(cases.Filter{}); len(p.Cases) != 1 {
		t.Fatalf("an alert firing since before its case closed raised another: %d cases", len(p.Cases))
	}
	clk.Add(time.Minute)
	a.Since = clk.Now()
	id := observe(a)
	if p, _ := s.List(cases.Filter{Status: []cases.Status{cases.StatusDispatched}}); len(p.Cases) != 1 || p.Cases[0].Origin != "A1" || p.Cases[0].ID != id {
		t.Fatalf("the alert firing again: %+v (answered %q)", p.Cases, id)
	}
}

// savesStore is a casestest.Store that records how many cases each save
// held.
type savesStore struct {
	casestest.Store
	mu    sync.Mutex
	sizes []int
}

func (m *savesStore) SaveCases(ctx context.Context, cs []cases.Case, rev uint64, evs []cases.Event) error {
	m.mu.Lock()
	m.sizes = append(m.sizes, len(cs))
	m.mu.Unlock()
	return m.Store.SaveCases(ctx, cs, rev, evs)
}

// TestObserveAlertsBatch checks the intake of many transitions at once:
// their new cases are stored in one save per cases.MaxAlertBatch, and each
// transition ends as if taken one by one: a second device at the same spot
// is a possible duplicate left for the command centre, a transition of an
// alert or device whose case the batch raised updates or joins that case,
// and a bad one is refused alone.
func TestObserveAlertsBatch(t *testing.T) {
	store := &savesStore{}
	s := &cases.Service{Store: store, Timing: naturalTiming{}, Now: (&clock{t: t0}).Now, TickEvery: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Route: func(string, string) string { return "U-ROAD" }}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	here := &cases.Point{Lat: 34.77, Lon: 111.19}
	fire := func(id, dev string) cases.AlertInfo {
		return cases.AlertInfo{ID: id, Source: cases.SourceAlert, Device: dev, Grid: "G1", Category: "manhole", Summary: "tilted",
			Location: here, Firing: true, Since: t0}
	}
	cleared := fire("A1", "mh-1")
	cleared.Firing, cleared.ClearedAt = false, t0
	bad := fire("A4", "mh-4")
	bad.Grid, bad.Location = "", nil
	out := s.ObserveAlerts(ctx, []cases.AlertInfo{fire("A1", "mh-1"), fire("A2", "mh-2"), fire("A1", "mh-1"), fire("A3", "mh-1"), cleared, bad})
	c1, _, _ := s.Get(ctx, out[0].Case)
	c2, _, _ := s.Get(ctx, out[1].Case)
	switch {
	case c1.Status != cases.StatusDispatched || c1.Origin != "A1":
		t.Fatalf("the first alert's case %+v", c1)
	case c2.Status != cases.StatusReceived || c2.Origin != "A2":
		t.Fatalf("the case of a second device at the same spot is %s, want received (a possible duplicate)", c2.Status)
	case out[2].Case != c1.ID || out[3].Case != c1.ID || out[4].Case != c1.ID || !slices.Equal(c1.Joined, []string{"A3"}):
		t.Fatalf("later transitions answered %+v; the first case joined %v", out[2:5], c1.Joined)
	case !errors.Is(out[5].Err, cases.ErrInvalidAction) || out[5].Case != "":
		t.Fatalf("an alert without a place: %+v", out[5])
	case !slices.Equal(store.sizes, []int{2, 1}):
		t.Fatalf("saves of %v cases, want both new cases in one, then the join", store.sizes)
	}
	for _, o := range out[:5] {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
	}
	store.sizes = nil
	flood := make([]cases.AlertInfo, 2*cases.MaxAlertBatch+10)
	for i := range flood {
		flood[i] = fire(fmt.Sprintf("F%d", i), fmt.Sprintf("dev-%d", i))
		flood[i].Location = &cases.Point{Lat: 30 + float64(i)*0.01, Lon: 111}
	}
	for i, o := range s.ObserveAlerts(ctx, flood) {
		if c, _, err := s.Get(ctx, o.Case); o.Err != nil || err != nil || c.Status != cases.StatusDispatched {
			t.Fatalf("flood alert %d: %+v, case %s (%v)", i, o, c.Status, err)
		}
	}
	if !slices.Equal(store.sizes, []int{cases.MaxAlertBatch, cases.MaxAlertBatch, 10}) {
		t.Fatalf("a flood of %d alerts saved as %v", len(flood), store.sizes)
	}
}

// TestHotlineOrigin checks that a ticket handed in twice is one case.
func TestHotlineOrigin(t *testing.T) {
	s := newService(t, &casestest.Store{}, &clock{t: t0})
	r := cases.Report{Source: cases.SourceHotline, Actor: cases.Actor{Name: "hotline", Role: cases.RoleOperator}, Reporter: "caller-88",
		Origin: "12345-0001", Description: "streetlight out", Address: "Nanjing Rd 5"}
	c1, created1, err1 := s.Report(context.Background(), r)
	c2, created2, err2 := s.Report(context.Background(), r)
	if err1 != nil || err2 != nil || !created1 || created2 || c1.ID != c2.ID || c1.Reporter != "caller-88" {
		t.Fatalf("%v %v %v %v %s %s", err1, err2, created1, created2, c1.ID, c2.ID)
	}
	if _, _, err := s.Report(context.Background(), cases.Report{Source: cases.SourceAlert, Actor: patroller, Grid: "G1"}); !errors.Is(err, cases.ErrForbidden) {
		t.Fatalf("an alert report from a person: %v", err)
	}
	if _, _, err := s.Report(context.Background(), cases.Report{Source: cases.SourceHotline, Actor: r.Actor, Grid: "G1"}); !errors.Is(err, cases.ErrInvalidAction) {
		t.Fatalf("a ticket without a description: %v", err)
	}
}

// TestListFiltersAndPages checks the filters and that cursor paging visits
// every case once.
func TestListFiltersAndPages(t *testing.T) {
	clk := &clock{t: t0}
	s := newService(t, &casestest.Store{}, clk)
	var ids []string
	for i := range 7 {
		clk.Add(time.Minute)
		ids = append(ids, report(t, s, 39.9+float64(i)).ID)
	}
	do(t, s, ids[2], cases.Action{Kind: cases.EventVoid, Actor: dispatch, Note: "dup"})
	var seen []string
	f := cases.Filter{Limit: 3}
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
	if p, _ := s.List(cases.Filter{Status: []cases.Status{cases.StatusVoided}}); len(p.Cases) != 1 || p.Cases[0].ID != ids[2] {
		t.Fatalf("status filter: %+v", p.Cases)
	}
	if p, _ := s.List(cases.Filter{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}); len(p.Cases) != 2 {
		t.Fatalf("from/to: %d cases", len(p.Cases))
	}
	if _, err := s.List(cases.Filter{Cursor: "nonsense"}); !errors.Is(err, cases.ErrBadFilter) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// TestClosedCasesLeaveMemory checks that a case closed for longer than
// KeepClosed leaves the list but is still found by id, from the Store.
func TestClosedCasesLeaveMemory(t *testing.T) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	s := newService(t, store, clk)
	c := report(t, s, 39.9)
	do(t, s, c.ID, cases.Action{Kind: cases.EventVoid, Actor: dispatch, Note: "prank"})
	clk.Add(cases.DefaultKeepClosed - time.Minute)
	s.Tick(context.Background())
	if p, _ := s.List(cases.Filter{}); len(p.Cases) != 1 {
		t.Fatalf("before KeepClosed: %d cases listed", len(p.Cases))
	}
	clk.Add(2 * time.Minute)
	s.Tick(context.Background())
	if p, _ := s.List(cases.Filter{}); len(p.Cases) != 0 {
		t.Fatalf("after KeepClosed: %d cases listed", len(p.Cases))
	}
	if got, evs, err := s.Get(context.Background(), c.ID); err != nil || got.Status != cases.StatusVoided || len(evs) != 2 {
		t.Fatalf("get after KeepClosed: %+v %d %v", got, len(evs), err)
	}
}

// TestCasesGauge checks the gauge of the cases held, by status and
// overdue.
func TestCasesGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := &clock{t: t0}
	s := &cases.Service{Store: &casestest.Store{}, Timing: naturalTiming{}, Now: clk.Now, Registerer: reg,
		Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		report(t, s, 39.9)
	}
	want := "# HELP gridwatch_cases Cases held in memory (open, and closed or voided within KeepClosed), by status and overdue.\n" +
		"# TYPE gridwatch_cases gauge\ngridwatch_cases{overdue=\"false\",status=\"received\"} 2\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gridwatch_cases"); err != nil {
		t.Fatal(err)
	}
}

// TestCaseIDDate checks that a case id carries the date received in the
// service's timezone: 01:00 in Shanghai is the day before in UTC.
func TestCaseIDDate(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	clk := &clock{t: time.Date(2026, 3, 2, 1, 0, 0, 0, cst)}
	s := &cases.Service{Store: &casestest.Store{}, Timing: naturalTiming{}, Now: clk.Now, Location: cst, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := report(t, s, 39.9)
	if !strings.HasPrefix(c.ID, "C20260302-") || len(c.ID) != len("C20260302-")+8 {
		t.Fatalf("id %s, want C20260302- and 8 characters", c.ID)
	}
}
