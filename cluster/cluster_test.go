package cluster_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cluster"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// proxy is a TCP relay between one node and ZooKeeper that the test can
// freeze: a silent partition, where the node's packets are dropped and no
// answer comes, without the connection closing.
type proxy struct {
	ln     net.Listener
	to     string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

// cut closes the relay's connections and takes no more: the node is gone,
// to ZooKeeper, as if it had crashed.
func (p *proxy) cut() {
	p.ln.Close()
	p.drop()
}

// thaw ends a partition: it closes the frozen connections, whose packets
// were lost, and relays new ones again.
func (p *proxy) thaw() {
	p.drop()
	p.frozen.Store(false)
}

// drop closes the relay's connections.
func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func startProxy(t *testing.T, to string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: to}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(c)
		}
	}()
	return p
}

func (p *proxy) relay(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.to)
	if err != nil {
		return
	}
	defer s.Close()
	p.mu.Lock()
	p.conns = append(p.conns, c, s)
	p.mu.Unlock()
	pipe := func(dst io.Writer, src io.Reader) {
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			if p.frozen.Load() {
				continue // dropped
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	done := make(chan struct{}, 2)
	go func() { pipe(s, c); done <- struct{}{} }()
	go func() { pipe(c, s); done <- struct{}{} }()
	<-done
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// startNode starts a coordinator reaching ZooKeeper at addr.
func startNode(t *testing.T, addr, name string, timeout time.Duration) *cluster.Coordinator {
	t.Helper()
	c := &cluster.Coordinator{Servers: []string{addr}, Node: name, SessionTimeout: timeout,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// The bound only catches a hang: a ZooKeeper answering ruok may take
	// long to serve sessions on a loaded box (a fresh-clone run at load
	// 45 had none within a minute).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// runs records which node ran a duty's step, in one order for all nodes.
type runs struct {
	mu  sync.Mutex
	seq []int
}

func (r *runs) add(node int) {
	r.mu.Lock()
	r.seq = append(r.seq, node)
	r.mu.Unlock()
}

// handovers counts the changes of node in the record, and the nodes that
// ran.
func (r *runs) handovers() (int, map[int]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, by := 0, map[int]int{}
	for i, node := range r.seq {
		by[node]++
		if i > 0 && r.seq[i-1] != node {
			n++
		}
	}
	return n, by
}

// TestLeaseRunsDutyOnceAcrossFaults runs three nodes, each looping a duty
// under one lease, through a silent partition of the holder from
// ZooKeeper, a crash of the next holder (its connection dropped, no new
// one), and ZooKeeper stopped and started again. One node at a time may run the
// duty: the record of which node ran each step changes hands only at the
// faults, and the partitioned holder stopped before another took over.
func TestLeaseRunsDutyOnceAcrossFaults(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	const timeout = 4 * time.Second
	var proxies []*proxy
	var leases []*cluster.Lease
	var nodes []*cluster.Coordinator
	for i := range 3 {
		p := startProxy(t, zk.Addr)
		c := startNode(t, p.addr(), "node"+string(rune('a'+i)), timeout)
		proxies, nodes, leases = append(proxies, p), append(nodes, c), append(leases, c.Lease("duty"))
	}
	var rec runs
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, l := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				l.Do(ctx, func(ctx context.Context) {
					for ctx.Err() == nil {
						rec.add(i)
						time.Sleep(2 * time.Millisecond)
					}
				})
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	holder := func() int {
		for i, l := range leases {
			if l.Held() {
				return i
			}
		}
		return -1
	}
	took := waitFor(t, time.Minute, "a first holder", func() bool { return holder() >= 0 })
	first := holder()
	t.Logf("first holder node %d after %s", first, took.Round(time.Millisecond))

	// A silent partition of the holder: it must stop before the session
	// timeout, after which ZooKeeper hands the lease on.
	proxies[first].frozen.Store(true)
	fenced := waitFor(t, timeout, "the partitioned holder fenced", func() bool { return !leases[first].Held() })
	next := -1
	handed := waitFor(t, 2*time.Minute, "another node holding", func() bool { next = holder(); return next >= 0 && next != first })
	t.Logf("partition: holder %d fenced after %s (session timeout %s); node %d took over %s after the partition",
		first, fenced.Round(time.Millisecond), timeout, next, (fenced + handed).Round(time.Millisecond))
	if fenced >= timeout {
		t.Errorf("the partitioned holder went on for %s, past the session timeout %s", fenced, timeout)
	}

	// The second holder crashes: its connection drops and no new one
	// gets through; ZooKeeper expires its session after the timeout.
	proxies[next].cut()
	third := -1
	handed = waitFor(t, 2*time.Minute, "a third holder", func() bool { third = holder(); return third >= 0 && third != next })
	t.Logf("crash: node %d took over %s after node %d's connection dropped", third, handed.Round(time.Millisecond), next)

	// ZooKeeper stopped: nobody may act; started again: one does.
	zk.Stop()
	fenced = waitFor(t, timeout, "no holder with ZooKeeper stopped", func() bool { return holder() < 0 })
	t.Logf("ZooKeeper stopped: the holder fenced after %s", fenced.Round(time.Millisecond))
	zk.Start(t)
	back := waitFor(t, 2*time.Minute, "a holder with ZooKeeper back", func() bool { return holder() >= 0 })
	t.Logf("ZooKeeper back: node %d holds after %s", holder(), back.Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	n, by := rec.handovers()
	t.Logf("duty steps by node %v, %d handovers", by, n)
	// The partition, the crash, and the restart (which may hand the lease
	// back to the same node): at most three handovers.
	if n > 3 {
		t.Errorf("the duty changed hands %d times over 3 faults: two nodes ran it at once", n)
	}
}

// TestLeaseBackAfterSessionExpired partitions the holder until ZooKeeper
// expires its session and another node takes over, then ends the partition
// and closes the other node: the first, in its new session, must take the
// lease again. (Its client asked for the candidates while it had no
// session, between the expiry and the new one: a candidate named after the
// session it read then, 0, kept its own later candidate from ever being
// the oldest.)
func TestLeaseBackAfterSessionExpired(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	const timeout = 4 * time.Second
	p := startProxy(t, zk.Addr)
	a := startNode(t, p.addr(), "nodea", timeout).Lease("duty")
	waitFor(t, time.Minute, "node a holding", a.Held)
	other := startNode(t, zk.Addr, "nodeb", timeout)
	b := other.Lease("duty")
	p.frozen.Store(true)
	took := waitFor(t, 2*time.Minute, "node b holding", b.Held)
	t.Logf("node b took over %s after node a's partition", took.Round(time.Millisecond))
	if a.Held() {
		t.Fatal("both nodes hold the lease")
	}
	p.thaw()
	other.Close()
	back := waitFor(t, 2*time.Minute, "node a holding again", a.Held)
	t.Logf("node a holds again %s after node b closed", back.Round(time.Millisecond))
}

// TestVersionsSwapOnce has three nodes race to move one key's number on,
// each reading it and swapping it one up: of the swaps from one reading
// exactly one wins, so the number ends at the count of the wins.
func TestVersionsSwapOnce(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	var wins, changed atomic.Int64
	var wg sync.WaitGroup
	const rounds = 100
	for i := range 3 {
		c := startNode(t, zk.Addr, "node"+string(rune('a'+i)), 10*time.Second)
		v, err := c.Versions("test")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				cur, err := v.Get("k")
				if err != nil {
					t.Error(err)
					return
				}
				_, err = v.Swap("k", cur, cur.Value+1)
				switch {
				case errors.Is(err, cluster.ErrChanged):
					changed.Add(1)
				case err != nil:
					t.Error(err)
					return
				default:
					wins.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	c := startNode(t, zk.Addr, "reader", 10*time.Second)
	v, _ := c.Versions("test")
	got, err := v.Get("k")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d swaps won, %d refused as changed, final %d", wins.Load(), changed.Load(), got.Value)
	if got.Value != uint64(wins.Load()) || wins.Load()+changed.Load() != 3*rounds {
		t.Errorf("final %d, wins %d, refused %d of %d", got.Value, wins.Load(), changed.Load(), 3*rounds)
	}
	if _, err := v.Swap("k", cluster.Version{Stamp: 0}, 1); !errors.Is(err, cluster.ErrChanged) {
		t.Errorf("a swap from a stale reading: %v, want ErrChanged", err)
	}
}

// TestClaimsOneHolder has three nodes claim one key from the same reading
// of it (none): one wins, and all then read its holder.
func TestClaimsOneHolder(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	var claims []*cluster.Claims
	for i := range 3 {
		c := startNode(t, zk.Addr, "node"+string(rune('a'+i)), 10*time.Second)
		cl, err := c.Claims("test")
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, cl)
	}
	var wins atomic.Int64
	var winner atomic.Value
	var wg sync.WaitGroup
	var read []cluster.Version
	for _, cl := range claims {
		_, v, err := cl.Get("alert,mh-1,manhole")
		if err != nil || v.Exists() {
			t.Fatalf("fresh key: %v, exists %v", err, v.Exists())
		}
		read = append(read, v)
	}
	for i, cl := range claims {
		v := read[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "case-" + string(rune('a'+i))
			_, err := cl.Swap("alert,mh-1,manhole", v, name)
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(name)
			case !errors.Is(err, cluster.ErrChanged):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
	for _, cl := range claims {
		if got, _, err := cl.Get("alert,mh-1,manhole"); err != nil || got != winner.Load() {
			t.Errorf("holder %q (%v), want %q", got, err, winner.Load())
		}
	}
}

// TestSessionClaimsGoWithTheSession: of two nodes taking one session
// claim, one holds it and the other reads its holder; the other cannot
// release it, its holder can, and then the other takes it; once the new
// holder's session ends, its claim is gone for the first to take; a
// holder's claim taken again from a new session stays with that one.
func TestSessionClaimsGoWithTheSession(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	var nodes []*cluster.Coordinator
	var claims []*cluster.Claims
	for i := range 2 {
		c := startNode(t, zk.Addr, "node"+string(rune('a'+i)), 4*time.Second)
		cl, err := c.SessionClaims("alerts")
		if err != nil {
			t.Fatal(err)
		}
		nodes, claims = append(nodes, c), append(claims, cl)
	}
	take := func(i int, holder, want string) {
		t.Helper()
		got, err := claims[i].Take("bin_full,device,bin-1", holder, nil)
		if err != nil || got != want {
			t.Fatalf("node %d taking for %s: holder %q (%v), want %q", i, holder, got, err, want)
		}
	}
	take(0, "alert-a", "alert-a")
	take(1, "alert-b", "alert-a")
	take(0, "alert-a", "alert-a") // an answer lost, asked again
	if err := claims[1].Release("bin_full,device,bin-1", "alert-b"); err != nil {
		t.Fatal(err)
	}
	take(1, "alert-b", "alert-a")
	if err := claims[0].Release("bin_full,device,bin-1", "alert-a"); err != nil {
		t.Fatal(err)
	}
	take(1, "alert-b", "alert-b")
	nodes[1].Close()
	take(0, "alert-c", "alert-c")
	// Node a restarts while ZooKeeper keeps its old session: its new one
	// takes the claim made for the same holder, which then outlives the
	// old session (before, it went with it, free for any node to take).
	for _, name := range []string{"nodea", "nodeb"} {
		cl, err := startNode(t, zk.Addr, name, 4*time.Second).SessionClaims("alerts")
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, cl)
	}
	take(2, "alert-c", "alert-c")
	nodes[0].Close()
	take(3, "alert-d", "alert-c")
	// A holder the taker may take over (an alert handed to it) is
	// replaced; another stays.
	for _, c := range []struct {
		holder string
		over   func(string) bool
		want   string
	}{
		{"alert-e", func(h string) bool { return h == "alert-x" }, "alert-c"},
		{"alert-d", func(h string) bool { return h == "alert-c" }, "alert-d"},
	} {
		got, err := claims[3].Take("bin_full,device,bin-1", c.holder, c.over)
		if err != nil || got != c.want {
			t.Fatalf("taking over for %s: holder %q (%v), want %q", c.holder, got, err, c.want)
		}
	}
}

// TestTalliesCountEveryNodesMembers: two nodes count members under one
// key and each sees the other's; a member added twice counts once, also by
// two holders (its claim passed from one to the other, in either order),
// and stays counted until both removed it or their sessions ended; the
// same holder's member from an earlier session (its node restarted) is
// taken into the new session, and outlasts the old one.
func TestTalliesCountEveryNodesMembers(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	var nodes []*cluster.Coordinator
	var tallies []*cluster.Tallies
	for _, name := range []string{"nodea", "nodeb", "nodea"} {
		c := startNode(t, zk.Addr, name, 4*time.Second)
		tl, err := c.Tallies("alert-cells")
		if err != nil {
			t.Fatal(err)
		}
		nodes, tallies = append(nodes, c), append(tallies, tl)
	}
	const cell = "bin_full,grid,G1"
	add := func(i int, member, holder string, want int) {
		t.Helper()
		if n, err := tallies[i].Add(cell, member, holder); err != nil || n != want {
			t.Fatalf("node %d adding %s: %d counted (%v), want %d", i, member, n, err, want)
		}
	}
	remove := func(i int, member, holder string) {
		t.Helper()
		if err := tallies[i].Remove(cell, member, holder); err != nil {
			t.Fatal(err)
		}
	}
	// addEventually adds until key counts want: a closed node's members
	// go once ZooKeeper has ended its session.
	addEventually := func(i int, member, holder string, want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, err := tallies[i].Add(cell, member, holder)
			if err == nil && n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d adding %s: %d counted (%v), want %d", i, member, n, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	add(0, "bin-1", "alert-1", 1)
	add(0, "bin-2", "alert-2", 2)
	add(1, "bin-3", "alert-3", 3)
	add(1, "bin-3", "alert-3", 3) // an answer lost, asked again
	add(1, "bin-1", "alert-9", 3) // alert-9 took bin-1's claim over
	add(0, "bin-1", "alert-1", 3) // alert-1's answer, late
	remove(0, "bin-1", "alert-1") // its release, late: alert-9's stays
	add(1, "bin-4", "alert-4", 4)
	remove(1, "bin-4", "alert-4")
	add(0, "bin-5", "alert-5", 4) // bin-1, bin-2, bin-3, bin-5
	if _, err := tallies[0].Add("bin_full/grid", "bin-1", "alert-1"); err == nil {
		t.Error("a key with a slash was taken")
	}
	if _, err := tallies[0].Add(cell, "bin|1", "alert-1"); err == nil {
		t.Error("a member with a bar, which parts it from its holder, was taken")
	}
	add(2, "bin-5", "alert-5", 4) // node a again, in a new session
	nodes[1].Close()
	addEventually(0, "bin-6", "alert-6", 3) // bin-2, bin-5, bin-6: node b's went with it
	nodes[0].Close()
	addEventually(2, "bin-7", "alert-7", 2) // bin-5, taken into the new session, and bin-7
}
