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

// TestMutexOneNodeAtATime runs three nodes that each take one mutex 20
// times, holding it a few milliseconds: never two inside at once, every
// step run. Then the holder is cut off ZooKeeper inside its step: its step's
// context ends, and another node takes the mutex once that session expires.
func TestMutexOneNodeAtATime(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	var (
		proxies []*proxy
		mutexes []*cluster.Mutex
	)
	for i := range 3 {
		p := startProxy(t, zk.Addr)
		c := startNode(t, p.addr(), "node"+string(rune('a'+i)), 4*time.Second)
		m, err := c.Mutex("replay-telemetry")
		if err != nil {
			t.Fatal(err)
		}
		proxies, mutexes = append(proxies, p), append(mutexes, m)
	}
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

	// Node a holds the mutex, and is cut off inside its step.
	in, out := make(chan struct{}), make(chan error, 1)
	go func() {
		out <- mutexes[0].Do(t.Context(), func(ctx context.Context) error {
			close(in)
			<-ctx.Done()
			return ctx.Err()
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
	cut := time.Now()
	proxies[0].cut()
	select {
	case err := <-out:
		if err == nil {
			t.Fatal("the cut-off holder's step ended without an error")
		}
		t.Logf("the cut-off holder's step ended after %s: %v", time.Since(cut).Round(time.Millisecond), err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the cut-off holder's step went on: its context did not end when the connection dropped")
	}
	select {
	case at := <-took:
		t.Logf("node b took the mutex %s after node a was cut off (its session expired)", at.Sub(cut).Round(time.Millisecond))
	case <-time.After(3 * time.Minute):
		t.Fatal("no other node took the mutex after its holder was cut off")
	}
}
