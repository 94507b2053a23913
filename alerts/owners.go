package alerts

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Owners hand each device to one node of a cluster at a time, so that the
// device's rule state and its open alerts live on the node its readings
// reach: with Engine.Owners set, an engine evaluates a device's
// observations only while it owns the device, and carries on the alerts the
// device's previous node left. cluster.Owners implements it on ZooKeeper.
//
// The engine calls Own with its mutex held, the first time it hears from a
// device; the Owners call the engine back, from a goroutine of theirs:
// Engine.Owned once this node owns devices (at once when no node did, or
// once the node that did let them go or died), and Engine.Release when
// another node asks for devices this one owns.
type Owners interface {
	// Own asks, without waiting, that this node own device.
	Own(device string)
}

// maxHeld bounds the observations an engine keeps of a device it waits to
// own; beyond it the oldest are dropped and counted.
const maxHeld = 64

// held is an observation of a device not owned yet, evaluated once it is.
type held struct {
	metric string
	v      float64
	ts     int64
}

// wants reports whether an observation of a device this engine has no state
// for asks to own it: every one but the offline status, which the node a
// device left may report after the device reached another (a connection's
// end noticed late).
func wants(metric string, v float64) bool { return metric != MetricOnline || v != 0 }

// hold keeps an observation of d, which this engine waits to own. Called
// with mu held.
func (e *Engine) hold(d *deviceState, metric string, v float64, ts int64) {
	if len(d.held) == maxHeld {
		d.held = d.held[1:]
		e.m.dropped.WithLabelValues("held").Inc()
	}
	d.held = append(d.held, held{metric, v, ts})
}

// Handover is what the node that lets a device go passes to the node that
// takes it: the device's open alerts as it left them, so that the next node
// carries them on without reading them back from the store, whose replica
// there may not have the last save yet.
type Handover struct {
	Alerts []HandedAlert `json:"alerts"`
}

// HandedAlert is an open alert of a Handover, with its events.
type HandedAlert struct {
	Alert
	Revision uint64  `json:"revision"`
	Events   []Event `json:"events"`
}

