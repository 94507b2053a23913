package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Mutex lets one node at a time run a short step that must not interleave
// with the same step on another node: an ephemeral {root}/mutexes/{name},
// whose data names its holder, is held while the step runs. It is not
// fair: a node that finds the mutex held waits for its node to go, then
// tries again. (go-zookeeper's own Lock cannot be given up while it
// waits, and leaves its node behind when it fails.) A node's Do calls run
// one at a time, so a node with its holder's name found while none runs is
// a leftover of its own (a lost answer), taken as it is.
type Mutex struct {
	c      *Coordinator
	path   string
	holder []byte // this Mutex's, in its node's data
	local  sync.Mutex
}

// Mutex returns the mutex named name.
func (c *Coordinator) Mutex(name string) (*Mutex, error) {
	if _, err := (keys{}).path(name); err != nil {
		return nil, fmt.Errorf("cluster: mutex name %q cannot name a ZooKeeper node", name)
	}
	dir := c.Root + "/mutexes"
	if err := c.ensure(dir); err != nil {
		return nil, err
	}
	return &Mutex{c: c, path: dir + "/" + name, holder: []byte(c.Node + " " + rand.Text())}, nil
}

// Do runs fn once this node holds m, and gives m up when fn returns. fn's
// context ends when ctx does, and when the connection to ZooKeeper drops:
// the mutex may pass to another node once the session expires, so fn must
// stop then. Do returns fn's error; or, when m was not taken, ctx's or
// ZooKeeper's.
func (m *Mutex) Do(ctx context.Context, fn func(context.Context) error) error {
	m.local.Lock()
	defer m.local.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := &hold{cancel}
	m.c.mu.Lock()
	m.c.holds[h] = true
	m.c.mu.Unlock()
	defer func() {
		m.c.mu.Lock()
		delete(m.c.holds, h)
		m.c.mu.Unlock()
	}()
	if m.c.conn.State() != zk.StateHasSession {
		return fmt.Errorf("cluster: mutex %s: no ZooKeeper session", m.path)
	}
	if err := m.take(ctx); err != nil {
		return err
	}
	start := time.Now()
	defer func() {
		m.c.m.mutexHeld.Observe(time.Since(start).Seconds())
		if data, st, err := m.c.conn.Get(m.path); err == nil && bytes.Equal(data, m.holder) {
			_ = m.c.conn.Delete(m.path, st.Version) // else the next Do takes it as it is
		}
	}()
	if ctx.Err() != nil { // the connection dropped meanwhile
		return fmt.Errorf("cluster: mutex %s: %w", m.path, ctx.Err())
	}
	return fn(ctx)
}

// hold is a Do under way, whose context the Coordinator ends when the
// connection drops.
type hold struct{ cancel context.CancelFunc }

// take makes m's node, waiting while another's exists, until ctx ends.
func (m *Mutex) take(ctx context.Context) error {
	start := time.Now()
	defer func() { m.c.m.mutexWait.Observe(time.Since(start).Seconds()) }()
	for {
		_, err := m.c.conn.Create(m.path, m.holder, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if err == nil {
			return nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			// A lost answer may have made it.
			if data, _, gerr := m.c.conn.Get(m.path); gerr == nil && bytes.Equal(data, m.holder) {
				return nil
			}
			return fmt.Errorf("cluster: mutex %s: %w", m.path, err)
		}
		data, _, watch, err := m.c.conn.GetW(m.path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // given up meanwhile
		case err != nil:
			return fmt.Errorf("cluster: mutex %s: %w", m.path, err)
		case bytes.Equal(data, m.holder):
			return nil
		}
		select {
		case <-watch:
		case <-ctx.Done():
			return fmt.Errorf("cluster: mutex %s: %w", m.path, ctx.Err())
		}
	}
}
