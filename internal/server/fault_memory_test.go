package server

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage"
)

// memoryLimit is the ingest.memory_limit of the backpressure runs. The
// server's peak RSS at full speed with ClickHouse answering is about
// 100 MiB here, 120-177 MiB through the stall, depending on how busy the
// machine is; BenchmarkMemoryCeiling reports the figure.
const memoryLimit = 176 << 20

// memorySanityBound is the one memory figure the test asserts: far above
// any peak seen with backpressure, so that a busy machine cannot fail it,
// and far below what a leak or an unbounded queue reaches over a stall.
// Whether backpressure works is judged by the blocked publishers, which do
// not depend on the machine's speed.
const memorySanityBound = 512 << 20

// memoryRun is what one flood of a stalled pipeline saw.
type memoryRun struct {
	stats          simulators.Stats
	added, blocked float64 // readings accepted; publisher seconds blocked
	dropped        float64 // accepted readings the batcher or spool dropped
	stored         uint64
	peak           int // peak RSS, bytes
}

func (r memoryRun) String() string {
	return fmt.Sprintf("fleet sent %d readings at %.0f/s over %s (%d errors, %d connections lost); gridwatch accepted %.0f, stored %d, dropped %.0f; publishers blocked %.1f s in all; peak RSS %d MiB",
		r.stats.Readings, r.stats.ReadingsPerSecond(), r.stats.Elapsed.Round(time.Second), r.stats.Errors, r.stats.ConnectionsLost,
		r.added, r.stored, r.dropped, r.blocked, r.peak>>20)
}

// floodThroughStall floods `gridwatch serve` (with the extra flags) at full
// QoS 0 speed from 100 devices while ClickHouse is SIGSTOPped, with a
// write timeout longer than the stall, so batches wait for it instead of
// going to the spool; then it waits until everything accepted is stored
// (or two minutes pass) and says what it saw.
func floodThroughStall(t testing.TB, extra ...string) memoryRun {
	ch := faultClickHouse(t, time.Second)
	stall := outage(10*time.Second, time.Minute)
	devs := e2eDevices(t, 100)
	gw := newGridwatchProcess(t, ch.Addr(), "gridwatch", devs, append([]string{"--ingest.insert_timeout", "5m"}, extra...)...)
	gw.start(t)

	fleet := &simulators.Fleet{Broker: "tcp://" + gw.mqtt, Devices: devs, QoS: 0, Duration: stall + 6*time.Second}
	done := make(chan error, 1)
	var r memoryRun
	go func() {
		var err error
		r.stats, err = fleet.Run(context.Background())
		done <- err
	}()
	time.Sleep(3 * time.Second) // The fleet is at full speed.
	signal(t, ch, syscall.SIGSTOP)
	time.Sleep(stall)
	signal(t, ch, syscall.SIGCONT)
	if err := <-done; err != nil {
		t.Fatalf("fleet: %v", err)
	}
	r.peak = peakRSS(t, gw.cmd.Process.Pid)

	db, err := storage.Open(context.Background(), storage.Options{Addr: ch.Addr(), Database: "gridwatch", Password: ch.Password}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		mfs := gw.scrape(t)
		was := r.added
		r.added = counterSum(mfs["gridwatch_batcher_rows_added_total"], "table", "telemetry")
		r.blocked = counterSum(mfs["gridwatch_batcher_blocked_seconds_total"], "table", "telemetry")
		if err := db.Conn().QueryRow(context.Background(), "SELECT count() FROM gridwatch.telemetry").Scan(&r.stored); err != nil {
			t.Fatal(err)
		}
		// Done when the server has read all the fleet sent (or some was
		// lost with a connection) and stored all it accepted.
		read := r.added == float64(r.stats.Readings) || (r.stats.ConnectionsLost != 0 && r.added == was)
		if (read && float64(r.stored) == r.added) || time.Now().After(deadline) {
			break
		}
	}
	mfs := gw.scrape(t)
	r.dropped = counterSum(mfs["gridwatch_batcher_rows_dropped_total"], "table", "telemetry") +
		counterSum(mfs["gridwatch_spool_rows_dropped_total"], "table", "telemetry")
	gw.stop(t)
	return r
}

