package simulation_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

var cst = func() *time.Location {
	l, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return l
}()

// The simulated month runs from Monday 2026-04-20 to 2026-05-20 in
// Shanghai, across Labour Day (May 1–5 off) and its make-up Saturday, May 9.
var (
	simStart = time.Date(2026, 4, 20, 0, 0, 0, 0, cst)
	simEnd   = time.Date(2026, 5, 20, 0, 0, 0, 0, cst)
)

// The test's own business calendar, minute by minute: it shares no code
// with cases.Calendar.
func workday(t time.Time) bool {
	switch t.In(cst).Format(time.DateOnly) {
	case "2026-05-01", "2026-05-02", "2026-05-03", "2026-05-04", "2026-05-05":
		return false
	case "2026-05-09":
		return true
	}
	wd := t.In(cst).Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// workingMinute reports whether the minute starting at t is working time:
// 09:00–12:00 and 13:30–17:30 of a workday.
func workingMinute(t time.Time) bool {
	if !workday(t) {
		return false
	}
	l := t.In(cst)
	m := l.Hour()*60 + l.Minute()
	return m >= 9*60 && m < 12*60 || m >= 13*60+30 && m < 17*60+30
}

// nextWorking returns the first working minute at or after t.
func nextWorking(t time.Time) time.Time {
	for !workingMinute(t) {
		t = t.Add(time.Minute)
	}
	return t
}

// lim is a time limit: n of "wh" (working hours), "wd" (working days of 7
// hours) or "nh" (natural hours).
type lim struct {
	n    float64
	unit string
}

// after returns when l, started at t (a whole minute), runs out.
func (l lim) after(t time.Time) time.Time {
	if l.unit == "nh" {
		return t.Add(time.Duration(l.n * float64(time.Hour)))
	}
	minutes := int(l.n * 60)
	if l.unit == "wd" {
		minutes = int(l.n * 420)
	}
	n := 0
	for m := t; ; m = m.Add(time.Minute) {
		if workingMinute(m) {
			if n++; n == minutes {
				return m.Add(time.Minute)
			}
		}
	}
}

// catSpec is what the script knows of a category: its time limits (sign,
// handle, close), the unit category routing it, and how long handling
// takes in the script.
type catSpec struct {
	limits [3]lim
	route  string
	work   int // minutes of handling, at most
}

var catSpecs = map[string]catSpec{
	"E0101": {[3]lim{{0.5, "wh"}, {2, "wh"}, {1, "wd"}}, "sanitation", 150}, // 暴露垃圾
	"E0302": {[3]lim{{0.5, "wh"}, {2, "wd"}, {5, "wd"}}, "municipal", 1500}, // 道路破损
	"E0403": {[3]lim{{0.5, "nh"}, {4, "nh"}, {24, "nh"}}, "water", 300},     // 道路积水, an emergency
	"C0150": {[3]lim{{0.5, "wh"}, {4, "wh"}, {2, "wd"}}, "municipal", 300},  // 井盖
	"C0201": {[3]lim{{0.5, "wh"}, {1, "wd"}, {3, "wd"}}, "lighting", 600},   // 路灯
}

var extension = lim{1, "wd"}

// unitFor routes a unit category in a grid: 城管 per district, one unit for
// each other category.
func unitFor(route, grid string) string {
	if route == "municipal" {
		return "cg-" + strings.ToLower(grid[:3])
	}
	return route
}

var grids = []string{"D01-S01-G01", "D01-S01-G02", "D02-S01-G01", "D02-S02-G03"}

var (
	operator   = cases.Actor{Name: "op-1", Role: cases.RoleOperator}
	reporter   = cases.Actor{Name: "gm-07", Role: cases.RoleReporter}
	supervisor = cases.Actor{Name: "sup-1", Role: cases.RoleSupervisor}
)

func unitStaff(unit string) cases.Actor {
	return cases.Actor{Name: "staff-" + unit, Role: cases.RoleUnit, Unit: unit}
}

func dispatcher(i int) cases.Actor {
	return cases.Actor{Name: fmt.Sprintf("disp-%d", i%2), Role: cases.RoleDispatcher}
}

// assignment is the ground truth of one dispatch, kept by the script.
type assignment struct {
	unit, grid, dispatcher string
	dispatched             time.Time
	signed, signOK         bool
	signedAt               time.Time
	returned               bool
	nextUnit               string
	handles                int
	lastHandle             time.Time
	lastHandleOK           bool
	fails                  int
	extended               bool
	closed, closeOK        bool
	satSum, satN           int
	overdue                bool
	// signLate, handleLate and closeLate: the deadline of the step
	// passed while the step was pending with this assignment.
	signLate, handleLate, closeLate bool
}

// simCase is a case of the script: what the test sent and what it
// concludes from it, never from gridwatch's events.
type simCase struct {
	n        int
	id       string
	source   cases.Source
	category string
	grid     string
	alert    string
	// joined is the second alert of the device that joined the case, if
	// any: the case verifies itself only once both cleared.
	joined string
	device string
	status cases.Status
	// The deadlines in force, by the test's calendar.
	signDue, handleDue, closeDue time.Time
	closeRunning, closePassed    bool
	clearedAt                    time.Time
	cur                          *assignment
	all                          []*assignment
}

func (c *simCase) spec() catSpec { return catSpecs[c.category] }

// clock is the fake clock of the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// step is one scripted action at a minute.
type step struct {
	at   time.Time
	c    *simCase
	seq  int
	name string
	do   func(t *testing.T, ctx context.Context, c *simCase, at time.Time)
}

// sim holds the service under test and the script.
type sim struct {
	svc   *cases.Service
	cats  *cases.Categories
	steps []step
	cases []*simCase
}

// act takes an action on c at its current version (the system's deadline
// events move it, as a person's console reloads it) and moves the script's
// status of c to want (empty: unchanged); the service must agree.
func (s *sim) act(t *testing.T, ctx context.Context, c *simCase, a cases.Action, want cases.Status) {
	t.Helper()
	cur, _, err := s.svc.Get(ctx, c.id)
	if err != nil {
		t.Fatalf("case %d: %v", c.n, err)
	}
	a.Case, a.Version = c.id, cur.Version
	got, err := s.svc.Act(ctx, a)
	if err != nil {
		t.Fatalf("case %d (%s) %s: %v", c.n, c.category, a.Kind, err)
	}
	if want != "" {
		c.status = want
	}
	if got.Status != c.status {
		t.Fatalf("case %d (%s) %s: the service has it %s, the script %s", c.n, c.category, a.Kind, got.Status, c.status)
	}
}

func (c *simCase) dispatchTo(unit, by string, at time.Time) {
	if c.cur != nil && c.cur.returned {
		c.cur.nextUnit = unit
	}
	c.cur = &assignment{unit: unit, grid: c.grid, dispatcher: by, dispatched: at}
	c.all = append(c.all, c.cur)
	c.signDue = c.spec().limits[0].after(at)
	c.status = cases.StatusDispatched
}

func (c *simCase) startClose(at time.Time) {
	c.closeDue, c.closeRunning = c.spec().limits[2].after(at), true
}

// tick is the test's view of the deadlines at minute m, before the
// minute's actions: a deadline in force that m is past makes the
// assignment overdue; the closing deadline passes once, against the
// assignment of that moment.
func (c *simCase) tick(m time.Time) {
	switch c.status {
	case cases.StatusClosed, cases.StatusVoided, cases.StatusReceived:
		return
	case cases.StatusDispatched:
		if m.After(c.signDue) {
			c.cur.overdue, c.cur.signLate = true, true
		}
	case cases.StatusHandling:
		if m.After(c.handleDue) {
			c.cur.overdue, c.cur.handleLate = true, true
		}
	case cases.StatusHandled:
		if !c.clearedAt.IsZero() && !m.Before(c.clearedAt.Add(time.Hour)) {
			c.status = cases.StatusVerified // the service verifies a sensor case that stayed clear
		}
	}
	if c.closeRunning && !c.closePassed && m.After(c.closeDue) {
		c.closePassed = true
		if c.cur != nil {
			c.cur.overdue, c.cur.closeLate = true, true
		}
	}
}

func u(r *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo+r.IntN(hi-lo+1)) * time.Minute
}

