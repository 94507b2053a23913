package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/devices"
)

// CasesConfig are the cases.* keys.
type CasesConfig struct {
	CalendarFile    string               `koanf:"calendar_file" help:"business calendar YAML (working hours, weekend, each year's holidays and make-up workdays, timezone); empty uses the shipped one (deploy/calendar.yaml)"`
	CategoriesFile  string               `koanf:"categories_file" help:"case categories YAML adding to or replacing the shipped table by code (codes, names, route, time limits, device types, rules)"`
	KeepClosed      time.Duration        `koanf:"keep_closed" help:"how long a closed or voided case stays in memory and in the case list; older ones are read from ClickHouse by id"`
	DuplicateRadius float64              `koanf:"duplicate_radius" help:"metres within which an open case of the same category is a possible duplicate at registration"`
	TickEvery       time.Duration        `koanf:"tick_every" help:"how often the case loop checks deadlines and self-verification"`
	RemindBefore    time.Duration        `koanf:"remind_before" help:"how long before a deadline the first reminder goes out"`
	RemindEvery     time.Duration        `koanf:"remind_every" help:"interval of the reminders after a deadline passed"`
	MaxReminders    int                  `koanf:"max_reminders" help:"reminders of one deadline at most"`
	EscalateAfter   time.Duration        `koanf:"escalate_after" help:"how long a case is overdue before it is escalated and flagged for supervision"`
	ClearFor        time.Duration        `koanf:"clear_for" help:"how long the condition of a handled sensor case must stay clear for the case to verify itself"`
	MaxPhotoBytes   int                  `koanf:"max_photo_bytes" help:"largest photo upload, in bytes (JPEG or PNG)"`
	Evaluation      CaseEvaluationConfig `koanf:"evaluation"`
	HotlineSecret   string               `koanf:"hotline_secret" help:"HMAC-SHA256 key of the 12345 hotline's webhook (POST /api/v1/cases/hotline, X-Gridwatch-Signature); empty leaves the webhook out" secret:"true"`
}

// defaults of the cases.* keys.
func (c *CasesConfig) defaults() {
	c.KeepClosed, c.TickEvery = cases.DefaultKeepClosed, cases.DefaultTickEvery
	c.DuplicateRadius = cases.DefaultDuplicateRadius
	c.RemindBefore, c.RemindEvery = cases.DefaultRemindBefore, cases.DefaultRemindEvery
	c.MaxReminders = cases.DefaultMaxReminders
	c.EscalateAfter, c.ClearFor = cases.DefaultEscalateAfter, cases.DefaultClearFor
	c.MaxPhotoBytes = cases.DefaultMaxPhotoBytes
	c.Evaluation.defaults()
}

// validate checks the cases.* keys, loading the calendar and categories.
func (c *CasesConfig) validate(bad func(key, format string, args ...any), minSecret int) {
	if _, _, err := c.load(); err != nil {
		bad("cases", "%v", err)
	}
	c.Evaluation.validate(bad)
	for key, v := range map[string]time.Duration{"cases.keep_closed": c.KeepClosed, "cases.tick_every": c.TickEvery, "cases.remind_before": c.RemindBefore,
		"cases.remind_every": c.RemindEvery, "cases.escalate_after": c.EscalateAfter, "cases.clear_for": c.ClearFor} {
		if v <= 0 {
			bad(key, "must be > 0")
		}
	}
	if c.DuplicateRadius <= 0 {
		bad("cases.duplicate_radius", "must be > 0")
	}
	if c.MaxReminders <= 0 || c.MaxReminders > 100 {
		bad("cases.max_reminders", "must be 1..100")
	}
	if c.MaxPhotoBytes < 64<<10 {
		bad("cases.max_photo_bytes", "must be >= 64 KiB")
	}
	if n := len(c.HotlineSecret); n > 0 && n < minSecret {
		bad("cases.hotline_secret", "must be at least %d characters, not %d: a forger would open cases signed with a guess", minSecret, n)
	}
}

