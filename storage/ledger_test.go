package storage_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// historyEnd is where the filled history ends: the ledger lookups below are
// about batches of the last day before it.
var historyEnd = time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)

// fillTelemetry stores rows of history in db's telemetry table, evenly over
// the months before historyEnd, with INSERT … SELECT FROM numbers(), in
// batches of 10,000 rows named hist-0, hist-1, … over 1,000 devices and 5
// metrics each.
func fillTelemetry(tb testing.TB, db *storage.DB, rows, months int) {
	tb.Helper()
	ctx := context.Background()
	var tsType string
	if err := db.Conn().QueryRow(ctx, "SELECT type FROM system.columns WHERE database = ? AND table = 'telemetry' AND name = 'ts'",
		db.Database()).Scan(&tsType); err != nil {
		tb.Fatal(err)
	}
	start, step := historySpan(rows, months)
	ts := fmt.Sprintf("toInt64(%d + number * %d)", start, step)
	if tsType != "Int64" {
		ts = "fromUnixTimestamp64Milli(" + ts + ")"
	}
	// Chunks of 10 M rows keep each INSERT's memory and parts modest.
	const chunk = 10_000_000
	for off := 0; off < rows; off += chunk {
		n := min(chunk, rows-off)
		q := fmt.Sprintf("INSERT INTO `%s`.telemetry (ts, received, device, grid, metric, value, batch)"+
			" SELECT %s AS t, t, concat('dev-', toString(number %% 1000)), 'g-0101', concat('m', toString(intDiv(number, 1000) %% 5)),"+
			" toFloat64(number %% 100), concat('hist-', toString(intDiv(number, 10000)))"+
			" FROM (SELECT number + %d AS number FROM system.numbers LIMIT %d)", db.Database(), ts, off, n)
		if err := db.Conn().Exec(ctx, q); err != nil {
			tb.Fatalf("fill telemetry: %v", err)
		}
	}
}

// historySpan returns the first ts of fillTelemetry's history and the
// milliseconds between its rows.
func historySpan(rows, months int) (start, step int64) {
	start = historyEnd.AddDate(0, -months, 0).UnixMilli()
	return start, (historyEnd.UnixMilli() - start) / int64(rows)
}

// replayParts are the parts of a replay after an outage at the end of the
// history: its last two batches, stored already (their answers were lost),
// with their first and last rows' ts, and two batches of the hour after,
// not stored.
func replayParts(tb testing.TB, rows, months int) []storage.Part {
	start, step := historySpan(rows, months)
	ts := func(k int) int64 { return start + int64(k)*step }
	last := (rows - 1) / 10_000
	hist := func(b int) storage.Part {
		first, end := b*10_000, min(rows, (b+1)*10_000)-1
		return storage.Part{ID: "hist-" + strconv.Itoa(b), Record: telemetryRecord(tb, []reading{
			{ts(first), ts(first), "dev-1", "m1", 1}, {ts(end), ts(end), "dev-1", "m1", 1},
		})}
	}
	after := historyEnd.UnixMilli()
	return []storage.Part{
		hist(last - 1), hist(last),
		{ID: "new-1", Record: telemetryRecord(tb, []reading{{after + 1000, after + 1000, "dev-1", "m1", 1}})},
		{ID: "new-2", Record: telemetryRecord(tb, []reading{{after + 3_600_000, after + 3_600_000, "dev-1", "m1", 1}})},
	}
}

