package alerts_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

// memOwners hand devices between the engines of one test as ZooKeeper does
// for the nodes of a cluster (cluster.Owners): an engine's Own is queued,
// and settle hands each queued device over, releasing it from its owner
// first unless that owner died.
type memOwners struct {
	t     *testing.T
	mu    sync.Mutex
	owner map[string]*alerts.Engine
	dead  map[*alerts.Engine]bool
	queue []ownAsk
	asks  map[*alerts.Engine]int
	rules *alerts.RuleSet
	reg   *devices.Registry
}

type ownAsk struct {
	e      *alerts.Engine
	device string
}

// ownerNode is one engine's Owners.
type ownerNode struct {
	o *memOwners
	e *alerts.Engine
}

func (n *ownerNode) Own(device string) {
	n.o.mu.Lock()
	defer n.o.mu.Unlock()
	n.o.queue = append(n.o.queue, ownAsk{n.e, device})
	n.o.asks[n.e]++
}

// engine starts an engine of the test's cluster on store, claims and c.
func (o *memOwners) engine(store alerts.Store, claims alerts.Claims, c *clock) *alerts.Engine {
	n := &ownerNode{o: o}
	n.e = &alerts.Engine{Rules: o.rules, Lookup: o.reg.Lookup, Store: store, Claims: claims, Owners: n, Now: c.Now,
		Tick: time.Hour, FlushEvery: time.Hour}
	if err := n.e.Start(o.t.Context()); err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(func() { n.e.Close() })
	return n.e
}

// die has node e die: its last flush, then its claims go with its
// ZooKeeper session, and its devices are handed on without a handover.
func (o *memOwners) die(e *alerts.Engine, claims *memClaims) {
	o.t.Helper()
	if err := e.Flush(o.t.Context()); err != nil {
		o.t.Fatal(err)
	}
	o.mu.Lock()
	o.dead[e] = true
	o.mu.Unlock()
	claims.mu.Lock()
	clear(claims.holder)
	claims.mu.Unlock()
}

// settle hands the devices asked for to the engines that asked.
func (o *memOwners) settle() {
	o.t.Helper()
	o.mu.Lock()
	queue := o.queue
	o.queue = nil
	o.mu.Unlock()
	for _, a := range queue {
		o.mu.Lock()
		from := o.owner[a.device]
		dead := o.dead[from]
		o.mu.Unlock()
		if from == a.e {
			continue
		}
		var handed map[string]alerts.Handover
		if from != nil && !dead {
			var err error
			if handed, err = from.Release(o.t.Context(), []string{a.device}); err != nil {
				o.t.Fatalf("release %s: %v", a.device, err)
			}
		}
		if err := a.e.Owned(o.t.Context(), []string{a.device}, handed); err != nil {
			o.t.Fatalf("owned %s: %v", a.device, err)
		}
		o.mu.Lock()
		o.owner[a.device] = a.e
		o.mu.Unlock()
	}
}

func (o *memOwners) asked(e *alerts.Engine) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.asks[e]
}

// newOwnersCluster makes a waste bin, the test's clock, a store and claims
// shared by its engines, and their owners, under ownersRules.
func newOwnersCluster(t *testing.T) (*clock, devices.Device, *sharedStore, *memClaims, *memOwners) {
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	o := &memOwners{t: t, owner: map[string]*alerts.Engine{}, dead: map[*alerts.Engine]bool{}, asks: map[*alerts.Engine]int{},
		rules: mustRules(t, ownersRules), reg: devices.NewRegistry([]devices.Device{bin})}
	return &clock{t: t0}, bin, &sharedStore{}, &memClaims{holder: map[string]string{}}, o
}

// ownersRules are a full bin's alert and the default absence rule.
const ownersRules = `
rules:
  - name: bin_full
    metric: fill_pct
    condition: value > 90
    clear: value < 50
    severity: minor
    no_group: true
  - name: device_silent
    absent: 3
    severity: minor
    no_group: true
`

// transitions counts the fire and clear transitions of a subscription.
type transitions struct{ fires, clears int }

