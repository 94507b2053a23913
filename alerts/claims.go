package alerts

import (
	"context"
	"time"
)

// Claims hold, cluster-wide, the one alert of each condition (a rule on a
// device, or a rule's grid-level alert in a grid) while it fires, when the
// engines of several nodes see the same devices (the server keeps them in
// ZooKeeper): an engine whose alert is ready to fire claims its condition
// first, and fires it only when it won; the engine that lost follows the
// condition without an alert of its own, so the condition fires one
// alert, notified once, and raises one case. The firing episode ends when
// the alert clears and its engine releases the claim: the next one is
// claimed afresh.
type Claims interface {
	// Claim makes alert id the holder of condition key unless another
	// alert holds it; won reports whether id holds it.
	Claim(ctx context.Context, key, id string) (won bool, err error)
	// Release gives key up if alert id holds it.
	Release(ctx context.Context, key, id string) error
}

// claimState is where an alert stands with Engine.Claims.
type claimState uint8

const (
	// claimNone: not asked (a single node, or an alert restored).
	claimNone claimState = iota
	// claimAsked: ready to fire, the claim asked and not yet answered.
	claimAsked
	// claimWon: the alert holds its condition's claim.
	claimWon
)

// claimRelease is a claim to give up.
type claimRelease struct{ key, id string }

// claimKey keys the condition of en for Claims.
func claimKey(a *Alert) string {
	if a.Device != "" {
		return a.Rule + ",device," + a.Device
	}
	return a.Rule + ",grid," + a.Grid
}

// askClaim has the claimer ask en's claim before en fires with note.
// Called with mu held.
func (e *Engine) askClaim(en *entry, note string) {
	en.claim, en.fireNote = claimAsked, note
	e.claims.ask = append(e.claims.ask, en)
	e.kickClaims()
}

// releaseClaim has the claimer give up the claim of en, which cleared.
// Called with mu held.
func (e *Engine) releaseClaim(en *entry) {
	if en.claim != claimWon {
		return
	}
	en.claim = claimNone
	e.claims.release = append(e.claims.release, claimRelease{claimKey(&en.Alert), en.ID})
	e.kickClaims()
}

// kickClaims wakes the claimer without waiting.
func (e *Engine) kickClaims() {
	select {
	case e.claims.kick <- struct{}{}:
	default:
	}
}

// runClaims asks and releases the claims queued, when kicked and every
// Tick (for those that failed), until ctx ends. The round trips to
// Claims run here, never under mu.
func (e *Engine) runClaims(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(e.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.claims.kick:
		case <-t.C:
		}
		e.settleClaims(ctx)
	}
}

// settleClaims takes the queued claims, asks them off mu, then fires the
// alerts that won, buries those that lost, and queues again what failed.
func (e *Engine) settleClaims(ctx context.Context) {
	e.mu.Lock()
	ask, release := e.claims.ask, e.claims.release
	e.claims.ask, e.claims.release = nil, nil
	keys := make([]claimRelease, len(ask))
	for i, en := range ask {
		keys[i] = claimRelease{claimKey(&en.Alert), en.ID}
	}
	e.mu.Unlock()
	if len(ask)+len(release) == 0 {
		return
	}
	// Releases go first: a condition that cleared and holds again is free
	// for its next alert.
	var failed []claimRelease
	for _, r := range release {
		if err := e.Claims.Release(ctx, r.key, r.id); err != nil {
			failed = append(failed, r)
			e.m.claims.WithLabelValues("error").Inc()
			e.Logger.Warn("alert claim not released; retrying", "key", r.key, "alert", r.id, "err", err)
		}
	}
	won := make([]bool, len(ask))
	errs := make([]error, len(ask))
	for i, k := range keys {
		won[i], errs[i] = e.Claims.Claim(ctx, k.key, k.id)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.Now()
	for i, en := range ask {
		asked := e.active[en.ID] == en && en.claim == claimAsked
		switch {
		case errs[i] != nil:
			e.m.claims.WithLabelValues("error").Inc()
			e.Logger.Warn("alert claim not answered; retrying", "key", keys[i].key, "alert", en.ID, "err", errs[i])
			if asked {
				e.claims.ask = append(e.claims.ask, en)
			} else {
				failed = append(failed, keys[i]) // it may have been taken
			}
		case !asked:
			// Cleared or dropped while its claim was asked.
			if won[i] {
				failed = append(failed, keys[i])
			}
		case won[i]:
			e.m.claims.WithLabelValues("won").Inc()
			en.claim = claimWon
			e.open(en, now, en.fireNote)
		default:
			e.m.claims.WithLabelValues("lost").Inc()
			e.detach(en, true)
			e.bury(en, now)
		}
	}
	e.claims.release = append(e.claims.release, failed...)
}
