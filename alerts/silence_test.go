package alerts_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

// maintenanceRules has one rule of every kind: absence, a value rule that
// must hold for a while, an instant value rule and an inhibiting status
// rule.
const maintenanceRules = `
rules:
  - name: silent
    absent: 3
    severity: minor
  - name: offline
    metric: online
    condition: value == 0
    clear: value == 1
    for: 2m
    severity: minor
    inhibits: true
  - name: gas_slow
    match: {types: [gas]}
    metric: ch4_ppm
    condition: value > 5000
    for: 10m
    severity: major
  - name: gas_now
    match: {types: [gas]}
    metric: ch4_ppm
    condition: value > 20000
    severity: critical
`

// fires drains sub and returns the fire transitions in it.
func fires(sub *alerts.Subscription) []alerts.Transition {
	var out []alerts.Transition
	for {
		select {
		case tr := <-sub.C:
			if tr.Event.Kind == alerts.EventFire {
				out = append(out, tr)
			}
		default:
			return out
		}
	}
}

// run moves the clock by d in steps of one second, running the timers at
// each step as the engine's ticker would.
func run(e *alerts.Engine, c *clock, d time.Duration) {
	for end := c.Now().Add(d); c.Now().Before(end); {
		c.Add(time.Second)
		e.RunTimers()
	}
}

// TestMaintenanceKeepsEveryRuleKindFromFiring attacks the README promise "a
// maintenance window (maintenance: true) keeps them from firing": a device
// switched off for maintenance must not raise its absence alert, a rule
// pending with `for` when the window begins must not fire when its `for`
// runs out, an outage alert waiting for its storm group must not fire when
// the group is decided, and a value rule must not fire; once the window
// ends, the rules apply again.
func TestMaintenanceKeepsEveryRuleKindFromFiring(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}, {ID: "gas-2", Type: "gas", Grid: "G1"}}
	e := newEngine(t, mustRules(t, maintenanceRules), devs, nil, c)
	e.GroupWait = 0 // an outage alert waits one report interval (30 s) for its group
	sub := e.Subscribe(1024)
	obs := func(dev, metric string, v float64) {
		e.Observe(alerts.Observation{Device: dev, Metric: metric, Value: v, TS: c.Now().UnixMilli()})
	}
	window := func(dev string, d time.Duration) {
		t.Helper()
		if _, err := e.AddSilence(t.Context(), alerts.Silence{Device: dev, Maintenance: true, Ends: c.Now().Add(d), Actor: "op", Reason: "switched off"}); err != nil {
			t.Fatal(err)
		}
	}

	// gas-1 is pending on gas_slow when it is switched off for maintenance;
	// gas-2 has gone silent and its absence alert waits for its group.
	obs("gas-1", "ch4_ppm", 9000)
	obs("gas-2", "ch4_ppm", 100)
	run(e, c, 100*time.Second) // gas-2: 90 s silent, then ready and held for 30 s
	window("gas-1", time.Hour)
	window("gas-2", time.Hour)
	obs("gas-1", "ch4_ppm", 30000) // gas_now would fire at once
	obs("gas-1", "online", 0)      // offline would fire after 2m
	run(e, c, time.Hour-time.Second)
	if got := fires(sub); len(got) != 0 {
		for _, tr := range got {
			t.Errorf("fired in a maintenance window: %s of %s (%s)", tr.Alert.Rule, tr.Alert.Device, tr.Alert.Summary)
		}
	}

	// The window is over and gas-2 is still silent: its absence alert fires.
	run(e, c, 2*time.Minute)
	got := fires(sub)
	if len(got) != 2 {
		t.Fatalf("fired after the windows: %d alerts, want silent of gas-1 and gas-2: %+v", len(got), got)
	}
	for _, tr := range got {
		if tr.Alert.Rule != "silent" {
			t.Errorf("after the windows: %s of %s fired, want only silent", tr.Alert.Rule, tr.Alert.Device)
		}
	}
}

// TestInhibitionCoversPendingRules attacks the promise that an inhibiting
// rule (device_offline) mutes the device's other rules while it fires: a
// value rule already pending with `for` when the device goes offline must
// not fire on the stale reading once its `for` runs out.
func TestInhibitionCoversPendingRules(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}}
	e := newEngine(t, mustRules(t, maintenanceRules), devs, nil, c)
	sub := e.Subscribe(1024)
	obs := func(metric string, v float64) {
		e.Observe(alerts.Observation{Device: "gas-1", Metric: metric, Value: v, TS: c.Now().UnixMilli()})
	}
	obs("ch4_ppm", 9000)
	obs("online", 0)
	for i := 0; i < 11*60; i++ {
		c.Add(time.Second)
		e.RunTimers()
		if i%20 == 0 { // still online=0 every 20 s: no absence alert
			obs("online", 0)
		}
	}
	got := fires(sub)
	if len(got) != 1 || got[0].Alert.Rule != "offline" {
		for _, tr := range got {
			t.Errorf("fired: %s (%s)", tr.Alert.Rule, tr.Alert.Summary)
		}
		t.Fatalf("want the offline alert only")
	}
}

