package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// Sizes of BenchmarkStaffBesideFleet.
const (
	staffAlerts = 100_000
	staffGrids  = 500
	staffFleet  = 200
	staffUsers  = 20
	staffToken  = "tok-staff-bench-0123456789abcdef"
)

// staffAsk is one request a member of staff sends: list is a page (whose
// next cursor the first list keeps), else the CSV export of every alert.
type staffAsk struct {
	name string
	path func(next string) string
	list bool
}

// staffLists are the pages staff ask for in turn: the firing alerts and
// the page after them, one grid's alerts (1 in 500), a rule's critical
// ones, and the cleared ones most recently changed first.
var staffLists = []staffAsk{
	{"list_firing", func(string) string { return "/api/v1/alerts?condition=firing&limit=50" }, true},
	{"list_next_page", func(next string) string { return "/api/v1/alerts?condition=firing&limit=50&cursor=" + next }, true},
	{"list_grid", func(string) string { return "/api/v1/alerts?grid=G042&limit=50" }, true},
	{"list_rule_severity", func(string) string { return "/api/v1/alerts?rule=waste_bin_fire&severity=major,critical&limit=50" }, true},
	{"list_cleared_by_updated", func(string) string { return "/api/v1/alerts?condition=cleared&sort=-updated&limit=50" }, true},
}

// staffExport is the CSV export of every alert.
var staffExport = staffAsk{name: "export_csv", path: func(string) string { return "/api/v1/alerts/export.csv" }}

