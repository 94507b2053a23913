package alerts_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// newEngine starts an engine on a fake clock with the given rules and
// devices; it is closed when t ends.
func newEngine(t testing.TB, rules *alerts.RuleSet, devs []devices.Device, store alerts.Store, c *clock) *alerts.Engine {
	t.Helper()
	reg := devices.NewRegistry(devs)
	e := &alerts.Engine{
		Rules: rules, Lookup: reg.Lookup, Devices: reg.All, Now: c.Now, Store: store,
		Tick: time.Hour, FlushEvery: time.Hour, // the test runs the timers itself
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func mustRules(t *testing.T, doc string) *alerts.RuleSet {
	t.Helper()
	rs, err := alerts.ParseRules([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// fault is an injected fault: from start to end, device (or every device of
// grid) misbehaves as kind says.
type fault struct {
	kind       string // "high", "silent", "flap"
	device     string
	grid       string
	start, end time.Duration
	// rule, alertDevice and alertGrid are the alert it must raise.
	rule          string
	members       int
	maxFireDelay  time.Duration
	maxClearDelay time.Duration
}

// TestGroundTruth drives the engine with the default rules over a simulated
// city of water-level gauges with injected faults of known time and place,
// and checks that every fault raised exactly one alert within its expected
// delay, that it cleared after the fault ended, and that nothing else was
// raised.
func TestGroundTruth(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for g, n := range map[string]int{"G1": 10, "G2": 10, "G3": 6} {
		for i := range n {
			devs = append(devs, devices.Device{ID: fmt.Sprintf("%s-w%d", g, i), Type: "water_level", Grid: g})
		}
	}
	const interval = time.Minute // water_level's report interval
	faults := []fault{
		{kind: "high", device: "G1-w3", start: 30 * time.Minute, end: 50 * time.Minute, rule: "underpass_flooding",
			// for 1m; up to one interval to the first high reading. A value
			// alert does not wait for a storm group.
			maxFireDelay: interval + time.Minute + 10*time.Second, maxClearDelay: interval + 5*time.Minute + 10*time.Second},
		{kind: "silent", device: "G2-w5", start: 60 * time.Minute, end: 90 * time.Minute, rule: "device_silent",
			// 3 intervals of silence counted from the last report, then the
			// group wait (at least an interval for absence).
			maxFireDelay: 3*interval + interval + 10*time.Second, maxClearDelay: interval + 10*time.Second},
		{kind: "silent", grid: "G3", start: 100 * time.Minute, end: 130 * time.Minute, rule: "device_silent", members: 6,
			maxFireDelay: 3*interval + interval + 10*time.Second, maxClearDelay: interval + 10*time.Second},
		{kind: "flap", device: "G2-w1", start: 140 * time.Minute, end: 170 * time.Minute, rule: "underpass_flooding",
			maxFireDelay: interval + time.Minute + 10*time.Second, maxClearDelay: interval + 5*time.Minute + 10*time.Second},
	}
	e := newEngine(t, alerts.DefaultRules(), devs, nil, c)
	active := func(d devices.Device, at time.Duration) *fault {
		for i := range faults {
			f := &faults[i]
			if (f.device == d.ID || f.grid == d.Grid) && at >= f.start && at < f.end {
				return f
			}
		}
		return nil
	}
	const step = 10 * time.Second
	for at := time.Duration(0); at <= 200*time.Minute; at += step {
		for i, d := range devs {
			if at%interval != time.Duration(i%6)*step { // devices report once a minute, staggered
				continue
			}
			level := 10.0
			switch f := active(d, at); {
			case f == nil:
			case f.kind == "silent":
				continue
			case f.kind == "high":
				level = 45
			case f.kind == "flap": // two readings above the threshold, one below the clear level
				if ((at-f.start)/interval)%3 == 2 {
					level = 15
				} else {
					level = 45
				}
			}
			e.Observe(alerts.Observation{Device: d.ID, Metric: "level_cm", Value: level, TS: c.Now().UnixMilli()})
		}
		e.RunTimers()
		c.Add(step)
	}

	page, err := e.List(alerts.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Alerts) != len(faults) {
		for _, a := range page.Alerts {
			t.Logf("raised: %s %s%s grid %s members %v fired %s", a.ID, a.Rule, a.Device, a.Grid, a.Members, a.Fired.Sub(t0))
		}
		t.Fatalf("%d alerts raised, want %d (one per fault)", len(page.Alerts), len(faults))
	}
	for _, f := range faults {
		var found *alerts.Alert
		for i, a := range page.Alerts {
			if a.Rule == f.rule && (f.device != "" && a.Device == f.device || f.grid != "" && a.Device == "" && a.Grid == f.grid) {
				found = &page.Alerts[i]
			}
		}
		name := fmt.Sprintf("%s fault on %s%s at %s", f.kind, f.device, f.grid, f.start)
		if found == nil {
			t.Errorf("%s: no %s alert", name, f.rule)
			continue
		}
		if f.members > 0 && len(found.Members) != f.members {
			t.Errorf("%s: grid alert groups %v, want %d devices", name, found.Members, f.members)
		}
		if d := found.Fired.Sub(t0.Add(f.start)); d < 0 || d > f.maxFireDelay {
			t.Errorf("%s: fired after %s, want within %s", name, d, f.maxFireDelay)
		}
		if found.Condition != alerts.ConditionCleared {
			t.Errorf("%s: condition %s after the fault ended, want cleared", name, found.Condition)
			continue
		}
		if d := found.Cleared.Sub(t0.Add(f.end)); d < 0 || d > f.maxClearDelay {
			t.Errorf("%s: cleared %s after the fault ended, want within %s", name, d, f.maxClearDelay)
		}
	}
}

// TestSilences checks that a maintenance window keeps a device from raising
// alerts until it ends and that a plain silence marks transitions.
func TestSilences(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}, {ID: "gas-2", Type: "gas", Grid: "G2"}}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, nil, c)
	sub := e.Subscribe(8)
	if _, err := e.AddSilence(t.Context(), alerts.Silence{Device: "gas-1", Maintenance: true, Ends: t0.Add(time.Hour), Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AddSilence(t.Context(), alerts.Silence{Grid: "G2", Ends: t0.Add(time.Hour), Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	obs := func(dev string) {
		e.Observe(alerts.Observation{Device: dev, Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
	}
	obs("gas-1")
	obs("gas-2")
	if p, _ := e.List(alerts.Filter{}); len(p.Alerts) != 1 || p.Alerts[0].Device != "gas-2" {
		t.Fatalf("alerts in maintenance = %+v; want gas-2's only", p.Alerts)
	}
	if tr := <-sub.C; !tr.Silenced || tr.Alert.Device != "gas-2" {
		t.Fatalf("transition %+v; want gas-2's, silenced", tr)
	}
	c.Add(time.Hour)
	e.RunTimers()
	if got := e.Silences(); len(got) != 0 {
		t.Fatalf("silences after their end: %+v", got)
	}
	obs("gas-1")
	if p, _ := e.List(alerts.Filter{Device: "gas-1"}); len(p.Alerts) != 1 {
		t.Fatalf("gas-1 alerts after the window = %+v; want one", p.Alerts)
	}
}

// TestListPaging pages through alerts with a cursor while they change and
// checks that every alert is seen once, in order, and that filters apply.
func TestListPaging(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for i := range 10 {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: []string{"G1", "G2"}[i%2]})
	}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, nil, c)
	for _, d := range devs {
		e.Observe(alerts.Observation{Device: d.ID, Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
		c.Add(time.Second)
	}
	seen := map[string]bool{}
	var prev time.Time
	f := alerts.Filter{Limit: 3, Sort: "fired"}
	for pages := 0; ; pages++ {
		p, err := e.List(f)
		if err != nil || pages > 4 {
			t.Fatalf("List: %v after %d pages", err, pages)
		}
		for _, a := range p.Alerts {
			if seen[a.ID] || a.Fired.Before(prev) {
				t.Fatalf("alert %s repeated or out of order", a.ID)
			}
			seen[a.ID], prev = true, a.Fired
		}
		// A new alert during paging sorts after the cursor and is seen.
		if pages == 0 {
			e.Observe(alerts.Observation{Device: "gas-0", Metric: "ch4_ppm", Value: 9100, TS: c.Now().UnixMilli()})
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	if len(seen) != 10 {
		t.Fatalf("paged through %d alerts, want 10", len(seen))
	}
	if p, _ := e.List(alerts.Filter{Grid: "G2"}); len(p.Alerts) != 5 {
		t.Fatalf("grid G2 filter: %d alerts, want 5", len(p.Alerts))
	}
	if _, err := e.List(alerts.Filter{Cursor: "garbage!"}); !errors.Is(err, alerts.ErrBadFilter) {
		t.Fatalf("bad cursor: %v; want ErrBadFilter", err)
	}
}

// TestListOrderWhileAlertsFire checks the fired order List and All walk
// against a plain sort: alerts firing in the same millisecond (ids of
// different lengths), before the newest (a clock set back), and cleared
// alerts pruned after Retain. Every page, in both directions, and the
// export list exactly the alerts in sort order.
func TestListOrderWhileAlertsFire(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for i := range 120 {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%03d", i), Type: "gas", Grid: "G1"})
	}
	rules := mustRules(t, `
rules:
  - {name: gas_high, metric: ch4_ppm, condition: value > 5000, clear: value < 1000, severity: major, no_group: true}
`)
	e := newEngine(t, rules, devs, nil, c)
	e.Retain = time.Hour
	fire := func(dev string) {
		e.Observe(alerts.Observation{Device: dev, Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
	}
	for i, d := range devs[:100] {
		fire(d.ID) // ten to a millisecond, past the 36th id of one
		if i%10 == 9 {
			c.Add(time.Millisecond)
		}
	}
	// Alerts that fire before the newest one.
	c.Add(-50 * time.Millisecond)
	for _, d := range devs[100:110] {
		fire(d.ID)
	}
	// Ten clear and are pruned two hours later.
	for _, d := range devs[:10] {
		e.Observe(alerts.Observation{Device: d.ID, Metric: "ch4_ppm", Value: 10, TS: c.Now().UnixMilli()})
	}
	c.Add(2 * time.Hour)
	e.RunTimers()
	for _, d := range devs[110:] {
		fire(d.ID)
	}

	var want []alerts.Alert
	for _, d := range devs[10:] {
		p, err := e.List(alerts.Filter{Device: d.ID})
		if err != nil || len(p.Alerts) != 1 {
			t.Fatalf("alerts of %s: %+v, %v; want one", d.ID, p.Alerts, err)
		}
		want = append(want, p.Alerts[0])
	}
	if p, _ := e.List(alerts.Filter{Device: devs[0].ID}); len(p.Alerts) != 0 {
		t.Fatalf("a closed alert pruned after Retain is still listed: %+v", p.Alerts)
	}
	byFired := func(a, b alerts.Alert) int {
		if c := a.Fired.Compare(b.Fired); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	}
	slices.SortFunc(want, byFired)
	for _, sort := range []string{"fired", "-fired"} {
		exp := slices.Clone(want)
		if sort == "-fired" {
			slices.Reverse(exp)
		}
		var got []string
		f := alerts.Filter{Sort: sort, Limit: 7}
		for {
			p, err := e.List(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range p.Alerts {
				got = append(got, a.ID)
			}
			if p.Next == "" {
				break
			}
			f.Cursor = p.Next
		}
		all, err := e.All(alerts.Filter{Sort: sort})
		if err != nil {
			t.Fatal(err)
		}
		var exported []string
		for a := range all {
			exported = append(exported, a.ID)
		}
		var ids []string
		for _, a := range exp {
			ids = append(ids, a.ID)
		}
		if !slices.Equal(got, ids) || !slices.Equal(exported, ids) {
			t.Errorf("sort %s:\n pages  %v\n export %v\n want   %v", sort, got, exported, ids)
		}
	}
}

// TestValueStorm checks that threshold breaches fire at once, without a
// group wait, and that once StormMin devices of a cell fire the same rule
// the later ones join one grid-level alert.
func TestValueStorm(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for i := range 8 {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: "G1"})
	}
	rules := mustRules(t, `
rules:
  - name: gas_high
    metric: ch4_ppm
    condition: value > 5000
    clear: value < 1000
    severity: major
`)
	e := newEngine(t, rules, devs, nil, c)
	for i, d := range devs {
		e.Observe(alerts.Observation{Device: d.ID, Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
		own, _ := e.List(alerts.Filter{Device: d.ID})
		if len(own.Alerts) != 1 || own.Alerts[0].Condition != alerts.ConditionFiring || !own.Alerts[0].Fired.Equal(c.Now()) {
			t.Fatalf("device %d: alerts %+v; want one firing at once", i, own.Alerts)
		}
		if wantGrid := i >= alerts.DefaultStormMin; (own.Alerts[0].Device == "") != wantGrid {
			t.Fatalf("device %d fires into %+v; grid-level: want %v", i, own.Alerts[0], wantGrid)
		}
	}
	page, _ := e.List(alerts.Filter{})
	if len(page.Alerts) != alerts.DefaultStormMin+1 {
		t.Fatalf("%d alerts, want %d of their own and one grid-level", len(page.Alerts), alerts.DefaultStormMin)
	}
	grid, _ := e.List(alerts.Filter{Device: "gas-7"})
	if m := grid.Alerts[0].Members; len(m) != len(devs)-alerts.DefaultStormMin {
		t.Fatalf("grid-level alert members %v, want the %d devices after the first %d", m, len(devs)-alerts.DefaultStormMin, alerts.DefaultStormMin)
	}
}

// engineHeldByStranger starts an engine with the lifecycle rules over devs
// whose Lookup, asked about device "stranger", waits until released. hold
// has ingestion take the engine's mutex and keep it (an observation of the
// stranger, waiting in Lookup) and returns the function that lets go; the
// test's end lets go too.
func engineHeldByStranger(t *testing.T, c *clock, devs []devices.Device) (e *alerts.Engine, hold func() (release func())) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	reg := devices.NewRegistry(devs)
	e = &alerts.Engine{
		Rules: mustRules(t, lifecycleRules), Now: c.Now, Tick: time.Hour, FlushEvery: time.Hour,
		Lookup: func(id string) (devices.Device, bool) {
			if id == "stranger" {
				close(held)
				<-release
			}
			return reg.Lookup(id)
		},
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	let := sync.OnceFunc(func() { close(release) })
	t.Cleanup(func() {
		let() // a test that failed while holding
		e.Close()
	})
	return e, func() func() {
		go e.Observe(alerts.Observation{Device: "stranger", Metric: "ch4_ppm", Value: 1})
		<-held
		return let
	}
}

// TestReadsDoNotWaitForIngest attacks "staff reads do not stall ingestion"
// (issue 10 item 15) from the other side: while ingestion holds the
// engine's mutex (an observation of an unknown device waits in Lookup),
// List, Get and All still answer, with what was published before.
func TestReadsDoNotWaitForIngest(t *testing.T) {
	c := &clock{t: t0}
	e, hold := engineHeldByStranger(t, c, []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}})
	e.Observe(alerts.Observation{Device: "gas-1", Metric: "ch4_ppm", Value: 8000, TS: c.Now().UnixMilli()})
	defer hold()()
	read := make(chan error, 1)
	go func() {
		p, err := e.List(alerts.Filter{})
		if err == nil && len(p.Alerts) != 1 {
			err = fmt.Errorf("List = %d alerts, want 1", len(p.Alerts))
		}
		if err == nil {
			_, _, err = e.Get(p.Alerts[0].ID)
		}
		if err == nil {
			_, err = e.All(alerts.Filter{})
		}
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("List, Get and All waited for the engine's mutex, held by ingestion")
	}
}

// TestHandedReadingsAreEvaluatedOnReturn checks what the ingest pipeline
// relies on when ObserveReadings callers hand their readings over to the
// holder of the engine's mutex instead of queuing for it: a call returns
// only once its readings are evaluated, not while another holds the mutex,
// and then its alert is there to read.
func TestHandedReadingsAreEvaluatedOnReturn(t *testing.T) {
	c := &clock{t: t0}
	const clients = 20
	var devs []devices.Device
	for i := range clients {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: "G1"})
	}
	e, hold := engineHeldByStranger(t, c, devs)
	release := hold()
	returned := make(chan string, clients)
	for _, d := range devs {
		go func() {
			e.ObserveReadings([]ingest.Reading{{TS: c.Now().UnixMilli(), Device: d.ID, Grid: d.Grid, Metric: "ch4_ppm", Value: 8000}})
			p, err := e.List(alerts.Filter{Device: d.ID})
			if err != nil || len(p.Alerts) != 1 || p.Alerts[0].Condition != alerts.ConditionFiring {
				returned <- fmt.Sprintf("%s: ObserveReadings returned with alerts %+v (%v); want its alert firing", d.ID, p.Alerts, err)
				return
			}
			returned <- ""
		}()
	}
	select {
	case msg := <-returned:
		t.Fatalf("a call returned while the mutex was held, before its readings could be evaluated: %q", msg)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	for range clients {
		if msg := <-returned; msg != "" {
			t.Error(msg)
		}
	}
}

// TestConcurrentReadingsEndInTheirLastState has many clients observe at
// once, each flipping its own device's value, so that most hand their
// readings to another's holding of the mutex: every device ends in the
// state of its last reading, each alert raised once per flip.
func TestConcurrentReadingsEndInTheirLastState(t *testing.T) {
	c := &clock{t: t0}
	const clients, flips = 16, 200
	var devs []devices.Device
	for i := range clients {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: "G1"})
	}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, nil, c)
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			for f := range flips + i%2 {
				v := 8000.0
				if f%2 == 1 {
					v = 10
				}
				e.ObserveReadings([]ingest.Reading{{TS: c.Now().UnixMilli(), Device: d.ID, Grid: d.Grid, Metric: "ch4_ppm", Value: v}})
			}
		})
	}
	wg.Add(1)
	go func() { // beside them, a holder of the mutex that is not ingestion
		defer wg.Done()
		for range 50 {
			e.RunTimers()
		}
	}()
	wg.Wait()
	for i, d := range devs {
		p, err := e.List(alerts.Filter{Device: d.ID, Limit: flips})
		if err != nil {
			t.Fatal(err)
		}
		// A device with an odd number of readings ends high: its last alert fires.
		wantFiring := i%2 == 1
		if len(p.Alerts) != flips/2+i%2 {
			t.Fatalf("%s: %d alerts, want %d, one per rise", d.ID, len(p.Alerts), flips/2+i%2)
		}
		firing := 0
		for _, a := range p.Alerts {
			if a.Condition == alerts.ConditionFiring {
				firing++
			}
		}
		if (firing == 1) != wantFiring || firing > 1 {
			t.Errorf("%s: %d alerts firing, want firing %v", d.ID, firing, wantFiring)
		}
	}
}

// TestSlowExportLeavesReadsFree checks the read slots from the side of a
// slow export client: an export whose consumer waits (a CSV download to a
// slow network) holds no read slot while it waits, so with one slot, the
// other staff's lists and pages still answer.
func TestSlowExportLeavesReadsFree(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for i := range 3 {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: "G1"})
	}
	reg := devices.NewRegistry(devs)
	e := &alerts.Engine{Rules: mustRules(t, lifecycleRules), Lookup: reg.Lookup, Now: c.Now, ReadSlots: 1,
		Tick: time.Hour, FlushEvery: time.Hour}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, d := range devs {
		e.Observe(alerts.Observation{Device: d.ID, Metric: "ch4_ppm", Value: 9000, TS: c.Now().UnixMilli()})
	}
	all, err := e.All(alerts.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	for range all {
		// The export's consumer is busy with its first row.
		go func() {
			p, err := e.List(alerts.Filter{})
			if err == nil && len(p.Alerts) != 3 {
				err = fmt.Errorf("List = %d alerts, want 3", len(p.Alerts))
			}
			if err == nil {
				_, _, err = e.Get(p.Alerts[0].ID)
			}
			read <- err
		}()
		select {
		case err := <-read:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("List and Get waited for an export whose consumer was busy")
		}
		break
	}
}
