package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// RulesConfig are the rules.* keys.
type RulesConfig struct {
	File string `koanf:"file" help:"alerting rules YAML file, reloaded when it changes; empty uses the rules shipped for the device catalog"`
}

// validate checks the rules file, naming the rule and field at fault.
func (c *RulesConfig) validate(bad func(key, format string, args ...any)) {
	if c.File == "" {
		return
	}
	if _, err := alerts.LoadRules(c.File); err != nil {
		bad("rules.file", "is invalid: %v", err)
	}
}

// alerting is the alert engine and what feeds it its rules.
type alerting struct {
	engine  *alerts.Engine
	watcher *alerts.RuleWatcher
	// parents caches the grid hierarchy of one registry snapshot.
	mu      sync.Mutex
	snap    *[]devices.Grid
	parents map[string]string
}

// startAlerts starts the alert engine on the registry and ClickHouse,
// restoring its open alerts, and watches the rules file.
func (s *Server) startAlerts(ctx context.Context) error {
	rules := alerts.DefaultRules()
	if f := s.Config.Rules.File; f != "" {
		var err error
		if rules, err = alerts.LoadRules(f); err != nil {
			return fmt.Errorf("rules.file: %w", err)
		}
	}
	// A lone node watches every registered device for silence from the
	// start; a node of a cluster of embedded brokers only the devices it
	// heard from, since the others report to the other nodes (and one node
	// adopts those none heard from: see ownDevices). It reads the silences
	// again as often as the registry, for those the other nodes took.
	watch, reload := s.registry.All, time.Duration(0)
	if s.Config.Cluster.ZooKeeper != "" {
		reload = s.Config.Devices.ReloadInterval
		if s.Config.Upstream.Brokers == "" {
			watch = nil
		}
	}
	// Consuming a shared subscription, a node hears a share of every
	// device's messages: before it counts a device silent, it asks
	// ClickHouse when any node last heard from it.
	var heard func(context.Context, []string, time.Time) (map[string]time.Time, error)
	if s.Config.Upstream.Brokers != "" {
		heard = s.db.LastHeard
	}
	s.alerting.engine = &alerts.Engine{
		Rules:         rules,
		Lookup:        s.registry.Lookup,
		Devices:       watch,
		SilencesEvery: reload,
		Ancestors:     s.gridAncestors,
		InScope:       s.inScope,
		Store:         s.db,
		Claims:        s.coord.alerts,
		Heard:         heard,
		Now:           s.Now,
		Logger:        s.Logger.With("part", "alerts"),
		Registerer:    s.metrics,
	}
	if err := s.ownDevices(); err != nil {
		s.alerting.engine = nil
		return err
	}
	// The case loop and the notifiers subscribe before Start: from then on
	// the engine settles the claims of the alerts it restored, and runs its
	// timers, and what that makes (a restored alert another alert
	// superseded, cleared) must reach both. They take up what waits once
	// they start (startCases, startNotify).
	s.cases.sub = s.alerting.engine.Subscribe(alertIntakeBuffer)
	if s.notifies() {
		s.staff.sub = s.alerting.engine.Subscribe(notifyBuffer)
	}
	if err := s.alerting.engine.Start(ctx); err != nil {
		s.alerting.engine = nil
		return err
	}
	if f := s.Config.Rules.File; f != "" {
		s.alerting.watcher = &alerts.RuleWatcher{Path: f, Apply: s.alerting.engine.SetRules, Logger: s.Logger}
		s.alerting.watcher.Start(ctx)
	}
	return nil
}

// observe hands readings to the alert engine.
func (s *Server) observe(rs []ingest.Reading) { s.alerting.engine.ObserveReadings(rs) }

// gridAncestors returns the grids above grid in the registry's hierarchy,
// nearest first.
func (s *Server) gridAncestors(grid string) []string {
	a := &s.alerting
	snap := s.reg.grids.Load()
	a.mu.Lock()
	if snap != a.snap {
		a.snap, a.parents = snap, map[string]string{}
		if snap != nil {
			for _, g := range *snap {
				a.parents[g.Code] = g.Parent
			}
		}
	}
	var out []string
	for p := a.parents[grid]; p != "" && len(out) < 16; p = a.parents[p] {
		out = append(out, p)
	}
	a.mu.Unlock()
	return out
}

// closeAlerts stops watching the rules and closes the engine, saving what
// it holds.
func (s *Server) closeAlerts() error {
	if s.coord.owners != nil {
		s.coord.owners.Close() // no handover into a closing engine
	}
	if s.alerting.watcher != nil {
		s.alerting.watcher.Close()
	}
	if s.alerting.engine == nil {
		return nil
	}
	return s.alerting.engine.Close()
}

// Alerts returns the alert engine, for the API.
func (s *Server) Alerts() *alerts.Engine { return s.alerting.engine }
