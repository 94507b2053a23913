package alerts

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
	// Claim makes c.ID, on this node, the holder of c.Key unless another
	// alert holds it (the same alert restored on another node is another
	// holder), and answers who holds it.
	Claim(ctx context.Context, c Claim) (Answer, error)
	// Release gives c.Key up, and c.ID's count under c.Cell, if c.ID holds
	// it.
	Release(ctx context.Context, c Claim) error
}

// Claim is a condition's claim for Claims: Key is the condition (a rule
// on a device, or a rule in a grid), ID the alert that would hold it.
// Cell, set for a device's alert of a value rule that groups into storms,
// is its rule's grid-level condition in the device's grid, where the
// alert is counted while it holds Key: the engines of the cluster see how
// many devices of the cell fire the rule, wherever their readings landed
// (see Engine.StormMin). Handed is set for an alert another node handed
// to this one with its device (see Owned): that node let the alert go, so
// a claim the same alert still holds there (its answer in flight as the
// device left) is taken over.
type Claim struct {
	Key, ID, Cell string
	Handed        bool
}

// Answer is Claims' answer to a Claim c.
type Answer struct {
	// Won reports whether c.ID, on this node, holds c.Key.
	Won bool
	// Firing is, when c.Cell is set and Won, how many other alerts are
	// counted under c.Cell.
	Firing int
	// Holder is, when not Won, the id of the alert that holds c.Key: c.ID
	// itself when it holds it on another node (restored there too, or not
	// yet let go by the node that handed it over).
	Holder string
}

// claimState is where an alert stands with Engine.Claims.
type claimState uint8

const (
	// claimNone: not asked (a single node, or not ready to fire).
	claimNone claimState = iota
	// claimAsked: ready to fire, the claim asked and not yet answered.
	claimAsked
	// claimRestored: firing as the store held it at start, the claim
	// asked and not yet answered (see askRestored).
	claimRestored
	// claimWon: the alert holds its condition's claim.
	claimWon
)

// claimOf is en's claim.
func claimOf(en *entry) Claim {
	return Claim{Key: claimKey(&en.Alert), ID: en.ID, Cell: en.cell, Handed: en.handed}
}

// claimKey keys the condition of a for Claims.
func claimKey(a *Alert) string {
	if a.Device != "" {
		return a.Rule + ",device," + a.Device
	}
	return gridKey(a.Rule, a.Grid)
}

// gridKey keys the grid-level condition of rule in grid for Claims.
func gridKey(rule, grid string) string { return rule + ",grid," + grid }

// cellOf is the Cell of a's claim: its grid-level condition for a
// device's alert of a value rule that groups, "" for others. Called with
// mu held.
func (e *Engine) cellOf(a *Alert) string {
	r := e.rules.byName[a.Rule]
	if a.Device == "" || r == nil || e.StormMin <= 0 || r.NoGroup || r.inhibiting() {
		return ""
	}
	return gridKey(a.Rule, a.Grid)
}

// askClaim has the claimer ask en's claim before en fires with note.
// Called with mu held.
func (e *Engine) askClaim(en *entry, note string) {
	en.claim, en.fireNote = claimAsked, note
	e.claims.ask = append(e.claims.ask, en)
	e.m.asked.Inc()
	e.kickClaims()
}

// askRestored has the claimer ask the claim of en, an alert restored firing
// at start: every node restores every alert the store holds open, and the
// nodes' sessions that held their claims are gone or going. Won, en is
// carried on here. Lost to en itself, restored on another node, en is
// dropped here without a word to the store (see dropRestored); lost to
// another alert, which took the condition up while en's node was away, en
// clears (see supersede). Either way this engine follows the condition.
// Until the answer, en goes on as restored. Called with mu held.
func (e *Engine) askRestored(en *entry) {
	en.claim, en.cell = claimRestored, e.cellOf(&en.Alert)
	e.claims.ask = append(e.claims.ask, en)
	e.m.asked.Inc()
	e.kickClaims()
}

// dropRestored takes en, an alert restored firing whose claim en holds on
// another node, out of this engine, in memory only: the store's rows are
// that node's to write. Its instances follow the condition without it.
// Called with mu held.
func (e *Engine) dropRestored(en *entry) {
	e.detach(en, true)
	e.unkeep(en)
	e.Logger.Info("restored alert not carried on: another node's alert holds its condition",
		"alert", en.ID, "rule", en.Rule, "device", en.Device, "grid", en.Grid)
}