// load reads the calendar and the categories the keys name.
func (c *CasesConfig) load() (*cases.Calendar, *cases.Categories, error) {
	cal, cats := cases.DefaultCalendar(), cases.DefaultCategories()
	var err error
	if c.CalendarFile != "" {
		if cal, err = cases.LoadCalendar(c.CalendarFile); err != nil {
			return nil, nil, fmt.Errorf("calendar_file: %w", err)
		}
	}
	if c.CategoriesFile != "" {
		if cats, err = cases.LoadCategories(c.CategoriesFile); err != nil {
			return nil, nil, fmt.Errorf("categories_file: %w", err)
		}
	}
	return cal, cats, nil
}

// alertIntakeBuffer is how many alert transitions may wait for the case
// loop; beyond it they are dropped for the subscription (and counted by
// the engine), and the reconciliation picks the alerts up.
const alertIntakeBuffer = 4096

// reconcileEvery is how often every firing alert is checked against the
// cases, so that none whose transition was lost goes without one.
const reconcileEvery = time.Minute

// caseLoop is the case service and what feeds it.
type caseLoop struct {
	svc        *cases.Service
	photos     *cases.Photos
	categories *cases.Categories
	calendar   *cases.Calendar
	sub        *alerts.Subscription
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	// locate caches the grid index of one registry snapshot.
	locate atomic.Pointer[gridLocator]
}

// gridLocator is the grid index of one registry snapshot.
type gridLocator struct {
	snap  *[]devices.Grid
	index *devices.GridIndex
}

// startCases starts the case loop on ClickHouse, restoring its cases, and
// feeds it the alert engine's transitions (subscribed in startAlerts).
func (s *Server) startCases(ctx context.Context) error {
	cfg := &s.Config.Cases
	cal, cats, err := cfg.load()
	if err != nil {
		return fmt.Errorf("cases.%w", err)
	}
	l := &s.cases
	l.categories, l.calendar = cats, cal
	l.photos = &cases.Photos{Dir: filepath.Join(s.Config.DataDir, "photos"), MaxBytes: int64(cfg.MaxPhotoBytes)}
	l.svc = &cases.Service{
		Store:  s.db,
		Timing: cases.Schedule{Calendar: cal, Categories: cats},
		Category: func(code string) (string, bool) {
			c, ok := cats.Get(code)
			return c.Route, ok
		},
		Route:           s.UnitFor,
		Locate:          s.locateGrid,
		DuplicateRadius: cfg.DuplicateRadius,
		KeepClosed:      cfg.KeepClosed,
		TickEvery:       cfg.TickEvery,
		RemindBefore:    cfg.RemindBefore,
		RemindEvery:     cfg.RemindEvery,
		MaxReminders:    cfg.MaxReminders,
		EscalateAfter:   cfg.EscalateAfter,
		ClearFor:        cfg.ClearFor,
		Location:        cal.Location(),
		Now:             s.Now,
		Logger:          s.Logger.With("part", "cases"),
		Registerer:      s.metrics,
	}
	if s.coord.coord != nil {
		l.svc.Revisions, l.svc.Claims, l.svc.Duty = s.coord.revisions, s.coord.claims, s.coord.deadlines.Do
	}
	if err := l.svc.Start(ctx); err != nil {
		l.svc = nil
		return err
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		batch := make([]alerts.Alert, 0, cases.MaxAlertBatch)
		for t := range l.sub.C {
			// A flood is taken in as it waits, MaxAlertBatch at a time:
			// one save for many new cases.
			batch = append(batch[:0], t.Alert)
		drain:
			for len(batch) < cases.MaxAlertBatch {
				select {
				case t, ok := <-l.sub.C:
					if !ok {
						break drain
					}
					batch = append(batch, t.Alert)
				default:
					break drain
				}
			}
			s.intakeAlerts(ctx, batch)
		}
	}()
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(reconcileEvery)
		defer tick.Stop()
		for {
			s.reconcileAlerts(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return nil
}

// intakeRetries are the pauses before the case loop is asked again about
// the alerts whose transitions it could not save (ErrNotSaved): such as
// an alert condition another node is opening the case of, which it
// stores within a second.
var intakeRetries = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second}

// intakeAlerts hands alerts to the case loop, in order, and links each
// alert to the case it raised or joined. A transition not saved is tried
// again after each of intakeRetries; a failure after them is logged and
// counted by the loop, and the next reconciliation tries again.
func (s *Server) intakeAlerts(ctx context.Context, as []alerts.Alert) {
	infos := make([]cases.AlertInfo, 0, len(as))
	kept := make([]*alerts.Alert, 0, len(as))
	for i := range as {
		a := &as[i]
		if a.Condition != alerts.ConditionFiring && a.Condition != alerts.ConditionCleared {
			continue
		}
		infos, kept = append(infos, s.alertInfo(a)), append(kept, a)
	}
	for attempt := 0; len(infos) > 0; attempt++ {
		var again []cases.AlertInfo
		var againAlerts []*alerts.Alert
		for i, o := range s.cases.svc.ObserveAlerts(ctx, infos) {
			a := kept[i]
			switch {
			case o.Err != nil && errors.Is(o.Err, cases.ErrNotSaved) && attempt < len(intakeRetries):
				again, againAlerts = append(again, infos[i]), append(againAlerts, a)
			case o.Err != nil:
				if ctx.Err() == nil {
					s.Logger.Warn("alert not taken into the case loop: retried at the next reconciliation", "alert", a.ID, "err", o.Err)
				}
			case o.Case != "" && o.Case != a.Case:
				_ = s.alerting.engine.LinkCase(a.ID, o.Case) // an error: pruned meanwhile, nothing to link
			}
		}
		if len(again) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(intakeRetries[attempt]):
		}
		infos, kept = again, againAlerts
	}
}