// TestSilencingOneDeviceLeavesItsStormLoud attacks the promise that a
// silence mutes the alerts it selects, and only those: silencing one device
// of a storm (one grid-level alert grouping five devices that went quiet
// together) must not mute the alert about the other four. A silence of the
// whole grid, or silences of every member, do mute it.
func TestSilencingOneDeviceLeavesItsStormLoud(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for i := 1; i <= 5; i++ {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: "G1"})
	}
	e := newEngine(t, mustRules(t, "rules:\n  - {name: silent, absent: 3, severity: minor, escalate: {after: 10m, to: major}}\n"), devs, nil, c)
	sub := e.Subscribe(1024)
	silence := func(s alerts.Silence) alerts.Silence {
		t.Helper()
		s.Ends, s.Actor = c.Now().Add(24*time.Hour), "op"
		s, err := e.AddSilence(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	silence(alerts.Silence{Device: "gas-1"})
	run(e, c, 3*time.Minute)
	got := fires(sub)
	if len(got) != 1 || got[0].Alert.Device != "" || len(got[0].Alert.Members) != 5 {
		t.Fatalf("fired %+v; want one grid-level alert of 5 devices", got)
	}
	if got[0].Silenced {
		t.Errorf("the storm alert of 5 devices is silenced by a silence of gas-1 alone")
	}
	var last alerts.Silence
	for i := 2; i <= 5; i++ {
		last = silence(alerts.Silence{Device: fmt.Sprintf("gas-%d", i)})
	}
	run(e, c, 10*time.Minute)
	var escalate *alerts.Transition
	for drained := false; !drained; {
		select {
		case tr := <-sub.C:
			if tr.Event.Kind == alerts.EventEscalate {
				escalate = &tr
			}
		default:
			drained = true
		}
	}
	if escalate == nil || !escalate.Silenced {
		t.Errorf("escalation once every member is silenced: %+v; want one, silenced", escalate)
	}
	// One member's silence ends: the storm is loud again, and announced.
	if err := e.RemoveSilence(t.Context(), last.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case tr := <-sub.C:
		if tr.Event.Kind != alerts.EventUnsilence || tr.Silenced || tr.Alert.ID != got[0].Alert.ID {
			t.Errorf("after a member's silence ended: %+v; want the storm alert announced", tr)
		}
	default:
		t.Errorf("after a member's silence ended, the storm alert was not announced")
	}
}

// TestSilenceOfAnUnknownRuleIsRefused attacks the silences promise the way
// a hurried operator does: a silence of a misspelt rule ("gas-high") would
// silence nothing while its author believes the alerts silenced, so it is
// refused with the rule names instead.
func TestSilenceOfAnUnknownRuleIsRefused(t *testing.T) {
	c := &clock{t: t0}
	e := newEngine(t, mustRules(t, lifecycleRules), nil, nil, c)
	_, err := e.AddSilence(t.Context(), alerts.Silence{Rule: "gas-high", Ends: t0.Add(time.Hour), Actor: "op"})
	if !errors.Is(err, alerts.ErrInvalidSilence) || !strings.Contains(err.Error(), "gas_high") {
		t.Fatalf("silence of an unknown rule: %v; want ErrInvalidAction naming the rules", err)
	}
	if _, err := e.AddSilence(t.Context(), alerts.Silence{Rule: "gas_high", Ends: t0.Add(time.Hour), Actor: "op"}); err != nil {
		t.Fatalf("silence of a known rule: %v", err)
	}
}

// TestSilenceEndReannouncesFiringAlerts attacks the silences promise from
// its other end: notifiers stay quiet while a silence covers an alert, and
// hear of it once the silence is over, whether it expired or was deleted,
// if the alert still fires. An alert another silence still covers, or one
// that cleared meanwhile, stays quiet.
func TestSilenceEndReannouncesFiringAlerts(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	for i := 1; i <= 4; i++ {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("gas-%d", i), Type: "gas", Grid: fmt.Sprintf("G%d", i)})
	}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, nil, c)
	sub := e.Subscribe(1024)
	silence := func(s alerts.Silence, d time.Duration) alerts.Silence {
		t.Helper()
		s.Ends, s.Actor = c.Now().Add(d), "op"
		s, err := e.AddSilence(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	obs := func(dev string, v float64) {
		e.Observe(alerts.Observation{Device: dev, Metric: "ch4_ppm", Value: v, TS: c.Now().UnixMilli()})
	}
	// loud drains sub and returns the devices whose transitions are not
	// silenced, failing on a silenced one that should not be.
	loud := func() map[string]alerts.Transition {
		out := map[string]alerts.Transition{}
		for {
			select {
			case tr := <-sub.C:
				if !tr.Silenced {
					out[tr.Alert.Device] = tr
				}
			default:
				return out
			}
		}
	}
	silence(alerts.Silence{Device: "gas-1"}, 5*time.Minute) // expires
	deleted := silence(alerts.Silence{Device: "gas-2"}, 24*time.Hour)
	silence(alerts.Silence{Device: "gas-3"}, 5*time.Minute) // expires, but
	silence(alerts.Silence{Grid: "G3"}, 24*time.Hour)       // this one goes on
	silence(alerts.Silence{Device: "gas-4"}, 5*time.Minute) // expires after gas-4 cleared
	for _, d := range devs {
		obs(d.ID, 9000)
	}
	if got := loud(); len(got) != 0 {
		t.Fatalf("loud transitions under silences: %+v", got)
	}
	obs("gas-4", 100)
	run(e, c, 5*time.Minute)
	got := loud()
	tr, ok := got["gas-1"]
	if !ok || tr.Alert.Condition != alerts.ConditionFiring || tr.Event.Kind != alerts.EventUnsilence {
		t.Errorf("gas-1 after its silence expired: %+v; want an unsilence transition of the firing alert", got)
	}
	for _, dev := range []string{"gas-2", "gas-3", "gas-4"} {
		if tr, ok := got[dev]; ok {
			t.Errorf("%s announced when gas-1's silence expired: %+v", dev, tr)
		}
	}
	if err := e.RemoveSilence(t.Context(), deleted.ID); err != nil {
		t.Fatal(err)
	}
	got = loud()
	if tr, ok := got["gas-2"]; !ok || tr.Event.Kind != alerts.EventUnsilence || len(got) != 1 {
		t.Errorf("after gas-2's silence was deleted: %+v; want gas-2's alert announced, alone", got)
	}
	// The announcement is in the trace, so the alert's version moved on.
	a, events, err := e.Get(tr.Alert.ID)
	if err != nil || events[len(events)-1].Kind != alerts.EventUnsilence || a.Version != events[len(events)-1].Version {
		t.Errorf("gas-1's trace %+v (%v); want it to end with the unsilence event", events, err)
	}
}

// TestAbsenceFollowsRuleAndOrderChanges checks that the absence timers,
// which RunTimers looks at only when due, follow what changes them from
// outside: an absence rule added by a reload covers devices silent since
// the start, and a device that reported (clearing its absence alert) and
// fell silent again raises a new one.
func TestAbsenceFollowsRuleAndOrderChanges(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}, {ID: "gas-2", Type: "gas", Grid: "G2"}}
	e := newEngine(t, mustRules(t, lifecycleRules), devs, nil, c)
	sub := e.Subscribe(1024)
	run(e, c, 5*time.Minute)
	if got := fires(sub); len(got) != 0 {
		t.Fatalf("fired without an absence rule: %+v", got)
	}
	e.SetRules(mustRules(t, lifecycleRules+"  - {name: silent, absent: 3, severity: minor}\n"))
	run(e, c, 3*time.Minute)
	got := fires(sub)
	if len(got) != 2 || got[0].Alert.Rule != "silent" || got[1].Alert.Rule != "silent" {
		t.Fatalf("after the absence rule was added: %+v; want silent of gas-1 and gas-2", got)
	}
	first := got[0].Alert
	run(e, c, 10*time.Second)
	e.Observe(alerts.Observation{Device: first.Device, Metric: "ch4_ppm", Value: 10, TS: c.Now().UnixMilli()})
	if a, _, err := e.Get(first.ID); err != nil || a.Condition != alerts.ConditionCleared {
		t.Fatalf("%s's absence alert after it reported: %+v, %v; want cleared", first.Device, a, err)
	}
	// Silent for three 30 s intervals, then its group waits 30 s.
	run(e, c, 90*time.Second+45*time.Second)
	got = fires(sub)
	if len(got) != 1 || got[0].Alert.Device != first.Device || got[0].Alert.ID == first.ID {
		t.Fatalf("after %s reported and fell silent again: %+v; want a new alert", first.Device, got)
	}
}
