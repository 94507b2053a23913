package cluster_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gridwatch/gridwatch/cluster"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// startMutexes starts a ZooKeeper and n nodes (nodea, nodeb, …) with
// sessions of timeout, each through a relay, and returns the relays and
// each node's mutex of one name.
func startMutexes(t *testing.T, n int, timeout time.Duration) ([]*proxy, []*cluster.Mutex) {
	t.Helper()
	zk := storagetest.StartZooKeeper(t)
	var (
		proxies []*proxy
		mutexes []*cluster.Mutex
	)
	for i := range n {
		p := startProxy(t, zk.Addr)
		c := startNode(t, p.addr(), "node"+string(rune('a'+i)), timeout)
		m, err := c.Mutex("replay-telemetry")
		if err != nil {
			t.Fatal(err)
		}
		proxies, mutexes = append(proxies, p), append(mutexes, m)
	}
	return proxies, mutexes
}

// TestMutexOneNodeAtATime runs three nodes that each take one mutex 20
// times, holding it a few milliseconds: never two inside at once, every
// step run. Then a holder is cut off ZooKeeper inside its step, and
// another partitioned (its packets lost): each step's context ends, and
// another node takes the mutex once that session expires, not before.
func TestMutexOneNodeAtATime(t *testing.T) {
	proxies, mutexes := startMutexes(t, 3, 4*time.Second)
	var inside, most, ran atomic.Int64
	var g errgroup.Group
	for _, m := range mutexes {
		g.Go(func() error {
			for range 20 {
				err := m.Do(t.Context(), func(context.Context) error {
					n := inside.Add(1)
					for {
						if m := most.Load(); n <= m || most.CompareAndSwap(m, n) {
							break
						}
					}
					time.Sleep(2 * time.Millisecond)
					inside.Add(-1)
					ran.Add(1)
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if most.Load() != 1 || ran.Load() != 60 {
		t.Fatalf("%d steps ran, at most %d at once; want 60, one at a time", ran.Load(), most.Load())
	}

	// Node a holds the mutex, and is cut off inside its step; then node b,
	// silently (its packets lost, its connection open).
	cutOff(t, proxies, mutexes, "cut off", (*proxy).cut)
	cutOff(t, proxies[1:], mutexes[1:], "partitioned", func(p *proxy) { p.frozen.Store(true) })
}

// TestMutexGivenUpAfterABlip: a holder whose connection drops and comes
// back within its session (20 s here) as its step ends still gives the
// mutex up, once ZooKeeper answers again: its candidate, which outlives
// the blip with the session, must not hold the other node for good.
func TestMutexGivenUpAfterABlip(t *testing.T) {
	proxies, mutexes := startMutexes(t, 2, 20*time.Second)
	if err := mutexes[0].Do(t.Context(), func(context.Context) error {
		proxies[0].drop() // the connection drops; the relay lets it back
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	blip := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := mutexes[1].Do(ctx, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("node b after node a's blip: %v", err)
	}
	t.Logf("node b took the mutex %s after node a's step ended in a blip", time.Since(blip).Round(time.Millisecond))
}

// cutOff has the first node hold the mutex and be cut off ZooKeeper (by
// cut, on its relay) inside its step: its step's context ends, and the
// second node takes the mutex once the first's session is gone, not
// before the step stopped.
func cutOff(t *testing.T, proxies []*proxy, mutexes []*cluster.Mutex, how string, cut func(*proxy)) {
	t.Helper()
	in, out := make(chan struct{}), make(chan error, 1)
	ended := make(chan time.Time, 1) // when the step's context ended
	go func() {
		out <- mutexes[0].Do(t.Context(), func(ctx context.Context) error {
			close(in)
			<-ctx.Done()
			ended <- time.Now()
			return context.Cause(ctx)
		})
	}()
	<-in
	took := make(chan time.Time, 1)
	go func() {
		_ = mutexes[1].Do(t.Context(), func(context.Context) error {
			took <- time.Now()
			return nil
		})
	}()
	start := time.Now()
	cut(proxies[0])
	var stopped time.Time
	select {
	case stopped = <-ended:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the holder %s: its step went on", how)
	}
	// Do returns once it gave its candidate up, or could not for two
	// sessions (it is cut off: the session ends, and the candidate with it).
	if err := <-out; err == nil {
		t.Fatalf("the holder %s: Do returned no error", how)
	} else {
		t.Logf("the holder %s: its step stopped %s later, and Do returned %s later: %v",
			how, stopped.Sub(start).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), err)
	}
	select {
	case at := <-took:
		if at.Before(stopped) {
			t.Errorf("the holder %s: another node took the mutex %s before its step stopped", how, stopped.Sub(at))
		}
		t.Logf("the holder %s: another node took the mutex %s later (its session expired)", how, at.Sub(start).Round(time.Millisecond))
	case <-time.After(3 * time.Minute):
		t.Fatalf("the holder %s: no other node took the mutex", how)
	}
}
