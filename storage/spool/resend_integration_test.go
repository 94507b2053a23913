package spool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestSpoolLeavesOutReadingsAnotherNodeStoredIntegration attacks, on the
// real ClickHouse, issue 14's promise that a node killed under load loses
// and duplicates nothing. A durable node fsyncs a group commit and dies
// before its PUBACKs go out; the devices resend to another node, which
// stores the resends under its own batch id, and the first node's spool
// replays the first copies when it is back. The ledger, by batch id, cannot
// tell; the replay's second look, by reading, must leave them out (seen as
// 4-8 readings stored twice in TestClusterThreeNodesBehindHAProxy at load
// ~40). Readings the other node did not get are still stored.
func TestSpoolLeavesOutReadingsAnotherNodeStoredIntegration(t *testing.T) {
	o := storagetest.Options(t)
	db, w := migratedWriter(t, o)
	ctx := t.Context()
	dir := t.TempDir()
	ts := time.Now().UnixMilli()

	// The node that dies: its group commit of 10 readings is fsynced, and
	// no INSERT of it got through.
	down := func(context.Context, string, []storage.Part) error { return errors.New("node killed") }
	dead := &Spool{Dir: dir, Durable: true, Insert: down, Stored: w.Stored, RetryBackoff: time.Hour}
	if err := dead.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dead.Write(ctx, "telemetry", "first-copy", telemetryBatch(t, ts, 10)); err != nil {
		t.Fatal(err)
	}
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}
	// Another node stores the resends of four of them.
	resent := telemetryBatch(t, ts+5, 4)
	defer resent.Release()
	if err := w.Write(ctx, "telemetry", "resent-elsewhere", resent); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	back := &Spool{Dir: dir, Durable: true, Insert: w.WriteParts, Stored: w.Stored, Unstored: w.Unstored,
		RetryBackoff: 50 * time.Millisecond, Registerer: reg}
	if err := back.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	waitFor(t, "the spool drained", func() bool { return back.Stats().Segments == 0 })

	storedOnce(t, db, o.Database, ts, 10)
	if got := testutil.ToFloat64(back.metrics.readingsDeduplicated.WithLabelValues("telemetry")); got != 4 {
		t.Errorf("readings left out = %v, want the 4 stored by the other node", got)
	}
}

