package cases

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geo"
	"github.com/prometheus/client_golang/prometheus"
)

// Step names a deadline of a case.
type Step string

// Steps with a time limit.
const (
	StepSign   Step = "sign"   // 签收, counted from the dispatch
	StepHandle Step = "handle" // 处置, counted from the sign-for (from a failed verification for rework)
	StepClose  Step = "close"  // 结案, counted from the registration
)

// Timing computes deadlines in working time: the business calendar and the
// categories' time limits.
type Timing interface {
	// Due returns the deadline of step for a case of category whose clock
	// for it starts at from.
	Due(category string, step Step, from time.Time) time.Time
	// Extend returns due moved later by x, counted the way x.Unit says; an
	// error names what is wrong with x.
	Extend(due time.Time, x Limit) (time.Time, error)
	// Resume returns the deadline due of a case of category whose clock
	// stopped at paused and restarts at resumed: the time it had left at
	// paused, counted again from resumed.
	Resume(category string, due, paused, resumed time.Time) time.Time
}

// Store keeps cases and their events; *storage.DB is one.
type Store interface {
	// SaveCases stores the events, then the rows of the cases they lead
	// to; it returns once both are stored.
	SaveCases(ctx context.Context, cs []Case, revision uint64, events []Event) error
	// LoadCases returns the latest row of every case that is open or was
	// closed (or voided) at or after closedSince, with their events up to
	// each case's version, oldest first.
	LoadCases(ctx context.Context, closedSince time.Time) ([]Case, []Event, error)
	// LoadCase returns one case and its events, ErrNotFound when none.
	LoadCase(ctx context.Context, id string) (Case, []Event, error)
	// LoadCasesChanged returns the latest row of every case saved (by any
	// node) at a revision at or after since, with its events.
	LoadCasesChanged(ctx context.Context, since uint64) ([]Case, []Event, error)
}

// Service defaults.
const (
	DefaultDuplicateRadius = 50.0 // metres
	DefaultKeepClosed      = 30 * 24 * time.Hour
	DefaultTickEvery       = 30 * time.Second
	DefaultRemindBefore    = 30 * time.Minute
	DefaultRemindEvery     = 2 * time.Hour
	DefaultMaxReminders    = 3
	DefaultEscalateAfter   = 4 * time.Hour
	DefaultClearFor        = time.Hour
	DefaultSaveTimeout     = 10 * time.Second
)

// Service is the case loop: it holds the open cases (and those closed
// within KeepClosed) in memory, rebuilt from the Store at Start, takes
// every action through the lifecycle and answers it only once the Store
// holds it, and records the deadline events (reminders, overdue,
// escalation) as the system.
//
// Lock order: an entry's act (held while its action is saved), then mu.
// Two entries (a merge) are locked in id order.
type Service struct {
	// Store keeps the cases. Required.
	Store Store
	// Timing computes deadlines. Required.
	Timing Timing
	// Category checks a category code and returns the routing category
	// of its units (municipal, water…); nil accepts any code and routes
	// by the code itself.
	Category func(code string) (route string, ok bool)
	// Route returns the unit handling a routing category in a grid, ""
	// when none does; nil leaves every dispatch to name its unit.
	Route func(category, grid string) string
	// Locate returns the grid cell of a point; nil leaves the grid to the
	// report.
	Locate func(lat, lon float64) (grid string, ok bool)
	// DuplicateRadius is how near (metres) an open case of the same
	// category must be to count as a possible duplicate. It defaults to 50.
	DuplicateRadius float64
	// KeepClosed is how long a closed or voided case stays in memory (and
	// in List); older ones are read from the Store by Get. It defaults to
	// 30 days.
	KeepClosed time.Duration
	// TickEvery is how often deadlines are checked. It defaults to 30 s.
	TickEvery time.Duration
	// RemindBefore is how long before a deadline the first reminder goes
	// out. It defaults to 30 minutes.
	RemindBefore time.Duration
	// RemindEvery is the interval of the reminders after a deadline
	// passed. It defaults to 2 hours.
	RemindEvery time.Duration
	// MaxReminders bounds the reminders of one deadline. It defaults to 3.
	MaxReminders int
	// EscalateAfter is how long a case is overdue before it is escalated
	// (and flagged supervised). It defaults to 4 hours.
	EscalateAfter time.Duration
	// ClearFor is how long the condition of a handled sensor case must
	// have stayed clear for the case to verify itself. It defaults to 1
	// hour.
	ClearFor time.Duration
	// Location is the timezone of the date in case ids (the business
	// calendar's). It defaults to UTC.
	Location *time.Location
	// Revisions holds the cases' versions cluster-wide when several nodes
	// act on them; nil: this process alone does.
	Revisions Revisions
	// Claims names the case of each alert condition cluster-wide when the
	// alert engines of several nodes raise cases; nil: this process alone
	// does.
	Claims Claims
	// Duty runs the deadline sweep if this node is to (the holder of the
	// cluster's lease), and reports whether it ran; nil runs it always.
	Duty func(ctx context.Context, sweep func(context.Context)) bool
	// StaleAfter is how long, with Revisions, a case version moved on by
	// an action never stored (its node died in between) holds the case.
	// It defaults to 30 s.
	StaleAfter time.Duration
	// SaveTimeout bounds one save. It defaults to 10 s.
	SaveTimeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	mu       sync.RWMutex
	cases    map[string]*entry
	origins  map[string]string // originKey → case id
	idx      *index
	subs     map[*Subscription]struct{}
	revision uint64
	synced   uint64     // with Revisions: the save revision sync reads from
	intake   sync.Mutex // serializes intakes with an origin, so one origin opens one case
	closed   bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	m        *metrics
}

