package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/internal/logbuf"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/spool"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestFaultGridwatchKilled runs `gridwatch serve --ingest.durable_ack` as a
// subprocess under a QoS 1 fleet and kills it with SIGKILL three times (ten
// in the full variant), restarting it each time on the same data directory
// and ports; the fleet's clients reconnect and resend what was not
// acknowledged. Every PUBACKed message must be in ClickHouse exactly once.
func TestFaultGridwatchKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	addr, database := storagetest.Database(t)
	kills, rate := 3, 500.0
	if faultFull() {
		kills = 10
	}
	start := time.Now()
	devs := e2eDevices(t, 20)
	gw := newGridwatchProcess(t, addr, database, devs, "--ingest.durable_ack")
	gw.start(t)

	acked := simulators.NewAckLog(nil)
	fr := runFleet(&simulators.Fleet{Broker: "tcp://" + gw.mqtt, Devices: devs, QoS: 1, Rate: rate,
		AckTimeout: 10 * time.Second, OnSent: acked.Add}, acked)
	defer fr.stop()
	for i := range kills {
		fr.underLoad(t, gw.logTail)
		left := gw.kill(t)
		t.Logf("kill %d: the crash left %s", i+1, left)
		gw.start(t)
	}
	fr.underLoad(t, gw.logTail)
	r := fr.finish(t)

	run := faultRun{stats: r.stats, acked: acked}
	run.check = checkSet(t, addr, database, gw.segments, acked)
	mfs := gw.scrape(t)
	// The counters are the last process's: its start recovered the segments
	// of the last crash, and its own drops.
	run.spooled = counterSum(mfs["gridwatch_spool_rows_spooled_total"], "table", "telemetry")
	run.refused = counterSum(mfs["gridwatch_mqtt_messages_total"], "result", "refused_qos1")
	run.dropped = counterSum(mfs["gridwatch_batcher_rows_dropped_total"], "table", "telemetry") +
		counterSum(mfs["gridwatch_spool_rows_dropped_total"], "table", "telemetry")
	run.took = time.Since(start)
	quarantined, err := spool.ListQuarantine(filepath.Join(gw.dataDir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	redelivered := 0.0
	for _, m := range mfs["gridwatch_ingest_duplicates_dropped_total"].GetMetric() {
		redelivered += m.GetCounter().GetValue()
	}
	t.Logf("%d connections lost and resumed; %d files quarantined; the last start checked %v redelivered messages and kept %v of their readings from being stored twice",
		r.stats.ConnectionsLost, len(quarantined), counterSum(mfs["gridwatch_ingest_redelivery_checks_total"], "result", "done"), redelivered)
	assertFault(t, fmt.Sprintf("gridwatch killed %d times (durable_ack)", kills), run)
	if r.stats.ConnectionsLost == 0 {
		t.Fatal("no connection was lost: the kills did not hit the fleet")
	}
	gw.stop(t)
}

// gridwatchProcess is a `gridwatch serve` subprocess on fixed loopback ports
// and its own data directory, so that it can be killed and restarted where
// it was.
type gridwatchProcess struct {
	bin, dataDir, logFile string
	mqtt, http            string
	args                  []string
	password              string   // clickhouse.password, passed in the environment
	env                   []string // more of the environment, such as other secrets
	cmd                   *exec.Cmd
	exited                chan error // receives cmd.Wait's result
}

// newGridwatchProcess builds gridwatch and prepares its configuration: the
// ClickHouse at addr (clickhouse.addr: one server, or a list), database, a
// devices file of devs and extra flags.
func newGridwatchProcess(t testing.TB, addr, database string, devs []devices.Device, extra ...string) *gridwatchProcess {
	t.Helper()
	dir := t.TempDir()
	p := &gridwatchProcess{
		bin:      buildGridwatch(t, dir),
		dataDir:  filepath.Join(dir, "data"),
		logFile:  filepath.Join(dir, "gridwatch.log"),
		mqtt:     freeAddr(t),
		http:     freeAddr(t),
		password: storagetest.Password(t),
	}
	devFile := writeDevicesFile(t, dir, devs)
	p.args = append([]string{"serve",
		"--clickhouse.addr", addr, "--clickhouse.database", database,
		"--data_dir", p.dataDir, "--devices.file", devFile,
		"--mqtt.listen", p.mqtt, "--http.listen", p.http,
		// The fleet publishes far above a device's rate.
		"--mqtt.message_rate=-1", "--mqtt.byte_rate=-1",
		"--ingest.batch_age", "200ms", "--ingest.insert_timeout", "2s",
	}, extra...)
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// buildGridwatch builds cmd/gridwatch into dir and returns the binary's path.
func buildGridwatch(t testing.TB, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		storagetest.Unavailable(t, "building gridwatch needs the go tool:", err)
	}
	bin := filepath.Join(dir, "gridwatch")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/gridwatch/gridwatch/cmd/gridwatch").CombinedOutput()
	if err != nil {
		t.Fatalf("go build gridwatch: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address whose port was free a moment ago. The
// restarted server must find its clients on the same port, so the port is
// fixed for the whole test instead of ":0" per start, and lies below the
// ephemeral range, where no connection takes it between two starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// start runs the server and waits until its MQTT listener takes connections.
func (p *gridwatchProcess) start(t testing.TB) {
	t.Helper()
	log, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(p.bin, p.args...)
	// The server's configuration is its flags alone, but for the password,
	// which stays off the command line.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, EnvPrefix+"CLICKHOUSE_PASSWORD="+p.password)
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gridwatch: %v", err)
	}
	p.cmd, p.exited = cmd, make(chan error, 1)
	go func() { p.exited <- cmd.Wait() }()
	// Generous: a start migrating ON CLUSTER on a loaded box is slow, and
	// a passing run does not wait for it.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case err := <-p.exited:
			p.cmd = nil
			t.Fatalf("gridwatch exited at start: %v\n%s", err, p.logTail())
		default:
		}
		// The HTTP listener opens after the broker's: a test that scrapes
		// /metrics at once needs both.
		if listening(p.mqtt) && listening(p.http) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gridwatch did not listen on %s and %s within 5 minutes\n%s", p.mqtt, p.http, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL, waits for the process to die and says what it left in
// the spool: sound segments and partial writes.
func (p *gridwatchProcess) kill(t testing.TB) string {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	p.cmd = nil
	partial, _ := filepath.Glob(filepath.Join(p.dataDir, "spool", "*.tmp")) // storage/spool's partial writes
	return fmt.Sprintf("%d segments and %d partial writes in the spool", p.segments(), len(partial))
}

// stop shuts the server down with SIGTERM and fails t unless it exits
// cleanly.
func (p *gridwatchProcess) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := <-p.exited
	p.cmd = nil
	if err != nil {
		t.Fatalf("gridwatch exited with %v after SIGTERM\n%s", err, p.logTail())
	}
}

// listening reports whether addr accepts a TCP connection.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// segments counts the segment files (storage/spool's *.seg) in the
// server's spool.
func (p *gridwatchProcess) segments() int {
	segs, _ := filepath.Glob(filepath.Join(p.dataDir, "spool", "*.seg"))
	return len(segs)
}

// scrape returns the server's /metrics.
func (p *gridwatchProcess) scrape(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var parser expfmt.TextParser
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// logTail returns the end of the server's log, for failure messages.
func (p *gridwatchProcess) logTail() string {
	b, err := os.ReadFile(p.logFile)
	if err != nil {
		return err.Error()
	}
	return logbuf.Tail(string(b), 4000)
}

// fleetRun is a fleet publishing in the background.
type fleetRun struct {
	fleet *simulators.Fleet
	acked *simulators.AckLog
	stop  context.CancelFunc
	done  chan fleetResult
}

// fleetResult is what a fleet's Run returned.
type fleetResult struct {
	stats simulators.Stats
	err   error
}

// runFleet starts f, whose OnSent feeds acked, until finish.
func runFleet(f *simulators.Fleet, acked *simulators.AckLog) *fleetRun {
	ctx, stop := context.WithCancel(context.Background())
	r := &fleetRun{fleet: f, acked: acked, stop: stop, done: make(chan fleetResult, 1)}
	go func() {
		stats, err := f.Run(ctx)
		r.done <- fleetResult{stats, err}
	}()
	return r
}

// underLoad waits until another second's worth of messages has been
// acknowledged, so that a fault hits a server taking load; logs tells
// what the servers said when none comes.
func (r *fleetRun) underLoad(t *testing.T, logs func() string) {
	t.Helper()
	want := r.acked.Len() + int(r.fleet.Rate)
	deadline := time.Now().Add(time.Minute)
	for r.acked.Len() < want {
		if time.Now().After(deadline) {
			t.Fatalf("no load: %d messages acknowledged, want %d\n%s", r.acked.Len(), want, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finish stops the fleet and returns what it did, failing t on its error.
func (r *fleetRun) finish(t *testing.T) fleetResult {
	t.Helper()
	r.stop()
	res := <-r.done
	if res.err != nil {
		t.Fatalf("fleet: %v", res.err)
	}
	return res
}
