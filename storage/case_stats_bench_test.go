package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
)

// fillCaseYear stores a year of cases (2026) in db's case_events with
// INSERT … SELECT FROM numbers(): n cases spread evenly over the year, 58
// units, 500 grids, 10 dispatchers; each case received, registered,
// dispatched, signed (late for a third), handled, verified, closed and
// evaluated, and every fifth also returned and dispatched again first
// (10 events). It returns the number of events.
func fillCaseYear(tb testing.TB, db *storage.DB, n int) int {
	tb.Helper()
	ctx := context.Background()
	var tsType string
	if err := db.Conn().QueryRow(ctx, "SELECT type FROM system.columns WHERE database = ? AND table = 'case_events' AND name = 'ts'",
		db.Database()).Scan(&tsType); err != nil {
		tb.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	step := (time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - start) / int64(n)
	ms := func(e string) string {
		if tsType == "Int64" {
			return e
		}
		return "fromUnixTimestamp64Milli(toInt64(" + e + "))"
	}
	const minute = 60000
	short := "['receive', 'register', 'dispatch', 'sign', 'handle', 'verify_pass', 'close', 'evaluate']"
	long := "['receive', 'register', 'dispatch', 'return', 'dispatch', 'sign', 'handle', 'verify_pass', 'close', 'evaluate']"
	// Minutes after the case's start of each event, and of its deadline.
	shortAt := "[0, 5, 10, 10 + late, 200, 300, 1440, 1500]"
	longAt := "[0, 5, 10, 15, 20, 20 + late, 200, 300, 1440, 1500]"
	shortDue := "[0, 0, 40, 40, 480, 0, 2880, 0]"
	longDue := "[0, 0, 40, 0, 50, 50, 480, 0, 2880, 0]"
	q := "INSERT INTO `" + db.Database() + "`.case_events (ts, case_id, seq, actor, role, kind, unit, grid, category, source, due, satisfaction)" +
		" SELECT " + ms("s + at * "+fmt.Sprint(minute)) + ", concat('case-', toString(n)), toUInt32(seq), " +
		" if(kind = 'dispatch', concat('disp-', toString(n % 10)), 'someone'), if(kind = 'dispatch', 'dispatcher', 'unit'), kind," +
		" if(kind = 'dispatch' AND seq = 3 AND n % 5 = 0, concat('unit-', toString((n + 1) % 58)), concat('unit-', toString(n % 58)))," +
		" concat('G', toString(n % 500)), 'E0101', 'patrol', " + ms("if(due = 0, 0, s + due * "+fmt.Sprint(minute)+")") + "," +
		" toUInt8(if(kind = 'evaluate', 1 + n % 5, 0))" +
		" FROM (SELECT number AS n, toInt64(" + fmt.Sprint(start) + " + number * " + fmt.Sprint(step) + ") AS s, (number % 3) * 20 AS late," +
		" if(n % 5 = 0, " + long + ", " + short + ") AS kinds, if(n % 5 = 0, " + longAt + ", " + shortAt + ") AS ats," +
		" if(n % 5 = 0, " + longDue + ", " + shortDue + ") AS dues" +
		" FROM system.numbers LIMIT " + fmt.Sprint(n) + ")" +
		" ARRAY JOIN kinds AS kind, ats AS at, dues AS due, arrayEnumerate(kinds) AS seq"
	if err := db.Conn().Exec(ctx, q); err != nil {
		tb.Fatalf("fill case events: %v", err)
	}
	var events uint64
	if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+db.Database()+"`.case_events").Scan(&events); err != nil {
		tb.Fatal(err)
	}
	return int(events)
}

