package alerts

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// ActionKind names a staff action on a work order.
type ActionKind string

// Actions and the statuses they move between:
//
//	ack:      new, reopened -> acknowledged
//	dispatch: new, reopened, acknowledged, dispatched -> dispatched (to Unit;
//	          dispatching a dispatched order reassigns it)
//	resolve:  acknowledged, dispatched -> resolved
//	close:    resolved -> closed (verified)
//	reopen:   resolved, closed -> reopened
//	comment:  any -> unchanged
const (
	ActionAck      ActionKind = "ack"
	ActionDispatch ActionKind = "dispatch"
	ActionResolve  ActionKind = "resolve"
	ActionClose    ActionKind = "close"
	ActionReopen   ActionKind = "reopen"
	ActionComment  ActionKind = "comment"
)

// Action is one staff action on an alert's work order.
type Action struct {
	// ID is the alert's id.
	ID   string
	Kind ActionKind
	// Version is the alert version the actor saw; a different current
	// version fails the action with a *ConflictError. Required.
	Version uint64
	// Actor is who acts, recorded in the trace. Required.
	Actor string
	// Unit is the unit to dispatch to; empty keeps the routed unit.
	Unit string
	// Note is the actor's comment; required for ActionComment.
	Note string
}

// transitions lists, per action, the statuses it may start from and the
// status it leads to.
var transitions = map[ActionKind]struct {
	from []Status
	to   Status
}{
	ActionAck:      {[]Status{StatusNew, StatusReopened}, StatusAcknowledged},
	ActionDispatch: {[]Status{StatusNew, StatusReopened, StatusAcknowledged, StatusDispatched}, StatusDispatched},
	ActionResolve:  {[]Status{StatusAcknowledged, StatusDispatched}, StatusResolved},
	ActionClose:    {[]Status{StatusResolved}, StatusClosed},
	ActionReopen:   {[]Status{StatusResolved, StatusClosed}, StatusReopened},
}

// Act applies a staff action and returns the alert after it, once the
// Store has the alert row and the event of the action: a 2xx to an action
// means it is on disk. Its errors wrap ErrNotFound, ErrConflict (a
// *ConflictError), ErrInvalidAction or ErrNotSaved; after an error nothing
// changed.
//
// Act plans the action on a copy under mu, saves the copy without mu, and
// applies it under mu: ingestion does not wait for the store. While the
// save runs the alert is "acting": another action on it waits for the
// outcome (so versions stay linearizable), and the engine's own versioned
// changes to it (clear, refire, join, deadlines) wait too, to run after
// the action, so the saved row is exactly the state the action leads to.
func (e *Engine) Act(ctx context.Context, a Action) (Alert, error) {
	if err := ctx.Err(); err != nil {
		return Alert{}, err
	}
	if a.Actor == "" {
		return Alert{}, fmt.Errorf("%w: an actor is required", ErrInvalidAction)
	}
	e.mu.Lock()
	defer e.unlock()
	for {
		if e.closed || e.alerts == nil {
			return Alert{}, ErrClosed
		}
		en := e.alerts[a.ID]
		if en == nil || en.Condition == ConditionPending {
			return Alert{}, fmt.Errorf("%w: %q", ErrNotFound, a.ID)
		}
		if en.acting != nil {
			// Another action on the alert is being saved: its outcome
			// decides whether a.Version is still current.
			done := en.acting
			e.unlock()
			select {
			case <-done:
			case <-ctx.Done():
				e.mu.Lock()
				return Alert{}, ctx.Err()
			}
			e.mu.Lock()
			continue
		}
		if a.Version != en.Version {
			return Alert{}, &ConflictError{ID: a.ID, Given: a.Version, Current: en.Version}
		}
		now := e.Now()
		next, ev, err := e.plan(en, a, now)
		if err != nil {
			return Alert{}, err
		}
		next.Revision = e.nextRevisionLocked(now)
		if e.Store != nil {
			done := make(chan struct{})
			en.acting = done
			e.unlock()
			err = e.saveAction(ctx, next, ev)
			e.mu.Lock()
			en.acting = nil
			close(done)
			if err != nil {
				e.m.saveErrors.Inc()
				// The alert row may be stored without its event: the next
				// flush stores the unchanged alert over it.
				e.touch(en)
				e.runDeferred(en)
				return Alert{}, err
			}
		}
		e.apply(en, next, ev)
		e.runDeferred(en)
		return en.clone(), nil
	}
}

// DefaultActionSaveTimeout bounds the save of one action.
const DefaultActionSaveTimeout = 10 * time.Second