// TestSpoolReplaysABatchOverTwoMonthsStoredInPartIntegration: a lone
// node's batch of readings over the turn of a month, whose INSERT stored
// November's part and then failed (or the process was killed before
// December's part committed), is fsynced in the spool. Its replay, after a
// restart, finds the batch in the ledger; it must store December's
// readings, once, and November's not again. Before, the replay skipped the
// batch as stored and December's 5 readings were lost.
func TestSpoolReplaysABatchOverTwoMonthsStoredInPartIntegration(t *testing.T) {
	o := storagetest.Options(t)
	db, w := migratedWriter(t, o)
	ctx := t.Context()
	dir := t.TempDir()
	ts := time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli() - 5

	november := telemetryBatch(t, ts, 5)
	defer november.Release()
	inPart := func(ctx context.Context, table string, parts []storage.Part) error {
		if err := w.Write(ctx, table, parts[0].ID, november); err != nil {
			return err
		}
		return errors.New("node killed before December's part committed")
	}
	dead := &Spool{Dir: dir, Durable: true, Insert: inPart, Stored: w.Stored, RetryBackoff: time.Hour}
	if err := dead.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dead.Write(ctx, "telemetry", "over-the-month", telemetryBatch(t, ts, 10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first INSERT tried", func() bool { return len(storedTimes(t, db, o.Database, ts)) == 5 })
	if err := dead.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted, with the writer of a new process.
	w2, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	back := &Spool{Dir: dir, Durable: true, Insert: w2.WriteParts, Stored: w2.Stored, Unstored: w2.UnstoredInDoubt,
		RetryBackoff: 50 * time.Millisecond}
	if err := back.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	waitFor(t, "the spool drained", func() bool { return back.Stats().Segments == 0 })
	storedOnce(t, db, o.Database, ts, 10)
}

// storedOnce checks that wl-001's n readings from ts on are each stored
// once.
func storedOnce(t *testing.T, db *storage.DB, database string, ts, n int64) {
	t.Helper()
	seen := storedTimes(t, db, database, ts)
	for at := range n {
		if seen[at] != 1 {
			t.Errorf("reading at ts+%d stored %d times, want once (all: %v)", at, seen[at], seen)
		}
	}
}

// storedTimes counts wl-001's stored readings from ts on, by their ts - ts.
func storedTimes(t *testing.T, db *storage.DB, database string, ts int64) map[int64]uint64 {
	t.Helper()
	rows, err := db.Conn().Query(t.Context(), "SELECT toInt64(ts) - ?, count() FROM "+database+".telemetry WHERE device = 'wl-001' AND ts >= toInt64(?) GROUP BY ts ORDER BY ts", ts, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[int64]uint64{}
	for rows.Next() {
		var at int64
		var n uint64
		if err := rows.Scan(&at, &n); err != nil {
			t.Fatal(err)
		}
		seen[at] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return seen
}

// TestSpoolReplaysOnTwoNodesAtOnceStoreAReadingOnceIntegration: two nodes
// each spooled a copy of the same 10 readings (the first died before its
// PUBACKs, the devices resent to the second while ClickHouse was away),
// and both replay at the same moment. Each replay's second look, before
// the other's INSERT landed, would find none of them stored, and both
// would store them: the INSERTs wait here for each other, up to 10 s, to
// make that moment certain. Under Exclusive (cluster.Mutex on the nodes;
// here one mutex of the process) one node's second look and INSERT run
// at a time, so the second finds the first's copy and leaves it out.
func TestSpoolReplaysOnTwoNodesAtOnceStoreAReadingOnceIntegration(t *testing.T) {
	o := storagetest.Options(t)
	db, w := migratedWriter(t, o)
	ctx := t.Context()
	ts := time.Now().UnixMilli()
	dirs := []string{t.TempDir(), t.TempDir()}
	for i, dir := range dirs {
		down := func(context.Context, string, []storage.Part) error { return errors.New("ClickHouse away") }
		sp := &Spool{Dir: dir, Durable: true, Insert: down, Stored: w.Stored, RetryBackoff: time.Hour}
		if err := sp.Open(ctx); err != nil {
			t.Fatal(err)
		}
		if err := sp.Write(ctx, "telemetry", fmt.Sprintf("copy-on-node-%d", i), telemetryBatch(t, ts, 10)); err != nil {
			t.Fatal(err)
		}
		if err := sp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var (
		exclusion sync.Mutex
		arrived   atomic.Int32
		together  = make(chan struct{})
	)
	insert := func(ctx context.Context, table string, parts []storage.Part) error {
		if len(parts) > 0 {
			if arrived.Add(1) == 2 {
				close(together)
			}
			select {
			case <-together:
			case <-time.After(10 * time.Second):
			}
		}
		return w.WriteParts(ctx, table, parts)
	}
	var spools []*Spool
	for _, dir := range dirs {
		sp := &Spool{Dir: dir, Durable: true, Insert: insert, Stored: w.Stored, Unstored: w.Unstored, RetryBackoff: 50 * time.Millisecond,
			InsertTimeout: time.Minute, Exclusive: func(ctx context.Context, fn func(context.Context) error) error {
				exclusion.Lock()
				defer exclusion.Unlock()
				return fn(ctx)
			}}
		spools = append(spools, sp)
	}
	for _, sp := range spools {
		if err := sp.Open(ctx); err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
	}
	waitForLong(t, "both spools drained", func() bool { return spools[0].Stats().Segments == 0 && spools[1].Stats().Segments == 0 })
	storedOnce(t, db, o.Database, ts, 10)
	left := 0.0
	for _, sp := range spools {
		left += testutil.ToFloat64(sp.metrics.readingsDeduplicated.WithLabelValues("telemetry"))
	}
	if left != 10 {
		t.Errorf("readings left out = %v, want the 10 the other node stored", left)
	}
}
