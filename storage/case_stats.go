package storage

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/cases"
)

// CaseStatsBy is what case statistics are grouped by.
type CaseStatsBy string

// Groupings of CaseTallies.
const (
	CaseStatsByUnit       CaseStatsBy = "unit"
	CaseStatsByGrid       CaseStatsBy = "grid"
	CaseStatsByDispatcher CaseStatsBy = "dispatcher"
)

// caseKinds numbers the event kinds the statistics look at (1-based, as
// indexOf); others are 0. An overdue event counts by the step it names (its note).
var caseKinds = []cases.EventKind{
	cases.EventDispatch, cases.EventSign, cases.EventReturn, cases.EventHandle, cases.EventVerifyFail,
	cases.EventExtendApprove, cases.EventClose, cases.EventOverdue, overdueOf(cases.StepSign), overdueOf(cases.StepHandle),
	overdueOf(cases.StepClose), cases.EventEvaluate, cases.EventVoid, cases.EventMerge,
}

// overdueOf is the kind caseKinds gives the overdue event of a step.
func overdueOf(step cases.Step) cases.EventKind {
	return cases.EventOverdue + "/" + cases.EventKind(step)
}

// Case statistics read case_summaries: one row per case, recomputed from
// all of the case's stored events whenever some are stored (after
// SaveCases, by the summarizer, whose pending refreshes a read of the
// statistics completes first; Import; migration 0015 fills it for the
// events stored before it), so
// that a period's evaluation reads about one row per case instead of
// every event. Its version grows with the case's events (see
// caseSummarySelect); the table is read FINAL, which keeps the latest
// computation of each case.

// caseSummaryColumns are the columns caseSummarySelect fills, in order.
var caseSummaryColumns = []string{"case_id", "version",
	"`assignment.unit`", "`assignment.grid`", "`assignment.dispatcher`", "`assignment.dispatched`", "`assignment.flags`",
	"`assignment.reworks`", "`assignment.satisfaction_sum`", "`assignment.satisfaction_n`", "`assignment.sign_ms`", "`assignment.handle_ms`",
	"`action.ts`", "`action.who`", "`action.grid`",
}

// caseFlags are the bits of assignment.flags (1, 2, 4, … in this order):
// what became of an assignment (see cases.Tally), each the SQL that
// computes it in caseSummarySelect. One bit mask reads faster than a
// column each.
var caseFlags = []struct{ name, expr string }{
	{"misrouted", "misrouted"}, {"wrong_return", "wrong_return"}, {"withdrawn", "withdrawn"},
	{"signed", "signed"}, {"signed_on_time", "signed AND sign_ok"},
	{"handled", "handled"}, {"handled_on_time", "handled AND handle_ok"},
	{"extended", "extended"}, {"closed", "closed"}, {"closed_on_time", "closed AND close_ok"},
	// Missed a deadline, whether accountable or not.
	{"overdue", "overdue"},
	// Over: returned, withdrawn, closed or dispatched again, so that
	// every step of it has its outcome.
	{"ended", "ended"},
	// An overdue event of the step while assigned: the step has its
	// outcome (missed) though not done.
	{"sign_late", "sign_late"}, {"handle_late", "handle_late"}, {"close_late", "close_late"},
}

// settledFlags are, per step, the flags any of which settles it (see
// cases.Tally): done, late, or the assignment over.
var settledFlags = map[string][]string{
	"sign":   {"signed", "sign_late", "ended"},
	"handle": {"handled", "handle_late", "ended"},
	"close":  {"closed", "close_late", "ended"},
	// An extension is settled once the handling is, or granted.
	"extend": {"handled", "handle_late", "ended", "extended"},
	// A return is possible until the sign-for.
	"return": {"signed", "ended"},
}

// caseFlag is the bit of the flag name.
func caseFlag(name string) int {
	return 1 << slices.IndexFunc(caseFlags, func(f struct{ name, expr string }) bool { return f.name == name })
}

// caseFlagsOf is the mask of the named flags.
func caseFlagsOf(names ...string) int {
	m := 0
	for _, n := range names {
		m |= caseFlag(n)
	}
	return m
}