// TestWriterLedgerLookupIsBoundedIntegration attacks the promise that a
// replay after an outage succeeds on a table of months (issue 10 item 6):
// the ledger lookup must read the partition of the batches' time range, not
// the batch column of all history. It counts the rows the server reads (a
// count, not a time). Before the fix the lookup read all 1,000,000 rows.
func TestWriterLedgerLookupIsBoundedIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	const rows = 1_000_000
	fillTelemetry(t, db, rows, 6)
	w, _ := newWriter(t, db, storage.WriterOptions{})
	var read atomic.Uint64
	ctx := clickhouse.Context(t.Context(), clickhouse.WithProgress(func(p *clickhouse.Progress) { read.Add(p.Rows) }))
	stored, err := w.Stored(ctx, "telemetry", replayParts(t, rows, 6))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for id := range stored {
		got = append(got, id)
	}
	slices.Sort(got)
	if want := []string{"hist-98", "hist-99"}; !slices.Equal(got, want) {
		t.Fatalf("Stored = %v, want %v", got, want)
	}
	// Six months of history: the last partition holds about a sixth.
	if n := read.Load(); n > rows/3 {
		t.Fatalf("the ledger lookup read %d of %d rows, want at most a third (the last month's partition)", n, rows)
	}
	t.Logf("the ledger lookup read %d of %d rows", read.Load(), rows)
}

// TestWriterLedgerAcrossPartitionsIntegration: the bound is exact, so a
// batch whose rows straddle two monthly partitions is still found.
func TestWriterLedgerAcrossPartitionsIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	w, _ := newWriter(t, db, storage.WriterOptions{})
	ctx := t.Context()
	edge := time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	rec := telemetryRecord(t, []reading{{edge - 1, edge, "d", "m", 1}, {edge, edge, "d", "m", 2}})
	if err := w.Write(ctx, "telemetry", "straddle", rec); err != nil {
		t.Fatal(err)
	}
	for _, r := range []reading{{edge - 1, edge, "d", "m", 1}, {edge, edge, "d", "m", 2}} {
		part := storage.Part{ID: "straddle", Record: telemetryRecord(t, []reading{r})}
		stored, err := w.Stored(ctx, "telemetry", []storage.Part{part})
		if err != nil {
			t.Fatal(err)
		}
		if !stored["straddle"] {
			t.Fatalf("Stored of the batch's row at %d = %v, want it found", r.ts, stored)
		}
	}
}

// TestStoredDistrustsABatchOverTwoPartitionsIntegration: a batch of two
// monthly partitions of which one part committed (an INSERT that failed
// between its parts, or a process killed during it) shows in the ledger.
// Stored must not report it stored, or its replay skips it and the other
// month's rows are lost (as before); UnstoredInDoubt leaves out the rows
// stored, so that the replay stores the rest, once. A batch of one
// partition is trusted as before, and left as it is.
func TestStoredDistrustsABatchOverTwoPartitionsIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	edge := time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	nov, dec := reading{edge - 1, edge, "d", "m", 1}, reading{edge, edge, "d", "m", 2}
	other := reading{edge, edge, "e", "m", 3}
	first, _ := newWriter(t, db, storage.WriterOptions{})
	// November's part committed under the batch's id, December's not.
	if err := first.Write(ctx, "telemetry", "straddle", telemetryRecord(t, []reading{nov})); err != nil {
		t.Fatal(err)
	}
	if err := first.Write(ctx, "telemetry", "one-month", telemetryRecord(t, []reading{other})); err != nil {
		t.Fatal(err)
	}
	// The replay of a restarted process knows nothing of that INSERT.
	w, _ := newWriter(t, db, storage.WriterOptions{})
	parts := []storage.Part{
		{ID: "straddle", Record: telemetryRecord(t, []reading{nov, dec})},
		{ID: "one-month", Record: telemetryRecord(t, []reading{other})},
	}
	stored, err := w.Stored(ctx, "telemetry", parts)
	if err != nil {
		t.Fatal(err)
	}
	if stored["straddle"] || !stored["one-month"] {
		t.Fatalf("Stored = %v, want one-month stored and straddle not: the ledger shows a part of it", stored)
	}
	kept, dropped, err := w.UnstoredInDoubt(ctx, "telemetry", parts[:1])
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 1 || len(kept) != 1 || kept[0].Record.NumRows() != 1 {
		t.Fatalf("UnstoredInDoubt left out %d rows and kept %d parts, want November's row left out and December's kept", dropped, len(kept))
	}
	defer kept[0].Record.Release()
	if err := w.WriteParts(ctx, "telemetry", kept); err != nil {
		t.Fatal(err)
	}
	var rows, readings uint64
	if err := db.Conn().QueryRow(ctx, "SELECT count(), uniqExact(ts, metric) FROM `"+db.Database()+"`.telemetry WHERE device = 'd'").Scan(&rows, &readings); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || readings != 2 {
		t.Fatalf("after the replay the table holds %d rows of %d readings of the batch, want November's and December's once each", rows, readings)
	}
	same, dropped, err := w.UnstoredInDoubt(ctx, "telemetry", parts[1:])
	if err != nil || dropped != 0 || len(same) != 1 || same[0].Record != parts[1].Record {
		t.Fatalf("UnstoredInDoubt of a batch of one partition = %d parts, %d left out (%v); want it as it is", len(same), dropped, err)
	}
}