func (tr *transitions) drain(s *alerts.Subscription) {
	for {
		select {
		case x := <-s.C:
			switch x.Event.Kind {
			case alerts.EventFire:
				tr.fires++
			case alerts.EventClear:
				tr.clears++
			}
		default:
			return
		}
	}
}

// laggingStore is a node's view of the shared store through a replica that
// has not fetched the other nodes' saves yet: it finds no open alerts.
type laggingStore struct{ *sharedStore }

func (laggingStore) LoadOpenAlerts(context.Context, []string) ([]alerts.Alert, []alerts.Event, error) {
	return nil, nil, nil
}

// firing waits until e lists the device's alert of rule as firing, and
// returns it.
func firing(t *testing.T, e *alerts.Engine, device, rule string) alerts.Alert {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, _ := e.List(alerts.Filter{Device: device})
		for _, a := range p.Alerts {
			if a.Rule == rule && a.Condition == alerts.ConditionFiring {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's %s alert not firing after 30 s: %+v", device, rule, p.Alerts)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOwnersCarryAnAlertToTheDevicesNewNode: a device whose alert fires on
// node A reaches node B, which asks for it; A lets it go (saving its alert
// and giving up the claim) and B carries the alert on from A's handover
// (B's replica has not A's save yet), with no second fire,
// clears it when the device's readings clear it, and releases the claim. A
// no longer watches the device: its late offline status asks nothing, and
// its silence raises nothing on A.
func TestOwnersCarryAnAlertToTheDevicesNewNode(t *testing.T) {
	c, bin, store, claims, owners := newOwnersCluster(t)
	a, b := owners.engine(store, claims, c), owners.engine(laggingStore{store}, claims, c)
	subA, subB := a.Subscribe(64), b.Subscribe(64)
	var onA, onB transitions
	obs := func(e *alerts.Engine, metric string, v float64) {
		e.Observe(alerts.Observation{Device: bin.ID, Metric: metric, Value: v, TS: c.Now().UnixMilli()})
	}

	obs(a, "fill_pct", 97)
	if p, _ := a.List(alerts.Filter{Device: bin.ID}); len(p.Alerts) != 0 {
		t.Fatalf("an engine evaluated a device it does not own yet: %+v", p.Alerts)
	}
	owners.settle()
	fired := firing(t, a, bin.ID, "bin_full")

	c.Add(time.Minute)
	obs(b, "fill_pct", 96) // the device reconnected to B
	owners.settle()
	carried, _, err := b.Get(fired.ID)
	if err != nil || carried.Condition != alerts.ConditionFiring {
		t.Fatalf("B after taking the device over: %+v (%v), want alert %s firing", carried, err, fired.ID)
	}
	if carried.Count != fired.Count+1 {
		t.Errorf("the carried alert counts %d observations, want %d (A's and the one B held)", carried.Count, fired.Count+1)
	}
	if p, _ := a.List(alerts.Filter{Device: bin.ID}); len(p.Alerts) != 0 {
		t.Errorf("A still lists the alert it handed on: %+v", p.Alerts)
	}

	asked := owners.asked(a)
	obs(a, alerts.MetricOnline, 0) // A notices the old connection's end late
	if owners.asked(a) != asked {
		t.Errorf("A's late offline status of a device it let go asked to own it again")
	}
	c.Add(time.Hour)
	a.RunTimers()
	if p, _ := a.List(alerts.Filter{Device: bin.ID}); len(p.Alerts) != 0 {
		t.Errorf("A raised alerts for a device it let go: %+v", p.Alerts)
	}

	obs(b, "fill_pct", 10)
	if got, _, _ := b.Get(fired.ID); got.Condition != alerts.ConditionCleared {
		t.Fatalf("B after the readings cleared: %+v, want %s cleared", got, fired.ID)
	}
	if err := b.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := store.alert(fired.ID); got.Condition != alerts.ConditionCleared {
		t.Errorf("stored %+v, want cleared", got)
	}
	waitHeld(t, claims, 0)
	onA.drain(subA)
	onB.drain(subB)
	if onA != (transitions{1, 0}) || onB != (transitions{0, 1}) {
		t.Errorf("fire and clear transitions: A %+v, B %+v; want the fire on A and the clear on B", onA, onB)
	}
}

// TestOwnersCarryAnAlertOnAfterItsNodeDied: node A fires a device's alert
// and dies (its claims go with its ZooKeeper session); the device reaches
// B, which carries A's alert on from the store rather than fire a second
// one, and clears it.
func TestOwnersCarryAnAlertOnAfterItsNodeDied(t *testing.T) {
	c, bin, store, claims, owners := newOwnersCluster(t)
	a, b := owners.engine(store, claims, c), owners.engine(store, claims, c)
	subB := b.Subscribe(64)
	obs := func(e *alerts.Engine, v float64) {
		e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: v, TS: c.Now().UnixMilli()})
	}

	obs(a, 97)
	owners.settle()
	fired := firing(t, a, bin.ID, "bin_full")
	owners.die(a, claims)

	c.Add(time.Minute)
	obs(b, 98)
	owners.settle()
	carried, _, err := b.Get(fired.ID)
	if err != nil || carried.Condition != alerts.ConditionFiring {
		t.Fatalf("B after taking the dead node's device: %+v (%v), want alert %s firing", carried, err, fired.ID)
	}
	if p, _ := b.List(alerts.Filter{Device: bin.ID}); len(p.Alerts) != 1 {
		t.Fatalf("B lists %d alerts of the device, want the one carried on: %+v", len(p.Alerts), p.Alerts)
	}
	obs(b, 10)
	if got, _, _ := b.Get(fired.ID); got.Condition != alerts.ConditionCleared {
		t.Fatalf("B after the readings cleared: %+v, want cleared", got)
	}
	var onB transitions
	onB.drain(subB)
	if onB != (transitions{0, 1}) {
		t.Errorf("B's transitions %+v, want no fire (the alert was A's) and one clear", onB)
	}
}

// TestOwnersClearAStoredAlertSuperseded: the store holds a bin's alert
// x1 firing while another alert, y1, holds the bin's condition (x1's node
// died, its claim expired, and another node fired the condition anew).
// Node B, taking the bin, loads x1 and loses its claim to y1: it clears
// x1, its note naming y1, and fires nothing. Before, B dropped x1 in
// memory only: it stayed firing in the store, loaded again each time a
// node took the bin.
func TestOwnersClearAStoredAlertSuperseded(t *testing.T) {
	c, bin, store, claims, owners := newOwnersCluster(t)
	fired := t0.Add(-time.Hour)
	if err := store.SaveAlerts(t.Context(), []alerts.Alert{{ID: "x1", Version: 2, Revision: 1, Rule: "bin_full",
		Device: bin.ID, Grid: bin.Grid, Condition: alerts.ConditionFiring, Severity: alerts.SeverityMinor,
		Fired: fired, Updated: fired}}); err != nil {
		t.Fatal(err)
	}
	claims.holder["bin_full,device,"+bin.ID] = "y1"
	b := owners.engine(store, claims, c)
	sub := b.Subscribe(64)
	// A reading below the threshold: B asks to own the bin, and asks no
	// claim of its own.
	b.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: 60, TS: c.Now().UnixMilli()})
	owners.settle()
	checkSuperseded(t, b, store, sub, "y1")
	if h := claims.heldBy("bin_full,device," + bin.ID); h != "y1" {
		t.Errorf("the bin's claim held by %q, want y1", h)
	}
}