// hasFlag is the SQL of "assignment a has the flag name".
func hasFlag(name string) string { return fmt.Sprintf("bitAnd(a.flags, %d) != 0", caseFlag(name)) }

// whoSep (the ASCII unit separator) separates the role, kind and actor in
// action.who. Roles and kinds are names gridwatch gives, without it; the
// actor comes last, so that whatever it holds stays whole.
const whoSep = "\x1f"

// actionWho is the SQL of action.who of columns role, kind and actor: one
// value to group by rather than three.
func actionWho(role, kind, actor string) string {
	return "concat(" + role + ", '" + whoSep + "', " + kind + ", '" + whoSep + "', " + actor + ")"
}

// caseSummarySelect is the SQL of the case_summaries rows (in the order of
// caseSummaryColumns) of the cases whose events in database's case_events
// (laid out as c) match where, computed from all their events.
//
// A case's events are grouped into arrays sorted by (seq, ts); of events
// sharing a seq (an event of a refused action that its retry replaced)
// the latest is kept. A refused action's event that no retry replaced
// still counts: telling it apart needs the case's stored version, a
// second pass over the cases table. a numbers each event's assignment (0
// before the first dispatch); each dispatch is one assignment (see
// cases.Tally), with what became of it until the case's next dispatch. A
// deadline of 0 is none, and met. The lambdas capture nothing but the
// row's assignment number i: ClickHouse 18.16 loses track of the columns
// a lambda captures, and copies a captured array for every element.
//
// The actions are the case's events once per (seq, role, actor, kind,
// grid), stamped with the latest ts stored for it: an event stored twice
// (a retried write) counts once. The version is the latest event's ts
// (ms) times 65536 plus the number of seqs, so a case's later computation
// has a higher version, also when an event replaces a refused one, times
// summaryGeneration.
func caseSummarySelect(c Capabilities, database, where string) string {
	kinds := make([]string, len(caseKinds))
	for i, k := range caseKinds {
		kinds[i] = "'" + string(k) + "'"
	}
	ts, due := msExpr(c, "ts"), msExpr(c, "due")
	// An overdue event is known by the step its note names (one naming
	// none is overdue for no step in particular); a merge withdraws the
	// case merged (voided), not the case merged into.
	kindExpr := "multiIf(kind = '" + string(cases.EventOverdue) + "' AND note IN ('" + string(cases.StepSign) + "', '" +
		string(cases.StepHandle) + "', '" + string(cases.StepClose) + "'), concat('" + string(cases.EventOverdue) + "/', note)," +
		" kind = '" + string(cases.EventMerge) + "' AND to_status != '" + string(cases.StatusVoided) + "', '', CAST(kind AS String))"
	code := func(k cases.EventKind) string { return fmt.Sprint(slices.Index(caseKinds, k) + 1) }
	in := func(k cases.EventKind) string { return "(kk, aa) -> aa = i AND kk = " + code(k) + ", k, a" }
	// next is arr shifted by one, padded with pad: the element after each.
	next := func(arr, pad string) string { return "arrayPushBack(arrayPopFront(" + arr + "), " + pad + ")" }
	perCase := "SELECT case_id, (toUInt64(max(" + ts + ")) * 65536 + least(uniqExact(seq), 65535)) * " + summaryGeneration + " AS version," +
		" arraySort(groupArray((seq, " + ts + ", toUInt8(indexOf([" + strings.Join(kinds, ", ") + "], " + kindExpr + ")), " +
		due + ", satisfaction))) AS raw," +
		" arrayMap(x -> x.1, raw) AS rseq," +
		" arrayFilter((x, q, nq) -> q != nq, raw, rseq, " + next("rseq", "0") + ") AS evs," +
		" arrayMap(x -> x.2, evs) AS t, arrayMap(x -> x.3, evs) AS k, arrayMap(x -> x.4, evs) AS d, arrayMap(x -> x.5, evs) AS s," +
		" arrayCumSum(arrayMap(x -> toUInt32(x = 1), k)) AS a," +
		" arrayMap(x -> x.1, arrayFilter(x -> x.3 = 1, evs)) AS dseqs," +
		" arraySort(groupArrayIf((seq, " + ts + ", unit, grid, actor), kind = 'dispatch')) AS draw," +
		" arrayFilter((x, j) -> has(dseqs, x.1) AND (j = length(draw) OR draw[j + 1].1 != x.1), draw, arrayEnumerate(draw)) AS disp," +
		" arraySort(groupArray((seq, CAST(role AS String), CAST(actor AS String), CAST(kind AS String), CAST(grid AS String), " + ts + "))) AS araw," +
		" arrayMap(x -> x.1, araw) AS aq, arrayMap(x -> x.2, araw) AS ar, arrayMap(x -> x.3, araw) AS ac," +
		" arrayMap(x -> x.4, araw) AS ak, arrayMap(x -> x.5, araw) AS ag," +
		" arrayFilter((x, q, nq, r, nr, c, nc, w, nw, g, ng) -> q != nq OR r != nr OR c != nc OR w != nw OR g != ng, araw," +
		" aq, " + next("aq", "0") + ", ar, " + next("ar", "''") + ", ac, " + next("ac", "''") + ", ak, " + next("ak", "''") +
		", ag, " + next("ag", "''") + ") AS acts" +
		" FROM " + quoteTable(database, "case_events") + " WHERE " + where + " GROUP BY case_id"
	perAssignment := "SELECT case_id, version, i, acts, disp[i].3 AS unit, disp[i].4 AS grid, disp[i].5 AS dispatcher," +
		" disp[i].2 AS dispatched, arrayExists(" + in(cases.EventReturn) + ") AS returned," +
		" returned AND NOT withdrawn AND disp[i + 1].3 != unit AS misrouted, returned AND disp[i + 1].3 = unit AS wrong_return," +
		" arrayFirstIndex(" + in(cases.EventSign) + ") AS sj, sj > 0 AS signed, t[sj] AS sign_t," +
		" NOT signed OR d[sj] = 0 OR sign_t <= d[sj] AS sign_ok," +
		" arrayExists(" + in(cases.EventVoid) + ") OR arrayExists(" + in(cases.EventMerge) + ") AS withdrawn," +
		// The last handle report: the first found from the end.
		" toUInt32(length(k) + 1 - arrayFirstIndex((kk, aa) -> aa = i AND kk = " + code(cases.EventHandle) + ", arrayReverse(k), arrayReverse(a))) AS hj0," +
		" hj0 <= length(k) AS handled, if(handled, hj0, 0) AS hj, t[hj] AS handle_t," +
		" NOT handled OR d[hj] = 0 OR handle_t <= d[hj] AS handle_ok," +
		" arrayCount(" + in(cases.EventVerifyFail) + ") AS reworks," +
		" arrayExists(" + in(cases.EventExtendApprove) + ") AS extended," +
		" arrayFirstIndex(" + in(cases.EventClose) + ") AS cj, cj > 0 AS closed," +
		" NOT closed OR d[cj] = 0 OR t[cj] <= d[cj] AS close_ok," +
		" arrayExists(" + in(overdueOf(cases.StepSign)) + ") AS sign_late, arrayExists(" + in(overdueOf(cases.StepHandle)) + ") AS handle_late," +
		" arrayExists(" + in(overdueOf(cases.StepClose)) + ") AS close_late," +
		" arrayExists(" + in(cases.EventOverdue) + ") OR sign_late OR handle_late OR close_late OR NOT sign_ok OR NOT handle_ok OR NOT close_ok AS overdue," +
		" returned OR withdrawn OR closed OR i < length(disp) AS ended," +
		" arraySum(arrayMap((ss, kk, aa) -> if(aa = i AND kk = " + code(cases.EventEvaluate) + ", ss, 0), s, k, a)) AS sat_sum," +
		" arrayCount(" + in(cases.EventEvaluate) + ") AS sat_n" +
		" FROM (" + perCase + ") LEFT ARRAY JOIN arrayEnumerate(disp) AS i"
	bits := make([]string, len(caseFlags))
	for j, f := range caseFlags {
		bits[j] = fmt.Sprintf("toUInt16(%s) * %d", f.expr, 1<<j)
	}
	var exprs []string
	for _, e := range []string{"unit", "grid", "dispatcher", "dispatched", strings.Join(bits, " + "),
		"toUInt16(reworks)", "toUInt32(sat_sum)", "toUInt16(sat_n)",
		"if(signed, sign_t - dispatched, 0)", "if(handled, handle_t - dispatched, 0)"} {
		exprs = append(exprs, "groupArrayIf("+e+", i > 0)")
	}
	exprs = append(exprs, "any(arrayMap(x -> x.6, acts))", "any(arrayMap(x -> "+actionWho("x.2", "x.4", "x.3")+", acts))",
		"any(arrayMap(x -> x.5, acts))")
	// The columns are named as in the table, so that the SELECT also
	// stands for it (caseTallies, caseActions).
	for j := range exprs {
		exprs[j] += " AS " + caseSummaryColumns[j+2]
	}
	return "SELECT case_id, any(version), " + strings.Join(exprs, ", ") + " FROM (" + perAssignment + ") GROUP BY case_id"
}