// BenchmarkReplayDedup times the replay's ledger lookup on a telemetry table
// of 100 M rows over 12 months (GRIDWATCH_BENCH_LEDGER_ROWS to change),
// the old unbounded query and the new one side by side, and reports the
// ratio. Run it by hand (the fill takes minutes):
//
//	go test -run '^$' -bench ReplayDedup -benchtime 3x -timeout 60m ./storage/
func BenchmarkReplayDedup(b *testing.B) {
	rows := 100_000_000
	if v := os.Getenv("GRIDWATCH_BENCH_LEDGER_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		rows = n
	}
	db := benchHistory(b, rows)
	w, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	parts := replayParts(b, rows, 12)
	ids := make([]string, len(parts))
	for i, p := range parts {
		ids[i] = p.ID
	}
	// oldLookup is the lookup before the fix, verbatim.
	oldLookup := func(ctx context.Context) (int, error) {
		r, err := db.Conn().Query(ctx, "SELECT DISTINCT batch FROM `"+db.Database()+"`.`telemetry` WHERE has(?, batch)", ids)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		n := 0
		for r.Next() {
			n++
		}
		return n, r.Err()
	}
	ctx := context.Background()
	var oldTime, newTime time.Duration
	var oldRead, newRead atomic.Uint64
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		n, err := oldLookup(clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { oldRead.Add(p.Rows) })))
		oldTime += time.Since(start)
		if err != nil || n != 2 {
			b.Fatalf("old lookup: %d found, %v", n, err)
		}
		start = time.Now()
		stored, err := w.Stored(clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) { newRead.Add(p.Rows) })), "telemetry", parts)
		newTime += time.Since(start)
		if err != nil || len(stored) != 2 {
			b.Fatalf("new lookup: %v, %v", stored, err)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(oldTime.Seconds()*1000/n, "old-ms/op")
	b.ReportMetric(newTime.Seconds()*1000/n, "new-ms/op")
	b.ReportMetric(oldTime.Seconds()/newTime.Seconds(), "ratio")
	b.ReportMetric(float64(oldRead.Load())/n, "old-rows-read/op")
	b.ReportMetric(float64(newRead.Load())/n, "new-rows-read/op")
	b.Logf("%d rows: old %.1f ms, new %.1f ms per lookup (%.0f× faster); rows read %d vs %d",
		rows, oldTime.Seconds()*1000/n, newTime.Seconds()*1000/n, oldTime.Seconds()/newTime.Seconds(),
		oldRead.Load()/uint64(b.N), newRead.Load()/uint64(b.N))
}

// benchDB is the database BenchmarkReplayDedup fills once per test binary:
// the benchmark function runs several times, with growing b.N.
var benchDB struct {
	rows int
	db   *storage.DB
}

