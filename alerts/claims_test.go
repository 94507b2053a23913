package alerts_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

// memClaims are alert claims held in memory for the engines of one test,
// as ZooKeeper holds them for the nodes of a cluster; while down is set,
// every call fails.
type memClaims struct {
	mu     sync.Mutex
	holder map[string]string
	// cells are the alerts counted under each cell, by condition.
	cells map[string]map[string]string
	down  bool
	// lose are the conditions whose claims are taken but answered with an
	// error, as an answer lost on the way back.
	lose  map[string]bool
	calls int
}

func (m *memClaims) Claim(_ context.Context, c alerts.Claim) (alerts.Answer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.down {
		return alerts.Answer{}, errors.New("zookeeper: connection refused")
	}
	if h, ok := m.holder[c.Key]; ok && h != c.ID {
		return alerts.Answer{Holder: h}, nil
	}
	m.holder[c.Key] = c.ID
	if c.Cell == "" && !m.lose[c.Key] {
		return alerts.Answer{Won: true}, nil
	}
	if m.cells == nil {
		m.cells = map[string]map[string]string{}
	}
	if m.cells[c.Cell] == nil {
		m.cells[c.Cell] = map[string]string{}
	}
	m.cells[c.Cell][c.Key] = c.ID
	if m.lose[c.Key] {
		return alerts.Answer{}, errors.New("zookeeper: connection lost")
	}
	return alerts.Answer{Won: true, Firing: len(m.cells[c.Cell]) - 1}, nil
}

func (m *memClaims) Release(_ context.Context, c alerts.Claim) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.down {
		return errors.New("zookeeper: connection refused")
	}
	if m.holder[c.Key] == c.ID {
		delete(m.holder, c.Key)
	}
	if m.cells[c.Cell][c.Key] == c.ID {
		delete(m.cells[c.Cell], c.Key)
	}
	return nil
}

func (m *memClaims) called() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// heldBy returns key's holder, "" for none.
func (m *memClaims) heldBy(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holder[key]
}

func (m *memClaims) held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.holder)
}

// counted returns the alerts counted under cell.
func (m *memClaims) counted(cell string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for _, id := range m.cells[cell] {
		ids = append(ids, id)
	}
	return ids
}

func (m *memClaims) setDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