// summaryGeneration multiplies the versions of the case summaries that
// hold the flags of what is settled (migration 0017 and later), so that
// they outrank every summary computed before, whose flags lack them:
// ReplacingMergeTree keeps either of two rows of one version.
const summaryGeneration = "2"

// finalSettings end a query of case_summaries FINAL whose WHERE must
// apply to the rows FINAL keeps: moved to PREWHERE, it could pick a case's
// earlier summary (see Export).
const finalSettings = " SETTINGS optimize_move_to_prewhere = 0"

// flushCaseSummaries recomputes the case summaries SaveCases asked for
// and the summarizer has not yet, so that the statistics read what was
// saved before them.
func (db *DB) flushCaseSummaries(ctx context.Context) error {
	if err := db.summarizer().flush(ctx); err != nil {
		return fmt.Errorf("storage: case statistics wait for the case summaries: %w", err)
	}
	return nil
}

// caseSummaryChunk is how many cases one refresh of case_summaries
// recomputes.
const caseSummaryChunk = 1000

// refreshCaseSummaries recomputes the case_summaries rows of the cases
// in since from their stored events, each stamped at or after its time in
// since (a case's received time: its first event), or anywhere when that
// is zero. The bound spares reading the case_events partitions of the
// months before: a month's index finds a case's rows in one granule.
func (db *DB) refreshCaseSummaries(ctx context.Context, since map[string]time.Time) error {
	ids := slices.SortedFunc(maps.Keys(since), func(a, b string) int { return cmp.Or(since[a].Compare(since[b]), cmp.Compare(a, b)) })
	query := "INSERT INTO " + quoteTable(db.opts.Database, "case_summaries") + " (" + strings.Join(caseSummaryColumns, ", ") + ") "
	for start := 0; start < len(ids); start += caseSummaryChunk {
		chunk := ids[start:min(start+caseSummaryChunk, len(ids))]
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, id := range chunk {
			set.Value[i] = id
		}
		where := "case_id IN ?"
		if first := since[chunk[0]]; !first.IsZero() {
			where += " AND " + tsSince(db.layout, first.UnixMilli())
		}
		if err := db.conn.Exec(ctx, query+caseSummarySelect(db.layout, db.opts.Database, where), set); err != nil {
			return fmt.Errorf("storage: summarize %d cases: %w", len(chunk), err)
		}
	}
	return nil
}

