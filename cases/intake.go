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
	if err := r.admit(); err != nil {
		return Case{}, false, err
	}
	if r.Origin != "" {
		s.intake.Lock()
		defer s.intake.Unlock()
		if existing, ok := s.byOrigin(r.Source, r.Origin); ok && (existing.Open() || r.Source == SourceHotline) {
			return existing, false, nil
		}
	}
	c, evs, err := s.receive(r, s.Now(), nil)
	if err != nil {
		return Case{}, false, err
	}
	if err := s.saveNew(ctx, []Case{c}, evs); err != nil {
		return Case{}, false, err
	}
	return c, true, nil
}

// admit checks that the report's actor may hand in a report of its source
// and that the report has what every report needs.
func (r *Report) admit() error {
	roles, ok := reporters[r.Source]
	if !ok {
		return fmt.Errorf("%w: unknown source %q (alert, camera, patrol, hotline, operator)", ErrInvalidAction, r.Source)
	}
	if r.Actor.Name == "" || !slices.Contains(roles, r.Actor.Role) {
		return fmt.Errorf("%w: a %s report needs the role %s, not %q", ErrForbidden, r.Source, roleList(roles), r.Actor.Role)
	}
	return r.validate()
}

// byOrigin returns a copy of the case held with the source and origin.
func (s *Service) byOrigin(src Source, origin string) (Case, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	en := s.cases[s.origins[originKey(src, origin)]]
	if en == nil {
		return Case{}, false
	}
	return en.c.Clone(), true
}

// receive plans the new case of an admitted report at now, with its
// events: a sensor or camera case registered and dispatched as far as
// the system can. also are the new cases to be stored with it, which
// count as possible duplicates.
func (s *Service) receive(r Report, now time.Time, also []Case) (Case, []Event, error) {
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
		return Case{}, nil, fmt.Errorf("%w: the case's grid %q is outside the reporter's scope", ErrForbidden, c.Grid)
	}
	evs := s.seal(&c, "", r.Actor, now, Event{Kind: EventReceive, Note: r.Description, Evidence: r.Evidence})
	if r.Source == SourceAlert || r.Source == SourceCamera {
		evs = append(evs, s.autoDispatch(&c, now, also)...)
	}
	return c, evs, nil
}