// script writes the month: sensor cases from devices with injected faults
// (manhole covers, underpass water levels, streetlights), patrol reports,
// hotline tickets and operator cases; some misrouted and returned, some
// returned wrongly, extensions, failed verifications, a lighting unit that
// signs late, evaluations of hotline cases.
func (s *sim) script(r *rand.Rand) {
	type kind struct {
		source        cases.Source
		category      string
		devType, rule string
		n             int
	}
	for _, k := range []kind{
		{cases.SourceAlert, "", "manhole_cover", "manhole_cover_displaced", 40},
		{cases.SourceAlert, "", "water_level", "underpass_flooding", 20},
		{cases.SourceAlert, "", "streetlight", "streetlight_lamp_failure", 25},
		{cases.SourcePatrol, "C0201", "", "", 20},
		{cases.SourcePatrol, "E0101", "", "", 30},
		{cases.SourcePatrol, "E0302", "", "", 20},
		{cases.SourceHotline, "E0101", "", "", 20},
		{cases.SourceHotline, "E0302", "", "", 15},
		{cases.SourceHotline, "E0403", "", "", 10},
		{cases.SourceOperator, "E0302", "", "", 10},
	} {
		for i := 0; i < k.n; i++ {
			c := &simCase{n: len(s.cases), source: k.source, category: k.category, grid: grids[r.IntN(len(grids))]}
			if k.source == cases.SourceAlert {
				c.category = s.cats.ForDevice(k.devType, k.rule).Code
				c.device = fmt.Sprintf("%s-%03d", k.devType, i)
				c.alert = fmt.Sprintf("alert-%d", c.n)
			}
			s.cases = append(s.cases, c)
			s.scriptCase(r, c)
		}
	}
}

