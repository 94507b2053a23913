package alerts_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// BenchmarkStaffReadsBesideIngest attacks "staff reads do not stall
// ingestion" (issue 10 item 15): a fleet feeds the engine readings as fast
// as it takes them, once alone and once beside 20 staff clients, each of
// which lists a page of the 100,000 alerts once a second and exports them
// all (what the CSV export reads) every tenth time, staggered: 20 lists
// and 2 full exports a second. (Twenty full exports a second would be a
// CPU-bound load of its own on two cores, sorting 2 M alerts a second.) It
// prints the ingest rate of both, side
// by side in one run, and their ratio (the goal: at least 0.9). Run it by
// hand: go test -run '^$' -bench StaffReads -benchtime 1x ./alerts/
func BenchmarkStaffReadsBesideIngest(b *testing.B) {
	const (
		nAlerts = 100_000
		staff   = 20
		fleet   = 200 // devices publishing, besides those whose alerts fire
		phase   = 10 * time.Second
		// exportEvery is how many lists a client makes per export.
		exportEvery = 5
		// listEvery is how often a client lists.
		listEvery = 2 * time.Second
	)
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
	devs := make([]devices.Device, 0, nAlerts+fleet)
	for i := range nAlerts + fleet {
		devs = append(devs, devices.Device{ID: "w-" + strconv.Itoa(i), Type: "water_level", Grid: fmt.Sprintf("G%03d", i%500)})
	}
	reg := devices.NewRegistry(devs)
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, StormMin: -1, FlushEvery: time.Hour}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	now := time.Now().UnixMilli()
	for i := range nAlerts {
		e.ObserveReadings([]ingest.Reading{{TS: now, Device: devs[i].ID, Grid: devs[i].Grid, Metric: "level_cm", Value: 50}})
	}
	if p, _ := e.List(alerts.Filter{Limit: 1}); p.Next == "" {
		b.Fatal("no alerts raised")
	}

	// ingestFor feeds the fleet's readings for d and returns readings per
	// second: half of them repeat a firing alert, half are normal.
	ingestFor := func(d time.Duration) float64 {
		var n atomic.Int64
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				batch := make([]ingest.Reading, 2)
				for i := w; time.Now().Before(deadline); i += 2 {
					firing, quiet := devs[i%nAlerts], devs[nAlerts+i%fleet]
					batch[0] = ingest.Reading{TS: now, Device: firing.ID, Grid: firing.Grid, Metric: "level_cm", Value: 50}
					batch[1] = ingest.Reading{TS: now, Device: quiet.ID, Grid: quiet.Grid, Metric: "level_cm", Value: 10}
					e.ObserveReadings(batch)
					n.Add(2)
				}
			})
		}
		wg.Wait()
		return float64(n.Load()) / d.Seconds()
	}
	for b.Loop() {
		alone := ingestFor(phase)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var lists, exports atomic.Int64
		for c := range staff {
			wg.Go(func() {
				tick := time.NewTicker(listEvery)
				defer tick.Stop()
				for i := c; ; i++ {
					if _, err := e.List(alerts.Filter{Status: []alerts.Status{alerts.StatusNew}}); err != nil {
						b.Error(err)
						return
					}
					lists.Add(1)
					if i%exportEvery != 0 {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						continue
					}
					all, err := e.All(alerts.Filter{})
					if err != nil {
						b.Error(err)
						return
					}
					n := 0
					for range all {
						n++
					}
					if n < nAlerts {
						b.Errorf("export of %d alerts, want %d", n, nAlerts)
					}
					exports.Add(1)
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})
		}
		beside := ingestFor(phase)
		close(stop)
		wg.Wait()
		b.ReportMetric(alone, "ingest_alone/s")
		b.ReportMetric(beside, "ingest_beside_staff/s")
		b.ReportMetric(beside/alone, "ratio")
		b.Logf("ingest alone %.0f readings/s, beside %d staff clients %.0f readings/s: ratio %.2f (%d lists, %d full exports of %d alerts in %s)",
			alone, staff, beside, beside/alone, lists.Load(), exports.Load(), nAlerts, phase)
	}
}