// TestClaimsFireOneAlertAcrossEngines runs two engines, as two nodes of a
// cluster, on one set of claims, and the same full bin observed on both:
// one alert fires (one fire transition between the engines' subscribers),
// the other engine holds none; the condition clears on both and the claim
// is released, so its next episode fires one alert again. With the claims
// unreachable, a ready alert waits for them rather than fire unclaimed,
// and fires once they answer.
func TestClaimsFireOneAlertAcrossEngines(t *testing.T) {
	claims := &memClaims{holder: map[string]string{}}
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	reg := devices.NewRegistry([]devices.Device{bin})
	engines := startClaimEngines(t, 2, claims, reg)
	var subs []*alerts.Subscription
	for _, e := range engines {
		subs = append(subs, e.Subscribe(64))
	}
	observe := func(v float64) {
		for _, e := range engines {
			e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: v, TS: time.Now().UnixMilli()})
		}
	}
	// fires counts the fire and clear transitions each engine published.
	fires, clears := make([]int, 2), make([]int, 2)
	drain := func() {
		for i, s := range subs {
			for {
				select {
				case tr := <-s.C:
					switch tr.Event.Kind {
					case alerts.EventFire:
						fires[i]++
					case alerts.EventClear:
						clears[i]++
					}
					continue
				default:
				}
				break
			}
		}
	}
	listed := func() (n int) {
		for _, e := range engines {
			p, _ := e.List(alerts.Filter{Device: bin.ID})
			n += len(p.Alerts)
		}
		return n
	}
	// settled waits until both engines' claims were answered: one alert
	// listed and the claim held, or none.
	settled := func(alertsWanted, heldWanted int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for listed() != alertsWanted || claims.held() != heldWanted {
			if time.Now().After(deadline) {
				t.Fatalf("%d alerts listed, %d claims held; want %d and %d", listed(), claims.held(), alertsWanted, heldWanted)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	total := func(xs []int) int { return xs[0] + xs[1] }

	for episode := 1; episode <= 2; episode++ {
		observe(97)
		settled(episode, 1)
		// The loser's claim is answered too: its pending alert is buried.
		waitForCalls(t, claims, 2*episode+episode-1)
		observe(10)
		settled(episode, 0)
		drain()
		if total(fires) != episode || total(clears) != episode {
			t.Fatalf("episode %d: %v fire and %v clear transitions on the two engines, want %d of each in all", episode, fires, clears, episode)
		}
	}

	claims.setDown(true)
	observe(97)
	waitForCalls(t, claims, 10) // asked again every tick
	if n := listed(); n != 2 {
		t.Fatalf("%d alerts listed while the claims are down, want the 2 earlier (cleared) ones", n)
	}
	claims.setDown(false)
	settled(3, 1)
	drain()
	t.Logf("fire transitions by engine %v, clears %v, claim calls %d", fires, clears, claims.called())
	if total(fires) != 3 {
		t.Fatalf("%v fire transitions, want 3 in all", fires)
	}
}

// binFullRules are a full bin's alert.
const binFullRules = `
rules:
  - name: bin_full
    metric: fill_pct
    condition: value > 90
    clear: value < 50
    severity: minor
`

// startClaimEngines starts n engines, as n nodes of a cluster, on claims,
// with a full bin's rule over reg's devices.
func startClaimEngines(t *testing.T, n int, claims *memClaims, reg *devices.Registry) []*alerts.Engine {
	t.Helper()
	rules := mustRules(t, binFullRules)
	var engines []*alerts.Engine
	for range n {
		e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Claims: claims, Tick: 10 * time.Millisecond, FlushEvery: time.Hour}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		engines = append(engines, e)
	}
	return engines
}

// waitForCalls waits until the claims were called at least n times.
func waitForCalls(t *testing.T, m *memClaims, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		calls := m.called()
		if calls >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d claim calls, want %d", calls, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClaimsCountAStormAcrossEngines runs three engines, as three nodes
// taking the readings of a shared subscription, on one set of claims:
// eight bins of one cell go full, each bin's reading landing on the next
// engine in turn. No engine holds StormMin alerts of the cell, yet the
// first five bins fire alerts of their own and the sixth opens the one
// grid-level alert, which the seventh and eighth do not fire beside; once
// their readings reach the engine holding it, they join it, and a bin
// whose own alert fires on another engine does not: the grid-level alert
// holds its members' conditions.
func TestClaimsCountAStormAcrossEngines(t *testing.T) {
	claims := &memClaims{holder: map[string]string{}}
	var bins []devices.Device
	for i := range 8 {
		bins = append(bins, devices.Device{ID: fmt.Sprintf("bin-%d", i), Type: "waste_bin", Grid: "G1"})
	}
	reg := devices.NewRegistry(bins)
	engines := startClaimEngines(t, 3, claims, reg)
	// firing counts the firing alerts of the engines, device-level and
	// grid-level, and the pending ones.
	firing := func() (own, grid, pending int) {
		for _, e := range engines {
			p, _ := e.List(alerts.Filter{Limit: 1000})
			for _, a := range p.Alerts {
				switch {
				case a.Condition == alerts.ConditionPending:
					pending++
				case a.Condition != alerts.ConditionFiring:
				case a.Device != "":
					own++
				default:
					grid++
				}
			}
		}
		return own, grid, pending
	}
	// settled waits for the alerts and the claims held: one per alert and
	// one per member of the grid-level alert.
	settled := func(wantOwn, wantGrid, wantMembers int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			own, grid, pending := firing()
			if own == wantOwn && grid == wantGrid && pending == 0 && claims.held() == wantOwn+wantGrid+wantMembers {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d alerts of their own, %d grid-level, %d pending, %d claims held; want %d and %d, none pending, %d held",
					own, grid, pending, claims.held(), wantOwn, wantGrid, wantOwn+wantGrid+wantMembers)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	full := func(e *alerts.Engine, bin devices.Device) {
		e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: 97, TS: time.Now().UnixMilli()})
	}
	for i, bin := range bins {
		calls := claims.called()
		full(engines[i%3], bin)
		switch {
		case i < alerts.DefaultStormMin:
			settled(i+1, 0, 0)
		case i == alerts.DefaultStormMin:
			settled(alerts.DefaultStormMin, 1, 1)
		default:
			// Its own claim won, the grid-level one lost, its own given up.
			waitForCalls(t, claims, calls+3)
			settled(alerts.DefaultStormMin, 1, 1)
		}
	}
	holder := engines[alerts.DefaultStormMin%3]
	for _, bin := range bins[alerts.DefaultStormMin+1:] {
		full(holder, bin)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, _ := holder.List(alerts.Filter{Device: bins[7].ID})
		if len(p.Alerts) == 1 && p.Alerts[0].Device == "" && len(p.Alerts[0].Members) == 3 && claims.held() == 9 {
			t.Logf("grid-level alert %s: members %v", p.Alerts[0].ID, p.Alerts[0].Members)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the last bins' alerts on the grid-level alert's engine: %+v, want the grid-level alert with the last 3 bins", p.Alerts)
		}
		time.Sleep(5 * time.Millisecond)
	}
	calls := claims.called()
	full(holder, bins[0])
	waitForCalls(t, claims, calls+1)
	settled(alerts.DefaultStormMin, 1, 3)
	if p, _ := holder.List(alerts.Filter{Device: bins[0].ID}); len(p.Alerts) != 0 {
		t.Errorf("%s, whose own alert fires on another engine, is in %+v on the grid-level alert's engine", bins[0].ID, p.Alerts)
	}
}

// storeHolding returns a store for a test's engines, holding a, as the
// cluster's store holds it when the nodes (re)start.
func storeHolding(t *testing.T, a alerts.Alert) *sharedStore {
	store := &sharedStore{}
	if err := store.SaveAlerts(t.Context(), []alerts.Alert{a}); err != nil {
		t.Fatal(err)
	}
	return store
}

// nodeClaims are a node's view of claims shared with other nodes: the
// holder is the alert on that node, as the server's ZooKeeper claims name
// it, so that two nodes restoring the same alert do not both hold it.
type nodeClaims struct {
	*memClaims
	node string
}

func (n nodeClaims) Claim(ctx context.Context, c alerts.Claim) (alerts.Answer, error) {
	c.ID += "@" + n.node
	a, err := n.memClaims.Claim(ctx, c)
	a.Holder, _, _ = strings.Cut(a.Holder, "@")
	return a, err
}

func (n nodeClaims) Release(ctx context.Context, c alerts.Claim) error {
	c.ID += "@" + n.node
	return n.memClaims.Release(ctx, c)
}

// TestRestoredAlertCarriedOnByOneEngine starts two engines, as two nodes of
// a cluster taking a shared subscription, on a store holding a bin's alert
// firing (the cluster restarted): both restore it, one wins its claim and
// carries it on, the other drops it and follows the condition. The bin's
// next readings reach both; the alert clears once, on the engine holding
// it, which releases the claim, and the bin's next episode fires one new
// alert. Before, both carried the restored alert on: it cleared on both,
// two clear transitions, each engine saving it.
func TestRestoredAlertCarriedOnByOneEngine(t *testing.T) {
	claims := &memClaims{holder: map[string]string{}}
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	reg := devices.NewRegistry([]devices.Device{bin})
	fired := time.Now().Add(-time.Hour)
	store := storeHolding(t, alerts.Alert{ID: "a1", Version: 2, Revision: 1, Rule: "bin_full",
		Device: bin.ID, Grid: bin.Grid, Condition: alerts.ConditionFiring, Severity: alerts.SeverityMinor,
		Fired: fired, Updated: fired})
	rules := mustRules(t, binFullRules)
	var engines []*alerts.Engine
	var subs []*alerts.Subscription
	for i := range 2 {
		e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Store: store, Claims: nodeClaims{claims, fmt.Sprint("node", i)},
			Tick: 10 * time.Millisecond, FlushEvery: 10 * time.Millisecond}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		engines = append(engines, e)
		subs = append(subs, e.Subscribe(64))
	}
	// carrying lists the engines that hold a1 open.
	carrying := func() (out []int) {
		for i, e := range engines {
			if a, _, err := e.Get("a1"); err == nil && a.Condition == alerts.ConditionFiring {
				out = append(out, i)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(carrying()) != 1 || claims.called() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("engines carrying the restored alert on: %v after %d claim calls; want one engine after 2", carrying(), claims.called())
		}
		time.Sleep(5 * time.Millisecond)
	}
	holder := carrying()[0]
	other := engines[1-holder]
	if _, _, err := other.Get("a1"); !errors.Is(err, alerts.ErrNotFound) {
		t.Errorf("the engine that lost the restored alert's claim: Get = %v, want ErrNotFound", err)
	}
	if claims.held() != 1 {
		t.Fatalf("%d claims held, want the restored alert's", claims.held())
	}
	observe := func(v float64) {
		for _, e := range engines {
			e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: v, TS: time.Now().UnixMilli()})
		}
	}
	observe(97) // still full: followed on the other engine, no alert of its own
	observe(10)
	for claims.held() != 0 || len(carrying()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the bin emptied: %d claims held, engines carrying a1 %v; want none", claims.held(), carrying())
		}
		time.Sleep(5 * time.Millisecond)
	}
	observe(97)
	for claims.held() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the bin's next episode: %d claims held, want 1", claims.held())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for store.alert("a1").Condition != alerts.ConditionCleared {
		if time.Now().After(deadline) {
			t.Fatalf("a1 stored %s, want cleared", store.alert("a1").Condition)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // five flushes: a second save of a1 would have landed
	fires, clears := make([]int, 2), make([]int, 2)
	for i, s := range subs {
		for len(s.C) > 0 {
			tr := <-s.C
			switch {
			case tr.Event.Kind == alerts.EventFire:
				fires[i]++
			case tr.Event.Kind == alerts.EventClear && tr.Alert.ID == "a1":
				clears[i]++
			}
		}
	}
	t.Logf("restored a1 carried on by engine %d; clears of a1 by engine %v, fire transitions %v, claim calls %d", holder, clears, fires, claims.called())
	if clears[holder] != 1 || clears[1-holder] != 0 {
		t.Errorf("clears of the restored alert by engine: %v, want 1 on engine %d alone", clears, holder)
	}
	if fires[0]+fires[1] != 1 {
		t.Errorf("fire transitions of the next episode by engine: %v, want 1 in all", fires)
	}
}

