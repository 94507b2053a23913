package alerts

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Flush saves the alerts changed and the events recorded since the last
// flush, and what earlier failed flushes kept. On error the rows are kept
// for the next flush, up to MaxUnsaved of each (the oldest are dropped and
// counted beyond). The engine flushes every FlushEvery and on Close.
func (e *Engine) Flush(ctx context.Context) error {
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
	e.mu.Lock()
	if e.dirty == nil { // never started
		e.mu.Unlock()
		return nil
	}
	now := e.Now()
	alerts, events := e.retry.alerts, e.retry.events
	for id, en := range e.dirty {
		en.Revision = e.nextRevisionLocked(now)
		alerts = append(alerts, en.clone())
		delete(e.dirty, id)
	}
	alerts = append(alerts, e.tombs...)
	events = append(events, e.events...)
	e.tombs, e.events = nil, nil
	e.mu.Unlock()
	e.retry.alerts, e.retry.events = nil, nil
	if e.Store == nil || len(alerts)+len(events) == 0 {
		return nil
	}
	var errs []error
	if len(alerts) > 0 {
		if err := e.Store.SaveAlerts(ctx, alerts); err != nil {
			errs = append(errs, err)
			e.retry.alerts = keep(e, latestRevisions(alerts), "alert")
		}
	}
	if len(events) > 0 {
		if err := e.Store.SaveEvents(ctx, events); err != nil {
			errs = append(errs, err)
			e.retry.events = keep(e, events, "event")
		}
	}
	if len(errs) > 0 {
		e.m.saveErrors.Inc()
	}
	return errors.Join(errs...)
}

// keep returns the newest MaxUnsaved of rows, counting the others as
// dropped.
func keep[T any](e *Engine, rows []T, what string) []T {
	if n := len(rows) - e.MaxUnsaved; n > 0 {
		e.m.dropped.WithLabelValues(what).Add(float64(n))
		e.Logger.Error("alert store failing for too long: rows dropped", "what", what, "dropped", n)
		rows = rows[n:]
	}
	return rows
}

// latestRevisions keeps the latest row of each alert, in revision order.
func latestRevisions(rows []Alert) []Alert {
	slices.SortStableFunc(rows, func(a, b Alert) int {
		if a.ID != b.ID {
			return strings.Compare(a.ID, b.ID)
		}
		return cmp.Compare(b.Revision, a.Revision)
	})
	rows = slices.CompactFunc(rows, func(a, b Alert) bool { return a.ID == b.ID })
	slices.SortFunc(rows, func(a, b Alert) int { return cmp.Compare(a.Revision, b.Revision) })
	return rows
}

// nextRevisionLocked returns a revision above every one given so far and
// at least the clock's ms times 1000, so that revisions keep growing across
// restarts. Called with mu held.
func (e *Engine) nextRevisionLocked(now time.Time) uint64 {
	e.revision = max(e.revision+1, uint64(now.UnixMilli())*1000)
	return e.revision
}

// restore rebuilds the engine's state from stored alerts and silences: the
// alerts not cleared, pending timers (they keep running from their stored
// start), the instances that fire into them, the cleared alerts kept for
// List and Get, and the silences in force. With Claims, each firing alert
// restored asks its claim: only the node that wins carries it on (see
// askRestored).
func (e *Engine) restore(alerts []Alert, events []Event, silences []Silence, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range silences {
		e.revision = max(e.revision, s.Revision)
	}
	e.silences = silences
	byAlert := map[string][]Event{}
	for _, ev := range events {
		byAlert[ev.AlertID] = append(byAlert[ev.AlertID], ev)
	}
	for _, a := range alerts {
		e.revision = max(e.revision, a.Revision)
		// A pending grid-level alert is one whose claim was asked (see
		// Claims) when the node stopped: it never fired, and its members,
		// if still ready, group again.
		if a.Condition == ConditionInactive || a.Device == "" && a.Condition == ConditionPending {
			continue
		}
		// With Owners, an open device-level alert is carried on by the node
		// that owns its device, once it does (see Owned).
		if e.Owners != nil && a.Device != "" && a.Condition != ConditionCleared {
			continue
		}
		en := e.keepStored(a, byAlert[a.ID])
		if a.Condition == ConditionCleared {
			continue
		}
		e.active[a.ID] = en
		en.restored = true
		e.schedule(en)
		if e.Claims != nil && a.Condition == ConditionFiring {
			e.askRestored(en)
		}
		r := e.rules.byName[a.Rule]
		if r == nil {
			continue
		}
		if a.Device == "" {
			e.grids[groupKey{a.Rule, a.Grid}] = en
			en.active = map[string]bool{}
			if a.Condition != ConditionFiring {
				continue
			}
			for _, m := range a.Members {
				// With Owners, a member fires into it again once its node
				// owns it and finds it ready (see ready).
				if e.Owners != nil {
					en.active[m] = true
					continue
				}
				if d := e.device(m, "", "", now); d != nil {
					in := d.instance(r)
					in.phase, in.alert, in.cond = phaseFiring, en, true
					en.active[m] = true
					carrySilence(d, r, &en.Alert)
				}
			}
			continue
		}
		if d := e.device(a.Device, "", a.Grid, now); d != nil {
			carrySilence(d, r, &en.Alert)
			e.runDeviceAlert(en, r, d)
		}
	}
	e.Logger.Info("alerts restored", "alerts", len(e.alerts), "open", len(e.active))
}