// supersede ends en, an alert restored firing whose condition the alert
// holder holds: en's node went away while en fired, and another node's
// alert took the condition up since. en clears, its note naming holder, so
// that neither the store nor the case loop keeps it firing, and its
// instances follow the condition. Every node that restored en does the
// same, as the same event: one delivery for a notifier. Called with mu
// held.
func (e *Engine) supersede(en *entry, holder string, now time.Time) {
	e.resolve(en, now, "superseded: alert "+holder+" carries the condition on")
	e.detach(en, true)
	e.Logger.Info("restored alert cleared: another alert took its condition up while its node was away",
		"alert", en.ID, "holder", holder, "rule", en.Rule, "device", en.Device, "grid", en.Grid)
}

// unkeep takes en, an alert restored from the store, out of this engine's
// alerts without saving anything. Called with mu held.
func (e *Engine) unkeep(en *entry) {
	delete(e.alerts, en.ID)
	delete(e.active, en.ID)
	delete(e.dirty, en.ID)
	e.views.Delete(en.ID)
	if en.listed {
		en.listed = false
		e.unlistPruned()
	}
}

// releaseClaim has the claimer give up the claim of en, which cleared or
// lost it, and those it holds for its members. Called with mu held.
func (e *Engine) releaseClaim(en *entry) {
	release := en.memberClaims
	en.memberClaims = nil
	if en.claim == claimWon {
		en.claim = claimNone
		release = append(release, claimOf(en))
	}
	if len(release) > 0 {
		e.claims.release = append(e.claims.release, release...)
		e.kickClaims()
	}
}

// memberClaim is the claim of a member's condition that g, a grid-level
// alert, asks to hold (see reclaimMembers).
type memberClaim struct {
	g *entry
	c Claim
}

// reclaimMembers has the claimer ask again, for g, a grid-level alert
// restored firing that won its claim, the claims of its members'
// conditions, which it held before the restart (see joinStorm): so that no
// node fires a member alone while g holds it, and the members count in
// their cell across the cluster. Called with mu held.
func (e *Engine) reclaimMembers(g *entry) {
	for _, m := range slices.Sorted(maps.Keys(g.active)) {
		a := Alert{Rule: g.Rule, Device: m, Grid: g.Grid}
		cell := e.cellOf(&a)
		if cell == "" {
			return // not a storm counted across the nodes: no member claims
		}
		e.claims.members = append(e.claims.members, memberClaim{g, Claim{Key: claimKey(&a), ID: g.ID, Cell: cell}})
	}
	e.kickClaims()
}

// holdsGrid reports whether g, a grid-level alert, is open here and holds
// its claim. Called with mu held.
func (e *Engine) holdsGrid(g *entry) bool { return e.active[g.ID] == g && g.claim == claimWon }

// kickClaims wakes the claimer without waiting.
func (e *Engine) kickClaims() { kick(e.claims.kick) }

// kick wakes the goroutine of runKicked that waits on c, without waiting.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// runKicked calls settle when kicked on c and every Tick (for what
// failed), until ctx ends: the claimer (settleClaims) and the asker of
// Heard (settleHeard), whose round trips run there, never under mu.
func (e *Engine) runKicked(ctx context.Context, c chan struct{}, settle func(context.Context)) {
	defer e.wg.Done()
	t := time.NewTicker(e.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
		case <-t.C:
		}
		settle(ctx)
	}
}

