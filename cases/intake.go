package cases

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is a case reported (受理): by a grid manager on patrol, an
// operator, a 12345 hotline ticket, or the system for an alert.
type Report struct {
	Source Source
	// Actor is who hands the report in; it is the case's reporter unless
	// Reporter names another (a hotline caller's reference).
	Actor    Actor
	Reporter string
	// Origin is the outside key (alert id, hotline ticket number): a report
	// with the source and origin of a case already held returns that case.
	Origin      string
	Category    string
	Description string
	Location    *Point
	Address     string
	Grid        string
	Device      string
	// Evidence are content hashes of photos (see Photos).
	Evidence []string
	// Within, when set, is the reporter's scope: a report whose grid (given
	// or found from the location) lies outside it is refused.
	Within func(grid string) bool
	// id is the new case's id when the caller chose it (a claimed alert
	// condition's); empty makes one.
	id string
}

// MaxTextLen bounds a report's description and an action's note (bytes).
const MaxTextLen = 4000

// reporters are the roles that may hand in a report of each source.
var reporters = map[Source][]Role{
	SourcePatrol:   {RoleReporter, RoleOperator, RoleDispatcher, RoleSupervisor, RoleAdmin},
	SourceOperator: {RoleOperator, RoleDispatcher, RoleSupervisor, RoleAdmin},
	SourceHotline:  {RoleOperator, RoleDispatcher, RoleAdmin, RoleSystem},
	SourceAlert:    {RoleSystem},
	SourceCamera:   {RoleSystem},
}

// Report takes a case in and returns it, stored, and whether it is new:
// a report whose source and origin match a case held returns that case.
// A sensor or camera case is registered and dispatched by the system at
// once when its category, grid and unit are known; the others wait for
// the command centre to register them.
func (s *Service) Report(ctx context.Context, r Report) (Case, bool, error) {
	c, created, err := s.report(ctx, r)
	if err != nil {
		s.refused(err)
	}
	return c, created, err
}

func (s *Service) report(ctx context.Context, r Report) (Case, bool, error) {
	roles, ok := reporters[r.Source]
	if !ok {
		return Case{}, false, fmt.Errorf("%w: unknown source %q (alert, camera, patrol, hotline, operator)", ErrInvalidAction, r.Source)
	}
	if r.Actor.Name == "" || !slices.Contains(roles, r.Actor.Role) {
		return Case{}, false, fmt.Errorf("%w: a %s report needs the role %s, not %q", ErrForbidden, r.Source, roleList(roles), r.Actor.Role)
	}
	if err := r.validate(); err != nil {
		return Case{}, false, err
	}
	if r.Origin != "" {
		s.intake.Lock()
		defer s.intake.Unlock()
		s.mu.RLock()
		en := s.cases[s.origins[originKey(r.Source, r.Origin)]]
		var existing Case
		if en != nil {
			existing = en.c.Clone()
		}
		s.mu.RUnlock()
		if en != nil && (existing.Open() || r.Source == SourceHotline) {
			return existing, false, nil
		}
	}
	now := s.Now()
	if r.id == "" {
		r.id = newID(now.In(s.Location))
	}
	c := Case{
		ID: r.id, Source: r.Source, Reporter: cmpOr(r.Reporter, r.Actor.Name), Origin: r.Origin,
		Category: r.Category, Description: r.Description, Location: r.Location, Address: r.Address,
		Grid: r.Grid, Device: r.Device, Status: StatusReceived, Received: now, Evidence: slices.Clone(r.Evidence),
	}
	if c.Grid == "" && c.Location != nil && s.Locate != nil {
		c.Grid, _ = s.Locate(c.Location.Lat, c.Location.Lon)
	}
	if r.Within != nil && !r.Within(c.Grid) {
		return Case{}, false, fmt.Errorf("%w: the case's grid %q is outside the reporter's scope", ErrForbidden, c.Grid)
	}
	evs := s.seal(&c, "", r.Actor, now, Event{Kind: EventReceive, Note: r.Description, Evidence: r.Evidence})
	if r.Source == SourceAlert || r.Source == SourceCamera {
		evs = append(evs, s.autoDispatch(&c, now)...)
	}
	en := &entry{}
	s.mu.Lock()
	if s.closed || s.cases == nil {
		s.mu.Unlock()
		return Case{}, false, ErrClosed
	}
	s.mu.Unlock()
	en.act.Lock()
	defer en.act.Unlock()
	if err := s.save(ctx, nil, []Case{c}, evs); err != nil {
		return Case{}, false, err
	}
	s.mu.Lock()
	en.c, en.events = c, evs
	s.cases[c.ID] = en
	if c.Origin != "" {
		s.origins[originKey(c.Source, c.Origin)] = c.ID
	}
	s.mu.Unlock()
	return c, true, nil
}

