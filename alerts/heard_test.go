package alerts_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

// heardLog is what the nodes of a cluster stored, as ClickHouse holds it
// for Engine.Heard: the latest receive time of each device's readings.
// While down is set, every ask fails.
type heardLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	down bool
}

func (h *heardLog) add(device string, at time.Time) {
	h.mu.Lock()
	h.last[device] = at
	h.mu.Unlock()
}

func (h *heardLog) setDown(down bool) {
	h.mu.Lock()
	h.down = down
	h.mu.Unlock()
}

func (h *heardLog) Heard(_ context.Context, devs []string, since time.Time) (map[string]time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return nil, errors.New("clickhouse: connection refused")
	}
	out := map[string]time.Time{}
	for _, d := range devs {
		if t, ok := h.last[d]; ok && !t.Before(since) {
			out[d] = t
		}
	}
	return out, nil
}

// metricSum sums the samples of the metric name gathered from reg whose
// labels include the label pairs given (name, value, ...).
func metricSum(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue samples
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestHeardKeepsGaugesHeardElsewhereFromSilence runs two engines as two
// nodes consuming a shared subscription (Heard set, on one log of what
// the nodes stored), beside two engines as the same nodes without Heard,
// over four water-level gauges (a report a minute, device_silent after
// three) whose readings always land on the same node, so that each node
// never hears two of them. Without Heard each node counts the two it
// never hears silent: four alerts of healthy gauges. With it none fires;
// a gauge that goes quiet fires one alert between the nodes, which clears
// within a report interval of the gauge reporting again to the other node;
// and while Heard fails, no gauge is counted silent.
func TestHeardKeepsGaugesHeardElsewhereFromSilence(t *testing.T) {
	c := &clock{t: t0}
	var gauges []devices.Device
	for i := range 4 {
		gauges = append(gauges, devices.Device{ID: fmt.Sprintf("gauge-%d", i), Type: "water_level", Grid: "G1"})
	}
	reg := devices.NewRegistry(gauges)
	rules := mustRules(t, `
rules:
  - name: device_silent
    absent: 3
    severity: minor
`)
	log := &heardLog{last: map[string]time.Time{}}
	type node struct {
		e   *alerts.Engine
		reg *prometheus.Registry
	}
	start := func(claims *memClaims, heard func(context.Context, []string, time.Time) (map[string]time.Time, error)) node {
		n := node{reg: prometheus.NewRegistry()}
		n.e = &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Devices: reg.All, Now: c.Now, Claims: claims, Heard: heard,
			Tick: 20 * time.Millisecond, FlushEvery: time.Hour, Registerer: n.reg}
		if err := n.e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.e.Close() })
		return n
	}
	sharedClaims, aloneClaims := &memClaims{holder: map[string]string{}}, &memClaims{holder: map[string]string{}}
	shared := []node{start(sharedClaims, log.Heard), start(sharedClaims, log.Heard)}
	alone := []node{start(aloneClaims, nil), start(aloneClaims, nil)}
	all := append(append([]node{}, shared...), alone...)

	// advance moves the clock a minute on, and the reading of each gauge
	// of to (gauge: node) lands then on that node of both pairs. The
	// cluster's record of the readings (Heard's log) is written before the
	// clock moves: every node runs its own timers every Tick as well, and
	// one that looked between the move and the record would count a gauge
	// heard elsewhere silent for HeardFresh (run 330).
	advance := func(to map[int]int) {
		at := c.Now().Add(time.Minute)
		for i := range to {
			log.add(gauges[i].ID, at)
		}
		c.Add(time.Minute)
		for i, n := range to {
			for _, pair := range [][]node{shared, alone} {
				pair[n].e.Observe(alerts.Observation{Device: gauges[i].ID, Metric: "level_cm", Value: 120, TS: at.UnixMilli()})
			}
		}
	}
	// each has the gauges listed land on their usual node.
	each := func(gauges ...int) map[int]int {
		to := map[int]int{}
		for _, i := range gauges {
			to[i] = i % 2
		}
		return to
	}
	// settle runs every node's timers at the clock and waits until what
	// they asked (of Heard and of the claims) was answered, twice: an
	// answer can make an alert ready, whose claim is asked next. The last
	// RunTimers waits for the last answer's changes to be in place.
	settle := func() {
		t.Helper()
		for range 2 {
			for _, n := range all {
				n.e.RunTimers()
				deadline := time.Now().Add(30 * time.Second)
				for metricSum(t, n.reg, "gridwatch_alerts_heard_asked")+metricSum(t, n.reg, "gridwatch_alerts_claims_asked") > 0 {
					if time.Now().After(deadline) {
						t.Fatal("Heard or the claims not answered within 30 s")
					}
					time.Sleep(2 * time.Millisecond)
				}
				n.e.RunTimers()
			}
		}
	}
	// open lists the device_silent alerts not cleared on the nodes, by
	// gauge, and the ids of those firing.
	open := func(nodes []node) (byGauge map[string]int, firing []alerts.Alert, on []int) {
		byGauge = map[string]int{}
		for i, n := range nodes {
			p, err := n.e.List(alerts.Filter{Rule: "device_silent", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range p.Alerts {
				if a.Condition == alerts.ConditionCleared {
					continue
				}
				byGauge[a.Device]++
				if a.Condition == alerts.ConditionFiring {
					firing, on = append(firing, a), append(on, i)
				}
			}
		}
		return byGauge, firing, on
	}
	minute := func(reporting ...int) {
		advance(each(reporting...))
		settle()
	}

	// Every gauge reports every minute, each to one node.
	for range 8 {
		minute(0, 1, 2, 3)
	}
	sharedOpen, _, _ := open(shared)
	aloneOpen, _, _ := open(alone)
	heard := metricSum(t, shared[0].reg, "gridwatch_alerts_heard_checks_total", "result", "heard") +
		metricSum(t, shared[1].reg, "gridwatch_alerts_heard_checks_total", "result", "heard")
	silent := metricSum(t, shared[0].reg, "gridwatch_alerts_heard_checks_total", "result", "silent") +
		metricSum(t, shared[1].reg, "gridwatch_alerts_heard_checks_total", "result", "silent")
	t.Logf("8 minutes of healthy gauges: device_silent open without Heard %v, with Heard %v (%.0f checks found the gauge heard elsewhere, %.0f silent)",
		aloneOpen, sharedOpen, heard, silent)
	if len(aloneOpen) != 4 {
		t.Errorf("without Heard, %d gauges have device_silent open (%v); want the 4 each node never hears: the baseline does not show what Heard is for", len(aloneOpen), aloneOpen)
	}
	if len(sharedOpen) != 0 || silent != 0 || heard == 0 {
		t.Fatalf("with Heard, device_silent open %v, %.0f checks silent and %.0f heard; want none open, none silent, some heard", sharedOpen, silent, heard)
	}

	// gauge-0 goes quiet: both nodes count it silent, one alert fires.
	var (
		byGauge map[string]int
		firing  []alerts.Alert
		on      []int
		quiet   int
	)
	for quiet = 1; quiet <= 6 && len(firing) == 0; quiet++ {
		minute(1, 2, 3)
		byGauge, firing, on = open(shared)
	}
	t.Logf("gauge-0 quiet %d minutes: open %v, firing on nodes %v", quiet-1, byGauge, on)
	if len(byGauge) != 1 || byGauge["gauge-0"] != 1 || len(firing) != 1 {
		t.Fatalf("gauge-0 quiet: device_silent open %v, %d firing; want one alert of gauge-0, firing on one node", byGauge, len(firing))
	}
	// It reports again, to the node that does not hold its alert.
	other := 1 - on[0]
	to := each(1, 2, 3)
	to[0] = other
	advance(to)
	settle()
	// The node holding the alert looks again a report interval after its
	// last look, which was when the alert fired, a minute ago.
	if byGauge, _, _ = open(shared); len(byGauge) != 0 {
		t.Fatalf("gauge-0 reporting to the other node for a minute: device_silent open %v; want it cleared at the holder's next look, a report interval after the last", byGauge)
	}
	t.Logf("gauge-0 reporting to node %d again: its alert on node %d cleared a minute later", other, on[0])

	// While Heard fails, the gauges each node never hears wait for it
	// rather than be counted silent.
	log.setDown(true)
	for range 5 {
		advance(each(0, 1, 2, 3))
		for _, n := range all {
			n.e.RunTimers()
		}
	}
	for _, n := range shared {
		deadline := time.Now().Add(30 * time.Second)
		for metricSum(t, n.reg, "gridwatch_alerts_heard_asked") != 2 || metricSum(t, n.reg, "gridwatch_alerts_heard_checks_total", "result", "error") == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("Heard down: %.0f gauges asked, %.0f errors; want the 2 the node never hears asked, and errors",
					metricSum(t, n.reg, "gridwatch_alerts_heard_asked"), metricSum(t, n.reg, "gridwatch_alerts_heard_checks_total", "result", "error"))
			}
			time.Sleep(2 * time.Millisecond)
		}
		n.e.RunTimers()
	}
	if byGauge, _, _ = open(shared); len(byGauge) != 0 {
		t.Fatalf("Heard down for 5 minutes: device_silent open %v; want none", byGauge)
	}
	log.setDown(false)
	minute(0, 1, 2, 3)
	if byGauge, _, _ = open(shared); len(byGauge) != 0 {
		t.Fatalf("Heard answering again: device_silent open %v; want none", byGauge)
	}
}
