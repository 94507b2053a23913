package server

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/alerts/notify"
	"github.com/gridwatch/gridwatch/api"
)

// notifyBuffer is how many transitions may wait for the notifiers; beyond
// it the engine drops them for this subscriber and counts them.
const notifyBuffer = 4096

// staff is the staff-facing side: notifications of alert transitions.
type staff struct {
	sub     *alerts.Subscription
	webhook *notify.Webhook
	metrics *notify.Metrics
	done    chan struct{}
	// holder checks the API tokens of MQTT subscribers once configureAPI
	// loaded them; the broker starts first and admits no staff before.
	holder atomic.Pointer[func(name string, token []byte) (string, bool)]
}

// configureAPI gives the API its tokens (api.tokens_file), grid scopes and
// the alert engine.
func (s *Server) configureAPI(a *api.Server) error {
	if f := s.Config.API.TokensFile; f != "" {
		tokens, err := api.ReadTokensFile(f)
		if err != nil {
			return fmt.Errorf("api.tokens_file: %w", err)
		}
		a.Tokens = tokens
		s.Logger.Info("api tokens loaded", "tokens", len(tokens), "file", f)
	}
	holder := api.TokenHolder(a.AdminToken, a.Tokens, s.Logger)
	s.staff.holder.Store(&holder)
	a.InScope = s.inScope
	a.Alerts = s.alerting.engine
	if s.cases.svc != nil {
		a.Cases, a.Photos = s.cases.svc, s.cases.photos
		a.CaseCategories = s.cases.categories.All
	}
	if k := s.Config.Cases.HotlineSecret; k != "" {
		a.HotlineSecret = []byte(k)
	}
	a.Registerer = s.metrics
	return nil
}

// authenticateStaff is the broker's StaffFunc: an API token holder may
// subscribe to the alert notifications of its scope over MQTT.
func (s *Server) authenticateStaff(name string, token []byte) (string, bool) {
	if h := s.staff.holder.Load(); h != nil {
		return (*h)(name, token)
	}
	return "", false
}

// inScope reports whether grid lies in the subtree of scope: by the grid
// hierarchy when it knows grid, else by the hierarchical codes
// (api.PrefixScope).
func (s *Server) inScope(scope, grid string) bool {
	if grid == scope {
		return true
	}
	if up := s.gridAncestors(grid); len(up) > 0 {
		return slices.Contains(up, scope)
	}
	return api.PrefixScope(scope, grid)
}

// notifies reports whether any notifier is configured: whether startNotify
// starts any, for which startAlerts subscribes to the engine.
func (s *Server) notifies() bool { return s.Config.Notify.MQTT || s.Config.Notify.WebhookURL != "" }

// startNotify hands the engine's transitions (subscribed in startAlerts)
// that no silence covers to the configured notifiers: MQTT (notify.mqtt)
// and a webhook (notify.*).
func (s *Server) startNotify(ctx context.Context) error {
	cfg := &s.Config.Notify
	m := notify.NewMetrics(s.metrics)
	s.staff.metrics = m
	if !s.notifies() {
		return nil
	}
	var targets []notify.Notifier
	if cfg.MQTT {
		targets = append(targets, &notify.MQTT{Publish: s.broker.Publish, QoS: 1, Logger: s.Logger, Metrics: m})
	}
	if cfg.WebhookURL != "" {
		s.staff.webhook = &notify.Webhook{URL: cfg.WebhookURL, Secret: []byte(cfg.WebhookSecret), Logger: s.Logger, Metrics: m}
		if err := s.staff.webhook.Start(ctx); err != nil {
			return fmt.Errorf("notify.webhook_url: %w", err)
		}
		targets = append(targets, s.staff.webhook)
	}
	d := &notify.Dispatcher{Targets: targets, Metrics: m}
	s.staff.done = make(chan struct{})
	go func() {
		defer close(s.staff.done)
		d.Run(s.staff.sub.C)
	}()
	return nil
}

// closeNotify ends the subscription and lets the webhook send what it
// holds.
func (s *Server) closeNotify() error {
	s.closeScoreNotice()
	if s.staff.done != nil { // else nobody reads it, and the engine's Close ends it
		s.staff.sub.Close()
		<-s.staff.done
	}
	if s.staff.webhook != nil {
		return s.staff.webhook.Close()
	}
	return nil
}
