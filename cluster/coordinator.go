// Package cluster coordinates the gridwatch nodes of one city on
// ZooKeeper, the coordination service the ClickHouse cluster's replicated
// tables need anyway. It gives leases, which let one node at a time run a
// once-only duty (the case deadline sweeps, the daily score notices,
// retention) and are fenced, so that a node that cannot renew its lease
// stops acting before the lease can pass to another; and versions that
// are compared and set atomically (the case revisions that keep actions
// on one case from two nodes linearizable); and owners, which hand each
// device to one node at a time (its rule state and open alerts follow it
// to the node its readings reach); and mutexes, which let one node at a
// time run a short step (the spool replay's lookups and INSERT). Its only
// state is a ZooKeeper session: an ephemeral node is a lease candidate, a
// node's data version the compare-and-set.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
)

// Coordinator defaults.
const (
	DefaultRoot           = "/gridwatch"
	DefaultSessionTimeout = 10 * time.Second
	// MinSessionTimeout is the shortest session ZooKeeper grants with its
	// default tickTime of 2 s (twice the tick).
	MinSessionTimeout = 4 * time.Second
)

// Coordinator is one node's ZooKeeper session and the leases and versions
// it keeps there.
type Coordinator struct {
	// Servers are ZooKeeper's client addresses, host:port. Required.
	Servers []string
	// Root is the path under which the nodes of one gridwatch cluster keep
	// their leases and versions. It defaults to /gridwatch.
	Root string
	// SessionTimeout is the ZooKeeper session's timeout: how long a node
	// that stopped answering keeps its leases. A lease is held for at most
	// half of it past its last renewal. It defaults to 10 s; ZooKeeper's
	// minSessionTimeout and maxSessionTimeout must allow it (by default
	// 2 and 20 times its tickTime).
	SessionTimeout time.Duration
	// Node names this node in the leases. It defaults to the hostname.
	Node string
	// Dialer connects to a server; nil dials TCP. The tests cut a node off
	// ZooKeeper through it.
	Dialer zk.Dialer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	conn   *zk.Conn
	m      *metrics
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	leases []*Lease
	owners *Owners
	holds  map[*hold]bool // the Mutex.Do calls under way
	closed bool
}

// metrics are the coordinator's.
type metrics struct {
	held     *prometheus.GaugeVec
	terms    *prometheus.CounterVec
	fenced   *prometheus.CounterVec
	sessions *prometheus.CounterVec
	adopted  prometheus.Counter
	// mutexWait and mutexHeld time Mutex.Do: waiting for the mutex, and
	// holding it.
	mutexWait, mutexHeld prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gridwatch_cluster_lease_held", Help: "1 while this node holds the lease and may run its duty.",
		}, []string{"lease"}),
		terms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_cluster_lease_terms_total", Help: "Times this node took the lease.",
		}, []string{"lease"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_cluster_lease_fenced_total", Help: "Times this node stopped acting on a lease, by reason (renewal overdue: ZooKeeper unreachable; disconnected; expired; taken: another node holds it; closed).",
		}, []string{"lease", "reason"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_cluster_session_events_total", Help: "ZooKeeper session state changes, by state.",
		}, []string{"state"}),
		adopted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_cluster_devices_adopted_total", Help: "Devices no node owned (never reported, or their node died), or whose owner node this node kept without their state (given up when its connection dropped), that this node adopted, to watch them for silence.",
		}),
	}
	m.mutexWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gridwatch_cluster_mutex_wait_seconds", Help: "Time a node waited for a cluster mutex (the spool replay's second look and INSERT, one node at a time).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	})
	m.mutexHeld = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gridwatch_cluster_mutex_held_seconds", Help: "Time a node held a cluster mutex.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	})
	if reg != nil {
		reg.MustRegister(m.held, m.terms, m.fenced, m.sessions, m.adopted, m.mutexWait, m.mutexHeld)
	}
	return m
}

// Start connects to ZooKeeper and waits, at most until ctx ends, for a
// session, then makes the root's paths.
func (c *Coordinator) Start(ctx context.Context) error {
	if len(c.Servers) == 0 {
		return errors.New("cluster: no ZooKeeper servers")
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if !strings.HasPrefix(c.Root, "/") || path.Clean(c.Root) != c.Root || c.Root == "/" {
		return fmt.Errorf("cluster: root %q must be an absolute path below /", c.Root)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.m = newMetrics(c.Registerer)
	c.holds = map[*hold]bool{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	dialer := c.Dialer
	if dialer == nil {
		dialer = net.DialTimeout
	}
	conn, _, err := zk.Connect(c.Servers, c.SessionTimeout, zk.WithLogInfo(false), zk.WithLogger(zkLogger{c.Logger}),
		zk.WithEventCallback(c.event), zk.WithDialer(dialer))
	if err != nil {
		return fmt.Errorf("cluster: zookeeper %s: %w", strings.Join(c.Servers, ","), err)
	}
	c.conn = conn
	for conn.State() != zk.StateHasSession {
		select {
		case <-ctx.Done():
			conn.Close()
			return fmt.Errorf("cluster: no ZooKeeper session with %s: %w", strings.Join(c.Servers, ","), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, p := range []string{c.Root, c.Root + "/leases"} {
		if err := c.ensure(p); err != nil {
			conn.Close()
			return err
		}
	}
	c.Logger.Info("cluster: ZooKeeper session", "servers", strings.Join(c.Servers, ","), "root", c.Root, "node", c.Node, "session_timeout", c.SessionTimeout)
	return nil
}

// ensure makes a persistent node unless it exists.
func (c *Coordinator) ensure(p string) error {
	_, err := c.conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll))
	if err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("cluster: create %s: %w", p, err)
	}
	return nil
}

// event follows the session's state: a lease is fenced at once when the
// connection drops, and checked again once a session is back.
func (c *Coordinator) event(ev zk.Event) {
	c.mu.Lock()
	owners := c.owners
	c.mu.Unlock()
	if owners != nil {
		owners.event(ev)
	}
	if ev.Type != zk.EventSession {
		return
	}
	c.m.sessions.WithLabelValues(strings.TrimPrefix(ev.State.String(), "State")).Inc()
	c.mu.Lock()
	leases := c.leases
	if ev.State == zk.StateDisconnected || ev.State == zk.StateExpired {
		for h := range c.holds {
			h.cancel()
		}
	}
	c.mu.Unlock()
	for _, l := range leases {
		switch ev.State {
		case zk.StateDisconnected:
			l.fence("disconnected")
		case zk.StateExpired:
			l.fence("expired")
		case zk.StateHasSession:
			l.wake()
		}
	}
}

// Close gives up the leases (their duties are stopped first), then closes
// the session. It is safe to call twice.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed || c.conn == nil {
		c.closed = true
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.conn.Close()
	return nil
}

// State describes the coordinator for /readyz: this node's name, the
// session's state, whether it holds each lease, and the devices it owns
// and waits for.
func (c *Coordinator) State() map[string]any {
	c.mu.Lock()
	leases, owners := c.leases, c.owners
	c.mu.Unlock()
	held := map[string]bool{}
	for _, l := range leases {
		held[l.name] = l.Held()
	}
	st := map[string]any{"node": c.Node, "session": strings.TrimPrefix(c.conn.State().String(), "State"), "leases_held": held}
	if owners != nil {
		st["devices_owned"], st["devices_waiting"] = owners.Owned()
	}
	return st
}

// zkLogger sends the ZooKeeper client's messages to slog at debug level:
// it logs every failed reconnection, which the session events count.
type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	z.l.Debug("zookeeper: " + fmt.Sprintf(format, args...))
}
