package alerts_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// Sizes of the staff-read benchmarks.
const (
	staffAlerts = 100_000
	staffGrids  = 500
	staffFleet  = 200 // devices publishing, besides those whose alerts fire
)

// staffEngine starts an engine holding staffAlerts firing alerts, one per
// device, spread over staffGrids grids and ten units, a tenth of them
// acknowledged, running its timers every tick; devs are the devices, the
// firing ones first.
func staffEngine(b *testing.B, tick time.Duration) (*alerts.Engine, []devices.Device) {
	b.Helper()
	rules, err := alerts.ParseRules([]byte(`
rules:
  - name: flood
    match: {types: [water_level]}
    metric: level_cm
    condition: value > 30
    severity: major
    no_group: true
`))
	if err != nil {
		b.Fatal(err)
	}
	devs := make([]devices.Device, 0, staffAlerts+staffFleet)
	for i := range staffAlerts + staffFleet {
		devs = append(devs, devices.Device{ID: "w-" + strconv.Itoa(i), Type: "water_level", Grid: fmt.Sprintf("G%03d", i%staffGrids)})
	}
	reg := devices.NewRegistry(devs)
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, StormMin: -1, FlushEvery: time.Hour, Tick: tick,
		UnitFor: func(_, grid string) string { return "water-" + grid[len(grid)-1:] }}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	now := time.Now().UnixMilli()
	for i := range staffAlerts {
		e.ObserveReadings([]ingest.Reading{{TS: now, Device: devs[i].ID, Grid: devs[i].Grid, Metric: "level_cm", Value: 50}})
	}
	all, err := e.All(alerts.Filter{})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for a := range all {
		if n%10 == 0 {
			if _, err := e.Act(context.Background(), alerts.Action{ID: a.ID, Kind: alerts.ActionAck, Version: a.Version, Actor: "op"}); err != nil {
				b.Fatal(err)
			}
		}
		n++
	}
	if n != staffAlerts {
		b.Fatalf("%d alerts raised, want %d", n, staffAlerts)
	}
	return e, devs
}

// staffRequest is one thing a member of staff asks for; next is the
// cursor of the next page, kept by the client between its list requests.
type staffRequest struct {
	name string
	do   func(e *alerts.Engine, next *string) error
}

// staffLists are the list pages staff ask for, in turn: the default page
// of new alerts and the page after it, a grid's alerts, a unit's major and
// critical ones, and the acknowledged ones most recently changed first.
var staffLists = []staffRequest{
	{"list_new", func(e *alerts.Engine, next *string) error {
		p, err := e.List(alerts.Filter{Status: []alerts.Status{alerts.StatusNew}, Limit: 50})
		*next = p.Next
		return err
	}},
	{"list_next_page", func(e *alerts.Engine, next *string) error {
		_, err := e.List(alerts.Filter{Status: []alerts.Status{alerts.StatusNew}, Limit: 50, Cursor: *next})
		return err
	}},
	{"list_grid", func(e *alerts.Engine, _ *string) error {
		_, err := e.List(alerts.Filter{Grid: "G042", Limit: 50})
		return err
	}},
	{"list_unit_severity", func(e *alerts.Engine, _ *string) error {
		_, err := e.List(alerts.Filter{Unit: "water-7", Severity: []alerts.Severity{alerts.SeverityMajor, alerts.SeverityCritical}, Limit: 50})
		return err
	}},
	{"list_acked_by_updated", func(e *alerts.Engine, _ *string) error {
		_, err := e.List(alerts.Filter{Status: []alerts.Status{alerts.StatusAcknowledged}, Sort: "-updated", Limit: 50})
		return err
	}},
}

// staffExport reads every alert, as the CSV export does; staffStats asks
// for the unit and the grid statistics of the last day.
var (
	staffExport = staffRequest{"export", func(e *alerts.Engine, _ *string) error {
		all, err := e.All(alerts.Filter{})
		if err != nil {
			return err
		}
		n := 0
		for range all {
			n++
		}
		if n < staffAlerts {
			return fmt.Errorf("export of %d alerts, want %d", n, staffAlerts)
		}
		return nil
	}}
	staffStats = staffRequest{"stats", func(e *alerts.Engine, _ *string) error {
		now := time.Now()
		if _, err := e.Stats(alerts.ByUnit, "", now.Add(-24*time.Hour), now.Add(time.Minute)); err != nil {
			return err
		}
		_, err := e.Stats(alerts.ByGrid, "", now.Add(-24*time.Hour), now.Add(time.Minute))
		return err
	}}
)