// TestFaultBackpressure checks the README's promise that the bounded batch
// queues (ingest.max_pending) hold memory when ClickHouse stalls, by
// slowing the publishers rather than queueing their readings, and lose
// nothing meanwhile: the pipeline lags behind a flood while ClickHouse is
// SIGSTOPped, the broker must slow its readers (counted in
// gridwatch_batcher_blocked_seconds_total), and once ClickHouse continues
// every reading the fleet sent is stored (over connections that held: see
// below). Peak RSS is asserted only against a sanity bound far above any
// figure seen; the figure and its comparison with a run without
// backpressure are BenchmarkMemoryCeiling's.
func TestFaultBackpressure(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	r := floodThroughStall(t, "--ingest.memory_limit", strconv.Itoa(memoryLimit))
	t.Log(r)
	if r.blocked == 0 {
		t.Error("no publisher was slowed while ClickHouse was stopped: the pipeline did not push back")
	}
	if r.peak > memorySanityBound {
		t.Errorf("peak RSS %d MiB exceeds the sanity bound of %d MiB: memory is not bounded", r.peak>>20, memorySanityBound>>20)
	}
	// Every reading accepted is stored, none dropped.
	if float64(r.stored) != r.added || r.dropped != 0 {
		t.Errorf("accepted %.0f readings, stored %d, dropped %.0f: want all stored, none dropped", r.added, r.stored, r.dropped)
	}
	// gridwatch drops QoS 0 only when the spool is full, which it never is
	// here: every reading sent arrives, unless its connection is lost. A
	// QoS 0 message counts as sent once in the device's socket; a device
	// whose pings go unanswered through a long stall (the full variant's
	// minute) closes its connection, and the server's answer to a ping
	// then meets a closed socket, whose reset discards what the server had
	// not read yet. That is QoS 0's at most once, not a drop.
	if r.stats.ConnectionsLost == 0 && r.added != float64(r.stats.Readings) {
		t.Errorf("sent %d readings over connections never lost, accepted %.0f: want all", r.stats.Readings, r.added)
	}
}

// BenchmarkMemoryCeiling measures what the bounded batch queues save: the
// flood of TestFaultBackpressure runs against gridwatch with
// ingest.memory_limit 176 MiB and the default ingest.max_pending, then,
// side by side, with ingest.max_pending 100,000 (no backpressure), and the
// benchmark reports both peak RSS figures and their ratio. Run it with
//
//	go test ./internal/server -run '^$' -bench MemoryCeiling -benchtime 1x
func BenchmarkMemoryCeiling(b *testing.B) {
	modes := []struct {
		name  string
		flags []string
		peak  int // the highest over b.N runs
	}{
		{name: "backpressure", flags: []string{"--ingest.memory_limit", strconv.Itoa(memoryLimit)}},
		{name: "unbounded", flags: []string{"--ingest.memory_limit", strconv.Itoa(memoryLimit), "--ingest.max_pending", "100000"}},
	}
	for b.Loop() {
		for i := range modes {
			m := &modes[i]
			r := floodThroughStall(b, m.flags...)
			b.Logf("%s: %s", m.name, r)
			m.peak = max(m.peak, r.peak)
		}
	}
	b.ReportMetric(float64(modes[0].peak>>20), "backpressure_peak_MiB")
	b.ReportMetric(float64(modes[1].peak>>20), "unbounded_peak_MiB")
	b.ReportMetric(float64(modes[0].peak)/float64(modes[1].peak), "backpressure/unbounded")
}

// peakRSS returns the peak resident set size of process pid in bytes
// (VmHWM of /proc/pid/status).
func peakRSS(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("peak RSS: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("peak RSS: %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("peak RSS: no VmHWM in /proc/%d/status", pid)
	return 0
}
