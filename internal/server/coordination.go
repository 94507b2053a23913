package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cluster"
	"github.com/gridwatch/gridwatch/devices"
)

// ClusterConfig is the cluster.* keys: how the nodes of one city
// coordinate, on ZooKeeper.
type ClusterConfig struct {
	ZooKeeper      string        `koanf:"zookeeper" help:"comma-separated host:port of the ZooKeeper ensemble the nodes coordinate on (the one the replicated ClickHouse tables use): leases for the once-only duties and the case versions; empty: a single node, no coordination"`
	Root           string        `koanf:"root" help:"ZooKeeper path under which the nodes of this gridwatch cluster keep their leases and versions"`
	SessionTimeout time.Duration `koanf:"session_timeout" help:"ZooKeeper session timeout: how long a node that stopped answering keeps its leases; it stops acting on them after half of it without a renewal"`
	Node           string        `koanf:"node" help:"this node's name in the leases; empty uses the hostname"`
	AdoptAfter     time.Duration `koanf:"adopt_after" help:"how long a registered device may be owned by no node (it never reported, or died with its node) before the holder of the device-watch lease adopts it, to raise its absence alerts; with the embedded brokers only"`
}

// defaultCluster is the cluster.* defaults: no coordination.
func defaultCluster() ClusterConfig {
	return ClusterConfig{Root: cluster.DefaultRoot, SessionTimeout: cluster.DefaultSessionTimeout, AdoptAfter: cluster.DefaultAdoptAfter}
}

// validate checks the cluster.* keys; adopt only when the nodes embed
// their brokers (no upstream.brokers), the one mode that adopts devices.
func (c *ClusterConfig) validate(adopt bool, bad func(key, format string, args ...any)) {
	if c.ZooKeeper == "" {
		return
	}
	for _, s := range split(c.ZooKeeper) {
		if _, _, err := net.SplitHostPort(s); err != nil {
			bad("cluster.zookeeper", "must be comma-separated host:port, not %q (%v)", s, err)
		}
	}
	if c.SessionTimeout < cluster.MinSessionTimeout {
		bad("cluster.session_timeout", "must be >= %s (ZooKeeper's shortest session at its default tickTime)", cluster.MinSessionTimeout)
	}
	if adopt && c.AdoptAfter < c.SessionTimeout {
		bad("cluster.adopt_after", "must be >= cluster.session_timeout (%s): a device whose node died is left that long to reach another", c.SessionTimeout)
	}
	if len(c.Root) < 2 || c.Root[0] != '/' || c.Root[len(c.Root)-1] == '/' {
		bad("cluster.root", "must be an absolute ZooKeeper path below /, such as /gridwatch, not %q", c.Root)
	}
}

// zooKeeperStart bounds the wait for a ZooKeeper session at start.
const zooKeeperStart = 30 * time.Second

// Lease names of the once-only duties.
const (
	leaseCaseDeadlines = "case-deadlines"
	leaseScoreNotice   = "score-notice"
	leaseRetention     = "retention"
	leaseDeviceWatch   = "device-watch"
)

// coordination is the node's ZooKeeper session and its leases; every
// lease is nil (always held) without cluster.zookeeper.
type coordination struct {
	coord     *cluster.Coordinator
	deadlines *cluster.Lease
	scores    *cluster.Lease
	retention *cluster.Lease
	revisions cases.Revisions
	claims    cases.Claims
	alerts    alerts.Claims   // the alert of each firing condition; nil without cluster.zookeeper
	owners    *cluster.Owners // the devices whose rule state this node keeps; nil unless they are handed over
	duties    *cluster.Claims // the days the once-a-day duties last ran for
}

