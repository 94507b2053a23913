package cases

import (
	"fmt"
	"time"
)

// Schedule is the Timing of a business calendar and a category table: a
// step's deadline is the category's limit for it, counted on the calendar.
type Schedule struct {
	Calendar   *Calendar
	Categories *Categories
}

// limit returns the category's limit of step; an unknown category has
// none.
func (s Schedule) limit(category string, step Step) Limit {
	c, ok := s.Categories.Get(category)
	if !ok {
		return Limit{}
	}
	switch step {
	case StepSign:
		return c.Limits.SignFor
	case StepHandle:
		return c.Limits.Handle
	default:
		return c.Limits.Close
	}
}

// Due implements Timing.
func (s Schedule) Due(category string, step Step, from time.Time) time.Time {
	return s.Calendar.Due(from, s.limit(category, step))
}

// Extend implements Timing: the extension is counted from the deadline it
// moves.
func (s Schedule) Extend(due time.Time, x Limit) (time.Time, error) {
	if _, err := ParseLimit(x.String()); err != nil {
		return time.Time{}, fmt.Errorf("extension: %w", err)
	}
	if due.IsZero() {
		return time.Time{}, fmt.Errorf("extension: the case has no deadline to extend")
	}
	return s.Calendar.Due(due, x), nil
}

// Resume implements Timing: the time left at the suspension is counted
// again from the resumption, in working time, or in natural time for a
// category whose handling limit runs in natural hours. A deadline already
// passed when the clock stopped stays as it was.
func (s Schedule) Resume(category string, due, paused, resumed time.Time) time.Time {
	if !due.After(paused) {
		return due
	}
	if s.limit(category, StepHandle).Unit == NaturalHours {
		return resumed.Add(due.Sub(paused))
	}
	left := s.Calendar.WorkingBetween(paused, due)
	return s.Calendar.Due(resumed, Limit{N: left.Hours(), Unit: WorkingHours})
}