func (s *sim) scriptCase(r *rand.Rand, c *simCase) {
	var last time.Time
	add := func(at time.Time, name string, do func(*testing.T, context.Context, *simCase, time.Time)) time.Time {
		at = at.Truncate(time.Minute)
		if !at.After(last) {
			at = last.Add(time.Minute)
		}
		last = at
		s.steps = append(s.steps, step{at: at, c: c, seq: len(s.steps), name: name, do: do})
		return at
	}
	spec := catSpecs[c.category]
	right := unitFor(spec.route, c.grid)
	slow := right == "lighting" // the lighting unit signs for late
	start := simStart.Add(u(r, 0, 27*24*60))
	if c.source == cases.SourcePatrol {
		start = nextWorking(start)
	}
	t := add(start, "intake", s.intake)
	if c.source == cases.SourceAlert {
		if r.IntN(5) == 0 { // a second alert of the device joins the case
			c.joined = c.alert + "-again"
			add(t.Add(time.Minute), "join", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
				s.observe(tt, ctx, c, c.joined, true, at)
			})
		}
	} else {
		if r.IntN(20) == 0 {
			add(t.Add(u(r, 5, 60)), "void", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
				s.act(tt, ctx, c, cases.Action{Kind: cases.EventVoid, Actor: operator, Note: "not a city matter"}, cases.StatusVoided)
			})
			return
		}
		t = add(t.Add(u(r, 5, 60)), "register", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.act(tt, ctx, c, cases.Action{Kind: cases.EventRegister, Actor: operator, Force: true}, cases.StatusRegistered)
			c.startClose(at)
		})
		disp := dispatcher(c.n)
		dispatch := func(unit string) func(*testing.T, context.Context, *simCase, time.Time) {
			return func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
				c.dispatchTo(unit, disp.Name, at)
				s.act(tt, ctx, c, cases.Action{Kind: cases.EventDispatch, Actor: disp, Unit: unit}, "")
			}
		}
		ret := func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.act(tt, ctx, c, cases.Action{Kind: cases.EventReturn, Actor: unitStaff(c.cur.unit), Note: "not ours"}, cases.StatusRegistered)
			c.cur.returned = true
		}
		if r.IntN(8) == 0 { // misrouted: the wrong unit returns it
			wrong := "sanitation"
			if right == wrong {
				wrong = "cg-d01"
			}
			t = add(t.Add(u(r, 5, 30)), "dispatch (wrong)", dispatch(wrong))
			t = add(nextWorking(t).Add(u(r, 10, 60)), "return (misrouted)", ret)
		}
		t = add(t.Add(u(r, 5, 30)), "dispatch", dispatch(right))
		if !slow && r.IntN(12) == 0 { // returned wrongly: it comes back
			t = add(nextWorking(t).Add(u(r, 5, 20)), "return (wrong)", ret)
			t = add(t.Add(u(r, 5, 30)), "dispatch again", dispatch(right))
		}
	}
	signDelay := u(r, 0, 45)
	if slow {
		signDelay = u(r, 90, 300)
	}
	t = add(nextWorking(t).Add(signDelay), "sign", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
		s.act(tt, ctx, c, cases.Action{Kind: cases.EventSign, Actor: unitStaff(c.cur.unit)}, cases.StatusHandling)
		c.cur.signed, c.cur.signedAt, c.cur.signOK = true, at, !at.After(c.signDue)
		c.handleDue = c.spec().limits[1].after(at)
	})
	if r.IntN(7) == 0 {
		t = add(t.Add(u(r, 10, 60)), "extend request", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.act(tt, ctx, c, cases.Action{Kind: cases.EventExtendRequest, Actor: unitStaff(c.cur.unit), Note: "parts on order",
				Extend: &cases.Limit{N: 1, Unit: cases.WorkingDays}}, "")
		})
		t = add(t.Add(u(r, 10, 120)), "extend approve", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.act(tt, ctx, c, cases.Action{Kind: cases.EventExtendApprove, Actor: supervisor}, "")
			c.handleDue, c.cur.extended = extension.after(c.handleDue), true
		})
	}
	handle := func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
		s.act(tt, ctx, c, cases.Action{Kind: cases.EventHandle, Actor: unitStaff(c.cur.unit), Note: "done"}, cases.StatusHandled)
		c.cur.handles++
		c.cur.lastHandle, c.cur.lastHandleOK = at, !at.After(c.handleDue)
	}
	t = add(nextWorking(t).Add(u(r, 30, spec.work)), "handle", handle)
	switch {
	case c.source == cases.SourceAlert && r.IntN(2) == 0: // the condition clears: the case verifies itself
		t = add(t.Add(time.Minute), "clear", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.observe(tt, ctx, c, c.alert, false, at)
			if c.joined != "" {
				s.observe(tt, ctx, c, c.joined, false, at)
			}
			c.clearedAt = at
		})
		t = t.Add(time.Hour)
	default:
		if r.IntN(6) == 0 {
			t = add(t.Add(u(r, 10, 240)), "verify fail", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
				s.act(tt, ctx, c, cases.Action{Kind: cases.EventVerifyFail, Actor: supervisor, Note: "still broken"}, cases.StatusHandling)
				c.cur.fails++
				c.handleDue = c.spec().limits[1].after(at)
			})
			t = add(nextWorking(t).Add(u(r, 30, spec.work)), "handle again", handle)
		}
		t = add(t.Add(u(r, 10, 240)), "verify pass", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.act(tt, ctx, c, cases.Action{Kind: cases.EventVerifyPass, Actor: supervisor}, cases.StatusVerified)
		})
	}
	closeDelay := u(r, 10, 600)
	if slow {
		closeDelay = u(r, 2500, 9000)
	}
	t = add(t.Add(closeDelay), "close", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
		s.act(tt, ctx, c, cases.Action{Kind: cases.EventClose, Actor: operator}, cases.StatusClosed)
		c.cur.closed, c.cur.closeOK = true, !at.After(c.closeDue)
		if !c.cur.closeOK {
			c.cur.overdue = true
		}
	})
	if c.source == cases.SourceHotline && r.IntN(5) != 0 {
		sat := 1 + r.IntN(5)
		add(t.Add(u(r, 60, 1440)), "evaluate", func(tt *testing.T, ctx context.Context, c *simCase, at time.Time) {
			s.act(tt, ctx, c, cases.Action{Kind: cases.EventEvaluate, Actor: operator, Satisfaction: uint8(sat)}, "")
			c.cur.satSum += sat
			c.cur.satN++
		})
	}
}