// saveNew stores new cases with their events and then holds them: a case
// is seen (in List, Get, by its origin) only once it is stored.
func (s *Service) saveNew(ctx context.Context, cs []Case, evs []Event) error {
	s.mu.RLock()
	started := s.cases != nil
	s.mu.RUnlock()
	if !started {
		return ErrClosed
	}
	if err := s.save(ctx, nil, cs, evs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byCase := make(map[string][]Event, len(cs))
	for _, ev := range evs {
		byCase[ev.CaseID] = append(byCase[ev.CaseID], ev)
	}
	for _, c := range cs {
		s.cases[c.ID] = &entry{c: c, events: byCase[c.ID]}
		s.indexLocked(nil, &c)
	}
	return nil
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
// duplicate (held, or in also), waits received; one no unit handles waits
// registered.
func (s *Service) autoDispatch(c *Case, now time.Time, also []Case) []Event {
	next := c.Clone()
	if err := s.check(&next, false, also); err != nil {
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
	o := s.ObserveAlerts(ctx, []AlertInfo{a})[0]
	return o.Case, o.Err
}

// MaxAlertBatch is how many new cases ObserveAlerts stores in one save.
const MaxAlertBatch = 500

// Observed is what became of one alert transition: the id of its case
// (see ObserveAlert), or the error that kept it out.
type Observed struct {
	Case string
	Err  error
}

// ObserveAlerts is ObserveAlert for many transitions, in order: the new
// cases they raise are stored together, MaxAlertBatch to a save, so that a
// flood of alerts opens its cases at the pace of ClickHouse's inserts of
// many rows rather than of a round trip per case. A transition whose
// alert, or device and category, is that of a case raised by an earlier
// one of the same save is taken after that save, as if one by one.
func (s *Service) ObserveAlerts(ctx context.Context, as []AlertInfo) []Observed {
	out := make([]Observed, len(as))
	todo := make([]int, len(as))
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		todo = s.observeRound(ctx, as, todo, out)
	}
	for _, o := range out {
		if o.Err != nil {
			s.refused(o.Err)
		}
	}
	return out
}

// observeRound takes the transitions todo of as, filling out, and
// returns those left for the next round: the ones that follow a case
// this round raises, and those past MaxAlertBatch new cases.
func (s *Service) observeRound(ctx context.Context, as []AlertInfo, todo []int, out []Observed) []int {
	s.intake.Lock()
	defer s.intake.Unlock()
	var (
		later  []int
		raised []int // the transitions whose new cases are in fresh
		fresh  []Case
		evs    []Event
		taken  = map[string]bool{} // the origins and device keys of fresh
		now    = s.Now()
	)
	for _, i := range todo {
		a := as[i]
		if taken[originKey(a.Source, a.ID)] || a.Device != "" && taken[deviceKey(a.Source, a.Device, a.Category)] || len(fresh) == MaxAlertBatch {
			later = append(later, i)
			continue
		}
		id, join, err := s.triage(a)
		switch {
		case err != nil:
			out[i].Err = err
			continue
		case join != nil:
			out[i].Case, out[i].Err = s.join(ctx, join, a)
			continue
		case id != "" || !a.Firing:
			out[i].Case = id
			continue
		}
		r := Report{Source: a.Source, Actor: System, Reporter: a.Device, Origin: a.ID, Category: a.Category,
			Description: a.Summary, Location: a.Location, Grid: a.Grid, Device: a.Device}
		if err := r.admit(); err != nil {
			out[i].Err = err
			continue
		}
		if s.Claims != nil && a.Device != "" {
			r.id = newID(now.In(s.Location))
			if join, err := s.claim(ctx, a, r.id); err != nil || join != nil {
				if out[i].Err = err; join != nil {
					out[i].Case, out[i].Err = s.join(ctx, join, a)
				}
				continue
			}
		}
		c, cevs, err := s.receive(r, now, fresh)
		if err != nil {
			out[i].Err = err
			continue
		}
		raised, fresh, evs = append(raised, i), append(fresh, c), append(evs, cevs...)
		taken[originKey(a.Source, a.ID)] = true
		if a.Device != "" {
			taken[deviceKey(a.Source, a.Device, a.Category)] = true
		}
	}
	if len(fresh) == 0 {
		return later
	}
	if err := s.saveNew(ctx, fresh, evs); err != nil {
		for _, i := range raised {
			out[i].Err = err
		}
		return later
	}
	s.mu.Lock()
	for j, i := range raised {
		out[i].Case = fresh[j].ID
		s.cases[fresh[j].ID].observe(as[i])
	}
	s.mu.Unlock()
	return later
}

// deviceKey keys the open sensor cases alerts of a device join.
func deviceKey(src Source, device, category string) string {
	return string(src) + "/" + device + "/" + category
}

// triage looks at what alert a means for the cases held: the id of the
// case it already belongs to (whose condition it updates), or the open
// case of its device and category it joins, or neither (a firing alert
// then raises a case). An alert whose case was closed or voided since it
// fired keeps that case.
func (s *Service) triage(a AlertInfo) (id string, join *entry, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cases == nil || s.closed {
		return "", nil, ErrClosed
	}
	en := s.cases[s.origins[originKey(a.Source, a.ID)]]
	if en != nil && en.c.Open() {
		en.observe(a)
		return en.c.ID, nil, nil
	}
	if en != nil && !a.Since.After(en.c.Updated) {
		return en.c.ID, nil, nil // its case was closed since it fired
	}
	if a.Firing && a.Device != "" {
		for id := range s.idx.ofDevice(a.Device) {
			if o := s.cases[id]; o.c.Open() && o.c.Category == a.Category && o.c.Source == a.Source {
				return "", o, nil
			}
		}
	}
	return "", nil, nil
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