// TestRestoredPendingAlertFiresOnceAndStaysStored starts two engines on a
// store holding a bin's alert pending (its `for` running): both restore it
// and, the `for` held, both make it ready to fire; the first wins its
// claim and fires it, and the second, whose clock is a second ahead, drops
// its copy without saving it, so the store keeps the alert firing. Before,
// the second buried it: its tombstone of the very alert the first had
// fired, of a later revision, was what the store kept.
func TestRestoredPendingAlertFiresOnceAndStaysStored(t *testing.T) {
	claims := &memClaims{holder: map[string]string{}}
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	reg := devices.NewRegistry([]devices.Device{bin})
	store := storeHolding(t, alerts.Alert{ID: "p1", Version: 1, Revision: 1, Rule: "bin_full",
		Device: bin.ID, Grid: bin.Grid, Condition: alerts.ConditionPending, Severity: alerts.SeverityMinor,
		PendingSince: t0, Updated: t0})
	rules := mustRules(t, binFullRules+"    for: 2s\n")
	var engines []*alerts.Engine
	for i := range 2 {
		c := &clock{t: t0.Add(time.Minute + time.Duration(i)*time.Second)}
		e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Store: store, Claims: nodeClaims{claims, fmt.Sprint("node", i)},
			Now: c.Now, Tick: time.Hour, FlushEvery: time.Hour} // the test runs the timers and flushes
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		engines = append(engines, e)
	}
	for i, e := range engines {
		e.RunTimers() // the `for` held: ready, its claim asked
		waitForCalls(t, claims, i+1)
		e.RunTimers() // the answer in place
		if err := e.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var on []int
	for i, e := range engines {
		if a, _, err := e.Get("p1"); err == nil && a.Condition == alerts.ConditionFiring {
			on = append(on, i)
		}
	}
	stored := store.alert("p1")
	t.Logf("restored pending p1 fired on engine(s) %v; stored %s, revision %d", on, stored.Condition, stored.Revision)
	if len(on) != 1 || on[0] != 0 {
		t.Errorf("p1 firing on engines %v, want the first alone", on)
	}
	if stored.Condition != alerts.ConditionFiring {
		t.Errorf("p1 stored %s, want firing", stored.Condition)
	}
}