// Owned has the engine carry on devices that this node now owns: their
// open alerts as handed says (the Handover of the node that let them go),
// or, for a device handed leaves out (its node died), as the store holds
// them; each firing one claimed (see Claims) by this node, and cleared
// when another alert holds its condition (see supersede); then the
// observations held while it waited. A device it keeps no state of (one
// no node owned, adopted: see cluster.Owners.Adopt) is watched for silence
// from now. On error nothing changed: the Owners
// call again.
func (e *Engine) Owned(ctx context.Context, devices []string, handed map[string]Handover) error {
	var (
		loaded []Alert
		events []Event
		err    error
		load   []string
	)
	for _, id := range devices {
		if _, ok := handed[id]; !ok {
			load = append(load, id)
		}
	}
	if e.Store != nil && len(load) > 0 {
		if loaded, events, err = e.Store.LoadOpenAlerts(ctx, load); err != nil {
			return err
		}
	}
	for _, h := range handed {
		for _, ha := range h.Alerts {
			a := ha.Alert
			a.Revision = ha.Revision
			loaded = append(loaded, a)
			events = append(events, ha.Events...)
		}
	}
	carry := loaded[:0:0]
	superseded := map[string]string{}             // by alert carried, its condition's holder
	cells := make(map[string]string, len(loaded)) // by alert: see Claim
	if e.Claims != nil {
		e.mu.Lock()
		for i := range loaded {
			cells[loaded[i].ID] = e.cellOf(&loaded[i])
		}
		e.mu.Unlock()
	}
	for _, a := range loaded {
		if a.Condition == ConditionFiring && e.Claims != nil {
			ans, err := e.Claims.Claim(ctx, Claim{Key: claimKey(&a), ID: a.ID, Cell: cells[a.ID], Handed: true})
			if err != nil {
				e.m.claims.WithLabelValues("error").Inc()
				return err
			}
			if !ans.Won {
				e.m.claims.WithLabelValues("lost").Inc()
				if ans.Holder == a.ID {
					// The same alert, on another node: this one is the stale
					// copy of an episode already carried on.
					e.Logger.Warn("alert of a device taken over not carried on: another node holds it", "alert", a.ID, "device", a.Device)
					continue
				}
				// Another alert took the condition up while this one's
				// node was away: this one is carried on to be cleared.
				superseded[a.ID] = ans.Holder
			} else {
				e.m.claims.WithLabelValues("won").Inc()
			}
		}
		carry = append(carry, a)
	}
	byAlert := map[string][]Event{}
	for _, ev := range events {
		byAlert[ev.AlertID] = append(byAlert[ev.AlertID], ev)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.Now()
	adopted := map[string]bool{}
	for _, id := range devices {
		if e.devs[id] == nil {
			// Adopted: no node owned it (it never reported, or its node
			// died), so it is watched for silence from now.
			if d := e.newDevice(id, "", "", now); d != nil {
				e.devs[id] = d
				adopted[id] = true
			}
		}
	}
	for _, a := range carry {
		d := e.devs[a.Device]
		if d == nil || d.owned || e.active[a.ID] != nil {
			continue
		}
		e.revision = max(e.revision, a.Revision)
		en := e.keepStored(a, byAlert[a.ID])
		en.handed = true
		if holder, ok := superseded[a.ID]; ok {
			e.active[a.ID] = en
			e.supersede(en, holder, now)
			continue
		}
		if a.Condition == ConditionFiring && e.Claims != nil {
			en.claim, en.cell = claimWon, cells[a.ID]
		}
		e.active[a.ID] = en
		e.schedule(en)
		if r := e.rules.byName[a.Rule]; r != nil {
			if adopted[d.id] {
				carrySilence(d, r, &en.Alert)
			}
			e.runDeviceAlert(en, r, d)
		}
	}
	for _, id := range devices {
		d := e.devs[id]
		if d == nil || d.owned {
			continue
		}
		d.owned = true
		e.m.handed.WithLabelValues("in").Inc()
		e.rejoinGrids(d, adopted[id])
		e.recheck(d)
		obs := d.held
		d.held = nil
		for _, o := range obs {
			e.observe(d.id, d.typ.ID, d.grid, o.metric, o.v, o.ts, now)
		}
	}
	return nil
}

// rejoinGrids has d, owned now, fire again into the firing grid-level alerts
// that count it among their members still firing (restored at start, see
// restore), so that its observations can clear them; d adopted, silent
// since the alert as carrySilence says. Called with mu held.
func (e *Engine) rejoinGrids(d *deviceState, adopted bool) {
	for k, en := range e.grids {
		r := e.rules.byName[k.rule]
		if r == nil || k.grid != d.grid || !en.active[d.id] || en.Condition != ConditionFiring {
			continue
		}
		if in := d.instance(r); in.alert == nil {
			in.phase, in.alert, in.cond = phaseFiring, en, true
			if adopted {
				carrySilence(d, r, &en.Alert)
			}
		}
	}
}

// Release has the engine let devices go to another node: it forgets their
// rule state, saves their open alerts as they stand and gives up those
// alerts' claims, and returns, by device, the Handover for the next node
// (none for a device it had no state of).
// Their observations from now on ask to own them again. A failed save (the
// error) is tried again by the flush loop, as any other: the handover
// stands.
func (e *Engine) Release(ctx context.Context, devices []string) (map[string]Handover, error) {
	e.mu.Lock()
	var (
		release []Claim
		left    []*entry
	)
	handed := make(map[string]Handover, len(devices))
	for _, id := range devices {
		if d := e.devs[id]; d != nil {
			handed[id] = Handover{}
			r, l := e.forget(d)
			release, left = append(release, r...), append(left, l...)
			e.m.handed.WithLabelValues("out").Inc()
		}
	}
	e.mu.Unlock()
	err := e.Flush(ctx) // gives each alert left its revision
	e.mu.Lock()
	for _, en := range left {
		h := handed[en.Device]
		h.Alerts = append(h.Alerts, HandedAlert{Alert: en.clone(), Revision: en.Revision, Events: slices.Clone(en.events)})
		handed[en.Device] = h
	}
	e.mu.Unlock()
	for _, r := range release {
		if rerr := e.Claims.Release(ctx, r); rerr != nil {
			e.m.claims.WithLabelValues("error").Inc()
			e.mu.Lock()
			e.claims.release = append(e.claims.release, r) // the claimer retries it
			e.mu.Unlock()
			e.kickClaims()
		}
	}
	return handed, err
}

// forget drops d and its rule state, marking its open device-level alerts
// for the next flush and taking them out of this engine, and returns the
// claims they held and the alerts. A grid-level alert d is a member of
// stays. Called with mu held.
func (e *Engine) forget(d *deviceState) ([]Claim, []*entry) {
	var (
		release []Claim
		left    []*entry
	)
	now := e.Now()
	unlisted := false
	for _, in := range d.insts {
		delete(e.waiting, in)
		for _, en := range []*entry{in.pending, in.alert} {
			if en == nil || en.Device != d.id || e.active[en.ID] != en {
				continue
			}
			if en.claim == claimWon {
				release = append(release, claimOf(en))
			}
			// A pending alert whose claim is asked is handed as pending:
			// the next node fires it, claiming it afresh.
			en.claim, en.due, en.Updated = claimNone, time.Time{}, now
			e.dirty[en.ID] = en // saved, no view: it leaves this engine
			delete(e.active, en.ID)
			delete(e.alerts, en.ID)
			e.views.Delete(en.ID)
			if en.listed {
				en.listed, unlisted = false, true
			}
			left = append(left, en)
		}
		in.phase, in.pending, in.alert = phaseInactive, nil, nil
	}
	if unlisted {
		e.unlistPruned()
	}
	d.due, d.held = time.Time{}, nil
	delete(e.devs, d.id)
	return release, left
}

// carrySilence has d, a device state made to carry a's rule r on (at start,
// or adopted), last heard of no later than the silence a stands for, when r
// is an absence rule: a firing a's fire time (a pending one's pending time)
// less r's window. Its next absence check then keeps a firing (or pending)
// rather than clearing it, the device having sent nothing since; counted
// from the state's making, a carried device_silent alert cleared at the
// next tick (TestOwnersKeepACarriedSilentAlertFiring,
// TestRestartKeepsASilentAlertFiring). Called with mu held.
func carrySilence(d *deviceState, r *rule, a *Alert) {
	since := a.Fired
	if a.Condition == ConditionPending {
		since = a.PendingSince
	}
	if r.Absent <= 0 || since.IsZero() {
		return
	}
	if t := since.Add(-absenceWindow(r, d)); t.Before(d.lastSeen) {
		d.lastSeen = t
	}
}

// keepStored holds a, stored with its events, in memory: listed and got, and
// not saved again. Called with mu held.
func (e *Engine) keepStored(a Alert, events []Event) *entry {
	en := &entry{Alert: a, events: events}
	slices.SortFunc(en.events, func(x, y Event) int { return cmp.Compare(x.Version, y.Version) })
	e.alerts[a.ID] = en
	e.views.Store(a.ID, en)
	e.republish(en) // stored already: a view, no save
	return en
}

// runDeviceAlert has d's instance of r fire into en, a device-level alert
// carried on from the store, or wait with it if it is pending. Called with mu
// held.
func (e *Engine) runDeviceAlert(en *entry, r *rule, d *deviceState) {
	in := d.instance(r)
	switch en.Condition {
	case ConditionPending:
		in.phase, in.since, in.pending, in.cond = phasePending, en.PendingSince, en, true
		e.wait(in)
	case ConditionFiring:
		in.phase, in.alert, in.cond = phaseFiring, en, true
	}
}
