package alerts

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Silence mutes alerts until it ends. A plain silence lets alerts fire and
// be traced but marks their transitions Silenced, so that notifiers stay
// quiet; a maintenance window keeps matching devices from raising alerts at
// all. Empty matchers match everything.
type Silence struct {
	// ID is set by AddSilence.
	ID string `json:"id"`
	// Rule, Device and Grid (with the grids below it) select the alerts.
	Rule   string `json:"rule,omitempty"`
	Device string `json:"device,omitempty"`
	Grid   string `json:"grid,omitempty"`
	// Maintenance makes it a maintenance window.
	Maintenance bool `json:"maintenance"`
	// Ends is when it stops muting. Required, in the future.
	Ends time.Time `json:"ends"`
	// Actor and Reason say who set it and why.
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
}

// AddSilence adds a silence or maintenance window and returns it with its
// id. Silences live in memory: they end at their end time or at a restart.
func (e *Engine) AddSilence(s Silence) (Silence, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Silence{}, ErrClosed
	}
	if s.Actor == "" || !s.Ends.After(e.now()) {
		return Silence{}, fmt.Errorf("%w: a silence needs an actor and an end in the future", ErrInvalidAction)
	}
	e.seq++
	s.ID = "s" + strconv.FormatUint(e.seq, 36)
	e.silences = append(e.silences, s)
	return s, nil
}

// RemoveSilence ends a silence now.
func (e *Engine) RemoveSilence(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.IndexFunc(e.silences, func(s Silence) bool { return s.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: silence %q", ErrNotFound, id)
	}
	e.silences = slices.Delete(e.silences, i, i+1)
	return nil
}

// Silences returns the silences in force.
func (e *Engine) Silences() []Silence {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireSilences(e.now())
	return slices.Clone(e.silences)
}

// now is the engine clock, usable before Start.
func (e *Engine) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

// expireSilences forgets ended silences. Called with mu held.
func (e *Engine) expireSilences(now time.Time) {
	e.silences = slices.DeleteFunc(e.silences, func(s Silence) bool { return !s.Ends.After(now) })
}

// silenced reports whether a silence (or, with maintenance, a maintenance
// window) in force covers an alert of rule for device in grid. Called with
// mu held.
func (e *Engine) silenced(rule, device, grid string, members []string, now time.Time, maintenance bool) bool {
	for _, s := range e.silences {
		if !s.Ends.After(now) || maintenance && !s.Maintenance ||
			s.Rule != "" && s.Rule != rule ||
			s.Device != "" && s.Device != device && !slices.Contains(members, s.Device) ||
			s.Grid != "" && !e.InScope(s.Grid, grid) {
			continue
		}
		return true
	}
	return false
}