// TestRestoredAlertSupersededClears starts an engine on a store holding a
// bin's alert firing whose node went away while it fired: meanwhile
// another node's alert took the bin's condition up and holds its claim.
// The engine restores the alert, loses its claim to that other alert, and
// clears it, stored and heard with a note naming the holder; the bin's
// next full reading is followed, no new alert. Before, the engine dropped
// it in memory only: the store (and the case loop) kept it firing, and
// every restart restored it again.
func TestRestoredAlertSupersededClears(t *testing.T) {
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	claims := &memClaims{holder: map[string]string{"bin_full,device," + bin.ID: "y1@nodeB"}}
	reg := devices.NewRegistry([]devices.Device{bin})
	fired := t0.Add(-time.Hour)
	store := storeHolding(t, alerts.Alert{ID: "x1", Version: 2, Revision: 1, Rule: "bin_full",
		Device: bin.ID, Grid: bin.Grid, Condition: alerts.ConditionFiring, Severity: alerts.SeverityMinor,
		Fired: fired, Updated: fired})
	c := &clock{t: t0}
	e := &alerts.Engine{Rules: mustRules(t, binFullRules), Lookup: reg.Lookup, Store: store, Claims: nodeClaims{claims, "nodeA"},
		Now: c.Now, Tick: time.Hour, FlushEvery: time.Hour} // the test flushes
	sub := e.Subscribe(16) // before Start: the claim may be answered as it returns (run 393)
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, _, err := e.Get("x1")
		if err != nil || a.Condition != alerts.ConditionFiring {
			t.Logf("restored x1 after its claim's answer: %s (err %v)", a.Condition, err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restored x1 still firing as restored: its claim not answered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: 97, TS: t0.UnixMilli()})
	checkSuperseded(t, e, store, sub, "y1")
	if p, _ := e.List(alerts.Filter{Device: bin.ID, Condition: []alerts.Condition{alerts.ConditionFiring, alerts.ConditionPending}}); len(p.Alerts) != 0 {
		t.Errorf("the bin's open alerts after a full reading: %+v, want none (y1 holds the condition)", p.Alerts)
	}
	if h := claims.heldBy("bin_full,device," + bin.ID); h != "y1@nodeB" {
		t.Errorf("the bin's claim held by %q, want y1@nodeB", h)
	}
}

