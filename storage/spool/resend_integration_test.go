package spool

import (
	"context"
	"errors"
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

	rows, err := db.Conn().Query(ctx, "SELECT toInt64(ts) - ?, count() FROM "+o.Database+".telemetry WHERE device = 'wl-001' AND ts >= toInt64(?) GROUP BY ts ORDER BY ts", ts, ts)
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
	for at := range int64(10) {
		if seen[at] != 1 {
			t.Errorf("reading at ts+%d stored %d times, want once (all: %v)", at, seen[at], seen)
		}
	}
	if got := testutil.ToFloat64(back.metrics.readingsDeduplicated.WithLabelValues("telemetry")); got != 4 {
		t.Errorf("readings left out = %v, want the 4 stored by the other node", got)
	}
}
