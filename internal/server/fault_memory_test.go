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

// memoryCeiling is the ingest.memory_limit of TestFaultMemoryCeiling. The
// server's peak RSS at full speed with ClickHouse answering is about
// 100 MiB here, 120-145 MiB through the stall; without backpressure, ten
// seconds of a stalled ClickHouse would queue about a million readings on
// top. The limit is the Go runtime's, which the binary's own pages add to.
const memoryCeiling = 176 << 20

// TestFaultMemoryCeiling floods `gridwatch serve --ingest.memory_limit` at
// full QoS 0 speed while ClickHouse is SIGSTOPped with a write timeout
// longer than the stall, so batches wait for it instead of going to the
// spool: the pipeline lags, the broker must slow its readers (counted in
// gridwatch_batcher_blocked_seconds_total) and the process's peak resident
// memory stay under the limit. Nothing may be lost meanwhile: once
// ClickHouse continues, every reading the fleet sent is stored (over
// connections that held: see below). With
// ingest.max_pending at 100,000 instead (no backpressure) the same run
// peaked at 188 MiB and failed.
func TestFaultMemoryCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	ch := faultClickHouse(t, time.Second)
	stall := outage(10*time.Second, time.Minute)
	devs := e2eDevices(t, 100)
	gw := newGridwatchProcess(t, ch.Addr(), "gridwatch", devs,
		"--ingest.memory_limit", strconv.Itoa(memoryCeiling), "--ingest.insert_timeout", "5m")
	gw.start(t)

	fleet := &simulators.Fleet{Broker: "tcp://" + gw.mqtt, Devices: devs, QoS: 0, Duration: stall + 6*time.Second}
	done := make(chan error, 1)
	var stats simulators.Stats
	go func() {
		var err error
		stats, err = fleet.Run(context.Background())
		done <- err
	}()
	time.Sleep(3 * time.Second) // The fleet is at full speed.
	signal(t, ch, syscall.SIGSTOP)
	time.Sleep(stall)
	signal(t, ch, syscall.SIGCONT)
	if err := <-done; err != nil {
		t.Fatalf("fleet: %v", err)
	}
	peak := peakRSS(t, gw.cmd.Process.Pid)

	// Every reading accepted is stored once the server has read what the
	// fleet sent and ClickHouse has caught up.
	db, err := storage.Open(context.Background(), storage.Options{Addr: ch.Addr(), Database: "gridwatch"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var (
		added, blocked float64
		stored         uint64
	)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		mfs := gw.scrape(t)
		was := added
		added = counterSum(mfs["gridwatch_batcher_rows_added_total"], "table", "telemetry")
		blocked = counterSum(mfs["gridwatch_batcher_blocked_seconds_total"], "table", "telemetry")
		if err := db.Conn().QueryRow(context.Background(), "SELECT count() FROM gridwatch.telemetry").Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if (added == was && float64(stored) == added) || time.Now().After(deadline) {
			break
		}
	}
	mfs := gw.scrape(t)
	dropped := counterSum(mfs["gridwatch_batcher_rows_dropped_total"], "table", "telemetry") +
		counterSum(mfs["gridwatch_spool_rows_dropped_total"], "table", "telemetry")
	t.Logf("fleet sent %d readings at %.0f/s over %s (%d errors, %d connections lost); gridwatch accepted %.0f, stored %d, dropped %.0f; publishers blocked %.1f s in all; peak RSS %d MiB, ceiling %d MiB",
		stats.Readings, stats.ReadingsPerSecond(), stats.Elapsed.Round(time.Second), stats.Errors, stats.ConnectionsLost,
		added, stored, dropped, blocked, peak>>20, memoryCeiling>>20)
	if blocked == 0 {
		t.Error("no publisher was slowed while ClickHouse was stopped: the pipeline did not lag")
	}
	if peak > memoryCeiling {
		t.Errorf("peak RSS %d MiB exceeds ingest.memory_limit %d MiB", peak>>20, memoryCeiling>>20)
	}
	// Every reading accepted is stored, none dropped.
	if float64(stored) != added || dropped != 0 {
		t.Errorf("accepted %.0f readings, stored %d, dropped %.0f: want all stored, none dropped", added, stored, dropped)
	}
	// gridwatch drops QoS 0 only when the spool is full, which it never is
	// here: every reading sent arrives, unless its connection is lost. A
	// QoS 0 message counts as sent once in the device's socket; a device
	// whose pings go unanswered through a long stall (the full variant's
	// minute) closes its connection, and the server's answer to a ping
	// then meets a closed socket, whose reset discards what the server had
	// not read yet. That is QoS 0's at most once, not a drop.
	if stats.ConnectionsLost == 0 && added != float64(stats.Readings) {
		t.Errorf("sent %d readings over connections never lost, accepted %.0f: want all", stats.Readings, added)
	}
	gw.stop(t)
}

// peakRSS returns the peak resident set size of process pid in bytes
// (VmHWM of /proc/pid/status).
func peakRSS(t *testing.T, pid int) int {
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
