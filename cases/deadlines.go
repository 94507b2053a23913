package cases

import (
	"context"
	"errors"
	"slices"
	"time"
)

// deadline is one deadline in force on a case.
type deadline struct {
	step Step
	due  time.Time
}

// inForce returns the deadlines running on c: the one of its present step
// first, then the closing deadline when another step is present. A
// suspended case's clocks are stopped.
func inForce(c *Case) []deadline {
	var primary deadline
	switch c.Status {
	case StatusDispatched:
		primary = deadline{StepSign, c.SignDue}
	case StatusHandling:
		primary = deadline{StepHandle, c.HandleDue}
	case StatusRegistered, StatusHandled, StatusVerified:
		primary = deadline{StepClose, c.CloseDue}
	default:
		return nil
	}
	out := []deadline{primary}
	if primary.step != StepClose {
		out = append(out, deadline{StepClose, c.CloseDue})
	}
	return slices.DeleteFunc(out, func(d deadline) bool { return d.due.IsZero() })
}

// Tick records the deadline events that are due at the service's clock:
// for the present step's deadline one reminder RemindBefore it, an overdue
// event when it passes, reminders every RemindEvery after (MaxReminders in
// all), and escalation EscalateAfter it; an overdue event when the closing
// deadline passes; and the self-verification of a handled sensor case
// whose condition stayed clear for ClearFor. It forgets the cases closed
// for longer than KeepClosed. The deadline loop calls it
// every TickEvery; a failed save is retried at the next tick.
func (s *Service) Tick(ctx context.Context) {
	if s.Revisions != nil {
		s.syncLogged(ctx)
	}
	now := s.Now()
	s.forget()
	s.mu.RLock()
	var due []*entry
	for _, en := range s.cases {
		if c := en.c.Clone(); len(s.systemEvents(&c, en.clearSince(), now)) > 0 {
			due = append(due, en)
		}
	}
	s.mu.RUnlock()
	for _, en := range due {
		if ctx.Err() != nil {
			return
		}
		en.act.Lock()
		_, err := s.commit(ctx, []*entry{en}, func(curs []Case, now time.Time) ([]Case, []Event, error) {
			cur := curs[0]
			s.mu.RLock()
			clear := en.clearSince()
			s.mu.RUnlock()
			next := cur.Clone()
			evs := s.systemEvents(&next, clear, now)
			if len(evs) == 0 {
				return nil, nil, errNothingDue
			}
			return []Case{next}, s.seal(&next, cur.Status, System, now, evs...), nil
		})
		if err != nil && !errors.Is(err, errNothingDue) {
			s.Logger.Warn("case deadline event not saved: retried at the next tick", "case", s.current(en).ID, "err", err)
		}
		en.act.Unlock()
	}
}

// errNothingDue tells Tick that a case has no deadline event due once
// read afresh.
var errNothingDue = errors.New("nothing due")

// forget drops the cases closed for longer than KeepClosed from memory.
func (s *Service) forget() {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, en := range s.cases {
		if !en.c.Open() && en.c.Updated.Before(now.Add(-s.KeepClosed)) {
			s.forgetLocked(id, &en.c)
		}
	}
}

// forgetLocked drops a case closed for longer than KeepClosed from memory
// (Get reads it from the Store). Called with mu held.
func (s *Service) forgetLocked(id string, c *Case) {
	delete(s.cases, id)
	s.idx.remove(c)
	for _, o := range append([]string{c.Origin}, c.Joined...) {
		if k := originKey(c.Source, o); o != "" && s.origins[k] == id {
			delete(s.origins, k)
		}
	}
}

// systemEvents returns the system events due on c at now, and applies
// them to c: pass a copy.
func (s *Service) systemEvents(c *Case, clearSince, now time.Time) []Event {
	var evs []Event
	if c.Status == StatusHandled && (c.Source == SourceAlert || c.Source == SourceCamera) &&
		!clearSince.IsZero() && !now.Before(clearSince.Add(s.ClearFor)) {
		c.Status = StatusVerified
		return []Event{{Kind: EventVerifyPass, To: StatusVerified,
			Note: "the condition stayed clear since " + clearSince.UTC().Format(time.RFC3339)}}
	}
	for i, d := range inForce(c) {
		if !slices.Contains(c.Overdue, string(d.step)) && now.After(d.due) {
			c.Overdue = append(c.Overdue, string(d.step))
			evs = append(evs, Event{Kind: EventOverdue, Due: d.due, Note: string(d.step)})
		}
		if i > 0 {
			continue // reminders and escalation follow the present step only
		}
		n := int(c.Reminders)
		next := d.due.Add(-s.RemindBefore)
		if n > 0 {
			next = d.due.Add(time.Duration(n) * s.RemindEvery)
		}
		if n < s.MaxReminders && !now.Before(next) {
			// A reminder missed while the service was down is sent once,
			// not once per interval missed.
			c.Reminders = uint8(max(n+1, 1+int(max(0, now.Sub(d.due))/s.RemindEvery)))
			c.Reminders = min(c.Reminders, uint8(s.MaxReminders))
			evs = append(evs, Event{Kind: EventRemind, Due: d.due, Note: string(d.step)})
		}
		if !c.Escalated && !now.Before(d.due.Add(s.EscalateAfter)) {
			c.Escalated, c.Supervised = true, true
			evs = append(evs, Event{Kind: EventEscalate, Due: d.due, Note: string(d.step)})
		}
	}
	return evs
}