// saveAction stores the alert row and the event of an action. It does not
// stop when the caller goes away (a client hanging up mid-save would leave
// it unknown whether the rows are stored), only after
// DefaultActionSaveTimeout.
func (e *Engine) saveAction(ctx context.Context, next Alert, ev Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultActionSaveTimeout)
	defer cancel()
	if err := e.Store.SaveAlerts(ctx, []Alert{next}); err != nil {
		return fmt.Errorf("%w: %s of alert %s: %w", ErrNotSaved, ev.Kind, next.ID, err)
	}
	if err := e.Store.SaveEvents(ctx, []Event{ev}); err != nil {
		return fmt.Errorf("%w: %s of alert %s: %w", ErrNotSaved, ev.Kind, next.ID, err)
	}
	return nil
}

// plan checks action a against en and returns the alert and the event it
// leads to, changing nothing. Called with mu held.
func (e *Engine) plan(en *entry, a Action, now time.Time) (Alert, Event, error) {
	next := en.clone()
	from := next.Status
	kind, to := EventComment, from
	note := a.Note
	if a.Kind == ActionComment {
		if a.Note == "" {
			return Alert{}, Event{}, fmt.Errorf("%w: a comment needs a note", ErrInvalidAction)
		}
	} else {
		t, ok := transitions[a.Kind]
		if !ok {
			return Alert{}, Event{}, fmt.Errorf("%w: unknown action %q", ErrInvalidAction, a.Kind)
		}
		if !slices.Contains(t.from, from) {
			return Alert{}, Event{}, fmt.Errorf("%w: cannot %s an alert that is %s", ErrInvalidAction, a.Kind, from)
		}
		kind, to = EventKind(a.Kind), t.to
	}
	switch a.Kind {
	case ActionAck:
		next.Acked = now
	case ActionDispatch:
		unit := a.Unit
		if unit == "" {
			unit = next.Unit
		}
		if unit == "" {
			return Alert{}, Event{}, fmt.Errorf("%w: no unit handles %s in grid %s: name one", ErrInvalidAction, next.Category, next.Grid)
		}
		if next.Acked.IsZero() || from.awaitingAck() {
			next.Acked = now // dispatching signs for the order too
		}
		next.Unit, next.Dispatched = unit, now
		note = joinNote("unit "+unit, a.Note)
	case ActionResolve:
		next.Resolved = now
	case ActionClose:
		next.Closed = now
	case ActionReopen:
		if key := e.keyOf(en); from == StatusClosed && e.openFor(key) != nil {
			return Alert{}, Event{}, fmt.Errorf("%w: rule %s already has a newer open alert for %s%s", ErrInvalidAction, en.Rule, key.device, key.grid)
		}
		next.Resolved, next.Closed = time.Time{}, time.Time{}
		e.setDeadlines(&next, now)
	}
	next.Status = to
	next.Version++
	next.Updated = now
	ev := Event{AlertID: next.ID, Version: next.Version, TS: now, Actor: a.Actor, Kind: kind,
		From: string(from), To: string(to), Note: note}
	if a.Kind == ActionComment {
		ev.From, ev.To = "", ""
	}
	return next, ev, nil
}

// apply makes en the alert an action planned, whose event is saved
// already: the fields that change without a new version (count, value,
// last seen, pending) keep their current values. Called with mu held.
func (e *Engine) apply(en *entry, next Alert, ev Event) {
	cur := en.Alert
	next.Count, next.Value, next.Summary, next.LastSeen, next.PendingSince =
		cur.Count, cur.Value, cur.Summary, cur.LastSeen, cur.PendingSince
	next.Members = cur.Members
	en.Alert = next
	switch {
	case next.Status == StatusClosed && cur.Status != StatusClosed:
		e.detach(en)
	case cur.Status == StatusClosed && next.Status != StatusClosed:
		e.attach(en)
	}
	e.emit(en, ev)
}

// whileActing reports whether an action on en is being saved, and then
// queues f, a versioned change of en, to run once the action is done.
// Called with mu held.
func (e *Engine) whileActing(en *entry, f func()) bool {
	if en.acting == nil {
		return false
	}
	en.deferred = append(en.deferred, f)
	return true
}

// runDeferred runs the changes of en that waited for an action. Called
// with mu held.
func (e *Engine) runDeferred(en *entry) {
	fs := en.deferred
	en.deferred = nil
	for _, f := range fs {
		f()
	}
}

