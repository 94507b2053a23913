package storage_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// BenchmarkClusterIngest stores the same telemetry batches (50,000 rows,
// the default ingest.batch_rows) through a Writer into one ClickHouse and
// into a cluster of two replicas over ZooKeeper (clickhouse.cluster:
// Distributed over ReplicatedMergeTree, synchronous inserts), in
// alternating rounds on the same machine, and prints for each the rows per
// second until the rows are on every server and the CPU per row of every
// process involved (this one, the ClickHouse servers, ZooKeeper), and the
// cluster's ratios to the single server. Run it with -benchtime 1x.
func BenchmarkClusterIngest(b *testing.B) {
	const (
		batchRows = 50_000
		batches   = 10
		rounds    = 3
	)
	single := &storage.LocalServer{Dir: b.TempDir(), Password: storagetest.Password(b), StartTimeout: 3 * time.Minute}
	if err := single.Start(context.Background()); err != nil {
		storagetest.Unavailable(b, err)
	}
	b.Cleanup(func() { _ = single.Close() })
	c := storagetest.StartCluster(b, 2)
	name := "gwbench_" + strings.ToLower(rand.Text())
	one, err := storage.Open(b.Context(), storage.Options{Addr: single.Addr(), Database: name, Password: storagetest.Password(b)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer one.Close()
	first, second := openCluster(b, c, 0, name), openCluster(b, c, 1, name)
	for _, db := range []*storage.DB{one, first} {
		if err := db.Migrate(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	recs := make([]arrow.Record, batches)
	for i := range recs {
		rs := make([]reading, batchRows)
		for j := range rs {
			ts := time.Now().UnixMilli() + int64(j)
			rs[j] = reading{ts: ts, received: ts, device: "dev-" + strconv.Itoa(j%1000), metric: "m" + strconv.Itoa(j%5), value: float64(j % 100)}
		}
		recs[i] = telemetryRecord(b, rs)
		defer recs[i].Release()
	}
	type target struct {
		name  string
		db    *storage.DB
		read  []*storage.DB // every server that must hold the rows
		table string        // the table holding a server's own rows
		pids  func() []int
		rows  float64
		took  time.Duration
		cpuMs float64
	}
	targets := []*target{
		{name: "one server", db: one, read: []*storage.DB{one}, table: "telemetry", pids: func() []int { return []int{single.PID()} }},
		{name: "cluster, 2 replicas", db: first, read: []*storage.DB{first, second}, table: "telemetry_local", pids: func() []int {
			return []int{c.Server(0).PID(), c.Server(1).PID(), c.ZooKeeper.PID()}
		}},
	}
	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			for _, tg := range targets {
				w, err := storage.NewWriter(tg.db, storage.WriterOptions{})
				if err != nil {
					b.Fatal(err)
				}
				cpu0, start := cpuMs(b, tg.pids()), time.Now()
				for i, rec := range recs {
					if err := w.Write(b.Context(), "telemetry", fmt.Sprintf("r%d-%d", r, i), rec); err != nil {
						b.Fatal(err)
					}
				}
				want := uint64((r + 1) * batches * batchRows)
				for _, db := range tg.read {
					waitRows(b, db, want, "SELECT count() FROM `{db}`."+tg.table)
				}
				tg.took += time.Since(start)
				tg.cpuMs += cpuMs(b, tg.pids()) - cpu0
				tg.rows += float64(batches * batchRows)
			}
		}
	}
	b.StopTimer()
	for _, tg := range targets {
		b.Logf("%-20s %8.0f rows/s on every server, %.2f µs CPU per row (all processes)", tg.name+":",
			tg.rows/tg.took.Seconds(), tg.cpuMs*1000/tg.rows)
	}
	s, cl := targets[0], targets[1]
	b.Logf("cluster / one server: rows/s %.2f×, CPU per row %.2f×",
		(cl.rows/cl.took.Seconds())/(s.rows/s.took.Seconds()), (cl.cpuMs/cl.rows)/(s.cpuMs/s.rows))
}

// cpuMs returns the CPU time, user and system, in milliseconds, that this
// process and the processes pids have used.
func cpuMs(tb testing.TB, pids []int) float64 {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	ms := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			tb.Fatalf("CPU of pid %d: %v", pid, err)
		}
		// The fields after the command name, which is in parentheses:
		// utime and stime are the 14th and 15th of the line.
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		for _, v := range f[11:13] {
			ticks, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			ms += ticks * 10 // USER_HZ is 100 on Linux
		}
	}
	return ms
}