// startCoordination joins the cluster's ZooKeeper when cluster.zookeeper
// is set.
func (s *Server) startCoordination(ctx context.Context) error {
	cfg := &s.Config.Cluster
	if cfg.ZooKeeper == "" {
		return nil
	}
	c := &cluster.Coordinator{
		Servers: split(cfg.ZooKeeper), Root: cfg.Root, SessionTimeout: cfg.SessionTimeout, Node: cfg.Node,
		Dialer: s.zkDialer, Logger: s.Logger.With("part", "cluster"), Registerer: s.metrics,
	}
	// A node that finds no ZooKeeper says so and exits, for its supervisor
	// to start it again, rather than hang in its start.
	sctx, cancel := context.WithTimeout(ctx, zooKeeperStart)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	versions, err := c.Versions("cases")
	if err != nil {
		c.Close()
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	claims, err := c.Claims("alert-cases")
	if err != nil {
		c.Close()
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	duties, err := c.Claims("duties")
	if err != nil {
		c.Close()
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	// An alert's claim goes with the session of the node that fired it: a
	// node that died, or was cut off ZooKeeper, leaves the condition to
	// the others.
	firing, err := c.SessionClaims("alerts")
	if err != nil {
		c.Close()
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	// So does its count in its grid cell, which storms are decided on.
	cells, err := c.Tallies("alert-cells")
	if err != nil {
		c.Close()
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	s.coord = coordination{coord: c, revisions: caseRevisions{versions}, claims: caseClaims{claims}, alerts: alertClaims{firing, cells, c.Node}, duties: duties,
		deadlines: c.Lease(leaseCaseDeadlines), scores: c.Lease(leaseScoreNotice), retention: c.Lease(leaseRetention)}
	return nil
}

// claimDay claims the run of a once-a-day duty (a lease name) for day
// (YYYY-MM-DD): false when a node claimed that day or a later one.
func (c *coordination) claimDay(duty, day string) (bool, error) {
	last, v, err := c.duties.Get(duty)
	if err != nil || last >= day {
		return false, err
	}
	_, err = c.duties.Swap(duty, v, day)
	if errors.Is(err, cluster.ErrChanged) {
		return false, nil
	}
	return err == nil, err
}

// ownDevices has the alert engine keep the rule state and open alerts of
// each device on the one node its readings reach, handed over between the
// nodes on ZooKeeper: when the nodes embed their brokers, a device is on
// one node at a time. Consuming an external broker's shared subscription,
// a device's readings are spread over the nodes, which then evaluate each
// device where its readings land, as before. Cameras are probed by every
// node: their alerts stay with the alert claims alone.
func (s *Server) ownDevices() error {
	if s.coord.coord == nil || s.Config.Upstream.Brokers != "" {
		return nil
	}
	o, err := s.coord.coord.Owners(engineHolder{s.alerting.engine, s.Logger.With("part", "alerts")})
	if err != nil {
		return fmt.Errorf("cluster.zookeeper: %w", err)
	}
	s.coord.owners = o
	s.alerting.engine.Owners = o
	s.alerting.engine.Shared = func(t devices.Type) bool { return t.ID == "camera" }
	// The devices no node owns are watched by one node, which adopts them.
	o.Adopt(s.coord.coord.Lease(leaseDeviceWatch), s.Config.Cluster.AdoptAfter, func() []string {
		return s.alerting.engine.Unwatched(s.registry.All())
	})
	return nil
}

// engineHolder is the alert engine as the device owners see it: a device's
// note is its alerts.Handover, in JSON.
type engineHolder struct {
	e      *alerts.Engine
	logger *slog.Logger
}

// Take implements cluster.Holder.
func (h engineHolder) Take(ctx context.Context, devices []string, notes map[string][]byte) error {
	handed := make(map[string]alerts.Handover, len(notes))
	for d, n := range notes {
		var ho alerts.Handover
		if err := json.Unmarshal(n, &ho); err != nil {
			// Read from the store instead.
			h.logger.Warn("cluster: a device's handover is unreadable", "device", d, "err", err)
			continue
		}
		handed[d] = ho
	}
	return h.e.Owned(ctx, devices, handed)
}

// Give implements cluster.Holder.
func (h engineHolder) Give(ctx context.Context, devices []string) map[string][]byte {
	handed, err := h.e.Release(ctx, devices)
	if err != nil {
		h.logger.Warn("cluster: alerts of devices handed on not saved yet: saved at a later flush", "devices", len(devices), "err", err)
	}
	notes := make(map[string][]byte, len(handed))
	for d, ho := range handed {
		n, err := json.Marshal(ho)
		if err != nil {
			h.logger.Warn("cluster: a device's handover cannot be written: the next node reads the store", "device", d, "err", err)
			continue
		}
		notes[d] = n
	}
	return notes
}

// closeCoordination gives the leases up and ends the session.
func (s *Server) closeCoordination() error {
	if s.coord.coord == nil {
		return nil
	}
	return s.coord.coord.Close()
}

// caseRevisions keeps the case versions in ZooKeeper for the case loop.
type caseRevisions struct{ v *cluster.Versions }

// Revision implements cases.Revisions.
func (r caseRevisions) Revision(_ context.Context, id string) (cases.Revision, error) {
	v, err := r.v.Get(id)
	if err != nil {
		return cases.Revision{}, err
	}
	return cases.Revision{Version: uint32(v.Value), Exists: v.Exists(), Set: v.Set, Stamp: int64(v.Stamp)}, nil
}

// Swap implements cases.Revisions.
func (r caseRevisions) Swap(_ context.Context, id string, from cases.Revision, version uint32) (cases.Revision, bool, error) {
	stamp := int32(from.Stamp)
	if !from.Exists {
		stamp = -1
	}
	v, err := r.v.Swap(id, cluster.Version{Value: uint64(from.Version), Set: from.Set, Stamp: stamp}, uint64(version))
	switch {
	case errors.Is(err, cluster.ErrChanged):
		return cases.Revision{}, false, nil
	case err != nil:
		return cases.Revision{}, false, err
	}
	return cases.Revision{Version: uint32(v.Value), Exists: true, Set: v.Set, Stamp: int64(v.Stamp)}, true, nil
}

// caseClaims keeps the alert conditions' cases in ZooKeeper for the case
// loop, one node per condition, its key path-escaped.
type caseClaims struct{ c *cluster.Claims }

// Claim implements cases.Claims.
func (r caseClaims) Claim(_ context.Context, condition string) (cases.Claim, error) {
	id, v, err := r.c.Get(url.PathEscape(condition))
	if err != nil {
		return cases.Claim{}, err
	}
	return cases.Claim{Case: id, Set: v.Set, Stamp: int64(v.Stamp)}, nil
}

// Swap implements cases.Claims.
func (r caseClaims) Swap(_ context.Context, condition string, from cases.Claim, id string) (bool, error) {
	_, err := r.c.Swap(url.PathEscape(condition), cluster.Version{Set: from.Set, Stamp: int32(from.Stamp)}, id)
	switch {
	case errors.Is(err, cluster.ErrChanged):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// alertClaims keeps the alert of each firing condition in ZooKeeper for
// the alert engine, and its count in its cell, their keys path-escaped.
// The holder is the alert on a node (id@node): every node restores every
// alert open in the store, and of two nodes restoring one only one may
// hold it.
type alertClaims struct {
	c     *cluster.Claims
	cells *cluster.Tallies
	node  string
}

// holder names c's alert on this node as the claims' holder.
func (r alertClaims) holder(c alerts.Claim) string { return c.ID + "@" + r.node }

// Claim implements alerts.Claims.
func (r alertClaims) Claim(_ context.Context, c alerts.Claim) (alerts.Answer, error) {
	var over func(string) bool
	if c.Handed {
		// The node that handed the alert over let it go: its claim, if
		// still there, is stale (see alerts.Claim), also one made by a
		// release before holders named their node.
		over = func(holder string) bool { return holderAlert(holder) == c.ID }
	}
	holder, err := r.c.Take(url.PathEscape(c.Key), r.holder(c), over)
	if err != nil {
		return alerts.Answer{}, err
	}
	if holder != r.holder(c) {
		return alerts.Answer{Holder: holderAlert(holder)}, nil
	}
	if c.Cell == "" {
		return alerts.Answer{Won: true}, nil
	}
	n, err := r.cells.Add(url.PathEscape(c.Cell), url.PathEscape(c.Key), r.holder(c))
	if err != nil {
		return alerts.Answer{}, err
	}
	return alerts.Answer{Won: true, Firing: n - 1}, nil
}

// holderAlert is the alert of a claim's holder, id@node (or, made by a
// release before holders named their node, the id alone).
func holderAlert(holder string) string {
	if i := strings.LastIndexByte(holder, '@'); i >= 0 {
		return holder[:i]
	}
	return holder
}

// Release implements alerts.Claims: the cell's count first, so that a
// claim that another alert takes next is never counted for this one.
func (r alertClaims) Release(_ context.Context, c alerts.Claim) error {
	if c.Cell != "" {
		if err := r.cells.Remove(url.PathEscape(c.Cell), url.PathEscape(c.Key), r.holder(c)); err != nil {
			return err
		}
	}
	return r.c.Release(url.PathEscape(c.Key), r.holder(c))
}