// intake hands the case in: an alert through ObserveAlert (registered and
// dispatched by the system at once), the others as reports.
func (s *sim) intake(t *testing.T, ctx context.Context, c *simCase, at time.Time) {
	t.Helper()
	var r cases.Report
	switch c.source {
	case cases.SourceAlert:
		s.observe(t, ctx, c, c.alert, true, at)
		r = cases.Report{Source: c.source, Actor: cases.System, Origin: c.alert, Grid: c.grid} // the case the alert raised
	case cases.SourcePatrol:
		r = cases.Report{Source: c.source, Actor: reporter, Category: c.category, Grid: c.grid, Description: "seen on patrol"}
	case cases.SourceHotline:
		r = cases.Report{Source: c.source, Actor: operator, Reporter: fmt.Sprintf("caller-%d", c.n), Origin: fmt.Sprintf("T%06d", c.n),
			Category: c.category, Grid: c.grid, Description: "a citizen calls"}
	default:
		r = cases.Report{Source: c.source, Actor: operator, Category: c.category, Grid: c.grid, Description: "seen on camera"}
	}
	got, created, err := s.svc.Report(ctx, r)
	if err != nil || created == (c.source == cases.SourceAlert) {
		t.Fatalf("case %d: report: created %v, %v", c.n, created, err)
	}
	c.id, c.status = got.ID, cases.StatusReceived
	if c.source == cases.SourceAlert { // registered and dispatched by the system
		c.startClose(at)
		c.dispatchTo(unitFor(c.spec().route, c.grid), cases.System.Name, at)
	}
	if got.Status != c.status {
		t.Fatalf("case %d: reported, the service has it %s, the script %s", c.n, got.Status, c.status)
	}
}

