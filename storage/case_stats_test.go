package storage_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
)

// insertCaseEvents stores events as the case Store does (SaveCases).
func insertCaseEvents(t testing.TB, db *storage.DB, events []cases.Event) {
	t.Helper()
	if err := db.SaveCases(context.Background(), nil, 0, events); err != nil {
		t.Fatal(err)
	}
}

// insertRawCaseEvents stores events in case_events alone, as versions
// before the case summaries did.
func insertRawCaseEvents(t testing.TB, db *storage.DB, events []cases.Event) {
	t.Helper()
	ctx := context.Background()
	var tsType string
	if err := db.Conn().QueryRow(ctx, "SELECT type FROM system.columns WHERE database = ? AND table = 'case_events' AND name = 'ts'",
		db.Database()).Scan(&tsType); err != nil {
		t.Fatal(err)
	}
	b, err := db.Conn().PrepareBatch(ctx, "INSERT INTO `"+db.Database()+"`.case_events"+
		" (ts, case_id, seq, actor, role, kind, from_status, to_status, unit, grid, category, source, due, note, evidence, satisfaction)")
	if err != nil {
		t.Fatal(err)
	}
	ms := func(x time.Time) any {
		var v int64
		if !x.IsZero() {
			v = x.UnixMilli()
		}
		if tsType != "Int64" {
			return time.UnixMilli(v).UTC()
		}
		return v
	}
	for _, e := range events {
		ev := e.Evidence
		if ev == nil {
			ev = []string{}
		}
		if err := b.Append(ms(e.TS), e.CaseID, e.Seq, e.Actor, e.Role, string(e.Kind), string(e.From), string(e.To), e.Unit, e.Grid,
			e.Category, string(e.Source), ms(e.Due), e.Note, ev, e.Satisfaction); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// openBefore opens a fresh database with the migrations before version
// applied and recorded, as an older gridwatch left it.
func openBefore(t testing.TB, version int) *storage.DB {
	t.Helper()
	db := openDB(t, storage.Options{})
	s, err := db.Schema()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, st := range s.Bookkeeping {
		if err := db.Conn().Exec(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range s.Migrations {
		if m.Version >= version {
			break
		}
		for _, st := range m.Statements {
			if err := db.Conn().Exec(ctx, st); err != nil {
				t.Fatalf("migration %d: %v", m.Version, err)
			}
		}
		b, err := db.Conn().PrepareBatch(ctx, "INSERT INTO `"+db.Database()+"`.schema_migrations (version, name)")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(uint32(m.Version), m.Name); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// caseScript builds a case's events: each step is after the case's start.
type caseScript struct {
	id    string
	start time.Time
	grid  string
	evs   []cases.Event
	unit  string
}

func newCase(id, grid string, start time.Time) *caseScript {
	return &caseScript{id: id, start: start, grid: grid}
}

func (c *caseScript) add(at time.Duration, kind cases.EventKind, actor string, due time.Duration, sat uint8) *caseScript {
	e := cases.Event{CaseID: c.id, Seq: uint32(len(c.evs) + 1), TS: c.start.Add(at), Actor: actor, Kind: kind,
		Unit: c.unit, Grid: c.grid, Category: "E0101", Source: cases.SourcePatrol, Satisfaction: sat}
	if due != 0 {
		e.Due = c.start.Add(due)
	}
	c.evs = append(c.evs, e)
	return c
}

// late records the system's overdue event of a step, as the case loop
// does: its note names the step.
func (c *caseScript) late(at time.Duration, step cases.Step, due time.Duration) *caseScript {
	c.add(at, cases.EventOverdue, "system", due, 0)
	c.evs[len(c.evs)-1].Note = string(step)
	return c
}

// replace stores an event with the Seq of the last one: the retry of a
// refused action, whose event replaces the refused one's.
func (c *caseScript) replace(at time.Duration, kind cases.EventKind, actor string) *caseScript {
	c.add(at, kind, actor, 0, 0)
	c.evs[len(c.evs)-1].Seq--
	return c
}

// dispatch gives the case to unit, with a sign-for deadline 30 minutes on.
func (c *caseScript) dispatch(at time.Duration, unit, dispatcher string) *caseScript {
	c.unit = unit
	return c.add(at, cases.EventDispatch, dispatcher, at+30*time.Minute, 0)
}

// talliedCases are the cases of the tally tests, in March 2026 but one.
func talliedCases() []cases.Event {
	march := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m, h := time.Minute, time.Hour
	var evs []cases.Event
	for _, c := range []*caseScript{
		// A: by the book at U1.
		newCase("A", "G1", march).add(0, cases.EventReceive, "p1", 0, 0).dispatch(m, "U1", "disp1").
			add(10*m, cases.EventSign, "u1", 31*m, 0).add(2*h, cases.EventHandle, "u1", 4*h, 0).
			add(3*h, cases.EventVerifyPass, "sup", 0, 0).add(24*h, cases.EventClose, "op", 48*h, 0).
			add(25*h, cases.EventEvaluate, "p1", 0, 5),
		// B: misrouted to U1 (returned, then dispatched to U2); U2 signs
		// late, fails verification once, then closes on time.
		newCase("B", "G1", march.Add(h)).dispatch(0, "U1", "disp1").add(5*m, cases.EventReturn, "u1", 0, 0).
			dispatch(10*m, "U2", "disp2").add(50*m, cases.EventSign, "u2", 40*m, 0).
			add(3*h, cases.EventHandle, "u2", 5*h, 0).add(4*h, cases.EventVerifyFail, "sup", 0, 0).
			add(6*h, cases.EventHandle, "u2", 7*h, 0).add(7*h, cases.EventVerifyPass, "sup", 0, 0).
			add(8*h, cases.EventClose, "op", 48*h, 0).add(9*h, cases.EventEvaluate, "p2", 0, 2),
		// C: U2 returns it wrongly (it comes back to U2), then signs, gets an
		// extension and handles by the extended deadline; still open.
		newCase("C", "G2", march.Add(2*h)).dispatch(0, "U2", "disp2").add(5*m, cases.EventReturn, "u2", 0, 0).
			dispatch(20*m, "U2", "disp2").add(30*m, cases.EventSign, "u2", 50*m, 0).
			add(h, cases.EventExtendRequest, "u2", 0, 0).add(2*h, cases.EventExtendApprove, "sup", 30*h, 0).
			add(20*h, cases.EventHandle, "u2", 30*h, 0),
		// D: dispatched in February: outside the period, though it closes in it.
		newCase("D", "G1", march.AddDate(0, 0, -3)).dispatch(0, "U1", "disp1").add(10*m, cases.EventSign, "u1", 30*m, 0).
			add(h, cases.EventHandle, "u1", 2*h, 0).add(72*h, cases.EventClose, "op", 100*h, 0),
		// E: never signed; the system marked it overdue.
		newCase("E", "G2", march.Add(3*h)).dispatch(0, "U1", "disp1").late(31*m, cases.StepSign, 30*m),
		// F: voided while with U1.
		newCase("F", "G2", march.Add(4*h)).dispatch(0, "U1", "disp1").add(5*m, cases.EventVoid, "op", 0, 0),
		// H: overdue at U1 before U1 returned it as misrouted: not held
		// against U1.
		newCase("H", "G2", march.Add(6*h)).dispatch(0, "U1", "disp1").late(31*m, cases.StepSign, 30*m).
			add(40*m, cases.EventReturn, "u1", 0, 0).dispatch(45*m, "U2", "disp2").add(50*m, cases.EventSign, "u2", 75*m, 0),
		// G: a sign-for whose save was refused, replaced by a note.
		newCase("G", "G1", march.Add(5*h)).dispatch(0, "U2", "disp2").add(5*m, cases.EventSign, "u2", 30*m, 0).
			replace(6*m, cases.EventNote, "u2"),
	} {
		evs = append(evs, c.evs...)
	}
	return evs
}

func TestCaseTallies(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	evs := talliedCases()
	insertCaseEvents(t, db, evs)
	insertCaseEvents(t, db, evs[2:5]) // a retried write: the same events again
	checkTallies(t, db)
}

// TestCaseSummariesBackfill stores the cases as a gridwatch before the
// case summaries did, then migrates: the migration computes them.
func TestCaseSummariesBackfill(t *testing.T) {
	db := openBefore(t, 14)
	evs := talliedCases()
	insertRawCaseEvents(t, db, evs)
	insertRawCaseEvents(t, db, evs[2:5])
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkTallies(t, db)
	// The backfill run again before it was recorded stores the summaries
	// twice: they still count once.
	s, err := db.Schema()
	if err != nil {
		t.Fatal(err)
	}
	backfilled := false
	for _, m := range s.Migrations {
		if m.Name != "case_summaries_backfill" {
			continue
		}
		backfilled = true
		for _, st := range m.Statements {
			if err := db.Conn().Exec(context.Background(), st); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !backfilled {
		t.Fatal("no migration case_summaries_backfill")
	}
	checkTallies(t, db)
}

// TestCaseSummariesSettledMigration stores the summaries as a gridwatch
// before migration 0017 did: without the flags of what is settled, at
// the versions of then (half of today's). Migrating computes them again,
// and the new ones replace them.
func TestCaseSummariesSettledMigration(t *testing.T) {
	db := openBefore(t, 17)
	evs := talliedCases()
	insertCaseEvents(t, db, evs)
	insertCaseEvents(t, db, evs[2:5])
	ctx := context.Background()
	table := "`" + db.Database() + "`.case_summaries"
	s, err := db.Schema()
	if err != nil {
		t.Fatal(err)
	}
	from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	// A read of the statistics computes the summaries the saves asked for
	// first: one computed after the stale rows are in would replace them.
	if _, err := db.CaseTallies(ctx, storage.CaseStatsByUnit, from, to, nil); err != nil {
		t.Fatal(err)
	}
	old := 1<<11 - 1 // the flags before 0017: misrouted .. overdue
	for _, q := range []string{
		"CREATE TABLE `" + db.Database() + "`.stale ENGINE = Memory AS SELECT case_id, intDiv(version, 2) AS version, `assignment.unit`," +
			" `assignment.grid`, `assignment.dispatcher`, `assignment.dispatched`," +
			" arrayMap(f -> toUInt16(bitAnd(f, " + strconv.Itoa(old) + ")), `assignment.flags`) AS `assignment.flags`," +
			" `assignment.reworks`, `assignment.satisfaction_sum`, `assignment.satisfaction_n`, `assignment.sign_ms`, `assignment.handle_ms`," +
			" `action.ts`, `action.who`, `action.grid` FROM " + table + " FINAL",
		"DROP TABLE " + table,
	} {
		if err := db.Conn().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range s.Migrations {
		if m.Name == "case_summaries" {
			for _, st := range m.Statements {
				if err := db.Conn().Exec(ctx, st); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := db.Conn().Exec(ctx, "INSERT INTO "+table+" SELECT * FROM `"+db.Database()+"`.stale"); err != nil {
		t.Fatal(err)
	}
	// The stale rows settle only what was done: U1's E, late, is not.
	if got, err := db.CaseTallies(ctx, storage.CaseStatsByUnit, from, to, nil); err != nil || len(got) == 0 || got[0].SignSettled != 1 {
		t.Fatalf("before the migration, the stale summaries: %+v, %v", got, err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkTallies(t, db)
}

// checkTallies checks the statistics of talliedCases, stored with a
// retried write of three events.
func checkTallies(t *testing.T, db *storage.DB) {
	t.Helper()
	m, h := time.Minute, time.Hour
	from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	got, err := db.CaseTallies(context.Background(), storage.CaseStatsByUnit, from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Settled: U1's A (done) and E (late for its sign-for, the rest
	// pending); for returns also B, F and H, over. U2's B and the second
	// C (done but C's closing), the first C (over), H's sign-for (done,
	// the rest pending); G pending for everything.
	want := []cases.Tally{
		{Key: "U1", Received: 5, Misrouted: 2, Withdrawn: 1, Signed: 1, SignedOnTime: 1, Handled: 1, HandledOnTime: 1,
			Closed: 1, ClosedOnTime: 1, Overdue: 1, SatisfactionSum: 5, SatisfactionN: 1, SignTime: 9 * m, HandleTime: 2*h - m,
			SignSettled: 2, HandleSettled: 1, CloseSettled: 1, ExtendSettled: 1, ReturnSettled: 4},
		{Key: "U2", Received: 5, WrongReturns: 1, Signed: 3, SignedOnTime: 2, Handled: 2, HandledOnTime: 2, Reworked: 1, Reworks: 1,
			Extended: 1, Closed: 1, ClosedOnTime: 1, Overdue: 1, SatisfactionSum: 2, SatisfactionN: 1,
			SignTime: 40*m + 10*m + 5*m, HandleTime: (6*h - 10*m) + (20*h - 20*m),
			SignSettled: 4, HandleSettled: 3, CloseSettled: 2, ExtendSettled: 3, ReturnSettled: 4},
	}
	if len(got) != len(want) {
		t.Fatalf("tallies %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("unit tally\n got %+v\nwant %+v", got[i], want[i])
		}
	}

	byDisp, err := db.CaseTallies(context.Background(), storage.CaseStatsByDispatcher, from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(byDisp) != 2 || byDisp[0].Key != "disp1" || byDisp[0].Received != 5 || byDisp[0].Misrouted != 2 ||
		byDisp[1].Key != "disp2" || byDisp[1].Received != 5 || byDisp[1].Misrouted != 0 || byDisp[1].WrongReturns != 1 {
		t.Errorf("dispatcher tallies %+v", byDisp)
	}
	byGrid, err := db.CaseTallies(context.Background(), storage.CaseStatsByGrid, from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(byGrid) != 2 || byGrid[0].Key != "G1" || byGrid[0].Received != 4 || byGrid[1].Key != "G2" || byGrid[1].Received != 6 {
		t.Errorf("grid tallies %+v", byGrid)
	}
	if _, err := db.CaseTallies(context.Background(), "colour", from, to, nil); err == nil {
		t.Error("a bad grouping was accepted")
	}
	// A scope of grid G2 keeps the assignments there only: C twice and H
	// for U2; E, F and H for U1.
	scoped, err := db.CaseTallies(context.Background(), storage.CaseStatsByUnit, from, to, func(g string) bool { return g == "G2" })
	if err != nil {
		t.Fatal(err)
	}
	if len(scoped) != 2 || scoped[1].Key != "U2" || scoped[1].Received != 3 || scoped[1].WrongReturns != 1 || scoped[1].Extended != 1 ||
		scoped[0].Key != "U1" || scoped[0].Received != 3 || scoped[0].Overdue != 1 || scoped[0].Withdrawn != 1 {
		t.Errorf("scoped tallies %+v", scoped)
	}

	acts, err := db.CaseActions(context.Background(), from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, a := range acts {
		n[a.Actor+"/"+string(a.Kind)] += a.N
	}
	// D's dispatch falls in February, its closure in March; A's retried
	// events count once. G's refused sign-for counts beside the note that
	// replaced it (CaseActions documents it).
	if n["disp1/dispatch"] != 5 || n["disp2/dispatch"] != 5 || n["u1/sign"] != 1 || n["u1/return"] != 2 || n["op/close"] != 3 || n["sup/verify_pass"] != 2 || n["u2/sign"] != 4 {
		t.Errorf("actions %v", n)
	}
	sameAsEvents(t, db, from, to, func(g string) bool { return g == "G2" })
}

// sameAsEvents checks that the statistics of [from, to) read from the case
// summaries equal those computed from the raw events, whole and within
// scope.
func sameAsEvents(t testing.TB, db *storage.DB, from, to time.Time, scope func(string) bool) {
	t.Helper()
	ctx := context.Background()
	for _, sc := range []func(string) bool{nil, scope} {
		for _, by := range []storage.CaseStatsBy{storage.CaseStatsByUnit, storage.CaseStatsByGrid, storage.CaseStatsByDispatcher} {
			got, err := db.CaseTallies(ctx, by, from, to, sc)
			if err != nil {
				t.Fatal(err)
			}
			want, err := db.CaseTalliesFromEvents(ctx, by, from, to, sc)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("tallies by %s (scoped %v) from the summaries\n%+v\nfrom the events\n%+v", by, sc != nil, got, want)
			}
		}
		got, err := db.CaseActions(ctx, from, to, sc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := db.CaseActionsFromEvents(ctx, from, to, sc)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("actions (scoped %v) from the summaries\n%+v\nfrom the events\n%+v", sc != nil, got, want)
		}
	}
}

// TestCaseRatesCountSettledOnly checks that a rate counts only the
// assignments whose outcome for it is settled: a unit with one case
// closed by the book, one just dispatched and one signed for and then late
// for its handling has a sign-for rate of 2/2 with one pending, a handling
// on time rate of 1/2 with one pending, a closing rate of 1/1 with two
// pending, not rates over all three.
func TestCaseRatesCountSettledOnly(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := context.Background()
	march := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m, h := time.Minute, time.Hour
	var evs []cases.Event
	for _, c := range []*caseScript{
		newCase("P", "G1", march).dispatch(0, "U1", "disp1").add(10*m, cases.EventSign, "u1", 30*m, 0).
			add(h, cases.EventHandle, "u1", 2*h, 0).add(90*m, cases.EventVerifyPass, "sup", 0, 0).add(2*h, cases.EventClose, "op", 24*h, 0),
		newCase("Q", "G1", march.Add(3*h)).dispatch(0, "U1", "disp1"),
		newCase("R", "G1", march).dispatch(0, "U1", "disp1").add(10*m, cases.EventSign, "u1", 30*m, 0).late(3*h, cases.StepHandle, 2*h),
	} {
		evs = append(evs, c.evs...)
	}
	insertCaseEvents(t, db, evs)
	tallies, err := db.CaseTallies(ctx, storage.CaseStatsByUnit, march, march.AddDate(0, 0, 1), nil)
	if err != nil || len(tallies) != 1 {
		t.Fatalf("tallies %+v, %v", tallies, err)
	}
	r := cases.Evaluation{}.Evaluate(tallies, cases.ByScore, false)[0]
	for _, c := range []struct {
		name string
		got  *float64
		want float64
	}{
		{"sign-for on time", r.SignOnTime, 1}, {"handling", r.Handling, 0.5}, {"handling on time", r.HandlingOnTime, 0.5},
		{"closing", r.Closing, 1}, {"closing on time", r.ClosingOnTime, 1}, {"extension", r.Extension, 0}, {"return", r.Return, 0},
	} {
		if c.got == nil || *c.got != c.want {
			t.Errorf("%s rate %v, want %g (tally %+v)", c.name, deref(c.got), c.want, tallies[0])
		}
	}
	if r.SignPending != 1 || r.HandlePending != 1 || r.ClosePending != 2 {
		t.Errorf("pending: sign-for %d, handling %d, closing %d; want 1, 1, 2", r.SignPending, r.HandlePending, r.ClosePending)
	}
}

// TestCaseMergeWithdrawsTheDuplicateOnly checks that a merge withdraws
// the assignment of the case merged, not that of the case merged into,
// which records the merge too.
func TestCaseMergeWithdrawsTheDuplicateOnly(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := context.Background()
	march := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m := time.Minute
	into := newCase("T", "G1", march).dispatch(0, "U1", "disp1").add(10*m, cases.EventSign, "u1", 30*m, 0).add(20*m, cases.EventMerge, "op", 0, 0)
	into.evs[len(into.evs)-1].From, into.evs[len(into.evs)-1].To = cases.StatusHandling, cases.StatusHandling
	dup := newCase("X", "G1", march).dispatch(0, "U1", "disp1").add(5*m, cases.EventReturn, "u1", 0, 0).add(20*m, cases.EventMerge, "op", 0, 0)
	dup.evs[len(dup.evs)-1].From, dup.evs[len(dup.evs)-1].To = cases.StatusRegistered, cases.StatusVoided
	insertCaseEvents(t, db, append(into.evs, dup.evs...))
	got, err := db.CaseTallies(ctx, storage.CaseStatsByUnit, march, march.AddDate(0, 0, 1), nil)
	if err != nil || len(got) != 1 || got[0].Received != 2 || got[0].Withdrawn != 1 || got[0].Accountable() != 1 || got[0].SignedOnTime != 1 {
		t.Fatalf("tallies %+v, %v", got, err)
	}
}

// deref is *p, or nil.
func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestCaseTalliesAfterReplacement checks that the statistics follow a
// case's latest summary: a dispatch whose save was refused and whose Seq
// a note took no longer counts as an assignment once the note is stored.
func TestCaseTalliesAfterReplacement(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := context.Background()
	march := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	from, to := march.AddDate(0, 0, -1), march.AddDate(0, 0, 1)
	c := newCase("X", "G1", march).dispatch(0, "U1", "disp1")
	insertCaseEvents(t, db, c.evs)
	got, err := db.CaseTallies(ctx, storage.CaseStatsByUnit, from, to, nil)
	if err != nil || len(got) != 1 || got[0].Received != 1 {
		t.Fatalf("tallies after the dispatch %+v (%v)", got, err)
	}
	// An actor's name may hold anything, the separator of action.who too.
	const actor = "u1\x1fnight shift"
	c.replace(time.Minute, cases.EventNote, actor)
	insertCaseEvents(t, db, c.evs[1:])
	got, err = db.CaseTallies(ctx, storage.CaseStatsByUnit, from, to, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("tallies after the note replaced the dispatch %+v (%v), want none", got, err)
	}
	acts, err := db.CaseActions(ctx, from, to, nil)
	if err != nil || len(acts) != 2 || acts[1] != (cases.ActionCount{Actor: actor, Kind: cases.EventNote, N: 1}) {
		t.Errorf("actions %+v (%v), want disp1's dispatch and %q's note", acts, err, actor)
	}
	sameAsEvents(t, db, from, to, func(g string) bool { return g == "G1" })
}

// TestCaseSummariesAfterSave: a save's case summaries are stored after
// it, without a read of the statistics asking; a case saved without its
// summary (a crash in between) gets it when LoadCases finds it.
func TestCaseSummariesAfterSave(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	march := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	summaries := func(id string) uint64 {
		var n uint64
		if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+db.Database()+"`.case_summaries WHERE case_id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitSummary := func(id string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); summaries(id) == 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no summary of %s within a minute", id)
			}
		}
	}
	c1 := newCase("C1", "G1", march).dispatch(0, "U1", "disp1")
	row := func(c *caseScript) cases.Case {
		return cases.Case{ID: c.id, Version: uint32(len(c.evs)), Source: cases.SourcePatrol, Status: cases.StatusDispatched, Grid: c.grid, Unit: c.unit,
			Received: c.start, Updated: c.evs[len(c.evs)-1].TS}
	}
	if err := db.SaveCases(ctx, []cases.Case{row(c1)}, 1, c1.evs); err != nil {
		t.Fatal(err)
	}
	waitSummary("C1")
	c2 := newCase("C2", "G1", march.Add(time.Hour)).dispatch(0, "U1", "disp1")
	insertRawCaseEvents(t, db, c2.evs)
	if err := db.SaveCases(ctx, []cases.Case{row(c2)}, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.LoadCases(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	waitSummary("C2")
	got, err := db.CaseTallies(ctx, storage.CaseStatsByUnit, march.AddDate(0, 0, -1), march.AddDate(0, 0, 1), nil)
	if err != nil || len(got) != 1 || got[0].Received != 2 {
		t.Errorf("tallies %+v (%v), want both cases of U1", got, err)
	}
}
