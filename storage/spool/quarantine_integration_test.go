package spool

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// telemetryBatch builds a telemetry batch of n readings from ts on, as the
// ingest batcher does, with the extra Float64 columns given.
func telemetryBatch(t *testing.T, ts int64, n int, extra ...string) arrow.Record {
	t.Helper()
	fields := []arrow.Field{
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
		{Name: "received", Type: arrow.FixedWidthTypes.Timestamp_ms},
		{Name: "device", Type: arrow.BinaryTypes.String},
		{Name: "grid", Type: arrow.BinaryTypes.String},
		{Name: "metric", Type: arrow.BinaryTypes.String},
		{Name: "value", Type: arrow.PrimitiveTypes.Float64},
	}
	for _, name := range extra {
		fields = append(fields, arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float64})
	}
	b := array.NewRecordBuilder(memory.NewGoAllocator(), arrow.NewSchema(fields, nil))
	defer b.Release()
	for i := range n {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(ts + int64(i)))
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(ts + int64(i)))
		b.Field(2).(*array.StringBuilder).Append("wl-001")
		b.Field(3).(*array.StringBuilder).Append("g-0101")
		b.Field(4).(*array.StringBuilder).Append("level_cm")
		b.Field(5).(*array.Float64Builder).Append(float64(i))
		for j := range extra {
			b.Field(6 + j).(*array.Float64Builder).Append(1)
		}
	}
	rec := b.NewRecord()
	t.Cleanup(rec.Release)
	return rec
}

// migratedWriter opens the database of o, migrates it and returns it with
// a writer that tries each INSERT once; the database is closed with t.
func migratedWriter(t *testing.T, o storage.Options) (*storage.DB, *storage.Writer) {
	t.Helper()
	db, err := storage.Open(t.Context(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := storage.NewWriter(db, storage.WriterOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return db, w
}

// TestSpoolSetsAsideRefusedBatchIntegration attacks, on the real
// ClickHouse, the README's promise that the spool replays what it holds
// once ClickHouse can take it (issue 10 item 5: "one bad spool segment
// stops all ingestion"). A batch the telemetry table cannot take — it has
// a column the table lacks, as after a downgrade or a table altered by
// hand — is spooled first, in one replay INSERT with three good batches.
// The good ones must be stored, the bad one quarantined with ClickHouse's
// reason and counted, and, once the table is fixed, replayed by hand. On
// the old code replay retried the group for ever and stored nothing.
func TestSpoolSetsAsideRefusedBatchIntegration(t *testing.T) {
	o := storagetest.Options(t)
	database := o.Database
	ctx := t.Context()
	db, w := migratedWriter(t, o)

	// Spool the batches while ClickHouse is out of reach, so that they
	// wait on disk, the bad one first.
	dir := t.TempDir()
	down := func(context.Context, string, []storage.Part) error {
		return &storage.WriteError{Err: errors.New("connection refused")}
	}
	offline := &Spool{Dir: dir, Durable: true, Insert: down, Stored: w.Stored, RetryBackoff: time.Hour}
	if err := offline.Open(ctx); err != nil {
		t.Fatal(err)
	}
	const ts = 1732233600000
	batches := []struct {
		id  string
		rec arrow.Record
	}{
		{"bad", telemetryBatch(t, ts, 5, "bogus")},
		{"good1", telemetryBatch(t, ts+1000, 10)},
		{"good2", telemetryBatch(t, ts+2000, 10)},
		{"good3", telemetryBatch(t, ts+3000, 10)},
	}
	for _, b := range batches {
		if err := offline.Write(ctx, "telemetry", b.id, b.rec); err != nil {
			t.Fatal(err)
		}
	}
	offline.Close()

	reg := prometheus.NewRegistry()
	s := &Spool{Dir: dir, Durable: true, Insert: w.WriteParts, Stored: w.Stored,
		RetryBackoff: 10 * time.Millisecond, Registerer: reg}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitForLong(t, "the spool drained", func() bool { return s.Stats().Segments == 0 })

	count := func(where string) uint64 {
		t.Helper()
		var n uint64
		if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+database+"`.telemetry WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("batch IN ('good1', 'good2', 'good3')"); n != 30 {
		t.Fatalf("good rows stored = %d, want 30", n)
	}
	if n := count("batch = 'bad'"); n != 0 {
		t.Fatalf("bad rows stored = %d, want 0", n)
	}
	if n := testutil.ToFloat64(s.metrics.quarantined.WithLabelValues(ReasonRejected)); n != 1 {
		t.Fatalf("gridwatch_spool_segments_quarantined_total{reason=rejected} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.metrics.quarantinedRows.WithLabelValues("telemetry", ReasonRejected)); n != 5 {
		t.Fatalf("gridwatch_spool_rows_quarantined_total = %v, want 5", n)
	}
	if n := s.Quarantined(); n != 1 {
		t.Fatalf("Quarantined() = %d, want 1", n)
	}
	list, err := ListQuarantine(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Batch != "bad" || list[0].Rows != 5 || list[0].Reason != ReasonRejected ||
		!strings.Contains(list[0].Error, "bogus") {
		t.Fatalf("quarantine = %+v, want batch bad, 5 rows, rejected, naming the column bogus", list)
	}

	// Replayed by hand before the fix, it stays where it is.
	if _, err := ReplayQuarantined(ctx, dir, list[0].File, w.WriteParts, w.Stored, nil, time.Minute); err == nil {
		t.Fatal("ReplayQuarantined before the fix succeeded")
	}
	if n := s.Quarantined(); n != 1 {
		t.Fatalf("Quarantined() after a failed replay = %d, want 1", n)
	}
	// Fixed, it is stored, once.
	if err := db.Conn().Exec(ctx, "ALTER TABLE `"+database+"`.telemetry ADD COLUMN bogus Float64 DEFAULT 0"); err != nil {
		t.Fatal(err)
	}
	if rows, err := ReplayQuarantined(ctx, dir, list[0].File, w.WriteParts, w.Stored, nil, time.Minute); err != nil || rows != 5 {
		t.Fatalf("ReplayQuarantined after the fix = %d, %v; want 5 rows", rows, err)
	}
	if n := count("batch = 'bad'"); n != 5 {
		t.Fatalf("bad rows stored after the replay = %d, want 5", n)
	}
	if n := s.Quarantined(); n != 0 {
		t.Fatalf("Quarantined() after the replay = %d, want 0", n)
	}
}

// waitForLong polls cond until it holds or a minute passes: replays on the
// real server of a loaded machine.
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
