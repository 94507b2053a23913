package storage

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

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
// indexOf); others are 0.
var caseKinds = []cases.EventKind{
	cases.EventDispatch, cases.EventSign, cases.EventReturn, cases.EventHandle, cases.EventVerifyFail,
	cases.EventExtendApprove, cases.EventClose, cases.EventOverdue, cases.EventEvaluate, cases.EventVoid, cases.EventMerge,
}

// caseAssignments is the SQL of the assignments dispatched in [from, to)
// (epoch ms): one row per dispatch of a case, with what became of it until
// the case's next dispatch (see cases.Tally), keyed by keyExpr (disp[i].3
// unit, .4 grid, .5 dispatcher). A deadline of 0 is none, and met.
//
// It reads the events stamped from `from` on, grouped per case into
// arrays sorted by (seq, ts); of events sharing a seq (an event of a
// refused action that its retry replaced) the latest is kept. A refused
// action's event that no retry replaced still counts: telling it apart
// needs the case's stored version, a second pass over the cases table. a numbers
// each event's assignment (0 before the first dispatch read). The lambdas
// capture nothing but the row's assignment number i: ClickHouse 18.16
// loses track of the columns a lambda captures, and copies a captured
// array for every element.
func (db *DB) caseAssignments(keyExpr string, from, to int64) string {
	kinds := make([]string, len(caseKinds))
	for i, k := range caseKinds {
		kinds[i] = "'" + string(k) + "'"
	}
	since := db.msExpr("ts") + " >= " + fmt.Sprint(from)
	if db.layout.DateTime64 {
		since = "ts >= fromUnixTimestamp64Milli(toInt64(" + fmt.Sprint(from) + "))"
	} else {
		since += " AND date >= toDate(toDateTime(intDiv(" + fmt.Sprint(from) + ", 1000), 'UTC'))"
	}
	code := func(k cases.EventKind) string { return fmt.Sprint(slices.Index(caseKinds, k) + 1) }
	in := func(k cases.EventKind) string { return "(kk, aa) -> aa = i AND kk = " + code(k) + ", k, a" }
	return "SELECT " + keyExpr + " AS key, disp[i].4 AS grid, disp[i].3 AS unit, disp[i + 1].3 AS next_unit, disp[i].2 AS dispatched," +
		" arrayFirstIndex(" + in(cases.EventSign) + ") AS sj, sj > 0 AS signed, t[sj] AS sign_t," +
		" NOT signed OR d[sj] = 0 OR sign_t <= d[sj] AS sign_ok," +
		" arrayExists(" + in(cases.EventReturn) + ") AS returned," +
		" arrayExists(" + in(cases.EventVoid) + ") OR arrayExists(" + in(cases.EventMerge) + ") AS withdrawn," +
		// The last handle report: the first found from the end.
		" toUInt32(length(k) + 1 - arrayFirstIndex((kk, aa) -> aa = i AND kk = " + code(cases.EventHandle) + ", arrayReverse(k), arrayReverse(a))) AS hj0," +
		" hj0 <= length(k) AS handled, if(handled, hj0, 0) AS hj, t[hj] AS handle_t," +
		" NOT handled OR d[hj] = 0 OR handle_t <= d[hj] AS handle_ok," +
		" arrayCount(" + in(cases.EventVerifyFail) + ") AS reworks," +
		" arrayExists(" + in(cases.EventExtendApprove) + ") AS extended," +
		" arrayFirstIndex(" + in(cases.EventClose) + ") AS cj, cj > 0 AS closed," +
		" NOT closed OR d[cj] = 0 OR t[cj] <= d[cj] AS close_ok," +
		" arrayExists(" + in(cases.EventOverdue) + ") OR NOT sign_ok OR NOT handle_ok OR NOT close_ok AS overdue," +
		" arraySum(arrayMap((ss, kk, aa) -> if(aa = i AND kk = " + code(cases.EventEvaluate) + ", ss, 0), s, k, a)) AS sat_sum," +
		" arrayCount(" + in(cases.EventEvaluate) + ") AS sat_n" +
		" FROM (SELECT case_id," +
		" arraySort(groupArray((seq, " + db.msExpr("ts") + ", toUInt8(indexOf([" + strings.Join(kinds, ", ") + "], kind)), " +
		db.msExpr("due") + ", satisfaction))) AS raw," +
		" arrayMap(x -> x.1, raw) AS rseq," +
		" arrayFilter((x, q, nq) -> q != nq, raw, rseq, arrayPushBack(arrayPopFront(rseq), 0)) AS evs," +
		" arrayMap(x -> x.2, evs) AS t, arrayMap(x -> x.3, evs) AS k, arrayMap(x -> x.4, evs) AS d, arrayMap(x -> x.5, evs) AS s," +
		" arrayCumSum(arrayMap(x -> toUInt32(x = 1), k)) AS a," +
		" arrayMap(x -> x.1, arrayFilter(x -> x.3 = 1, evs)) AS dseqs," +
		" arraySort(groupArrayIf((seq, " + db.msExpr("ts") + ", unit, grid, actor), kind = 'dispatch')) AS draw," +
		" arrayFilter((x, j) -> has(dseqs, x.1) AND (j = length(draw) OR draw[j + 1].1 != x.1), draw, arrayEnumerate(draw)) AS disp" +
		" FROM " + quoteTable(db.opts.Database, "case_events") + " WHERE " + since + " GROUP BY case_id)" +
		" ARRAY JOIN arrayEnumerate(disp) AS i" +
		" WHERE dispatched >= " + fmt.Sprint(from) + " AND dispatched < " + fmt.Sprint(to)
}