// BenchmarkCaseStatsYear measures the statistics of a year of cases (≥ 1
// M events) read from the case summaries against baselines run in the
// same benchmark: the same numbers computed from the raw events at query
// time (what the statistics cost without the summaries), and the
// simplest grouping of the raw events (count per unit), the floor of any
// query that reads them. The events are stored as a gridwatch before the
// summaries did; the migration computes the summaries (backfill-s), and
// the benchmark checks that they give the numbers the events give. The
// summaries' runs report how many times faster than computing from the
// events they answer (x-faster-than-…, wall time).
func BenchmarkCaseStatsYear(b *testing.B) {
	db := openBefore(b, 14)
	events := fillCaseYear(b, db, 125_000)
	if events < 1_000_000 {
		b.Fatalf("%d events", events)
	}
	start := time.Now()
	if err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	backfill := time.Since(start)
	from, to := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	sameAsEvents(b, db, from, to, func(g string) bool { return g < "G3" })
	perOp := map[string]time.Duration{}
	// run measures query as benchmark name; vs names the one already run
	// that it reports its speed against.
	run := func(name string, query func(ctx context.Context) (int, error), want int, vs string) {
		b.Run(name, func(b *testing.B) {
			ctx, id := logQueries(name)
			start := time.Now()
			for b.Loop() {
				if n, err := query(ctx); err != nil || n != want {
					b.Fatalf("%d rows, %v", n, err)
				}
			}
			perOp[name] = time.Since(start) / time.Duration(b.N)
			b.ReportMetric(float64(events), "events")
			reportServerCPU(b, db, id)
			if vs != "" {
				b.ReportMetric(float64(perOp[vs])/float64(perOp[name]), "x-faster-than-"+vs)
				b.ReportMetric(backfill.Seconds(), "backfill-s")
			}
		})
	}
	tallies := func(f func(context.Context, storage.CaseStatsBy, time.Time, time.Time, func(string) bool) ([]cases.Tally, error)) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			rows, err := f(ctx, storage.CaseStatsByUnit, from, to, nil)
			return len(rows), err
		}
	}
	actions := func(f func(context.Context, time.Time, time.Time, func(string) bool) ([]cases.ActionCount, error)) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			rows, err := f(ctx, from, to, nil)
			return len(rows), err
		}
	}
	// 10 dispatchers dispatch; the units' staff does the 8 other kinds.
	const actionRows = 10 + 8
	run("tallies_from_events", tallies(db.CaseTalliesFromEvents), 58, "")
	run("tallies", tallies(db.CaseTallies), 58, "tallies_from_events")
	run("actions_from_events", actions(db.CaseActionsFromEvents), actionRows, "")
	run("actions", actions(db.CaseActions), actionRows, "actions_from_events")
	run("baseline_count_by_unit", func(ctx context.Context) (int, error) {
		rows, err := db.Conn().Query(ctx, "SELECT unit, count() FROM `"+db.Database()+"`.case_events GROUP BY unit")
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
		}
		return n, rows.Err()
	}, 58, "")
}

// logQueries returns a context whose queries ClickHouse logs under one
// query id, made of name, and that id, for reportServerCPU.
func logQueries(name string) (context.Context, string) {
	id := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	return clickhouse.Context(context.Background(), clickhouse.WithQueryID(id),
		clickhouse.WithSettings(clickhouse.Settings{"log_queries": 1})), id
}

// reportServerCPU reports the mean CPU time (user) the server spent on the
// queries logged under id, a figure a loaded machine distorts less than
// the wall time, and the rows they read.
func reportServerCPU(b *testing.B, db *storage.DB, id string) {
	ctx := context.Background()
	if err := db.Conn().Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		b.Logf("no query log: %v", err)
		return
	}
	var us, rows float64
	err := db.Conn().QueryRow(ctx, "SELECT avg(ProfileEvents.Values[indexOf(ProfileEvents.Names, 'UserTimeMicroseconds')]), avg(read_rows)"+
		" FROM system.query_log WHERE type = 2 AND query_id = ?", id).Scan(&us, &rows)
	if err != nil {
		b.Logf("no query log: %v", err)
		return
	}
	b.ReportMetric(us/1000, "server-cpu-ms/op")
	b.ReportMetric(rows, "rows-read/op")
}