func (s *sim) observe(t *testing.T, ctx context.Context, c *simCase, alert string, firing bool, at time.Time) {
	t.Helper()
	a := cases.AlertInfo{ID: alert, Source: cases.SourceAlert, Device: c.device, Grid: c.grid, Category: c.category,
		Summary: "fault injected", Firing: firing, Since: at}
	if !firing {
		a.ClearedAt = at
	}
	if _, err := s.svc.ObserveAlert(ctx, a); err != nil {
		t.Fatalf("case %d: alert %s: %v", c.n, alert, err)
	}
}

// truth tallies the script's assignments dispatched in [from, to) by key.
func (s *sim) truth(from, to time.Time, key func(*assignment) string) map[string]cases.Tally {
	out := map[string]cases.Tally{}
	for _, c := range s.cases {
		for j, a := range c.all {
			if a.dispatched.Before(from) || !a.dispatched.Before(to) {
				continue
			}
			// Over: returned, closed, or followed by another dispatch.
			over := a.returned || a.closed || j < len(c.all)-1
			k := key(a)
			tl := out[k]
			tl.Key = k
			tl.Received++
			misrouted := a.returned && a.nextUnit != a.unit
			switch {
			case misrouted:
				tl.Misrouted++
			case a.returned:
				tl.WrongReturns++
			}
			if a.signed {
				tl.Signed++
				tl.SignTime += a.signedAt.Sub(a.dispatched)
				if a.signOK {
					tl.SignedOnTime++
				}
			}
			if a.handles > 0 {
				tl.Handled++
				tl.HandleTime += a.lastHandle.Sub(a.dispatched)
				if a.lastHandleOK {
					tl.HandledOnTime++
				}
			}
			if a.fails > 0 {
				tl.Reworked++
				tl.Reworks += a.fails
			}
			if a.extended {
				tl.Extended++
			}
			if a.closed {
				tl.Closed++
				if a.closeOK {
					tl.ClosedOnTime++
				}
			}
			if a.overdue && !misrouted {
				tl.Overdue++
			}
			if !misrouted {
				tl.SignSettled += b2i(a.signed || a.signLate || over)
				tl.HandleSettled += b2i(a.handles > 0 || a.handleLate || over)
				tl.CloseSettled += b2i(a.closed || a.closeLate || over)
				tl.ExtendSettled += b2i(a.handles > 0 || a.handleLate || over || a.extended)
			}
			tl.ReturnSettled += b2i(a.signed || over)
			tl.SatisfactionSum += a.satSum
			tl.SatisfactionN += a.satN
			out[k] = tl
		}
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// expected is the test's own evaluation of a tally: the composite with the
// default weights and the unit score with the default points.
func expected(tl cases.Tally) (composite float64, ok bool, score float64, band string) {
	var sum, w float64
	add := func(weight, num, den float64, invert bool) {
		if den <= 0 {
			return
		}
		v := num / den
		if invert {
			v = 1 - v
		}
		sum += weight * v
		w += weight
	}
	add(0.10, float64(tl.SignedOnTime), float64(tl.SignSettled), false)
	add(0.10, float64(tl.Handled), float64(tl.HandleSettled), false)
	add(0.25, float64(tl.HandledOnTime), float64(tl.HandleSettled), false)
	add(0.10, float64(tl.Closed), float64(tl.CloseSettled), false)
	add(0.20, float64(tl.ClosedOnTime), float64(tl.CloseSettled), false)
	add(0.10, float64(tl.Reworked), float64(tl.Handled), true)
	add(0.05, float64(tl.Extended), float64(tl.ExtendSettled), true)
	if tl.SatisfactionN > 0 {
		add(0.10, float64(tl.SatisfactionSum)/float64(tl.SatisfactionN)-1, 4, false)
	}
	score = 1000 + float64(tl.SignedOnTime) + 2*float64(tl.ClosedOnTime) - 5*float64(tl.Overdue) - 3*float64(tl.Reworks) - 5*float64(tl.WrongReturns)
	switch {
	case score >= 1000:
		band = "优秀 excellent"
	case score >= 900:
		band = "良好 good"
	case score >= 800:
		band = "合格 pass"
	default:
		band = cases.CallInBand
	}
	if w == 0 {
		return 0, false, score, band
	}
	return 100 * sum / w, true, score, band
}

// TestSimulatedMonthIntegration runs a month of a city through the case
// loop with a fake clock, ticking the deadlines every minute, stores the
// trace in ClickHouse and checks every figure of the evaluation against
// the ground truth of the script.
func TestSimulatedMonthIntegration(t *testing.T) {
	addr, database := storagetest.Database(t) // skips under -short
	ctx := context.Background()
	cats := cases.DefaultCategories()
	for code, spec := range catSpecs {
		c, ok := cats.Get(code)
		got := [3]cases.Limit{c.Limits.SignFor, c.Limits.Handle, c.Limits.Close}
		units := map[string]cases.LimitUnit{"wh": cases.WorkingHours, "wd": cases.WorkingDays, "nh": cases.NaturalHours}
		for i, l := range spec.limits {
			if !ok || got[i] != (cases.Limit{N: l.n, Unit: units[l.unit]}) || c.Route != spec.route {
				t.Fatalf("the shipped category %s is %+v; the script assumes %+v", code, c, spec)
			}
		}
	}
	clk := &clock{t: simStart}
	mem := &casestest.Store{}
	s := &sim{cats: cats, svc: &cases.Service{
		Store:  mem,
		Timing: cases.Schedule{Calendar: cases.DefaultCalendar(), Categories: cats},
		Category: func(code string) (string, bool) {
			c, ok := cats.Get(code)
			return c.Route, ok
		},
		Route:        unitFor,
		Now:          clk.Now,
		TickEvery:    24 * time.Hour, // the test ticks, every simulated minute
		ClearFor:     time.Hour,
		KeepClosed:   90 * 24 * time.Hour,
		MaxReminders: 1,
		Logger:       slog.New(slog.DiscardHandler),
	}}
	if err := s.svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.svc.Close()
	s.script(rand.New(rand.NewPCG(11, 2026)))
	slices.SortFunc(s.steps, func(a, b step) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.seq, b.seq)) })

	next := 0
	for m := simStart; m.Before(simEnd); m = m.Add(time.Minute) {
		clk.set(m)
		s.svc.Tick(ctx)
		for _, c := range s.cases {
			c.tick(m)
		}
		for ; next < len(s.steps) && !s.steps[next].at.After(m); next++ {
			st := s.steps[next]
			st.do(t, ctx, st.c, m)
		}
	}
	t.Logf("%d cases, %d scripted actions run (%d after the month), %d events stored", len(s.cases), next, len(s.steps)-next, len(mem.Events()))

	// The trace goes to ClickHouse through the real store.
	db, err := storage.Open(ctx, storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var rows []cases.Case
	for _, c := range s.cases {
		row, ok := mem.Row(c.id)
		if !ok {
			t.Fatalf("case %d has no row", c.n)
		}
		rows = append(rows, row)
	}
	if err := db.SaveCases(ctx, rows, 1, mem.Events()); err != nil {
		t.Fatal(err)
	}

	byUnit := func(a *assignment) string { return a.unit }
	mid := time.Date(2026, 5, 1, 0, 0, 0, 0, cst)
	for _, c := range []struct {
		name     string
		by       storage.CaseStatsBy
		from, to time.Time
		key      func(*assignment) string
	}{
		{"units", storage.CaseStatsByUnit, simStart, simEnd, byUnit},
		{"units before Labour Day", storage.CaseStatsByUnit, simStart, mid, byUnit},
		{"units from Labour Day", storage.CaseStatsByUnit, mid, simEnd, byUnit},
		{"grids", storage.CaseStatsByGrid, simStart, simEnd, func(a *assignment) string { return a.grid }},
		{"dispatchers", storage.CaseStatsByDispatcher, simStart, simEnd, func(a *assignment) string { return a.dispatcher }},
	} {
		want := s.truth(c.from, c.to, c.key)
		got, err := db.CaseTallies(ctx, c.by, c.from, c.to, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d keys, want %d: %v", c.name, len(got), len(want), got)
		}
		for _, g := range got {
			if w := want[g.Key]; g != w {
				t.Errorf("%s: %s\n got %+v\nwant %+v", c.name, g.Key, g, w)
			}
		}
		if c.name != "units" {
			continue
		}
		// The evaluation of the units: composite, score, band, call-in, rank.
		res := cases.Evaluation{}.Evaluate(got, cases.ByScore, false)
		var pending [3]int
		for _, r := range res {
			pending[0], pending[1], pending[2] = pending[0]+r.SignPending, pending[1]+r.HandlePending, pending[2]+r.ClosePending
		}
		t.Logf("pending at the month's end: %d for sign-for, %d for handling, %d for closing", pending[0], pending[1], pending[2])
		if pending[2] == 0 {
			t.Error("the script leaves no case pending for closing: the closing rates of the settled ones go untested")
		}
		type ranked struct {
			key        string
			comp       float64
			hasComp    bool
			score      float64
			band       string
			wantRank   int
			gotRank    int
			gotResult  cases.Result
			wantCallIn bool
		}
		var order []ranked
		for _, r := range res {
			comp, ok, score, band := expected(want[r.Key])
			order = append(order, ranked{key: r.Key, comp: comp, hasComp: ok, score: score, band: band, gotRank: r.Rank, gotResult: r, wantCallIn: score < 800})
		}
		slices.SortStableFunc(order, func(a, b ranked) int {
			ca, cb := a.comp, b.comp
			if !a.hasComp {
				ca = -1
			}
			if !b.hasComp {
				cb = -1
			}
			return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(cb, ca), cmp.Compare(a.key, b.key))
		})
		callIns := 0
		for i := range order {
			o := &order[i]
			o.wantRank = i + 1
			if i > 0 && o.score == order[i-1].score && o.comp == order[i-1].comp {
				o.wantRank = order[i-1].wantRank
			}
			r := o.gotResult
			if r.Key != o.key || r.Rank != o.wantRank || r.Score != o.score || r.Band != o.band || r.CallIn != o.wantCallIn ||
				(r.Composite == nil) == o.hasComp || r.Composite != nil && math.Abs(*r.Composite-o.comp) > 1e-9 {
				t.Errorf("place %d: got %s rank %d score %g band %s call-in %v composite %v; want %s rank %d score %g band %s composite %g",
					i+1, r.Key, r.Rank, r.Score, r.Band, r.CallIn, deref(r.Composite), o.key, o.wantRank, o.score, o.band, o.comp)
			}
			if o.wantCallIn {
				callIns++
			}
			w := want[o.key]
			t.Logf("%2d %-11s score %5.0f %-15s composite %5.1f  received %3d overdue %2d signed on time %3d closed on time %3d reworks %d wrong returns %d misrouted %d",
				o.wantRank, o.key, o.score, o.band, o.comp, w.Received, w.Overdue, w.SignedOnTime, w.ClosedOnTime, w.Reworks, w.WrongReturns, w.Misrouted)
		}
		if callIns == 0 || len(order) < 5 {
			t.Errorf("the script should rank at least 5 units with one called in, not %d units with %d", len(order), callIns)
		}
	}
	// The script exercises every path it claims to.
	all := s.truth(simStart, simEnd, func(*assignment) string { return "city" })["city"]
	if all.Misrouted == 0 || all.WrongReturns == 0 || all.Reworks == 0 || all.Extended == 0 || all.SatisfactionN == 0 ||
		all.Overdue == 0 || all.SignedOnTime == 0 || all.Closed == all.Received {
		t.Errorf("the script misses a path: %+v", all)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