// restoredStorm returns two bins of cell G1 and a store holding their
// cell's grid-level alert g1 firing, as the cluster's store holds it when
// the nodes (re)start.
func restoredStorm(t *testing.T) ([]devices.Device, *sharedStore) {
	bins := []devices.Device{{ID: "bin-1", Type: "waste_bin", Grid: "G1"}, {ID: "bin-2", Type: "waste_bin", Grid: "G1"}}
	fired := t0.Add(-time.Hour)
	return bins, storeHolding(t, alerts.Alert{ID: "g1", Version: 2, Revision: 1, Rule: "bin_full", Grid: "G1",
		Members: []string{"bin-1", "bin-2"}, Condition: alerts.ConditionFiring, Severity: alerts.SeverityMinor,
		Fired: fired, Updated: fired})
}

// clearStorm sends e the bins' empty readings and checks that they cleared
// g1.
func clearStorm(t *testing.T, e *alerts.Engine, bins []devices.Device) {
	t.Helper()
	for _, bin := range bins {
		e.Observe(alerts.Observation{Device: bin.ID, Metric: "fill_pct", Value: 10, TS: t0.UnixMilli()})
	}
	if g, _, _ := e.Get("g1"); g.Condition != alerts.ConditionCleared {
		t.Fatalf("g1 after its members' empty readings: %s, want cleared", g.Condition)
	}
}