// joinNote joins two notes with "; ", leaving out empty ones.
func joinNote(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// instKey says which instance or grid an alert belongs to: rule and device,
// or rule and grid for a grid-level alert.
type instKey struct{ rule, device, grid string }

// keyOf returns en's key.
func (e *Engine) keyOf(en *entry) instKey { return instKey{en.Rule, en.Device, en.Grid} }

// openFor returns the open alert of key, if any.
func (e *Engine) openFor(k instKey) *entry {
	if k.device == "" {
		return e.grids[groupKey{k.rule, k.grid}]
	}
	if d := e.devs[k.device]; d != nil {
		if in := d.insts[k.rule]; in != nil {
			return in.alert
		}
	}
	return nil
}

// closeOrder closes a work order and detaches it from its instances, so
// that the next firing raises a new alert.
func (e *Engine) closeOrder(en *entry, now time.Time, actor, note string) {
	from := en.Status
	en.Status, en.Closed = StatusClosed, now
	e.detach(en)
	e.record(en, now, actor, EventClose, string(from), string(StatusClosed), note)
}

// detach takes a closed alert out of the open ones and off its instances.
// Called with mu held.
func (e *Engine) detach(en *entry) {
	delete(e.active, en.ID)
	members := en.Members
	if en.Device != "" {
		members = []string{en.Device}
	} else if e.grids[groupKey{en.Rule, en.Grid}] == en {
		delete(e.grids, groupKey{en.Rule, en.Grid})
	}
	for _, id := range members {
		if d := e.devs[id]; d != nil {
			if in := d.insts[en.Rule]; in != nil && in.alert == en {
				in.alert = nil
				if in.phase != phasePending {
					in.phase = phaseInactive
				}
				if in.rule.Absent > 0 {
					e.recheck(d) // a device still silent raises a new alert
				}
			}
		}
	}
}

// attach makes a reopened alert open again and reattaches it to its
// instances, unless a newer alert of the rule opened for them while the
// reopening was being saved: that one keeps them. Called with mu held.
func (e *Engine) attach(en *entry) {
	e.active[en.ID] = en
	if en.Device == "" {
		if k := (groupKey{en.Rule, en.Grid}); e.grids[k] == nil {
			e.grids[k] = en
		}
	} else if d := e.devs[en.Device]; d != nil {
		if in := d.insts[en.Rule]; in != nil && in.alert == nil {
			in.alert = en
		}
	}
}

// setDeadlines starts the SLA clock of en at now.
func (e *Engine) setDeadlines(en *Alert, now time.Time) {
	ack, resolve := e.rules.File.SLA.deadlines(en.Category, en.Severity)
	en.AckDue, en.ResolveDue = now.Add(ack), now.Add(resolve)
	en.AckOverdue, en.ResolveOverdue = false, false
	en.NextReminder = now.Add(e.remindEvery())
}

// remindEvery is the reminder period of the current rules.
func (e *Engine) remindEvery() time.Duration {
	if d := e.rules.File.SLA.RemindEvery; d > 0 {
		return d
	}
	return DefaultRemindEvery
}

// runDeadlines runs en's timers: time escalation, missed deadlines
// (flagged, severity raised, notified) and reminders while unacknowledged.
func (e *Engine) runDeadlines(en *entry, now time.Time) {
	if en.Condition == ConditionPending || en.acting != nil {
		return // not a work order yet, or the next tick runs them
	}
	if r := e.ruleNamed(en.Rule); r != nil && r.Escalate != nil && en.Condition == ConditionFiring && !en.Escalated &&
		now.Sub(later(en.Fired, en.Refired)) >= r.Escalate.After && en.Severity < r.Escalate.To {
		from := en.Severity
		en.Severity, en.Escalated = r.Escalate.To, true
		e.record(en, now, ActorSystem, EventEscalate, from.String(), en.Severity.String(),
			fmt.Sprintf("firing for %s", r.Escalate.After))
	}
	if en.Status.awaitingAck() && !en.AckOverdue && !now.Before(en.AckDue) {
		en.AckOverdue = true
		e.overdue(en, now, "not acknowledged by "+en.AckDue.UTC().Format(time.RFC3339))
	}
	if en.Status.open() && !en.ResolveOverdue && !now.Before(en.ResolveDue) {
		en.ResolveOverdue = true
		e.overdue(en, now, "not resolved by "+en.ResolveDue.UTC().Format(time.RFC3339))
	}
	if en.Status.awaitingAck() && !now.Before(en.NextReminder) {
		en.NextReminder = now.Add(e.remindEvery())
		e.record(en, now, ActorSystem, EventRemind, "", "", "waiting to be acknowledged")
	}
}

// overdue records a missed deadline and raises the severity one level.
func (e *Engine) overdue(en *entry, now time.Time, note string) {
	from := en.Severity
	en.Severity = en.Severity.raise()
	e.record(en, now, ActorSystem, EventOverdue, from.String(), en.Severity.String(), note)
}

// ruleNamed returns the current rule of that name, or nil.
func (e *Engine) ruleNamed(name string) *rule { return e.rules.byName[name] }

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
