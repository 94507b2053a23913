package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Lease is one duty's lease: of the nodes campaigning for it, the one whose
// candidate node (ephemeral, sequential) is the oldest holds it. A holder
// renews it every fifth of the session timeout with a round trip to
// ZooKeeper, and holds it for at most half the session timeout past the
// start of its last successful renewal: ZooKeeper expires a silent
// session, and so hands the lease on, one whole session timeout after it
// last heard from the node, so the node has stopped by then. It also stops
// at once when the connection drops.
//
// A nil *Lease is always held: a single node needs no coordination.
type Lease struct {
	c      *Coordinator
	name   string
	dir    string
	prefix string // of this Lease's candidates' names, n-<random>-
	kick   chan struct{}

	mu    sync.Mutex
	term  context.Context // non-nil while held
	end   context.CancelFunc
	until time.Time   // the term's end, unless renewed
	timer *time.Timer // fences at until
	path  string      // this node's candidate, "" when none
}

// Lease returns the lease named name and campaigns for it until Close.
func (c *Coordinator) Lease(name string) *Lease {
	l := &Lease{c: c, name: name, dir: c.Root + "/leases/" + name, kick: make(chan struct{}, 1),
		prefix: "n-" + strconv.FormatUint(rand.Uint64(), 16) + "-"}
	c.mu.Lock()
	c.leases = append(c.leases, l)
	c.mu.Unlock()
	c.m.held.WithLabelValues(name).Set(0)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		l.campaign(c.ctx)
	}()
	return l
}

// Name returns the lease's name.
func (l *Lease) Name() string { return l.name }

// Held reports whether this node holds the lease now.
func (l *Lease) Held() bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term != nil && time.Now().Before(l.until)
}

// Do runs fn if this node holds the lease, with a context that ends when
// the lease is lost (or ctx ends), and reports whether it ran. fn must
// stop acting when its context ends.
func (l *Lease) Do(ctx context.Context, fn func(context.Context)) bool {
	if l == nil {
		fn(ctx)
		return true
	}
	l.mu.Lock()
	term := l.term
	held := term != nil && time.Now().Before(l.until)
	l.mu.Unlock()
	if !held {
		return false
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(term, cancel)
	defer stop()
	fn(ctx)
	return true
}

// renewEvery is how often the lease is checked and renewed.
func (l *Lease) renewEvery() time.Duration { return l.c.SessionTimeout / 5 }

// holdFor is how long past the start of a renewal the lease is held.
func (l *Lease) holdFor() time.Duration { return l.c.SessionTimeout / 2 }

// campaign checks the lease every renewEvery, or at once when the
// candidates change or a session is back, until ctx ends; then it steps
// down and withdraws its candidate.
func (l *Lease) campaign(ctx context.Context) {
	conn := l.c.conn
	if err := l.c.ensure(l.dir); err != nil {
		l.c.Logger.Warn("cluster: lease directory", "lease", l.name, "err", err)
	}
	for {
		start := time.Now()
		held, watch, err := l.check(conn)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				l.c.Logger.Debug("cluster: lease not checked", "lease", l.name, "err", err)
			}
		case held:
			l.renewed(start)
		default:
			l.fence("taken")
		}
		t := time.NewTimer(l.renewEvery())
		select {
		case <-ctx.Done():
			t.Stop()
			l.fence("closed")
			l.mu.Lock()
			p := l.path
			l.mu.Unlock()
			if p != "" {
				_ = conn.Delete(p, -1)
			}
			return
		case <-t.C:
		case <-watch:
			t.Stop()
		case <-l.kick:
			t.Stop()
		}
	}
}

// check makes this node's candidate when it has none, and reports whether
// it is the oldest; watch fires when the candidates change.
//
// A candidate is this Lease's by its name's prefix, random for each Lease,
// not by the session: a candidate is ephemeral, so one still listed is the
// present session's (an expired session's went with it), but a session's
// ID read before a request does not tell in which session the request
// runs. When the session expires, the client has ID 0 until it has a new
// one, and a create asked meanwhile waits and runs in the new session. A
// candidate whose creation's answer was lost is found by its prefix too.
func (l *Lease) check(conn *zk.Conn) (held bool, watch <-chan zk.Event, err error) {
	children, _, watch, err := conn.ChildrenW(l.dir)
	if errors.Is(err, zk.ErrNoNode) {
		if err = l.c.ensure(l.dir); err == nil {
			children, _, watch, err = conn.ChildrenW(l.dir)
		}
	}
	if err != nil {
		return false, nil, fmt.Errorf("candidates of %s: %w", l.dir, err)
	}
	slices.SortFunc(children, func(a, b string) int { return strings.Compare(seqOf(a), seqOf(b)) })
	mine := ""
	for _, ch := range children {
		if strings.HasPrefix(ch, l.prefix) {
			mine = path.Join(l.dir, ch)
			break
		}
	}
	made := mine == ""
	if made {
		mine, err = conn.Create(path.Join(l.dir, l.prefix), []byte(l.c.Node), zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
		if err != nil {
			return false, nil, fmt.Errorf("candidate in %s: %w", l.dir, err)
		}
	}
	l.mu.Lock()
	l.path = mine
	l.mu.Unlock()
	if made {
		// The children listed before it was made are stale: look again.
		l.wake()
		return false, watch, nil
	}
	return strings.HasPrefix(children[0], l.prefix), watch, nil
}

// seqOf returns a candidate's sequence number, the 10 digits ZooKeeper
// appends to its name.
func seqOf(name string) string {
	if len(name) < 10 {
		return name
	}
	return name[len(name)-10:]
}

// renewed extends the term (starting one when none runs) to half the
// session timeout past start, when the renewal's round trip began.
func (l *Lease) renewed(start time.Time) {
	until := start.Add(l.holdFor())
	if !time.Now().Before(until) {
		l.fence("renewal overdue")
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil {
		l.term, l.end = context.WithCancel(context.Background())
		l.c.m.terms.WithLabelValues(l.name).Inc()
		l.c.m.held.WithLabelValues(l.name).Set(1)
		l.c.Logger.Info("cluster: lease taken", "lease", l.name, "node", l.c.Node)
	}
	l.until = until
	if l.timer == nil {
		l.timer = time.AfterFunc(time.Until(until), l.overdue)
	} else {
		l.timer.Reset(time.Until(until))
	}
}

// overdue fences the term when it was not renewed in time.
func (l *Lease) overdue() {
	l.mu.Lock()
	late := l.term != nil && !time.Now().Before(l.until)
	l.mu.Unlock()
	if late {
		l.fence("renewal overdue")
	}
}

// fence ends the term, if one runs: the duties under it see their context
// end.
func (l *Lease) fence(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil {
		return
	}
	l.end()
	l.term, l.end = nil, nil
	if l.timer != nil {
		l.timer.Stop()
	}
	l.c.m.held.WithLabelValues(l.name).Set(0)
	l.c.m.fenced.WithLabelValues(l.name, reason).Inc()
	l.c.Logger.Warn("cluster: lease given up", "lease", l.name, "node", l.c.Node, "reason", reason)
}

// wake makes the campaign check at once.
func (l *Lease) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}