// entry is one case in memory.
type entry struct {
	// act serializes the actions on the case; it is held while one is
	// saved.
	act sync.Mutex
	// c and events are guarded by Service.mu.
	c      Case
	events []Event
	// alerts are the alerts of a sensor case the alert engine told of
	// (ObserveAlert), by id: the zero time while one fires, when it
	// cleared once it did. They are not stored: after a restart the
	// engine tells them again.
	alerts map[string]time.Time
}

// clearSince is when the condition of a sensor case cleared: when the last
// of its alerts cleared, zero while one fires or none was told of. Called
// with Service.mu held.
func (en *entry) clearSince() time.Time {
	var last time.Time
	for _, at := range en.alerts {
		if at.IsZero() {
			return time.Time{}
		}
		if at.After(last) {
			last = at
		}
	}
	return last
}

// observe records alert a's condition on en. Called with Service.mu held.
func (en *entry) observe(a AlertInfo) {
	if en.alerts == nil {
		en.alerts = map[string]time.Time{}
	}
	at := time.Time{}
	if !a.Firing {
		at = a.ClearedAt
	}
	en.alerts[a.ID] = at
}

// metrics are the service's counters.
type metrics struct {
	actions  *prometheus.CounterVec
	refused  *prometheus.CounterVec
	saveErrs prometheus.Counter
	dropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_cases_events_total", Help: "Case events stored, by kind.",
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_cases_refused_total", Help: "Case reports and actions refused, by reason (forbidden, invalid, conflict, duplicate, not_found, not_saved).",
		}, []string{"reason"}),
		saveErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_cases_save_errors_total", Help: "Failed saves of cases; the action was not applied (or the system event is retried).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_cases_stream_dropped_total", Help: "Case changes a slow subscriber did not receive.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.actions, m.refused, m.saveErrs, m.dropped)
	}
	return m
}

// openCasesDesc describes the gauge of the cases held, by status and
// whether they missed a deadline.
var openCasesDesc = prometheus.NewDesc("gridwatch_cases", "Cases held in memory (open, and closed or voided within KeepClosed), by status and overdue.",
	[]string{"status", "overdue"}, nil)

// Describe implements prometheus.Collector: the cases gauge.
func (s *Service) Describe(ch chan<- *prometheus.Desc) { ch <- openCasesDesc }

// Collect implements prometheus.Collector: it counts the cases held.
func (s *Service) Collect(ch chan<- prometheus.Metric) {
	type key struct {
		status  Status
		overdue bool
	}
	n := map[key]int{}
	s.mu.RLock()
	for _, en := range s.cases {
		n[key{en.c.Status, en.c.IsOverdue()}]++
	}
	s.mu.RUnlock()
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(openCasesDesc, prometheus.GaugeValue, float64(v), string(k.status), strconv.FormatBool(k.overdue))
	}
}

// Start loads the cases from the Store and starts the deadline loop.
func (s *Service) Start(ctx context.Context) error {
	if s.Store == nil || s.Timing == nil {
		return errors.New("cases: Service needs a Store and a Timing")
	}
	s.defaults()
	now := s.Now()
	cs, events, err := s.Store.LoadCases(ctx, now.Add(-s.KeepClosed))
	if err != nil {
		return fmt.Errorf("cases: load: %w", err)
	}
	s.restore(cs, events)
	s.synced = uint64(now.Add(-syncLookback).UnixMicro())
	s.Logger.Info("cases restored", "cases", len(cs), "events", len(events))
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.TickEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				switch {
				case s.Duty == nil:
					s.Tick(ctx)
				case !s.Duty(ctx, s.Tick):
					s.syncLogged(ctx)
					s.forget()
				}
			}
		}
	}()
	return nil
}