// tsSince is the SQL of "ts is at or after ms" (epoch ms) on tables
// laid out as c, timed by ts (case events, telemetry), in terms that prune
// partitions.
func tsSince(c Capabilities, ms int64) string {
	if c.DateTime64 {
		return fmt.Sprintf("ts >= fromUnixTimestamp64Milli(toInt64(%d))", ms)
	}
	return fmt.Sprintf("ts >= %d AND date >= toDate(toDateTime(intDiv(%d, 1000), 'UTC'))", ms, ms)
}

// CaseTallies counts, from the stored case events, the assignments
// dispatched in [from, to) per unit, grid or dispatcher (see cases.Tally),
// ordered by key. Everything that happened to an assignment counts, also
// after to. inScope, when not nil, keeps only the assignments of the grids
// it accepts (a scoped token's subtree).
func (db *DB) CaseTallies(ctx context.Context, by CaseStatsBy, from, to time.Time, inScope func(grid string) bool) ([]cases.Tally, error) {
	if err := db.flushCaseSummaries(ctx); err != nil {
		return nil, err
	}
	return db.caseTallies(ctx, by, from, to, inScope, quoteTable(db.opts.Database, "case_summaries")+" FINAL")
}

// caseTallies is CaseTallies reading the case summaries from source: the
// table, or a query computing them from the events.
func (db *DB) caseTallies(ctx context.Context, by CaseStatsBy, from, to time.Time, inScope func(grid string) bool, source string) ([]cases.Tally, error) {
	keyExpr, ok := map[CaseStatsBy]string{CaseStatsByUnit: "a.unit", CaseStatsByGrid: "a.grid", CaseStatsByDispatcher: "a.dispatcher"}[by]
	if !ok {
		return nil, fmt.Errorf("storage: case statistics by %q: want unit, grid or dispatcher", by)
	}
	// Without a scope the grids need not come back.
	group, grid := "key", "''"
	if inScope != nil {
		group, grid = "key, grid", "a.grid"
	}
	query := "SELECT " + keyExpr + " AS key, " + grid + " AS grid, count(), countIf(" + hasFlag("misrouted") + ")," +
		" countIf(" + hasFlag("wrong_return") + "), countIf(" + hasFlag("withdrawn") + "), countIf(" + hasFlag("signed") + ")," +
		" countIf(" + hasFlag("signed_on_time") + "), countIf(" + hasFlag("handled") + "), countIf(" + hasFlag("handled_on_time") + ")," +
		" countIf(a.reworks > 0), sum(a.reworks), countIf(" + hasFlag("extended") + "), countIf(" + hasFlag("closed") + ")," +
		" countIf(" + hasFlag("closed_on_time") + ")," +
		fmt.Sprintf(" countIf(bitAnd(a.flags, %d) = %d),", caseFlag("overdue")|caseFlag("misrouted")|caseFlag("withdrawn"), caseFlag("overdue")) +
		" sum(a.satisfaction_sum), sum(a.satisfaction_n), sum(a.sign_ms), sum(a.handle_ms)," +
		settled("sign", true) + ", " + settled("handle", true) + ", " + settled("close", true) + ", " + settled("extend", true) + ", " +
		settled("return", false) +
		" FROM " + source + " ARRAY JOIN assignment AS a" +
		" WHERE a.dispatched >= toInt64(?) AND a.dispatched < toInt64(?) GROUP BY " + group + finalSettings
	rows, err := db.conn.Query(ctx, query, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("storage: case statistics by %s: %w", by, err)
	}
	defer rows.Close()
	byKey := map[string]*cases.Tally{}
	for rows.Next() {
		var (
			tl                                                                        cases.Tally
			grid                                                                      string
			rec, mis, wrong, wd, sg, sgOK, hd, hdOK, rwk, rws, ext, cl, clOK, ovd, sn uint64
			ss, sgSt, hdSt, clSt, extSt, retSt                                        uint64
			signMs, handleMs                                                          int64
		)
		if err := rows.Scan(&tl.Key, &grid, &rec, &mis, &wrong, &wd, &sg, &sgOK, &hd, &hdOK, &rwk, &rws, &ext, &cl, &clOK, &ovd,
			&ss, &sn, &signMs, &handleMs, &sgSt, &hdSt, &clSt, &extSt, &retSt); err != nil {
			return nil, fmt.Errorf("storage: case statistics by %s: %w", by, err)
		}
		if inScope != nil && !inScope(grid) {
			continue
		}
		tl.Received, tl.Misrouted, tl.WrongReturns, tl.Withdrawn = int(rec), int(mis), int(wrong), int(wd)
		tl.Signed, tl.SignedOnTime, tl.Handled, tl.HandledOnTime = int(sg), int(sgOK), int(hd), int(hdOK)
		tl.Reworked, tl.Reworks, tl.Extended, tl.Closed, tl.ClosedOnTime, tl.Overdue = int(rwk), int(rws), int(ext), int(cl), int(clOK), int(ovd)
		tl.SatisfactionSum, tl.SatisfactionN = int(ss), int(sn)
		tl.SignSettled, tl.HandleSettled, tl.CloseSettled, tl.ExtendSettled, tl.ReturnSettled = int(sgSt), int(hdSt), int(clSt), int(extSt), int(retSt)
		tl.SignTime, tl.HandleTime = time.Duration(signMs)*time.Millisecond, time.Duration(handleMs)*time.Millisecond
		if sum, ok := byKey[tl.Key]; ok {
			sum.Add(tl)
		} else {
			byKey[tl.Key] = &tl
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: case statistics by %s: %w", by, err)
	}
	out := make([]cases.Tally, 0, len(byKey))
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, *byKey[k])
	}
	return out, nil
}