// CaseTallies counts, from the stored case events, the assignments
// dispatched in [from, to) per unit, grid or dispatcher (see cases.Tally),
// ordered by key. Everything that happened to an assignment counts, also
// after to. inScope, when not nil, keeps only the assignments of the grids
// it accepts (a scoped token's subtree).
func (db *DB) CaseTallies(ctx context.Context, by CaseStatsBy, from, to time.Time, inScope func(grid string) bool) ([]cases.Tally, error) {
	keyExpr, ok := map[CaseStatsBy]string{CaseStatsByUnit: "disp[i].3", CaseStatsByGrid: "disp[i].4", CaseStatsByDispatcher: "disp[i].5"}[by]
	if !ok {
		return nil, fmt.Errorf("storage: case statistics by %q: want unit, grid or dispatcher", by)
	}
	query := "SELECT key, grid, count(), countIf(returned AND next_unit != unit), countIf(returned AND next_unit = unit)," +
		" countIf(withdrawn), countIf(signed), countIf(signed AND sign_ok), countIf(handled), countIf(handled AND handle_ok)," +
		" countIf(reworks > 0), sum(reworks), countIf(extended), countIf(closed), countIf(closed AND close_ok)," +
		" countIf(overdue AND NOT (returned AND next_unit != unit) AND NOT withdrawn)," +
		" sum(sat_sum), sum(sat_n), sumIf(sign_t - dispatched, signed), sumIf(handle_t - dispatched, handled)" +
		" FROM (" + db.caseAssignments(keyExpr, from.UnixMilli(), to.UnixMilli()) + ") GROUP BY key, grid"
	rows, err := db.conn.Query(ctx, query)
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
			ss                                                                        uint64
			signMs, handleMs                                                          int64
		)
		if err := rows.Scan(&tl.Key, &grid, &rec, &mis, &wrong, &wd, &sg, &sgOK, &hd, &hdOK, &rwk, &rws, &ext, &cl, &clOK, &ovd,
			&ss, &sn, &signMs, &handleMs); err != nil {
			return nil, fmt.Errorf("storage: case statistics by %s: %w", by, err)
		}
		if inScope != nil && !inScope(grid) {
			continue
		}
		tl.Received, tl.Misrouted, tl.WrongReturns, tl.Withdrawn = int(rec), int(mis), int(wrong), int(wd)
		tl.Signed, tl.SignedOnTime, tl.Handled, tl.HandledOnTime = int(sg), int(sgOK), int(hd), int(hdOK)
		tl.Reworked, tl.Reworks, tl.Extended, tl.Closed, tl.ClosedOnTime, tl.Overdue = int(rwk), int(rws), int(ext), int(cl), int(clOK), int(ovd)
		tl.SatisfactionSum, tl.SatisfactionN = int(ss), int(sn)
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

// CaseActions counts the case events stamped in [from, to) per role, actor
// and kind: what each member of staff did. inScope, when not nil, keeps
// only the events of the grids it accepts. An event stored twice (a
// retried write) counts once; the event of an action whose save failed
// after its event was written counts beside the event that replaced it
// (CaseTallies counts only the latter), a rare storage failure's trace.
func (db *DB) CaseActions(ctx context.Context, from, to time.Time, inScope func(grid string) bool) ([]cases.ActionCount, error) {
	query := "SELECT role, actor, kind, grid, uniqExact(case_id, seq) FROM " + quoteTable(db.opts.Database, "case_events") +
		" WHERE " + db.msExpr("ts") + " >= toInt64(?) AND " + db.msExpr("ts") + " < toInt64(?) GROUP BY role, actor, kind, grid"
	rows, err := db.conn.Query(ctx, query, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("storage: case actions: %w", err)
	}
	defer rows.Close()
	sums := map[cases.ActionCount]int{}
	for rows.Next() {
		var (
			a          cases.ActionCount
			kind, grid string
			n          uint64
		)
		if err := rows.Scan(&a.Role, &a.Actor, &kind, &grid, &n); err != nil {
			return nil, fmt.Errorf("storage: case actions: %w", err)
		}
		if inScope != nil && !inScope(grid) {
			continue
		}
		a.Kind = cases.EventKind(kind)
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