// alertInfo is what the case loop needs of alert a: its device's place
// and type, and the case category of the type and rule.
func (s *Server) alertInfo(a *alerts.Alert) cases.AlertInfo {
	info := cases.AlertInfo{ID: a.ID, Source: cases.SourceAlert, Device: a.Device, Grid: a.Grid, Summary: a.Summary,
		Firing: a.Condition == alerts.ConditionFiring, ClearedAt: a.Cleared, Since: a.Fired}
	typ := ""
	if d, ok := s.registry.Lookup(a.Device); ok {
		typ = d.Type
		if d.Lat != 0 || d.Lon != 0 {
			info.Location = &cases.Point{Lat: d.Lat, Lon: d.Lon}
		}
	}
	if typ == "camera" {
		info.Source = cases.SourceCamera
	}
	info.Category = s.cases.categories.ForDevice(typ, a.Rule).Code
	return info
}

// reconcileAlerts hands every firing or cleared alert to the case loop
// (ObserveAlert is idempotent), MaxAlertBatch at a time, so that an alert
// whose transition was dropped, or arrived while its save failed, still
// raises its case.
func (s *Server) reconcileAlerts(ctx context.Context) {
	all, err := s.alerting.engine.All(alerts.Filter{Condition: []alerts.Condition{alerts.ConditionFiring, alerts.ConditionCleared}})
	if err != nil {
		s.Logger.Warn("case loop: list alerts", "err", err)
		return
	}
	batch := make([]alerts.Alert, 0, cases.MaxAlertBatch)
	for a := range all {
		if ctx.Err() != nil {
			return
		}
		if batch = append(batch, *a); len(batch) == cases.MaxAlertBatch {
			s.intakeAlerts(ctx, batch)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		s.intakeAlerts(ctx, batch)
	}
}

// locateGrid returns the grid cell holding a point, by the registry's
// grids.
func (s *Server) locateGrid(lat, lon float64) (string, bool) {
	snap := s.reg.grids.Load()
	if snap == nil {
		return "", false
	}
	l := s.cases.locate.Load()
	if l == nil || l.snap != snap {
		l = &gridLocator{snap: snap, index: devices.NewGridIndex(*snap)}
		s.cases.locate.Store(l)
	}
	return l.index.Locate(lat, lon)
}

// closeCases stops feeding the case loop and closes it.
func (s *Server) closeCases() error {
	l := &s.cases
	if l.svc == nil {
		return nil
	}
	l.sub.Close()
	l.cancel()
	l.wg.Wait()
	return l.svc.Close()
}