// TestRestoredStormHoldsItsMembers starts an engine, as a restarted node of
// a cluster, on a store holding a cell's grid-level alert firing with two
// members: it wins the alert's claim and takes its members' claims again,
// counted in the cell, so that another node's engine, a member's full
// reading reaching it, fires nothing alone. Once the members' readings
// clear the alert, it gives every claim up. Before, it held only its own
// claim: the other engine fired the member alone beside it.
func TestRestoredStormHoldsItsMembers(t *testing.T) {
	claims := &memClaims{holder: map[string]string{}}
	bins, store := restoredStorm(t)
	reg := devices.NewRegistry(bins)
	rules := mustRules(t, binFullRules)
	start := func(store alerts.Store, node string) *alerts.Engine {
		e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Store: store, Claims: nodeClaims{claims, node},
			Tick: 10 * time.Millisecond, FlushEvery: time.Hour}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	a := start(store, "nodeA")
	waitHeld(t, claims, 3) // the grid-level alert's and its two members'
	for _, b := range bins {
		if h := claims.heldBy("bin_full,device," + b.ID); h != "g1@nodeA" {
			t.Errorf("%s's claim held by %q, want g1@nodeA", b.ID, h)
		}
	}
	if got := claims.counted("bin_full,grid,G1"); len(got) != 2 {
		t.Errorf("counted in the cell: %v, want the two members", got)
	}
	b := start(&sharedStore{}, "nodeB")
	calls := claims.called()
	b.Observe(alerts.Observation{Device: "bin-1", Metric: "fill_pct", Value: 97, TS: t0.UnixMilli()})
	waitForCalls(t, claims, calls+1)
	// bin-2's claim is asked in the claimer's next round: once it is, the
	// answer to bin-1's was taken in.
	b.Observe(alerts.Observation{Device: "bin-2", Metric: "fill_pct", Value: 97, TS: t0.UnixMilli()})
	waitForCalls(t, claims, calls+2)
	if p, _ := b.List(alerts.Filter{Device: "bin-1"}); len(p.Alerts) != 0 {
		t.Errorf("the other node's alerts of bin-1: %+v, want none (g1 holds bin-1)", p.Alerts)
	}
	clearStorm(t, a, bins)
	waitHeld(t, claims, 0) // g1 cleared
}