// cmpOr returns a unless it is empty, else b.
func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// validate checks what every report needs.
func (r *Report) validate() error {
	switch {
	case len(r.Description) > MaxTextLen:
		return fmt.Errorf("%w: the description may hold at most %d bytes", ErrInvalidAction, MaxTextLen)
	case r.Source == SourceHotline && strings.TrimSpace(r.Description) == "":
		return fmt.Errorf("%w: a hotline ticket needs a description", ErrInvalidAction)
	case r.Source == SourcePatrol && r.Category == "":
		return fmt.Errorf("%w: a patrol report needs a category", ErrInvalidAction)
	case r.Location == nil && r.Address == "" && r.Grid == "":
		return fmt.Errorf("%w: a report needs a location (lat, lon), an address or a grid", ErrInvalidAction)
	}
	return r.Location.validate()
}

// autoDispatch registers and dispatches a sensor case as the system, as
// far as it can: a case without a known category or grid, or with an open
// duplicate, waits received; one no unit handles waits registered.
func (s *Service) autoDispatch(c *Case, now time.Time) []Event {
	next := c.Clone()
	if err := s.check(&next, false); err != nil {
		s.Logger.Info("sensor case left for the command centre to register", "case", c.ID, "reason", err)
		return nil
	}
	next.Status = StatusRegistered
	next.CloseDue = s.Timing.Due(next.Category, StepClose, now)
	evs := s.seal(&next, c.Status, System, now, Event{Kind: EventRegister, Due: next.CloseDue})
	if s.Route != nil {
		if unit := s.Route(s.route(next.Category), next.Grid); unit != "" {
			from := next.Status
			next.Status, next.Unit, next.Dispatcher = StatusDispatched, unit, System.Name
			s.startDispatch(&next, now)
			evs = append(evs, s.seal(&next, from, System, now, Event{Kind: EventDispatch, Due: next.SignDue})...)
		}
	}
	*c = next
	return evs
}

// AlertInfo is what the case loop needs of an alert transition.
type AlertInfo struct {
	// ID is the alert's id, the case's origin.
	ID string
	// Source is SourceAlert for a device alert, SourceCamera for a camera
	// fault.
	Source   Source
	Device   string
	Grid     string
	Category string
	Summary  string
	Location *Point
	// Firing is the alert's condition: firing, or cleared since ClearedAt.
	Firing    bool
	ClearedAt time.Time
	// Since is when the alert last started firing: an alert whose case
	// was closed raises a new one only when it fired again after.
	Since time.Time
}

// ObserveAlert is the alert engine's door into the case loop: a firing
// alert raises a case, or joins the open case of its device and category
// (a note on it); a clearing one counts towards the self-verification of
// its case, which starts once every alert of the case cleared. It returns
// the id of the alert's case, empty when it has none (a cleared alert that
// never raised one). It is idempotent: the same transition twice changes
// nothing more, and an alert whose case was closed or voided raises a new
// one only when it fired again after.
func (s *Service) ObserveAlert(ctx context.Context, a AlertInfo) (string, error) {
	s.mu.Lock()
	if s.cases == nil || s.closed {
		s.mu.Unlock()
		return "", ErrClosed
	}
	en := s.cases[s.origins[originKey(a.Source, a.ID)]]
	if en != nil && en.c.Open() {
		en.observe(a)
		id := en.c.ID
		s.mu.Unlock()
		return id, nil
	}
	if en != nil && !a.Since.After(en.c.Updated) {
		id := en.c.ID
		s.mu.Unlock()
		return id, nil // its case was closed since it fired
	}
	var join *entry
	if a.Firing && a.Device != "" {
		for _, o := range s.cases {
			if o.c.Open() && o.c.Device == a.Device && o.c.Category == a.Category && o.c.Source == a.Source {
				join = o
				break
			}
		}
	}
	s.mu.Unlock()
	if !a.Firing {
		return "", nil
	}
	id := ""
	if join == nil && s.Claims != nil && a.Device != "" {
		id = newID(s.Now().In(s.Location))
		var err error
		if join, err = s.claim(ctx, a, id); err != nil {
			s.refused(err)
			return "", err
		}
	}
	if join != nil {
		return s.join(ctx, join, a)
	}
	c, _, err := s.Report(ctx, Report{
		Source: a.Source, Actor: System, Reporter: a.Device, Origin: a.ID, Category: a.Category,
		Description: a.Summary, Location: a.Location, Grid: a.Grid, Device: a.Device, id: id,
	})
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if en := s.cases[c.ID]; en != nil {
		en.observe(a)
	}
	s.mu.Unlock()
	return c.ID, nil
}

// join records alert a on the open case of en and returns the case's id.
func (s *Service) join(ctx context.Context, en *entry, a AlertInfo) (string, error) {
	en.act.Lock()
	defer en.act.Unlock()
	cs, err := s.commit(ctx, []*entry{en}, func(curs []Case, now time.Time) ([]Case, []Event, error) {
		cur := curs[0]
		if !cur.Open() {
			return nil, nil, errNothingDue // closed meanwhile: the next transition raises a new case
		}
		next := cur.Clone()
		next.Joined = appendNew(next.Joined, a.ID)
		evs := s.seal(&next, cur.Status, System, now, Event{Kind: EventNote, Note: "alert " + a.ID + " joined: " + a.Summary})
		return []Case{next}, evs, nil
	})
	if errors.Is(err, errNothingDue) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.origins[originKey(a.Source, a.ID)] = cs[0].ID
	en.observe(a)
	s.mu.Unlock()
	return cs[0].ID, nil
}