// benchHistory returns a database whose telemetry holds rows of history.
func benchHistory(b *testing.B, rows int) *storage.DB {
	b.Helper()
	if benchDB.db != nil && benchDB.rows == rows {
		return benchDB.db
	}
	// The database outlives the benchmark function's runs (one per b.N);
	// it goes with the shared server's directory, or, on an external
	// server, at the next run.
	o := storage.Options{Addr: storagetest.Addr(b), Database: "gwbench_ledger", Password: storagetest.Password(b)}
	db, err := storage.Open(context.Background(), o, nil)
	if err == nil {
		err = db.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS gwbench_ledger")
		db.Close()
	}
	if err == nil {
		db, err = storage.Open(context.Background(), o, nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fillTelemetry(b, db, rows, 12)
	b.Logf("filled telemetry with %d rows over 12 months in %s", rows, time.Since(start).Round(time.Second))
	benchDB.rows, benchDB.db = rows, db
	return db
}

// TestStoredDistrustsUnknownStatus checks that a batch whose INSERT was
// answered UNKNOWN_STATUS_OF_INSERT (a replicated table that lost ZooKeeper
// while committing the part, which it keeps until a check may drop it) is
// reported not stored although the ledger shows its rows, so that the
// replay sends the block again for the block checksums to decide; and that
// it is trusted again once an INSERT of it succeeds.
func TestStoredDistrustsUnknownStatus(t *testing.T) {
	db := storagetest.Migrated(t)
	now := time.Now().UnixMilli()
	rec := telemetryRecord(t, []reading{{ts: now, received: now, device: "d1", metric: "pm25", value: 1}})
	defer rec.Release()
	parts := []storage.Part{{ID: "batch-u", Record: rec}}
	plain, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Write(t.Context(), "telemetry", "batch-u", rec); err != nil {
		t.Fatal(err)
	}

	lost, answer := storage.AnswerInserts(db)
	w, err := storage.NewWriter(lost, storage.WriterOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	unknown := &clickhouse.Exception{Code: 319, Name: "DB::Exception", Message: "Unknown status, client must retry"}
	answer(unknown, nil)
	if err := w.Write(t.Context(), "telemetry", "batch-u", rec); err == nil {
		t.Fatal("Write succeeded, want the unknown status")
	}
	for _, c := range []struct {
		w    *storage.Writer
		want bool
	}{{plain, true}, {w, false}} {
		have, err := c.w.Stored(t.Context(), "telemetry", parts)
		if err != nil || have["batch-u"] != c.want {
			t.Fatalf("Stored = %v (%v), want batch-u %v", have, err, c.want)
		}
		// Nor are its readings left out as stored by another batch.
		kept, dropped, err := c.w.Unstored(t.Context(), "telemetry", parts)
		if err != nil || (len(kept) == 0) != c.want || dropped != map[bool]int{true: 1}[c.want] {
			t.Fatalf("Unstored = %d parts, %d left out (%v), want the reading left out: %v", len(kept), dropped, err, c.want)
		}
	}

	answer(nil, nil)
	if err := w.Write(t.Context(), "telemetry", "batch-u", rec); err != nil {
		t.Fatal(err)
	}
	if have, err := w.Stored(t.Context(), "telemetry", parts); err != nil || !have["batch-u"] {
		t.Fatalf("Stored after a successful INSERT = %v (%v), want batch-u", have, err)
	}

	// The same answer after the caller gave up (ingest.insert_timeout while
	// the replica waits on ZooKeeper) is distrusted as well: before, only
	// an answer the caller was still waiting for was noted, and the replay
	// skipped the batch on the strength of a part that could be dropped.
	late := make(chan struct{})
	answer(unknown, late)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	err = w.Write(ctx, "telemetry", "batch-u", rec)
	cancel()
	if err == nil {
		t.Fatal("Write succeeded, want the caller's deadline")
	}
	close(late)
	if have, err := w.Stored(t.Context(), "telemetry", parts); err != nil || have["batch-u"] {
		t.Fatalf("Stored after an unknown status answered late = %v (%v), want batch-u not stored", have, err)
	}
}
