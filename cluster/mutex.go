package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Mutex lets one node at a time run a short step that must not interleave
// with the same step on another node. It is ZooKeeper's lock recipe: each
// node that asks makes an ephemeral sequential candidate in
// {root}/mutexes/{name}, and the oldest holds the mutex, so the nodes
// take it in the order they asked. Unlike go-zookeeper's Lock, a wait can
// be given up (its context), a candidate whose creation's answer was lost
// is found again (by its name's prefix, random for each Mutex), and one
// that could not be deleted is deleted again until ZooKeeper answers or
// the session ends: a candidate left behind would hold every other node.
//
// The holder is fenced as a Lease is: the step's context ends when the
// connection drops, and when half the session timeout has passed since the
// start of the last round trip that found its candidate (ZooKeeper keeps a
// silent session, and so the candidate, a whole session timeout). A step
// that was past cancelling then (an INSERT sent) may still land after
// another node took the mutex.
type Mutex struct {
	c      *Coordinator
	dir    string
	prefix string     // of this Mutex's candidates, m-<random>-
	local  sync.Mutex // a node's Do calls, one at a time
}

// Why a step's context ends early.
var (
	errFenced       = errors.New("cluster: mutex held half the session timeout without a word from ZooKeeper")
	errDisconnected = errors.New("cluster: ZooKeeper connection lost while the mutex was held")
)

// Mutex returns the mutex named name.
func (c *Coordinator) Mutex(name string) (*Mutex, error) {
	if _, err := (keys{}).path(name); err != nil {
		return nil, fmt.Errorf("cluster: mutex name %q cannot name a ZooKeeper node", name)
	}
	m := &Mutex{c: c, dir: c.Root + "/mutexes/" + name, prefix: "m-" + strings.ToLower(rand.Text()) + "-"}
	if err := m.ensureDir(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Mutex) ensureDir() error {
	if err := m.c.ensure(path.Dir(m.dir)); err != nil {
		return err
	}
	return m.c.ensure(m.dir)
}

// Do runs fn once this node holds m, and gives m up when fn returns. fn's
// context ends when ctx does, and when the holder is fenced (see Mutex):
// fn must stop then. Do returns fn's error; or, when m was not taken,
// ctx's or ZooKeeper's.
func (m *Mutex) Do(ctx context.Context, fn func(context.Context) error) error {
	m.local.Lock()
	defer m.local.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h := &hold{func() { cancel(errDisconnected) }}
	m.c.mu.Lock()
	m.c.holds[h] = true
	m.c.mu.Unlock()
	defer func() {
		m.c.mu.Lock()
		delete(m.c.holds, h)
		m.c.mu.Unlock()
	}()
	if m.c.conn.State() != zk.StateHasSession {
		return fmt.Errorf("cluster: mutex %s: no ZooKeeper session", m.dir)
	}
	mine, from, err := m.take(ctx)
	defer m.release()
	if err != nil {
		return err
	}
	start := time.Now()
	defer func() { m.c.m.mutexHeld.Observe(time.Since(start).Seconds()) }()
	stop := m.fence(mine, from, cancel)
	defer stop()
	if ctx.Err() != nil { // the connection dropped meanwhile
		return fmt.Errorf("cluster: mutex %s: %w", m.dir, context.Cause(ctx))
	}
	return fn(ctx)
}

// hold is a Do under way, whose context the Coordinator ends when the
// connection drops.
type hold struct{ cancel func() }

// take makes this node's candidate, unless one is left, and waits until
// it is the oldest or ctx ends. It returns the candidate's path and when
// the round trip that found it the oldest began.
func (m *Mutex) take(ctx context.Context) (mine string, from time.Time, err error) {
	start := time.Now()
	defer func() { m.c.m.mutexWait.Observe(time.Since(start).Seconds()) }()
	conn := m.c.conn
	for {
		from = time.Now()
		children, _, err := conn.Children(m.dir)
		if errors.Is(err, zk.ErrNoNode) {
			if err = m.ensureDir(); err == nil {
				continue
			}
		}
		if err != nil {
			return "", from, fmt.Errorf("cluster: mutex %s: %w", m.dir, err)
		}
		slices.SortFunc(children, func(a, b string) int { return strings.Compare(seqOf(a), seqOf(b)) })
		at := slices.IndexFunc(children, func(ch string) bool { return strings.HasPrefix(ch, m.prefix) })
		if at < 0 {
			if _, err := conn.Create(path.Join(m.dir, m.prefix), nil, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll)); err != nil {
				return "", from, fmt.Errorf("cluster: mutex %s: %w", m.dir, err) // a lost answer's candidate is released
			}
			continue // listed with the others
		}
		mine = path.Join(m.dir, children[at])
		if at == 0 {
			return mine, from, nil
		}
		// Wait for the candidate before this one.
		ok, _, watch, err := conn.ExistsW(path.Join(m.dir, children[at-1]))
		if err != nil {
			return mine, from, fmt.Errorf("cluster: mutex %s: %w", m.dir, err)
		}
		if !ok {
			continue
		}
		select {
		case <-watch:
		case <-ctx.Done():
			return mine, from, fmt.Errorf("cluster: mutex %s: %w", m.dir, context.Cause(ctx))
		}
	}
}

// fence ends the step (cancel) once half the session timeout has passed
// since the start of the last round trip that found mine, from on; it
// looks every fifth of the session timeout, and the deadline runs apart
// from a look that hangs. stop ends it.
func (m *Mutex) fence(mine string, from time.Time, cancel context.CancelCauseFunc) (stop func()) {
	hold := m.c.SessionTimeout / 2
	deadline := time.AfterFunc(time.Until(from.Add(hold)), func() { cancel(errFenced) })
	done := make(chan struct{})
	go func() {
		look := time.NewTicker(m.c.SessionTimeout / 5)
		defer look.Stop()
		for {
			select {
			case <-done:
				return
			case <-look.C:
			}
			start := time.Now()
			if ok, _, err := m.c.conn.Exists(mine); err == nil && ok && deadline.Stop() {
				deadline.Reset(time.Until(start.Add(hold))) // not fenced yet
			}
		}
	}()
	return func() {
		deadline.Stop()
		close(done)
	}
}

// release deletes this node's candidates, trying again while ZooKeeper
// does not answer: for at most two session timeouts (by then the session
// has ended, and the candidates with it, or answers again) or until the
// Coordinator closes (which ends the session).
func (m *Mutex) release() {
	until := time.Now().Add(2 * m.c.SessionTimeout)
	for {
		err := m.deleteMine()
		if err == nil {
			return
		}
		if m.c.ctx.Err() != nil || time.Now().After(until) {
			m.c.Logger.Warn("cluster: mutex not given up: the other nodes wait for this node's session to end", "mutex", m.dir, "err", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deleteMine deletes the candidates of this Mutex.
func (m *Mutex) deleteMine() error {
	children, _, err := m.c.conn.Children(m.dir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, ch := range children {
		if strings.HasPrefix(ch, m.prefix) {
			if err := m.c.conn.Delete(path.Join(m.dir, ch), -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
				return err
			}
		}
	}
	return nil
}