// BenchmarkStaffRead measures what one staff request costs alone, on the
// engine of BenchmarkStaffReadsBesideIngest: cpu-ms/op is the process's
// CPU time per request (garbage collection included), which a loaded
// machine inflates less than ns/op. The engine's timers do not run, so
// that their CPU time is not counted.
func BenchmarkStaffRead(b *testing.B) {
	e, _ := staffEngine(b, time.Hour)
	for _, r := range append(staffLists, staffExport, staffStats) {
		b.Run(r.name, func(b *testing.B) {
			var next string
			_ = staffLists[0].do(e, &next)
			start := cpuTime()
			for b.Loop() {
				if err := r.do(e, &next); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the CPU time (user and system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStaffReadsBesideIngest attacks "staff reads do not stall
// ingestion" (issue 10 item 15): a fleet feeds the engine readings as fast
// as it takes them (two goroutines), alone and beside 20 staff clients,
// in rounds of three phases of the same length (alone, beside, alone) so
// that both see the same machine; the two alone phases of each round
// give a control ratio, what the machine's noise alone amounts to. The
// engine holds 100,000 firing alerts. Each client, started at its own
// offset within the period, lists a page with filters every 2 seconds
// (staffLists, in turn), and every fifth time also exports every alert
// (what the CSV export reads) and every fifth time, at another offset,
// asks for the unit and the grid statistics: 10 lists, 2 full exports and
// 2 statistics a second in all. It prints the ingest rates side by side,
// their ratio (the goal: at least 0.9), the control ratio, the cores the
// process used in both, and the mean time of each staff request.
// Run it by hand:
//
//	go test -run '^$' -bench StaffReadsBesideIngest -benchtime 1x ./alerts/
func BenchmarkStaffReadsBesideIngest(b *testing.B) {
	const (
		staff  = 20
		rounds = 10
		phase  = 2 * time.Second
		// every is how often a client asks for something; every fifth
		// request is an export, every fifth (offset) statistics.
		every = 2 * time.Second
	)
	e, devs := staffEngine(b, alerts.DefaultTick)
	now := time.Now().UnixMilli()

	// ingestFor feeds the fleet's readings for d and returns how many it
	// fed: half of them repeat a firing alert, half are normal.
	var fed atomic.Int64
	ingestFor := func(d time.Duration) int64 {
		start := fed.Load()
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				batch := make([]ingest.Reading, 2)
				for i := w; time.Now().Before(deadline); i += 2 {
					firing, quiet := devs[(i*7919)%staffAlerts], devs[staffAlerts+i%staffFleet]
					batch[0] = ingest.Reading{TS: now, Device: firing.ID, Grid: firing.Grid, Metric: "level_cm", Value: 50}
					batch[1] = ingest.Reading{TS: now, Device: quiet.ID, Grid: quiet.Grid, Metric: "level_cm", Value: 10}
					e.ObserveReadings(batch)
					fed.Add(2)
				}
			})
		}
		wg.Wait()
		return fed.Load() - start
	}

	// Each client's turn and cursor carry over from round to round.
	type client struct {
		turn int
		next string
	}
	clients := make([]client, staff)
	var mu sync.Mutex
	spent := map[string]time.Duration{}
	count := map[string]int{}
	staffFor := func(stop <-chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				cl := &clients[c]
				wait := time.NewTimer(every * time.Duration(c) / staff)
				defer wait.Stop()
				for {
					select {
					case <-stop:
						return
					case <-wait.C:
					}
					asks := []staffRequest{staffLists[cl.turn%len(staffLists)]}
					switch cl.turn % 5 {
					case c % 5:
						asks = append(asks, staffExport)
					case (c + 2) % 5:
						asks = append(asks, staffStats)
					}
					cl.turn++
					begin := time.Now()
					for _, r := range asks {
						start := time.Now()
						if err := r.do(e, &cl.next); err != nil {
							b.Error(err)
							return
						}
						took := time.Since(start)
						mu.Lock()
						spent[r.name] += took
						count[r.name]++
						mu.Unlock()
					}
					wait.Reset(every - time.Since(begin)%every)
				}
			})
		}
		return &wg
	}

	for b.Loop() {
		// alone sums both alone phases of each round; before and after
		// are the first and the second, whose ratio is the control: what
		// the machine alone makes of two identical phases.
		var alone, beside, before, after int64
		// The CPU time of each phase while the fleet feeds, and its wall
		// time (the staff's requests in flight at its end are answered
		// after it, with the fleet idle, and not counted).
		var cpuAlone, cpuBeside, wallAlone, wallBeside time.Duration
		runAlone := func(into *int64) {
			t, w := cpuTime(), time.Now()
			n := ingestFor(phase)
			alone, *into = alone+n, *into+n
			cpuAlone, wallAlone = cpuAlone+cpuTime()-t, wallAlone+time.Since(w)
		}
		runBeside := func() {
			stop := make(chan struct{})
			t, w := cpuTime(), time.Now()
			wg := staffFor(stop)
			beside += ingestFor(phase)
			cpuBeside, wallBeside = cpuBeside+cpuTime()-t, wallBeside+time.Since(w)
			close(stop)
			wg.Wait()
		}
		// Each round runs the phase beside the staff between two alone,
		// so that a drift in the machine's load or a collection started
		// by an earlier phase's garbage weighs on both sides alike.
		for range rounds {
			runAlone(&before)
			runBeside()
			runAlone(&after)
		}
		secs := (rounds * phase).Seconds()
		ratio := float64(beside) / (float64(alone) / 2)
		control := float64(after) / float64(before)
		b.ReportMetric(float64(alone)/2/secs, "ingest_alone/s")
		b.ReportMetric(float64(beside)/secs, "ingest_beside_staff/s")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(control, "control_ratio")
		b.Logf("ingest alone %.0f readings/s (process CPU %.2f cores), beside %d staff clients %.0f readings/s (CPU %.2f cores): ratio %.2f; control (second alone phase of each round against the first) %.2f; %d rounds of %s each",
			float64(alone)/2/secs, cpuAlone.Seconds()/wallAlone.Seconds(), staff, float64(beside)/secs, cpuBeside.Seconds()/wallBeside.Seconds(), ratio, control, rounds, phase)
		for _, r := range append(staffLists, staffExport, staffStats) {
			if n := count[r.name]; n > 0 {
				b.Logf("  %-22s %3d requests, mean %s", r.name, n, (spent[r.name] / time.Duration(n)).Round(time.Microsecond))
			}
		}
	}
}