// BenchmarkStaffBesideFleet attacks "staff reads do not stall ingestion"
// (issue 10 item 15) through the real server: a QoS 1 fleet of 200 paho
// devices publishes as fast as the server acknowledges, while the alert
// engine holds 100,000 alerts (one per waste bin over 500 grids, a tenth
// cleared), alone and beside 20 staff clients on the HTTP API. Each client,
// started at its own offset, lists a page every 2 seconds (staffLists in
// turn) and every fifth time also downloads the CSV export of every alert:
// 10 lists and 2 full exports a second in all. The rounds run three phases
// of the same length, alone, beside the staff, alone, so that both sides
// see the same machine; the two alone phases give a control ratio, what
// the machine's own noise amounts to. The rate is the readings the fleet
// had acknowledged (acked means stored). It prints the rates side by side,
// their ratio (the goal: at least 0.9) and the control, the staff's
// latencies, and for each side the process's CPU (in cores and per
// reading), the collector's and the mutex wait per reading, which tell
// the staff's taking CPU from a stall. Run it by hand:
//
//	go test ./internal/server -run '^$' -bench StaffBesideFleet -benchtime 1x -timeout 30m
func BenchmarkStaffBesideFleet(b *testing.B) {
	const (
		rounds = 20
		phase  = 2 * time.Second
		every  = 2 * time.Second
	)
	addr, database := storagetest.Database(b)
	fleetDevs := e2eDevices(b, staffFleet)
	bins := make([]devices.Device, staffAlerts)
	for i := range bins {
		bins[i] = devices.Device{ID: "staff-bin-" + strconv.Itoa(i), Type: "waste_bin", Grid: fmt.Sprintf("G%03d", i%staffGrids)}
	}
	srv := startServer(b, addr, database, append(slices.Clone(fleetDevs), bins...), func(c *Config) { c.API.AdminToken = staffToken })
	// The case loop stops first: raising 90,000 cases, one insert each,
	// would run through every phase (a transient of its own, not staff's).
	if err := srv.closeCases(); err != nil {
		b.Fatal(err)
	}
	e := srv.alerting.engine
	heapBefore := liveHeap()
	now := time.Now().UnixMilli()
	for i, d := range bins {
		e.ObserveReadings([]ingest.Reading{{TS: now, Device: d.ID, Grid: d.Grid, Metric: "temp_c", Value: 70}})
		if i%10 == 0 {
			e.ObserveReadings([]ingest.Reading{{TS: now + 1, Device: d.ID, Grid: d.Grid, Metric: "temp_c", Value: 20}})
		}
	}
	perAlert := (liveHeap() - heapBefore) / staffAlerts
	base := "http://" + srv.HTTPAddr()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: staffUsers}, Timeout: time.Minute}
	get := func(a staffAsk, next *string) error {
		req, _ := http.NewRequest(http.MethodGet, base+a.path(*next), nil)
		req.Header.Set("Authorization", "Bearer "+staffToken)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %s: %s", a.name, resp.Status, body)
		}
		if !a.list {
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n < staffAlerts*50 {
				err = fmt.Errorf("%d bytes, want a row for each of %d alerts", n, staffAlerts)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			return nil
		}
		var page struct {
			Alerts []json.RawMessage
			Next   string
		}
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		if a.name == staffLists[0].name {
			*next = page.Next
		}
		return nil
	}
	var next string
	if err := get(staffExport, &next); err != nil {
		b.Fatal(err)
	}

	var acked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	fleet := &simulators.Fleet{Broker: mqttURL(srv), Devices: fleetDevs, QoS: 1, Duration: 30 * time.Minute,
		OnSent: func(a simulators.Ack) { acked.Add(int64(a.Readings)) }}
	fleetDone := make(chan simulators.Stats, 1)
	go func() {
		stats, err := fleet.Run(ctx)
		if err != nil {
			b.Errorf("fleet: %v", err)
		}
		fleetDone <- stats
	}()
	defer func() {
		cancel()
		if st := <-fleetDone; st.Errors != 0 || st.ConnectionsLost != 0 {
			b.Errorf("fleet: %s; want no errors or lost connections", st)
		}
	}()
	for acked.Load() == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(phase) // the fleet at its pace

	type member struct {
		turn int
		next string
	}
	clients := make([]member, staffUsers)
	var mu sync.Mutex
	took := map[string][]time.Duration{}
	staffFor := func(stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				cl := &clients[c]
				wait := time.NewTimer(every * time.Duration(c) / staffUsers)
				defer wait.Stop()
				for {
					select {
					case <-stop:
						return
					case <-wait.C:
					}
					asks := []staffAsk{staffLists[cl.turn%len(staffLists)]}
					if cl.turn%5 == c%5 {
						asks = append(asks, staffExport)
					}
					cl.turn++
					begin := time.Now()
					for _, a := range asks {
						start := time.Now()
						if err := get(a, &cl.next); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						took[a.name] = append(took[a.name], time.Since(start))
						mu.Unlock()
					}
					wait.Reset(every - time.Since(begin)%every)
				}
			})
		}
		return &wg
	}

	// phaseTotals add up the alone or the beside phases.
	type phaseTotals struct {
		readings  int64
		wall, cpu time.Duration
		gcCPU, gc float64
		mutexWait float64
	}
	measure := func(p *phaseTotals, run func()) int64 {
		r0, c0, g0, w := acked.Load(), processCPU(), gcFigures(), time.Now()
		run()
		g1 := gcFigures()
		n := acked.Load() - r0
		p.readings += n
		p.wall += time.Since(w)
		p.cpu += processCPU() - c0
		p.gcCPU += g1[0] - g0[0]
		p.gc += g1[1] - g0[1]
		p.mutexWait += g1[2] - g0[2]
		return n
	}
	for b.Loop() {
		var alone, beside phaseTotals
		var before, after int64
		var each []string
		// Each round's own ratio, its beside phase against the mean of
		// the alone phases on either side, and its control; their
		// medians are what a burst of load from outside the process
		// (another job on the box) does not sway.
		var roundRatios, roundControls []float64
		for range rounds {
			n0 := measure(&alone, func() { time.Sleep(phase) })
			// A beside phase lasts until the staff's requests in flight at
			// its end are answered, so that all of their work falls in it.
			w := time.Now()
			n1 := measure(&beside, func() {
				stop := make(chan struct{})
				wg := staffFor(stop)
				time.Sleep(phase)
				close(stop)
				wg.Wait()
			})
			d1 := time.Since(w)
			n2 := measure(&alone, func() { time.Sleep(phase) })
			before, after = before+n0, after+n2
			perSecond := func(n int64, d time.Duration) string { return strconv.Itoa(int(float64(n)/d.Seconds()/1000+0.5)) + "k" }
			each = append(each, perSecond(n0, phase)+" "+perSecond(n1, d1)+" "+perSecond(n2, phase))
			if n0 > 0 && n2 > 0 {
				roundRatios = append(roundRatios, float64(n1)/d1.Seconds()/(float64(n0+n2)/2/phase.Seconds()))
				roundControls = append(roundControls, float64(n2)/float64(n0))
			}
		}
		rate := func(p phaseTotals) float64 { return float64(p.readings) / p.wall.Seconds() }
		ratio, control := rate(beside)/rate(alone), float64(after)/float64(before)
		b.ReportMetric(rate(alone), "ingest_alone/s")
		b.ReportMetric(rate(beside), "ingest_beside_staff/s")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(control, "control_ratio")
		b.ReportMetric(median(roundRatios), "median_round_ratio")
		b.ReportMetric(median(roundControls), "median_round_control")
		b.ReportMetric(float64(perAlert), "heap_B/alert")
		b.Logf("acked readings/s alone %.0f, beside %d staff clients %.0f: ratio %.2f (goal >= 0.9); control (second alone phase of each round / first) %.2f; %d rounds of %s; heap %d B per alert",
			rate(alone), staffUsers, rate(beside), ratio, control, rounds, phase, perAlert)
		b.Logf("  each round, alone beside alone: %s", strings.Join(each, ", "))
		b.Logf("  median of the rounds' own ratios %.2f (beside / mean of the alone phases either side), of their controls %.2f",
			median(roundRatios), median(roundControls))
		for _, p := range []struct {
			name string
			t    phaseTotals
		}{{"alone", alone}, {"beside", beside}} {
			b.Logf("  %-6s: %s in all; process %.2f cores, %s of CPU per reading; collector %.2f cores (Go's estimate), %.0f collections; mutex wait %s per reading",
				p.name, p.t.wall.Round(time.Second), p.t.cpu.Seconds()/p.t.wall.Seconds(), p.t.cpu/time.Duration(max(p.t.readings, 1)),
				p.t.gcCPU/p.t.wall.Seconds(), p.t.gc, time.Duration(p.t.mutexWait*1e9/float64(max(p.t.readings, 1))))
		}
		for _, a := range append(slices.Clone(staffLists), staffExport) {
			d := took[a.name]
			if len(d) == 0 {
				continue
			}
			slices.Sort(d)
			b.Logf("  %-24s %4d requests, p50 %s, max %s", a.name, len(d), d[len(d)/2].Round(time.Microsecond), d[len(d)-1].Round(time.Microsecond))
		}
	}
}

// median is the median of xs, 0 when there are none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Sorted(slices.Values(xs))
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// processCPU is the CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gcFigures are the collector's CPU seconds (Go's estimate), its cycles
// and the time goroutines waited on mutexes so far.
func gcFigures() [3]float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}, {Name: "/sync/mutex/wait/total:seconds"}}
	metrics.Read(s)
	return [3]float64{s[0].Value.Float64(), float64(s[1].Value.Uint64()), s[2].Value.Float64()}
}
