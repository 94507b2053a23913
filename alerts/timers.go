package alerts

import (
	"container/heap"
	"fmt"
	"time"
)

// The engine's timers are kept where RunTimers finds what is due without
// walking every device and every alert under mu each tick:
//
//   - Engine.escalations holds each firing alert whose rule escalates it at
//     the time it is due to escalate; see escalationDue.
//   - Engine.silence holds each device with absence rules at the time its
//     absence rules need looking at; see checkAbsence.
//   - Engine.waiting holds the instances of value rules whose `for` or
//     clear_for runs.
//
// The heaps are lazy: an item whose time is not its owner's due time is
// stale and skipped. An owner is pushed again only when it is due
// earlier than it is already held, so a heap holds few stale items.

// due is an item of a timer heap.
type due[T any] struct {
	at time.Time
	x  T
}

// dueHeap is a min-heap of items by time.
type dueHeap[T any] []due[T]

func (h dueHeap[T]) Len() int           { return len(h) }
func (h dueHeap[T]) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap[T]) Push(x any)        { *h = append(*h, x.(due[T])) }
func (h *dueHeap[T]) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = due[T]{}
	*h = old[:len(old)-1]
	return x
}

// popDue removes and returns the items due at now.
func popDue[T any](h *dueHeap[T], now time.Time) []due[T] {
	var out []due[T]
	for len(*h) > 0 && !(*h)[0].at.After(now) {
		out = append(out, heap.Pop(h).(due[T]))
	}
	return out
}

// schedule puts en in the escalation heap at the time its rule escalates
// it, unless it is held there at that time or earlier. Called with mu held,
// whenever en's escalation may have moved (every event).
func (e *Engine) schedule(en *entry) {
	at, ok := e.escalationDue(en)
	if !ok || !en.due.IsZero() && !at.Before(en.due) {
		return
	}
	en.due = at
	heap.Push(&e.escalations, due[*entry]{at, en})
}

// escalationDue returns when runEscalations may next escalate en, and false
// when it cannot until en changes otherwise.
func (e *Engine) escalationDue(en *entry) (time.Time, bool) {
	r := e.rules.byName[en.Rule]
	if r == nil || r.Escalate == nil || en.Condition != ConditionFiring || en.Escalated || en.Severity >= r.Escalate.To {
		return time.Time{}, false
	}
	return en.Fired.Add(r.Escalate.After), true
}

// runEscalations raises the severity of the firing alerts that have fired
// for their rule's escalate.after. Called with mu held.
func (e *Engine) runEscalations(now time.Time) {
	for _, it := range popDue(&e.escalations, now) {
		en := it.x
		if !it.at.Equal(en.due) {
			continue // stale: en was pushed again, earlier
		}
		en.due = time.Time{}
		if e.active[en.ID] != en {
			continue // cleared or pruned
		}
		if at, ok := e.escalationDue(en); ok && !now.Before(at) {
			r := e.rules.byName[en.Rule]
			from := en.Severity
			en.Severity, en.Escalated = r.Escalate.To, true
			e.record(en, now, ActorSystem, EventEscalate, from.String(), en.Severity.String(),
				fmt.Sprintf("firing for %s", r.Escalate.After))
		}
		e.schedule(en)
	}
}

// arm puts d in the absence heap at at, unless it is held there at that
// time or earlier. Called with mu held.
func (e *Engine) arm(d *deviceState, at time.Time) {
	if !d.due.IsZero() && !at.Before(d.due) {
		return
	}
	d.due = at
	heap.Push(&e.silence, due[*deviceState]{at, d})
}

// recheck has the next RunTimers look at d's absence rules, as one of
// their instances changed phase. Called with mu held.
func (e *Engine) recheck(d *deviceState) { e.arm(d, d.lastSeen) }

// runAbsence runs the absence rules of the devices that are due. Called
// with mu held.
func (e *Engine) runAbsence(now time.Time) {
	for _, it := range popDue(&e.silence, now) {
		d := it.x
		if !it.at.Equal(d.due) {
			continue
		}
		d.due = time.Time{}
		if at, ok := e.checkAbsence(d, now); ok {
			e.arm(d, at)
		}
	}
}

// checkAbsence runs d's absence rules against the time since its last
// observation, and returns when they need looking at again; false when d
// has none (a rule change or a new grid arms it again, see index) or this
// node does not own it.
func (e *Engine) checkAbsence(d *deviceState, now time.Time) (time.Time, bool) {
	if !d.owned {
		return time.Time{}, false // its owner watches it; Owned arms it here
	}
	e.index(d)
	if e.Heard != nil && e.unheard(d, now) {
		return time.Time{}, false // settleHeard looks again
	}
	var next time.Time
	ok := false
	for _, r := range d.absence {
		window := absenceWindow(r, d)
		silent := now.Sub(d.lastSeen) >= window
		in := d.insts[r.Name]
		if !(in == nil && !silent || in != nil && silent && in.phase >= phaseHeld) {
			// Something to start, or to end: silence is no repeat.
			in = d.instance(r)
			in.cond, in.clr = silent, !silent
			e.step(in, now, now.Sub(d.lastSeen).Seconds())
		}
		var at time.Time
		switch {
		case in != nil && (in.phase == phasePending || in.phase == phaseClearing),
			silent && (in == nil || in.phase < phaseHeld):
			// A `for` or clear_for runs, or a silent device is muted
			// (maintenance, inhibition) and asks again every tick.
			at = now.Add(time.Nanosecond)
		case silent:
			// Firing or held: nothing changes before the device reports,
			// and its observation rechecks it; look now and then anyway
			// (with Heard, every report interval: a reading another node
			// heard ends the silence only once Heard is asked).
			at = now.Add(window)
			if e.Heard != nil && d.typ.Interval > 0 {
				at = now.Add(min(window, d.typ.Interval))
			}
		default:
			at = d.lastSeen.Add(window)
		}
		if !ok || at.Before(next) {
			next, ok = at, true
		}
	}
	return next, ok
}

// wait has RunTimers step in, a value rule's instance whose `for` or
// clear_for started to run. Called with mu held.
func (e *Engine) wait(in *instance) {
	if in.rule.Absent > 0 {
		e.recheck(in.dev)
		return
	}
	e.waiting[in] = struct{}{}
}

// runWaiting steps the instances whose `for` or clear_for runs, and
// forgets those whose phase moved on. Called with mu held.
func (e *Engine) runWaiting(now time.Time) {
	for in := range e.waiting {
		if in.phase != phasePending && in.phase != phaseClearing || in.rule.Absent > 0 {
			delete(e.waiting, in)
			continue
		}
		e.step(in, now, in.dev.latest[in.rule.Metric])
	}
}
