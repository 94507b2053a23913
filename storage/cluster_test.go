package storage_test

import (
	"context"
	"crypto/rand"
	"maps"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
	"golang.org/x/sync/errgroup"
)

// openCluster opens database name through replica i of c with the cluster
// set, closed when t ends.
func openCluster(t testing.TB, c *storagetest.Cluster, i int, name string) *storage.DB {
	t.Helper()
	db, err := storage.Open(t.Context(), storage.Options{Addr: c.Addr(i), Database: name,
		Password: storagetest.Password(t), Cluster: storagetest.ClusterName}, nil)
	if err != nil {
		t.Fatalf("open replica %d: %v", i, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// waitRows polls query on db until it returns want, failing on more (a
// duplicate) or when the deadline passes.
func waitRows(t testing.TB, db *storage.DB, want uint64, query string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var n uint64
		err := db.Conn().QueryRow(context.Background(), strings.ReplaceAll(query, "{db}", db.Database())).Scan(&n)
		switch {
		case err == nil && n == want:
			return
		case err == nil && n > want:
			t.Fatalf("%s = %d, want %d (duplicated)", query, n, want)
		case time.Now().After(deadline):
			t.Fatalf("%s = %d (%v) after 3 minutes, want %d", query, n, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterSchema migrates a database on two 18.16 replicas of one shard
// over ZooKeeper, then writes through one replica and reads through the
// other: telemetry with its batch ledger, the registry (FINAL through the
// Distributed table) and a second Migrate through the other replica, after
// which that replica must become ready.
func TestClusterSchema(t *testing.T) {
	c := storagetest.StartCluster(t, 2)
	name := "gwcluster_" + strings.ToLower(rand.Text())
	a := openCluster(t, c, 0, name)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	var engine string
	if err := a.Conn().QueryRow(t.Context(), "SELECT engine FROM system.tables WHERE database = ? AND name = 'telemetry_local'", name).Scan(&engine); err != nil || engine != "ReplicatedMergeTree" {
		t.Fatalf("telemetry_local engine %q (%v), want ReplicatedMergeTree", engine, err)
	}

	var swapped uint64
	if err := a.Conn().QueryRow(t.Context(), "SELECT count() FROM system.tables WHERE database = ? AND position(name, '__') > 0", name).Scan(&swapped); err != nil || swapped != 0 {
		t.Fatalf("%d Distributed tables of an ALTER's swap left behind (%v)", swapped, err)
	}

	b := openCluster(t, c, 1, name)
	// The columns an ALTER added on one replica reached the other through
	// ZooKeeper, and each server's Distributed table has them.
	for i, db := range []*storage.DB{a, b} {
		var n uint64
		if err := db.Conn().QueryRow(t.Context(), "SELECT count() FROM system.columns WHERE database = ? AND table IN ('alerts', 'alerts_local') AND name = 'case_id'", name).Scan(&n); err != nil || n != 2 {
			t.Fatalf("replica %d: alerts and alerts_local have case_id %d times (%v), want 2", i+1, n, err)
		}
	}
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate again through the other replica: %v", err)
	}
	// The second Migrate may have read the bookkeeping table before the
	// replica fetched the first's last rows (its own records of them are the
	// same blocks, which the shard drops as duplicates): the replica becomes
	// ready once it has fetched them.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		err := b.Ready(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready through the other replica: %v after a minute", err)
		}
	}
	// The bookkeeping lost on every replica, as a replica that has not
	// fetched it yet reads it: the ADD COLUMNs run ON CLUSTER again. A
	// mutation, which the replicas apply in their own time, not a TRUNCATE:
	// 18.16's waits for every replica and hung past the 5-minute read
	// timeout in two fresh-clone runs at load ~30.
	if err := a.Conn().Exec(t.Context(), "ALTER TABLE `"+name+"`.schema_migrations_local DELETE WHERE 1"); err != nil {
		t.Fatal(err)
	}
	for _, db := range []*storage.DB{a, b} {
		for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			var n uint64
			err := db.Conn().QueryRow(t.Context(), "SELECT count() FROM `"+name+"`.schema_migrations_local").Scan(&n)
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bookkeeping deleted: %d rows left (%v) after 10 minutes", n, err)
			}
		}
	}
	if err := b.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate with no migration recorded, all run again: %v", err)
	}

	now := time.Now().UnixMilli()
	rec := telemetryRecord(t, []reading{{ts: now, received: now, device: "d1", metric: "pm25", value: 1},
		{ts: now + 1, received: now, device: "d2", metric: "pm25", value: 2}})
	defer rec.Release()
	wa, err := storage.NewWriter(a, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := wa.Write(t.Context(), "telemetry", "batch-1", rec); err != nil {
		t.Fatal(err)
	}
	waitRows(t, b, 2, "SELECT count() FROM `{db}`.telemetry WHERE batch = 'batch-1'")
	waitRows(t, b, 2, "SELECT count() FROM `{db}`.telemetry_local")

	// The ledger through the other replica, and a replay of the batch there
	// as the block its first INSERT sent: the shard's replicas share the
	// block's checksum in ZooKeeper and drop it.
	wb, err := storage.NewWriter(b, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have, err := wb.Stored(t.Context(), "telemetry", []storage.Part{{ID: "batch-1", Record: rec}, {ID: "batch-2", Record: rec}})
	if err != nil || !have["batch-1"] || have["batch-2"] {
		t.Fatalf("Stored through the other replica = %v (%v), want batch-1 alone", have, err)
	}
	if err := wb.Write(t.Context(), "telemetry", "batch-1", rec); err != nil {
		t.Fatal(err)
	}
	if err := wb.Write(t.Context(), "telemetry", "batch-2", rec); err != nil {
		t.Fatal(err)
	}
	waitRows(t, a, 4, "SELECT count() FROM `{db}`.telemetry_local")
	waitRows(t, a, 2, "SELECT count() FROM `{db}`.telemetry WHERE batch = 'batch-1'")

	dev := devices.Device{ID: "dev-1", Type: "noise", Grid: "g1", Name: "first"}
	if err := a.SaveDevices(t.Context(), []devices.Device{dev}); err != nil {
		t.Fatal(err)
	}
	dev.Name = "second"
	if err := a.SaveDevices(t.Context(), []devices.Device{dev}); err != nil {
		t.Fatal(err)
	}
	waitRows(t, b, 2, "SELECT count() FROM `{db}`.registry_local WHERE kind = 'device'")
	got, err := b.LoadDevices(t.Context())
	if err != nil || len(got) != 1 || got[0].Name != "second" {
		t.Fatalf("LoadDevices through the other replica = %+v (%v), want the second version alone", got, err)
	}

	// The cases one node saved, read by another through the Distributed
	// tables (LoadCasesChanged's GLOBAL IN).
	ts := time.Now().UTC().Truncate(time.Millisecond)
	cs := cases.Case{ID: "C1", Version: 1, Source: cases.SourcePatrol, Category: "road", Grid: "G1", Status: cases.StatusReceived, Received: ts, Updated: ts}
	if err := a.SaveCases(t.Context(), []cases.Case{cs}, 100, []cases.Event{{CaseID: "C1", Seq: 1, TS: ts, Kind: cases.EventReceive}}); err != nil {
		t.Fatal(err)
	}
	var changed []cases.Case
	deadline := time.Now().Add(time.Minute)
	for len(changed) == 0 && time.Now().Before(deadline) {
		if changed, _, err = b.LoadCasesChanged(t.Context(), 100); err != nil {
			t.Fatalf("LoadCasesChanged through the other replica: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(changed) != 1 || changed[0].ID != "C1" {
		t.Fatalf("LoadCasesChanged through the other replica = %+v, want C1", changed)
	}
}

// TestClusterLookupsSeeEveryReplica attacks issue 14's promise that a
// reading acknowledged to the fleet is stored once across a node's death.
// A device resends to a second node what the first stored a moment ago
// through the other replica, which has not fetched it yet (after a
// ZooKeeper outage every replica catches up at once, minutes behind): the
// second node's redelivery check (StoredReadings) and replay's second look
// (Unstored) must find it there, not read their own replica alone (seen
// as 10 readings of one device stored twice, through both replicas, in a
// fresh-clone run of TestClusterThreeNodesBehindHAProxy).
func TestClusterLookupsSeeEveryReplica(t *testing.T) {
	c := storagetest.StartCluster(t, 2)
	name := "gwcluster_" + strings.ToLower(rand.Text())
	a := openCluster(t, c, 0, name)
	if err := a.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	b := openCluster(t, c, 1, name)
	// The second replica stops fetching what the first stores.
	local := "`" + name + "`.telemetry_local"
	if err := b.Conn().Exec(t.Context(), "SYSTEM STOP FETCHES "+local); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Conn().Exec(context.Background(), "SYSTEM START FETCHES "+local) })

	now := time.Now().UnixMilli()
	first := telemetryRecord(t, []reading{{ts: now, received: now, device: "d1", metric: "pm25", value: 1},
		{ts: now + 1, received: now, device: "d1", metric: "pm25", value: 2}})
	defer first.Release()
	wa, err := storage.NewWriter(a, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := wa.Write(t.Context(), "telemetry", "first-node", first); err != nil {
		t.Fatal(err)
	}
	var fetched uint64
	if err := b.Conn().QueryRow(t.Context(), "SELECT count() FROM "+local).Scan(&fetched); err != nil || fetched != 0 {
		t.Fatalf("the second replica holds %d rows (%v) with its fetches stopped, want 0", fetched, err)
	}

	have, err := b.StoredReadings(t.Context(), "d1", []int64{now, now + 1, now + 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[storage.ReadingKey]bool{{TS: now, Metric: "pm25"}: true, {TS: now + 1, Metric: "pm25"}: true}; !maps.Equal(have, want) {
		t.Errorf("StoredReadings through the second replica = %v, want the first node's %v", have, want)
	}

	resend := telemetryRecord(t, []reading{{ts: now, received: now, device: "d1", metric: "pm25", value: 1},
		{ts: now + 1, received: now, device: "d1", metric: "pm25", value: 2},
		{ts: now + 2, received: now, device: "d1", metric: "pm25", value: 3}})
	defer resend.Release()
	wb, err := storage.NewWriter(b, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept, dropped, err := wb.Unstored(t.Context(), "telemetry", []storage.Part{{ID: "second-node", Record: resend}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range kept {
		if p.Record != resend {
			defer p.Record.Release()
		}
	}
	if dropped != 2 || len(kept) != 1 || kept[0].Record.NumRows() != 1 {
		t.Errorf("Unstored through the second replica left out %d readings and kept %d parts, want the 2 the first node stored left out and 1 reading kept", dropped, len(kept))
	}
}

// TestFailoverSkipsAHangingServer lists first a server that accepts
// connections and never answers, then a replica. The pool's first
// connection waits out the dial timeout on the first and goes to the
// replica; the connections it opens after that go to the replica without
// waiting on the hanging server again (for 30 s, after which one tries it
// once more).
func TestFailoverSkipsAHangingServer(t *testing.T) {
	c := storagetest.StartCluster(t, 1)
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		accepted atomic.Int64
		held     = make(chan net.Conn, 64)
	)
	go func() {
		for {
			conn, err := hang.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			held <- conn // kept open, never answered
		}
	}()
	t.Cleanup(func() {
		_ = hang.Close()
		for len(held) > 0 {
			_ = (<-held).Close()
		}
	})
	start := time.Now()
	const conns = 8
	db, err := storage.Open(t.Context(), storage.Options{Addr: hang.Addr().String(), Failover: []string{c.Addr(0)},
		Database: "gwcluster_" + strings.ToLower(rand.Text()), Password: storagetest.Password(t), Cluster: storagetest.ClusterName,
		DialTimeout: 2 * time.Second, MaxOpenConns: conns}, nil)
	if err != nil {
		t.Fatalf("open with a hanging first server: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if n := accepted.Load(); n != 1 {
		t.Fatalf("the hanging server accepted %d connections by the time Open returned, want 1 (the first)", n)
	}
	// Queries at once, each holding its connection a second: the pool
	// opens a connection for each.
	g, ctx := errgroup.WithContext(t.Context())
	for range conns {
		g.Go(func() error {
			var v uint8
			return db.Conn().QueryRow(ctx, "SELECT sleep(1)").Scan(&v)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("queries through the replica: %v", err)
	}
	elapsed := time.Since(start)
	// One more try of the hanging server for each 30 s passed since it failed.
	if n, most := accepted.Load(), 1+int64(elapsed/(30*time.Second)); n > most {
		t.Errorf("the hanging server accepted %d connections in %s, want at most %d: each new connection waited on it", n, elapsed.Round(time.Millisecond), most)
	}
	t.Logf("%d queries at once through the replica, %s after Open began; the hanging server tried %d time(s)", conns, elapsed.Round(time.Millisecond), accepted.Load())
}

// TestClusterStoredDistrustsAFailedInsert: on a cluster, a batch whose
// INSERT failed after its rows were sent, with a code other than unknown
// status, is reported not stored although the ledger shows rows of it (one
// partition's part committed before another's failed), so that the replay
// sends the block again and the block checksums store what is missing;
// once an INSERT of it succeeds it is trusted again.
func TestClusterStoredDistrustsAFailedInsert(t *testing.T) {
	c := storagetest.StartCluster(t, 2)
	db := openCluster(t, c, 0, "gwdoubt_"+strings.ToLower(rand.Text()))
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	rec := telemetryRecord(t, []reading{{ts: now, received: now, device: "d1", metric: "pm25", value: 1}})
	defer rec.Release()
	parts := []storage.Part{{ID: "batch-f", Record: rec}}
	plain, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Write(t.Context(), "telemetry", "batch-f", rec); err != nil {
		t.Fatal(err)
	}
	failing, answer := storage.AnswerInserts(db)
	w, err := storage.NewWriter(failing, storage.WriterOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	stored := func(w *storage.Writer) bool {
		t.Helper()
		have, err := w.Stored(t.Context(), "telemetry", parts)
		if err != nil {
			t.Fatal(err)
		}
		return have["batch-f"]
	}
	if !stored(w) {
		t.Fatal("Stored before any failure: batch-f not stored, want stored")
	}
	answer(&clickhouse.Exception{Code: 242, Name: "DB::Exception", Message: "Table is in readonly mode"}, nil)
	if err := w.Write(t.Context(), "telemetry", "batch-f", rec); err == nil {
		t.Fatal("Write succeeded, want the failure")
	}
	if stored(w) {
		t.Error("Stored after an INSERT failed once its rows were sent: batch-f stored, want not stored")
	}
	if !stored(plain) {
		t.Error("another writer's Stored: batch-f not stored, want stored (it sent nothing of it)")
	}
	answer(nil, nil)
	if err := w.Write(t.Context(), "telemetry", "batch-f", rec); err != nil {
		t.Fatal(err)
	}
	if !stored(w) {
		t.Error("Stored after a successful INSERT: batch-f not stored, want stored")
	}
	waitRows(t, db, 1, "SELECT count() FROM {db}.telemetry WHERE device = 'd1'")
}
