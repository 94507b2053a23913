package alerts

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
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
	// Revision orders the saved versions of a silence; the latest wins.
	Revision uint64 `json:"-"`
}

// AddSilence adds a silence or maintenance window and returns it with its
// id, once the Store has it: silences survive a restart.
func (e *Engine) AddSilence(ctx context.Context, s Silence) (Silence, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Silence{}, ErrClosed
	}
	now := e.now()
	if s.Actor == "" || !s.Ends.After(now) {
		e.mu.Unlock()
		return Silence{}, fmt.Errorf("%w: a silence needs an actor and an end in the future", ErrInvalidSilence)
	}
	// A misspelt rule would silence nothing while its author believes it
	// silenced.
	if s.Rule != "" && e.rules != nil && e.rules.byName[s.Rule] == nil {
		e.mu.Unlock()
		return Silence{}, fmt.Errorf("%w: no rule is named %q (rules: %s)", ErrInvalidSilence, s.Rule, strings.Join(e.rules.Names(), ", "))
	}
	// Ids are random, not a counter: they must not repeat across restarts.
	s.ID = "s" + strings.ToLower(rand.Text()[:12])
	// The store keeps milliseconds: answer what a restart will restore.
	s.Ends = s.Ends.Truncate(time.Millisecond)
	s.Revision = e.nextRevisionLocked(now)
	e.mu.Unlock()
	if err := e.saveSilence(ctx, s); err != nil {
		return Silence{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.silences = append(e.silences, s)
	return s, nil
}

// RemoveSilence ends a silence now, in the Store too.
func (e *Engine) RemoveSilence(ctx context.Context, id string) error {
	e.mu.Lock()
	i := slices.IndexFunc(e.silences, func(s Silence) bool { return s.ID == id })
	if i < 0 {
		e.mu.Unlock()
		return fmt.Errorf("%w: silence %q", ErrNotFound, id)
	}
	now := e.now()
	ended := e.silences[i]
	ended.Ends, ended.Revision = now, e.nextRevisionLocked(now)
	e.mu.Unlock()
	if err := e.saveSilence(ctx, ended); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.silences = slices.DeleteFunc(e.silences, func(s Silence) bool { return s.ID == id })
	e.unsilence([]Silence{ended}, e.now())
	return nil
}

// reloadGrace is how far back ReloadSilences reads the silences that
// ended (so that one ended elsewhere ends here at the next reload), and how
// recently a silence this engine holds must have been set for a reload that
// misses it to keep it: the read may have gone to a replica that does not
// have it yet.
const reloadGrace = time.Minute

// ReloadSilences reads the silences from the Store and takes what other
// engines (the other nodes of a cluster) did with them: a silence added
// elsewhere applies here, one changed elsewhere changes here, one ended
// elsewhere ends here too, its alerts announced as by RemoveSilence.
func (e *Engine) ReloadSilences(ctx context.Context) error {
	if e.Store == nil {
		return nil
	}
	loaded, err := e.Store.LoadSilences(ctx, e.now().Add(-reloadGrace))
	if err != nil {
		return fmt.Errorf("alerts: reload silences: %w", err)
	}
	fresh := map[string]Silence{}
	for _, s := range loaded {
		fresh[s.ID] = s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	var next, ended []Silence
	for _, s := range e.silences {
		l, ok := fresh[s.ID]
		delete(fresh, s.ID)
		if ok && l.Revision > s.Revision {
			s = l
		}
		switch {
		case !s.Ends.After(now), !ok && !time.UnixMicro(int64(s.Revision)).After(now.Add(-reloadGrace)):
			ended = append(ended, s)
		default:
			next = append(next, s)
		}
	}
	for _, s := range loaded {
		if _, ok := fresh[s.ID]; ok && s.Ends.After(now) {
			next = append(next, s)
		}
		e.revision = max(e.revision, s.Revision)
	}
	e.silences = next
	if len(ended) > 0 {
		e.unsilence(ended, now)
	}
	return nil
}

// saveSilence stores s when the engine has a Store.
func (e *Engine) saveSilence(ctx context.Context, s Silence) error {
	if e.Store == nil {
		return nil
	}
	if err := e.Store.SaveSilence(ctx, s); err != nil {
		return fmt.Errorf("alerts: save silence: %w", err)
	}
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

// expireSilences forgets ended silences and announces what they kept
// quiet. Called with mu held.
func (e *Engine) expireSilences(now time.Time) {
	var ended []Silence
	e.silences = slices.DeleteFunc(e.silences, func(s Silence) bool {
		if s.Ends.After(now) {
			return false
		}
		ended = append(ended, s)
		return true
	})
	if len(ended) > 0 {
		e.unsilence(ended, now)
	}
}

// unsilence announces the alerts that still fire and that the ended
// silences (with the silences in force) covered, and the silences in force
// no longer cover: their transitions were kept from the notifiers, which
// hear of them now. Silences end seldom, so a scan of the open alerts is
// fine. Called with mu held.
func (e *Engine) unsilence(ended []Silence, now time.Time) {
	before := append(slices.Clone(e.silences), ended...)
	for _, en := range e.active {
		// Every silence of before is in force at the zero time.
		if en.Condition != ConditionFiring || !e.coveredBy(before, time.Time{}, en.Rule, en.Device, en.Grid, en.Members, false) ||
			e.silenced(en.Rule, en.Device, en.Grid, en.Members, now, false) {
			continue
		}
		e.announce(en, now)
	}
}

// announce records that en, still firing, is no longer silenced.
func (e *Engine) announce(en *entry, now time.Time) {
	e.record(en, now, ActorSystem, EventUnsilence, "", "", "the silences covering it ended; the alert still fires")
}

// silenced reports whether silences in force (with maintenance, only
// maintenance windows) cover an alert of rule for device in grid. A
// grid-level alert (no device, members) is covered by a silence that names
// no device, or when every member is covered: silencing one device of a
// storm leaves the alert about the others loud. Called with mu held.
func (e *Engine) silenced(rule, device, grid string, members []string, now time.Time, maintenance bool) bool {
	return e.coveredBy(e.silences, now, rule, device, grid, members, maintenance)
}

// coveredBy is silenced with the silences of list in force at now.
func (e *Engine) coveredBy(list []Silence, now time.Time, rule, device, grid string, members []string, maintenance bool) bool {
	covered := func(device string) bool {
		return slices.ContainsFunc(list, func(s Silence) bool {
			return s.Ends.After(now) && (s.Maintenance || !maintenance) && (s.Rule == "" || s.Rule == rule) &&
				(s.Device == "" || s.Device == device) && (s.Grid == "" || e.InScope(s.Grid, grid))
		})
	}
	if covered(device) {
		return true
	}
	if device != "" || len(members) == 0 {
		return false
	}
	for _, m := range members {
		if !covered(m) {
			return false
		}
	}
	return true
}

// muted reports whether in may not start, or go on, towards firing: a
// maintenance window covers it, or an inhibiting rule fires for its device
// and in's rule does not inhibit. Every path to firing asks it (a new
// match, a pending `for` running out, a storm group decided), so neither
// an absence rule nor a rule that was already pending escapes a window or
// an inhibition. Called with mu held.
func (e *Engine) muted(in *instance, now time.Time) bool {
	d := in.dev
	return !in.rule.inhibiting() && d.inhibited() ||
		len(e.silences) > 0 && e.silenced(in.rule.Name, d.id, d.grid, nil, now, true)
}