// settled is the SQL counting the assignments whose step has its outcome
// (settledFlags), the accountable ones only (neither misrouted nor
// withdrawn) or all.
func settled(step string, accountable bool) string {
	any := fmt.Sprintf("bitAnd(a.flags, %d) != 0", caseFlagsOf(settledFlags[step]...))
	if !accountable {
		return "countIf(" + any + ")"
	}
	return fmt.Sprintf("countIf(bitAnd(a.flags, %d) = 0 AND %s)", caseFlagsOf("misrouted", "withdrawn"), any)
}

// CaseActions counts the case events stamped in [from, to) per role, actor
// and kind: what each member of staff did. inScope, when not nil, keeps
// only the events of the grids it accepts. An event stored twice (a
// retried write) counts once; the event of an action whose save failed
// after its event was written counts beside the event that replaced it
// (CaseTallies counts only the latter), a rare storage failure's trace,
// unless both are of the same kind by the same actor: then they count
// once, at the time of the later.
func (db *DB) CaseActions(ctx context.Context, from, to time.Time, inScope func(grid string) bool) ([]cases.ActionCount, error) {
	if err := db.flushCaseSummaries(ctx); err != nil {
		return nil, err
	}
	return db.caseActions(ctx, from, to, inScope, quoteTable(db.opts.Database, "case_summaries")+" FINAL")
}