// defaults fills in the unset settings.
func (s *Service) defaults() {
	if s.DuplicateRadius <= 0 {
		s.DuplicateRadius = DefaultDuplicateRadius
	}
	if s.KeepClosed <= 0 {
		s.KeepClosed = DefaultKeepClosed
	}
	if s.TickEvery <= 0 {
		s.TickEvery = DefaultTickEvery
	}
	if s.RemindBefore <= 0 {
		s.RemindBefore = DefaultRemindBefore
	}
	if s.RemindEvery <= 0 {
		s.RemindEvery = DefaultRemindEvery
	}
	if s.MaxReminders <= 0 {
		s.MaxReminders = DefaultMaxReminders
	}
	if s.EscalateAfter <= 0 {
		s.EscalateAfter = DefaultEscalateAfter
	}
	if s.ClearFor <= 0 {
		s.ClearFor = DefaultClearFor
	}
	if s.SaveTimeout <= 0 {
		s.SaveTimeout = DefaultSaveTimeout
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = DefaultStaleAfter
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Location == nil {
		s.Location = time.UTC
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.m = newMetrics(s.Registerer)
	if s.Registerer != nil {
		s.Registerer.MustRegister(s)
	}
}

// restore puts stored cases and events in memory.
func (s *Service) restore(cs []Case, events []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cases = make(map[string]*entry, len(cs))
	s.origins = map[string]string{}
	s.idx = newIndex(s.DuplicateRadius)
	s.subs = map[*Subscription]struct{}{}
	for _, c := range cs {
		s.cases[c.ID] = &entry{c: c}
		s.indexLocked(nil, &c)
	}
	for _, ev := range events {
		if en := s.cases[ev.CaseID]; en != nil {
			en.events = append(en.events, ev)
		}
	}
	for _, en := range s.cases {
		slices.SortFunc(en.events, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	}
}

// Close stops the deadline loop and the subscriptions. It is safe to call
// twice.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for sub := range s.subs {
		delete(s.subs, sub)
		close(sub.c)
	}
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return nil
}

// originKey keys a case's outside origin.
func originKey(src Source, origin string) string { return string(src) + "/" + origin }

// route returns the routing category of a category code.
func (s *Service) route(category string) string {
	if s.Category != nil {
		if r, ok := s.Category(category); ok {
			return r
		}
	}
	return category
}

// Get returns a case and its events, oldest first. A case closed before
// KeepClosed is read from the Store.
func (s *Service) Get(ctx context.Context, id string) (Case, []Event, error) {
	s.mu.RLock()
	en := s.cases[id]
	s.mu.RUnlock()
	if en != nil && s.Revisions != nil {
		s.refresh(ctx, en)
	}
	s.mu.RLock()
	if en != nil {
		c, evs := en.c.Clone(), slices.Clone(en.events)
		s.mu.RUnlock()
		return c, evs, nil
	}
	s.mu.RUnlock()
	c, evs, err := s.Store.LoadCase(ctx, id)
	if err != nil {
		return Case{}, nil, err
	}
	return c, evs, nil
}

// entryOf returns the case's entry, read from the Store when another node
// made the case (with Revisions), or ErrNotFound.
func (s *Service) entryOf(ctx context.Context, id string) (*entry, error) {
	s.mu.RLock()
	if s.closed || s.cases == nil {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	en := s.cases[id]
	s.mu.RUnlock()
	if en != nil {
		return en, nil
	}
	return s.adopt(ctx, id)
}

// current returns a copy of the entry's case.
func (s *Service) current(en *entry) Case {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return en.c.Clone()
}

// Act takes a person's action and returns the case after it, once the
// Store holds the case and the event: a 2xx to an action means it is on
// disk. Its errors wrap ErrNotFound, ErrConflict (a *ConflictError),
// ErrForbidden, ErrInvalidAction, ErrDuplicate (a *DuplicateError) or
// ErrNotSaved; after an error nothing changed.
func (s *Service) Act(ctx context.Context, a Action) (Case, error) {
	c, err := s.act(ctx, a)
	if err != nil {
		s.refused(err)
	}
	return c, err
}

func (s *Service) act(ctx context.Context, a Action) (Case, error) {
	if a.Actor.Name == "" || a.Actor.Role == "" || a.Actor.Role == RoleSystem {
		return Case{}, fmt.Errorf("%w: an actor with a role is required", ErrInvalidAction)
	}
	en, err := s.entryOf(ctx, a.Case)
	if err != nil {
		return Case{}, err
	}
	if a.Kind == EventMerge {
		return s.merge(ctx, en, a)
	}
	en.act.Lock()
	defer en.act.Unlock()
	cs, err := s.commit(ctx, []*entry{en}, func(curs []Case, now time.Time) ([]Case, []Event, error) {
		next, evs, err := s.plan(curs[0], a, now)
		return []Case{next}, evs, err
	})
	if err != nil {
		return Case{}, err
	}
	return cs[0], nil
}

// plan checks the version a names against cur and plans the action on a
// copy of cur at now: the case it leads to and its sealed event.
func (s *Service) plan(cur Case, a Action, now time.Time) (Case, []Event, error) {
	if a.Version != cur.Version {
		return Case{}, nil, &ConflictError{ID: a.Case, Given: a.Version, Current: cur.Version}
	}
	next := cur.Clone()
	ev, err := s.apply(&next, a, now)
	if err != nil {
		return Case{}, nil, err
	}
	return next, s.seal(&next, cur.Status, a.Actor, now, ev), nil
}

// merge merges the case of en into a.Into: a merge event on both, the
// duplicate voided. Both cases are locked, in id order.
func (s *Service) merge(ctx context.Context, en *entry, a Action) (Case, error) {
	into, err := s.entryOf(ctx, a.Into)
	if err != nil || a.Into == a.Case {
		return Case{}, fmt.Errorf("%w: merge needs another existing case to merge into (into): %q", ErrInvalidAction, a.Into)
	}
	ens := []*entry{en, into}
	if a.Into < a.Case {
		ens = []*entry{into, en}
	}
	ens[0].act.Lock()
	defer ens[0].act.Unlock()
	ens[1].act.Lock()
	defer ens[1].act.Unlock()
	cs, err := s.commit(ctx, ens, func(curs []Case, now time.Time) ([]Case, []Event, error) {
		cur, target := curs[0], curs[1]
		if ens[0] != en {
			cur, target = target, cur
		}
		if !target.Open() || target.MergedInto != "" {
			return nil, nil, fmt.Errorf("%w: case %s is %s: merge into an open case", ErrInvalidAction, target.ID, target.Status)
		}
		next, evs, err := s.plan(cur, a, now)
		if err != nil {
			return nil, nil, err
		}
		nextTarget := target.Clone()
		nextTarget.Evidence = appendNew(nextTarget.Evidence, cur.Evidence...)
		tev := s.seal(&nextTarget, target.Status, a.Actor, now, Event{Kind: EventMerge, Note: strings.TrimSpace("from " + cur.ID + " " + a.Note)})
		if ens[0] != en {
			return []Case{nextTarget, next}, append(evs, tev...), nil
		}
		return []Case{next, nextTarget}, append(evs, tev...), nil
	})
	if err != nil {
		return Case{}, err
	}
	if ens[0] != en {
		return cs[1], nil
	}
	return cs[0], nil
}

// seal completes events planned for c (which they led to from status
// from): sequence numbers, time, actor and the case's fields as of the
// event, and sets c's version and update time.
func (s *Service) seal(c *Case, from Status, actor Actor, now time.Time, evs ...Event) []Event {
	for i := range evs {
		ev := &evs[i]
		c.Version++
		ev.CaseID, ev.Seq, ev.TS = c.ID, c.Version, now
		ev.Actor, ev.Role = actor.Name, string(actor.Role)
		if ev.From == "" {
			ev.From = from
		}
		if ev.To == "" {
			ev.To = c.Status
		}
		from = ev.To
		if ev.Unit == "" {
			ev.Unit = c.Unit
		}
		ev.Grid, ev.Category, ev.Source = c.Grid, c.Category, c.Source
	}
	c.Updated = now
	return evs
}

// save stores cases (the next states of ens, in order) with events, then
// applies them in memory and tells the subscribers. The caller holds the
// entries' act locks. A failed save changes nothing and wraps ErrNotSaved.
func (s *Service) save(ctx context.Context, ens []*entry, cs []Case, evs []Event) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.revision = max(s.revision+1, uint64(s.Now().UnixMicro()))
	rev := s.revision
	s.mu.Unlock()
	// The request's cancellation does not cut a save short: a save that
	// reached the server half-way would leave memory and disk apart.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.SaveTimeout)
	err := s.Store.SaveCases(sctx, cs, rev, evs)
	cancel()
	if err != nil {
		s.m.saveErrs.Inc()
		return fmt.Errorf("%w: %w", ErrNotSaved, err)
	}
	s.mu.Lock()
	for i, en := range ens {
		if en == nil {
			continue
		}
		s.idx.update(&en.c, &cs[i])
		en.c = cs[i]
		for _, ev := range evs {
			if ev.CaseID == cs[i].ID {
				en.events = append(en.events, ev)
			}
		}
	}
	for _, ev := range evs {
		s.m.actions.WithLabelValues(string(ev.Kind)).Inc()
	}
	s.publishLocked(cs, evs)
	s.mu.Unlock()
	return nil
}

// refused counts a refused report or action by its reason.
func (s *Service) refused(err error) {
	reason := "invalid"
	switch {
	case errors.Is(err, ErrForbidden):
		reason = "forbidden"
	case errors.Is(err, ErrConflict):
		reason = "conflict"
	case errors.Is(err, ErrDuplicate):
		reason = "duplicate"
	case errors.Is(err, ErrNotFound):
		reason = "not_found"
	case errors.Is(err, ErrNotSaved):
		reason = "not_saved"
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return
	}
	s.m.refused.WithLabelValues(reason).Inc()
}

// register applies a registration's corrections to c and checks it:
// a known category, a grid (found from the location), no open duplicate
// unless forced.
func (s *Service) register(c *Case, a Action) error {
	if a.Category != "" {
		c.Category = a.Category
	}
	if a.Location != nil {
		p := *a.Location
		c.Location = &p
	}
	if a.Address != "" {
		c.Address = a.Address
	}
	if a.Grid != "" {
		c.Grid = a.Grid
	} else if a.Location != nil {
		c.Grid = ""
	}
	if err := s.check(c, a.Force, nil); err != nil {
		return err
	}
	if a.Within != nil && !a.Within(c.Grid) {
		return fmt.Errorf("%w: grid %q is outside the actor's scope", ErrForbidden, c.Grid)
	}
	return nil
}

// check validates a case about to be registered; also are cases about to
// be stored with it, which count as open duplicates too.
func (s *Service) check(c *Case, force bool, also []Case) error {
	if c.Category == "" {
		return fmt.Errorf("%w: a category is required", ErrInvalidAction)
	}
	if s.Category != nil {
		if _, ok := s.Category(c.Category); !ok {
			return fmt.Errorf("%w: unknown category %q", ErrInvalidAction, c.Category)
		}
	}
	if err := c.Location.validate(); err != nil {
		return err
	}
	if c.Grid == "" && c.Location != nil && s.Locate != nil {
		c.Grid, _ = s.Locate(c.Location.Lat, c.Location.Lon)
	}
	if c.Grid == "" {
		return fmt.Errorf("%w: a grid is required: give one, or a location inside a known grid", ErrInvalidAction)
	}
	if force {
		return nil
	}
	if dups := s.duplicates(c, also); len(dups) > 0 {
		return &DuplicateError{ID: c.ID, Candidates: dups}
	}
	return nil
}

// validate checks a location's range; nil is valid (no location).
func (p *Point) validate() error {
	if p == nil {
		return nil
	}
	if p.Lat < -90 || p.Lat > 90 || p.Lon < -180 || p.Lon > 180 || p.Lat != p.Lat || p.Lon != p.Lon {
		return fmt.Errorf("%w: location (%g, %g) is out of range", ErrInvalidAction, p.Lat, p.Lon)
	}
	return nil
}

// duplicates returns the ids of the registered open cases of c's category
// (held, or in also) within DuplicateRadius of c, or at the same address,
// nearest first.
func (s *Service) duplicates(c *Case, also []Case) []string {
	type near struct {
		id string
		d  float64
	}
	var found []near
	consider := func(o *Case) {
		if o.ID == c.ID || !o.Open() || o.Status == StatusReceived || o.Category != c.Category {
			return
		}
		switch {
		case c.Location != nil && o.Location != nil:
			d := geo.Distance(orb.Point{c.Location.Lon, c.Location.Lat}, orb.Point{o.Location.Lon, o.Location.Lat})
			if d <= s.DuplicateRadius {
				found = append(found, near{o.ID, d})
			}
		case c.Address != "" && normAddress(c.Address) == normAddress(o.Address):
			found = append(found, near{o.ID, 0})
		}
	}
	s.mu.RLock()
	for id := range s.idx.near(c) {
		if en := s.cases[id]; en != nil {
			consider(&en.c)
		}
	}
	s.mu.RUnlock()
	for i := range also {
		consider(&also[i])
	}
	slices.SortFunc(found, func(a, b near) int { return cmp.Or(cmp.Compare(a.d, b.d), strings.Compare(a.id, b.id)) })
	ids := make([]string, len(found))
	for i, n := range found {
		ids[i] = n.id
	}
	return ids
}