// settleClaims takes the queued claims, asks them off mu, then fires the
// alerts that won (into their cell's grid-level alert, when enough other
// devices of the cell fire the rule), buries those that lost (or, restored
// at start, drops or supersedes them), has a grid-level alert restored
// firing that won hold its members' claims again, and queues again what
// failed.
func (e *Engine) settleClaims(ctx context.Context) {
	e.mu.Lock()
	ask, release := e.claims.ask, e.claims.release
	e.claims.ask, e.claims.release = nil, nil
	claims := make([]Claim, len(ask))
	for i, en := range ask {
		claims[i] = claimOf(en)
	}
	var members []memberClaim // those of grid-level alerts that still hold their own
	for _, mc := range e.claims.members {
		if e.holdsGrid(mc.g) {
			members = append(members, mc)
		} else {
			release = append(release, mc.c) // it may have been taken (asked again after an error)
		}
	}
	e.claims.members = nil
	e.mu.Unlock()
	if len(ask)+len(members)+len(release) == 0 {
		return
	}
	// Releases go first: a condition that cleared and holds again is free
	// for its next alert.
	var failed []Claim
	for _, c := range release {
		if err := e.Claims.Release(ctx, c); err != nil {
			failed = append(failed, c)
			e.m.claims.WithLabelValues("error").Inc()
			e.Logger.Warn("alert claim not released; retrying", "key", c.Key, "alert", c.ID, "err", err)
		}
	}
	answers := make([]Answer, len(ask))
	errs := make([]error, len(ask))
	for i, c := range claims {
		answers[i], errs[i] = e.Claims.Claim(ctx, c)
	}
	memberAnswers := make([]Answer, len(members))
	memberErrs := make([]error, len(members))
	for i, mc := range members {
		memberAnswers[i], memberErrs[i] = e.Claims.Claim(ctx, mc.c)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, mc := range members {
		holds := e.holdsGrid(mc.g)
		switch a := memberAnswers[i]; {
		case memberErrs[i] != nil:
			e.m.claims.WithLabelValues("error").Inc()
			e.Logger.Warn("member claim of a restored grid-level alert not answered; retrying", "key", mc.c.Key, "alert", mc.g.ID, "err", memberErrs[i])
			if holds {
				e.claims.members = append(e.claims.members, mc)
			} else {
				failed = append(failed, mc.c) // it may have been taken
			}
		case !a.Won:
			e.m.claims.WithLabelValues("lost").Inc()
			e.Logger.Info("member of a restored grid-level alert held by another alert", "alert", mc.g.ID, "key", mc.c.Key, "holder", a.Holder)
		case holds:
			e.m.claims.WithLabelValues("won").Inc()
			mc.g.memberClaims = append(mc.g.memberClaims, mc.c)
		default:
			failed = append(failed, mc.c) // cleared meanwhile
		}
	}
	now := e.Now()
	answered := 0 // the gauge falls after the loop: a storm's claims are asked in it
	defer func() { e.m.asked.Sub(float64(answered)) }()
	for i, en := range ask {
		asked := e.active[en.ID] == en && (en.claim == claimAsked || en.claim == claimRestored)
		if errs[i] == nil || !asked {
			answered++
		}
		a := answers[i]
		switch {
		case errs[i] != nil:
			e.m.claims.WithLabelValues("error").Inc()
			e.Logger.Warn("alert claim not answered; retrying", "key", claims[i].Key, "alert", en.ID, "err", errs[i])
			if asked {
				e.claims.ask = append(e.claims.ask, en)
			} else {
				failed = append(failed, claims[i]) // it may have been taken
			}
		case !asked:
			// Cleared or dropped while its claim was asked.
			if a.Won {
				failed = append(failed, claims[i])
			}
		case a.Won && en.claim == claimRestored:
			e.m.claims.WithLabelValues("won").Inc()
			en.claim = claimWon
			if en.Device == "" {
				e.reclaimMembers(en)
			}
		case en.claim == claimRestored:
			e.m.claims.WithLabelValues("lost").Inc()
			en.claim = claimNone
			if a.Holder == en.ID {
				e.dropRestored(en)
			} else {
				e.supersede(en, a.Holder, now)
			}
		case a.Won:
			e.m.claims.WithLabelValues("won").Inc()
			if en.cell != "" && e.joinStorm(en, claims[i], a.Firing, now) {
				continue
			}
			en.claim = claimWon
			e.open(en, now, en.fireNote)
		default:
			e.m.claims.WithLabelValues("lost").Inc()
			e.releaseClaim(en)
			// A device's condition held by another node's alert of its
			// own is followed. One that may be a storm's is asked again
			// at the device's next reading: a grid-level alert held
			// elsewhere took it in, or may take it in, as a member.
			e.detach(en, en.Device != "" && en.cell == "")
			if en.restored && a.Holder == en.ID {
				// Pending as the store held it at start: another node
				// restored it too and fired it, and owns its rows.
				e.unkeep(en)
			} else {
				e.bury(en, now)
			}
		}
	}
	e.claims.release = append(e.claims.release, failed...)
}

// joinStorm has en, a device's value alert that won its claim c while
// firing other devices of its cell fire the rule across the cluster, join
// its cell's grid-level alert instead of firing alone when this engine
// holds that alert, or when enough devices fire to open it (as fireValue
// does when this engine holds their alerts itself). The grid-level alert
// holds c from then on, so that no node fires the device's condition
// alone while it is a member. false when en fires alone. Called with mu
// held.
func (e *Engine) joinStorm(en *entry, c Claim, firing int, now time.Time) bool {
	key := groupKey{en.Rule, en.Grid}
	g := e.grids[key]
	firing = max(firing, e.firingAlone(key))
	if g == nil && firing < e.StormMin {
		return false
	}
	d := e.devs[en.Device]
	if d == nil {
		return false
	}
	in := d.insts[en.Rule]
	if in == nil || in.alert != en {
		return false
	}
	if g != nil {
		in.alert = g
		e.bury(en, now)
		e.join(g, d.id, now)
	} else {
		in.pending, in.alert = en, nil
		g = e.openGrid(key, []*instance{in}, now,
			fmt.Sprintf("grid-level alert: %d devices of the cell already fire this rule across the cluster; later ones join it", firing))
	}
	g.memberClaims = append(g.memberClaims, c)
	return true
}
