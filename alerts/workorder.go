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

// Act applies a staff action and returns the alert after it. Its errors
// wrap ErrNotFound, ErrConflict (a *ConflictError) or ErrInvalidAction.
func (e *Engine) Act(ctx context.Context, a Action) (Alert, error) {
	if err := ctx.Err(); err != nil {
		return Alert{}, err
	}
	if a.Actor == "" {
		return Alert{}, fmt.Errorf("%w: an actor is required", ErrInvalidAction)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.alerts == nil {
		return Alert{}, ErrClosed
	}
	en := e.alerts[a.ID]
	if en == nil || en.Condition == ConditionPending {
		return Alert{}, fmt.Errorf("%w: %q", ErrNotFound, a.ID)
	}
	if a.Version != en.Version {
		return Alert{}, &ConflictError{ID: a.ID, Given: a.Version, Current: en.Version}
	}
	now := e.Now()
	if a.Kind == ActionComment {
		if a.Note == "" {
			return Alert{}, fmt.Errorf("%w: a comment needs a note", ErrInvalidAction)
		}
		e.record(en, now, a.Actor, EventComment, "", "", a.Note)
		return en.clone(), nil
	}
	t, ok := transitions[a.Kind]
	if !ok {
		return Alert{}, fmt.Errorf("%w: unknown action %q", ErrInvalidAction, a.Kind)
	}
	if !slices.Contains(t.from, en.Status) {
		return Alert{}, fmt.Errorf("%w: cannot %s an alert that is %s", ErrInvalidAction, a.Kind, en.Status)
	}
	from := en.Status
	switch a.Kind {
	case ActionAck:
		en.Acked = now
	case ActionDispatch:
		unit := a.Unit
		if unit == "" {
			unit = en.Unit
		}
		if unit == "" {
			return Alert{}, fmt.Errorf("%w: no unit handles %s in grid %s: name one", ErrInvalidAction, en.Category, en.Grid)
		}
		if en.Acked.IsZero() || from.awaitingAck() {
			en.Acked = now // dispatching signs for the order too
		}
		en.Unit, en.Dispatched = unit, now
	case ActionResolve:
		en.Resolved = now
	case ActionClose:
		e.closeOrder(en, now, a.Actor, a.Note)
		return en.clone(), nil
	case ActionReopen:
		if key := e.keyOf(en); en.Status == StatusClosed && e.openFor(key) != nil {
			return Alert{}, fmt.Errorf("%w: rule %s already has a newer open alert for %s%s", ErrInvalidAction, en.Rule, key.device, key.grid)
		}
		e.reopen(en, now)
	}
	en.Status = t.to
	note := a.Note
	if a.Kind == ActionDispatch {
		note = joinNote("unit "+en.Unit, a.Note)
	}
	e.record(en, now, a.Actor, EventKind(a.Kind), string(from), string(t.to), note)
	return en.clone(), nil
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
			}
		}
	}
	e.record(en, now, actor, EventClose, string(from), string(StatusClosed), note)
}

// reopen reattaches a closed alert to its instances and restarts its
// deadlines.
func (e *Engine) reopen(en *entry, now time.Time) {
	if en.Status == StatusClosed {
		e.active[en.ID] = en
		if en.Device == "" {
			e.grids[groupKey{en.Rule, en.Grid}] = en
		} else if d := e.devs[en.Device]; d != nil {
			if in := d.insts[en.Rule]; in != nil {
				in.alert = en
			}
		}
	}
	en.Resolved, en.Closed = time.Time{}, time.Time{}
	e.setDeadlines(en, now)
}

// setDeadlines starts the SLA clock of en at now.
func (e *Engine) setDeadlines(en *entry, now time.Time) {
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
	if en.Condition == ConditionPending {
		return
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