// TestRestoredStormReleasesMemberClaimsLost: a grid-level alert restored
// firing asks its members' claims again, and their answers are lost (the
// claims taken, an error returned): they are asked again while it fires.
// Once the members' readings clear it, the claims are released, not left
// held by the alert that cleared. Before, the claims queued again were
// dropped: held until the node's session ended, no node could fire the
// members.
func TestRestoredStormReleasesMemberClaimsLost(t *testing.T) {
	claims := &memClaims{holder: map[string]string{}, lose: map[string]bool{"bin_full,device,bin-1": true, "bin_full,device,bin-2": true}}
	bins, store := restoredStorm(t)
	reg := devices.NewRegistry(bins)
	e := &alerts.Engine{Rules: mustRules(t, binFullRules), Lookup: reg.Lookup, Store: store, Claims: nodeClaims{claims, "nodeA"},
		Tick: 10 * time.Millisecond, FlushEvery: time.Hour}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	waitHeld(t, claims, 3) // g1's, and its members' taken with their answers lost
	clearStorm(t, e, bins)
	waitHeld(t, claims, 0)
}

// checkSuperseded flushes e and checks that it cleared x1, superseded by
// the alert holder: x1 stored cleared, and of e's fire and clear
// transitions on sub, x1's clear alone, its note naming holder.
func checkSuperseded(t *testing.T, e *alerts.Engine, store *sharedStore, sub *alerts.Subscription, holder string) {
	t.Helper()
	if err := e.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored := store.alert("x1")
	t.Logf("x1 stored %s, version %d", stored.Condition, stored.Version)
	if stored.Condition != alerts.ConditionCleared {
		t.Errorf("x1 stored %s, want cleared: %s carries its condition on", stored.Condition, holder)
	}
	var seen []alerts.Event
	for len(sub.C) > 0 {
		if tr := <-sub.C; tr.Event.Kind == alerts.EventClear || tr.Event.Kind == alerts.EventFire {
			seen = append(seen, tr.Event)
		}
	}
	if len(seen) != 1 || seen[0].AlertID != "x1" || seen[0].Kind != alerts.EventClear || !strings.Contains(seen[0].Note, holder) {
		t.Errorf("fire and clear transitions %+v, want x1's clear, its note naming %s", seen, holder)
	}
}

// TestRestoredPendingAlertSupersededBuried starts an engine on a store
// holding a bin's alert pending while another node's alert holds the
// bin's condition: once the `for` held, the restored alert loses its
// claim to that other alert, and is buried (stored inactive). Before, it
// was dropped in memory only, and stayed pending in the store.
func TestRestoredPendingAlertSupersededBuried(t *testing.T) {
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "G1"}
	claims := &memClaims{holder: map[string]string{"bin_full,device," + bin.ID: "y1@nodeB"}}
	reg := devices.NewRegistry([]devices.Device{bin})
	store := storeHolding(t, alerts.Alert{ID: "p1", Version: 1, Revision: 1, Rule: "bin_full",
		Device: bin.ID, Grid: bin.Grid, Condition: alerts.ConditionPending, Severity: alerts.SeverityMinor,
		PendingSince: t0, Updated: t0})
	c := &clock{t: t0.Add(time.Minute)}
	e := &alerts.Engine{Rules: mustRules(t, binFullRules+"    for: 2s\n"), Lookup: reg.Lookup, Store: store, Claims: nodeClaims{claims, "nodeA"},
		Now: c.Now, Tick: time.Hour, FlushEvery: time.Hour} // the test runs the timers and flushes
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.RunTimers() // the `for` held: ready, its claim asked
	waitForCalls(t, claims, 1)
	// The answer lands under the engine's lock after the call: flush until
	// the store holds p1 other than pending, or long past that.
	deadline := time.Now().Add(30 * time.Second)
	for store.alert("p1").Condition == alerts.ConditionPending && time.Now().Before(deadline) {
		if err := e.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stored := store.alert("p1")
	t.Logf("p1 stored %s, revision %d", stored.Condition, stored.Revision)
	if stored.Condition != alerts.ConditionInactive {
		t.Errorf("p1 stored %s, want inactive: another alert holds its condition", stored.Condition)
	}
	if _, _, err := e.Get("p1"); !errors.Is(err, alerts.ErrNotFound) {
		t.Errorf("p1 on the engine: Get = %v, want ErrNotFound", err)
	}
}