// TestOwnersStormMembersRejoinTheirAlert: a node restarts on a store holding
// a cell's grid-level alert firing with two members; it holds the alert's
// claim and its members' (see TestRestoredStormHoldsItsMembers). Once it
// owns the members, their full readings fire into that alert again, also
// after a member's empty reading, and their empty readings clear it, which
// gives every claim up.
func TestOwnersStormMembersRejoinTheirAlert(t *testing.T) {
	bins, store := restoredStorm(t)
	o := &memOwners{t: t, owner: map[string]*alerts.Engine{}, dead: map[*alerts.Engine]bool{}, asks: map[*alerts.Engine]int{},
		rules: mustRules(t, binFullRules), reg: devices.NewRegistry(bins)}
	claims := &memClaims{holder: map[string]string{}}
	c := &clock{t: t0}
	a := o.engine(store, nodeClaims{claims, "nodeA"}, c)
	waitHeld(t, claims, 3) // the grid-level alert's and its two members'
	obs := func(bin string, v float64) {
		a.Observe(alerts.Observation{Device: bin, Metric: "fill_pct", Value: v, TS: c.Now().UnixMilli()})
	}
	for _, b := range bins {
		obs(b.ID, 97)
		o.settle()
	}
	obs("bin-1", 10)
	obs("bin-1", 97)
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, _ := a.List(alerts.Filter{Condition: []alerts.Condition{alerts.ConditionFiring, alerts.ConditionPending}})
		if len(p.Alerts) == 1 && p.Alerts[0].ID == "g1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open alerts after the members' full readings: %+v, want g1 alone", p.Alerts)
		}
		time.Sleep(5 * time.Millisecond)
	}
	clearStorm(t, a, bins)
	waitHeld(t, claims, 0) // g1 cleared
}

