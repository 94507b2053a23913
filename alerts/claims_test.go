package alerts_test

import (
	"context"
	"errors"
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
	down   bool
	calls  int
}

func (m *memClaims) Claim(_ context.Context, key, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.down {
		return false, errors.New("zookeeper: connection refused")
	}
	if h, ok := m.holder[key]; ok {
		return h == id, nil
	}
	m.holder[key] = id
	return true, nil
}

func (m *memClaims) Release(_ context.Context, key, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.down {
		return errors.New("zookeeper: connection refused")
	}
	if m.holder[key] == id {
		delete(m.holder, key)
	}
	return nil
}

func (m *memClaims) called() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *memClaims) held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.holder)
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
	rules := mustRules(t, `
rules:
  - name: bin_full
    metric: fill_pct
    condition: value > 90
    clear: value < 50
    severity: minor
`)
	var engines []*alerts.Engine
	var subs []*alerts.Subscription
	for range 2 {
		e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, Claims: claims, Tick: 10 * time.Millisecond, FlushEvery: time.Hour}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		engines, subs = append(engines, e), append(subs, e.Subscribe(64))
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