// caseActions is CaseActions reading the case summaries from source, as
// caseTallies.
func (db *DB) caseActions(ctx context.Context, from, to time.Time, inScope func(grid string) bool, source string) ([]cases.ActionCount, error) {
	group, grid := "who", "''"
	if inScope != nil {
		group, grid = "who, grid", "a.grid"
	}
	query := "SELECT a.who AS who, " + grid + " AS grid, count() FROM " + source + " ARRAY JOIN action AS a" +
		" WHERE a.ts >= toInt64(?) AND a.ts < toInt64(?) GROUP BY " + group + finalSettings
	rows, err := db.conn.Query(ctx, query, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("storage: case actions: %w", err)
	}
	defer rows.Close()
	sums := map[cases.ActionCount]int{}
	for rows.Next() {
		var (
			who, grid string
			n         uint64
		)
		if err := rows.Scan(&who, &grid, &n); err != nil {
			return nil, fmt.Errorf("storage: case actions: %w", err)
		}
		if inScope != nil && !inScope(grid) {
			continue
		}
		parts := strings.SplitN(who, whoSep, 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("storage: case actions: malformed action %q", who)
		}
		a := cases.ActionCount{Role: parts[0], Kind: cases.EventKind(parts[1]), Actor: parts[2]}
		sums[a] += int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: case actions: %w", err)
	}
	out := make([]cases.ActionCount, 0, len(sums))
	for a, n := range sums {
		a.N = n
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b cases.ActionCount) int {
		return cmp.Or(cmp.Compare(a.Role, b.Role), cmp.Compare(a.Actor, b.Actor), cmp.Compare(a.Kind, b.Kind))
	})
	return out, nil
}