// TestOwnersKeepACarriedSilentAlertFiring: node A adopts a device that
// never reported, fires its device_silent alert and dies; node B adopts the
// device in turn and carries the alert on, still firing at its next
// absence checks: the device has sent nothing since. Before, B watched the
// device's silence from the adoption, so its first check cleared the alert
// (and TestClusterWatchesDevicesNoNodeOwns passed only when it looked
// before that check: run 220 did not).
func TestOwnersKeepACarriedSilentAlertFiring(t *testing.T) {
	c, bin, store, claims, owners := newOwnersCluster(t)
	a, b := owners.engine(store, claims, c), owners.engine(store, claims, c)
	ctx := t.Context()
	if err := a.Owned(ctx, []string{bin.ID}, nil); err != nil {
		t.Fatal(err)
	}
	typ, _ := devices.LookupType(bin.Type)
	c.Add(4 * typ.Interval)
	a.RunTimers()
	fired := firing(t, a, bin.ID, "device_silent")
	owners.die(a, claims)

	c.Add(time.Minute)
	if err := b.Owned(ctx, []string{bin.ID}, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.Add(time.Second)
		b.RunTimers()
	}
	if got, _, err := b.Get(fired.ID); err != nil || got.Condition != alerts.ConditionFiring {
		t.Errorf("B after adopting the device and checking its silence: %+v (%v), want alert %s firing", got, err, fired.ID)
	}
}

// waitHeld waits until the claims hold n conditions.
func waitHeld(t *testing.T, m *memClaims, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for m.held() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d claims held, want %d", m.held(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRestartKeepsASilentAlertFiring: a single node fires a device's
// device_silent alert and restarts; the restored alert still fires at the
// restarted engine's absence checks, the device having sent nothing. Before,
// the device counted as heard of at the start, so the first check cleared
// the alert (and three intervals later a new one fired).
func TestRestartKeepsASilentAlertFiring(t *testing.T) {
	c := &clock{t: t0}
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	store := &sharedStore{}
	rules := mustRules(t, ownersRules)
	reg := devices.NewRegistry([]devices.Device{bin})
	start := func() *alerts.Engine {
		e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Devices: reg.All, Store: store, Now: c.Now, Tick: time.Hour, FlushEvery: time.Hour}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := start()
	typ, _ := devices.LookupType(bin.Type)
	c.Add(4 * typ.Interval)
	first.RunTimers()
	fired := firing(t, first, bin.ID, "device_silent")
	if err := first.Close(); err != nil { // saves what it holds
		t.Fatal(err)
	}

	c.Add(time.Minute)
	again := start()
	defer again.Close()
	for range 3 {
		c.Add(time.Second)
		again.RunTimers()
	}
	if got, _, err := again.Get(fired.ID); err != nil || got.Condition != alerts.ConditionFiring {
		t.Errorf("after the restart and its absence checks: %+v (%v), want alert %s firing", got, err, fired.ID)
	}
}

// TestOwnersKeepACarriedSilentStormFiring: node A fires one grid-level
// device_silent alert over six silent bins of a cell, and dies; node B,
// started after, adopts the bins, which fire into that alert again, and it
// still fires at B's absence checks. Before, the bins counted as heard of
// at the adoption, and B's first check cleared the alert.
func TestOwnersKeepACarriedSilentStormFiring(t *testing.T) {
	c, _, store, claims, owners := newOwnersCluster(t)
	var bins []devices.Device
	var ids []string
	for i := range 6 {
		bins = append(bins, devices.Device{ID: fmt.Sprintf("bin-%d", i+10), Type: "waste_bin", Grid: "G2"})
		ids = append(ids, bins[i].ID)
	}
	owners.rules = mustRules(t, `
rules:
  - name: device_silent
    absent: 3
    severity: minor
`)
	owners.reg = devices.NewRegistry(bins)
	ctx := t.Context()
	a := owners.engine(store, claims, c)
	if err := a.Owned(ctx, ids, nil); err != nil {
		t.Fatal(err)
	}
	typ, _ := devices.LookupType("waste_bin")
	c.Add(4 * typ.Interval)
	a.RunTimers()
	c.Add(typ.Interval + time.Minute) // the storm group's wait
	a.RunTimers()
	storm := func(e *alerts.Engine) (alerts.Alert, bool) {
		p, _ := e.List(alerts.Filter{Grid: "G2", Rule: "device_silent"})
		for _, x := range p.Alerts {
			if x.Device == "" && x.Condition == alerts.ConditionFiring {
				return x, true
			}
		}
		return alerts.Alert{}, false
	}
	deadline := time.Now().Add(30 * time.Second)
	fired, ok := storm(a)
	for ; !ok && time.Now().Before(deadline); fired, ok = storm(a) {
		time.Sleep(5 * time.Millisecond)
	}
	if !ok {
		t.Fatal("A raised no grid-level device_silent alert over the six bins")
	}
	owners.die(a, claims)

	c.Add(time.Minute)
	b := owners.engine(store, claims, c)
	if err := b.Owned(ctx, ids, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.Add(time.Second)
		b.RunTimers()
	}
	if got, _, err := b.Get(fired.ID); err != nil || got.Condition != alerts.ConditionFiring {
		t.Errorf("B after adopting the bins and checking their silence: %+v (%v), want the grid-level alert %s firing", got, err, fired.ID)
	}
}

// TestOwnersCountACarriedAlertInItsCell: a bin's alert of a value rule
// that groups is counted in its cell (see alerts.Claim) on the node that
// fired it, and again, once, on the node that carries it on.
func TestOwnersCountACarriedAlertInItsCell(t *testing.T) {
	c, bin, store, claims, owners := newOwnersCluster(t)
	owners.rules = mustRules(t, strings.Replace(ownersRules, "    no_group: true\n", "", 1))
	a, b := owners.engine(store, claims, c), owners.engine(laggingStore{store}, claims, c)
	obs := func(e *alerts.Engine) {
		e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: 97, TS: c.Now().UnixMilli()})
	}
	const cell = "bin_full,grid,G1"
	obs(a)
	owners.settle()
	fired := firing(t, a, bin.ID, "bin_full")
	waitHeld(t, claims, 1)
	if got := claims.counted(cell); !slices.Equal(got, []string{fired.ID}) {
		t.Fatalf("counted in %s after A fired %s: %v", cell, fired.ID, got)
	}
	c.Add(time.Minute)
	obs(b)
	owners.settle()
	if carried, _, err := b.Get(fired.ID); err != nil || carried.Condition != alerts.ConditionFiring {
		t.Fatalf("B after taking the device over: %+v (%v), want alert %s firing", carried, err, fired.ID)
	}
	if got := claims.counted(cell); !slices.Equal(got, []string{fired.ID}) {
		t.Errorf("counted in %s after B carried %s on: %v", cell, fired.ID, got)
	}
}
