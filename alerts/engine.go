package alerts

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/internal/handoff"
)

// Defaults of Engine.
const (
	DefaultTick       = time.Second
	DefaultGroupWait  = 30 * time.Second
	DefaultStormMin   = 5
	DefaultFlushEvery = time.Second
	DefaultMaxUnsaved = 100_000
	DefaultRetain     = 30 * 24 * time.Hour
)

// MetricOnline is the metric of device status observations: 1 when the
// device went online, 0 when it went offline.
const MetricOnline = "online"

// Observation is one value the engine evaluates: a telemetry reading, a
// camera-health measurement or a device status change.
type Observation struct {
	// Device is the device id. Required.
	Device string
	// Type is the device type id; when empty, Engine.Lookup tells it.
	Type string
	// Grid is the device's grid cell; when empty, Engine.Lookup tells it.
	Grid   string
	Metric string
	Value  float64
	// TS is when the value was measured, in ms since the epoch; windows and
	// rates use it, capped at the receive time (a value is not measured
	// after it arrives), and a window also forgets values received more
	// than its span ago. The state machine runs on the engine's clock
	// instead, since device clocks are often wrong.
	TS int64
}

// Store persists alerts and their events. storage.DB implements it.
type Store interface {
	// SaveAlerts stores alert rows; a later Revision replaces an earlier.
	SaveAlerts(ctx context.Context, alerts []Alert) error
	// SaveEvents stores events.
	SaveEvents(ctx context.Context, events []Event) error
	// LoadAlerts returns the latest row of every alert that is pending or
	// firing, or cleared at or after clearedSince, with their events.
	LoadAlerts(ctx context.Context, clearedSince time.Time) ([]Alert, []Event, error)
	// LoadOpenAlerts returns the latest row of every device-level alert of
	// devices that is pending or firing, with their events (see Owners).
	LoadOpenAlerts(ctx context.Context, devices []string) ([]Alert, []Event, error)
	// SaveSilence stores a silence; a later Revision replaces an earlier.
	SaveSilence(ctx context.Context, s Silence) error
	// LoadSilences returns the latest version of every silence that ends
	// after now.
	LoadSilences(ctx context.Context, now time.Time) ([]Silence, error)
}

// Engine evaluates observations against the rules, keeps the alerts, runs
// their timers, and persists them. Its methods are safe for concurrent use.
//
// All state is guarded by one mutex, mu; flushMu (held by Flush around a
// save) is always taken before mu, never after. Every holder lets go
// through mu.Unlock, which evaluates the readings handed over meanwhile
// (see ObserveReadings) and publishes the views of the alerts changed.
// Observe holds mu for a whole batch, so evaluation is
// cheap: rules are indexed per device and metric, expressions are compiled
// once and run on one reused VM.
type Engine struct {
	// Rules is the initial rule set. It defaults to DefaultRules(); SetRules
	// replaces it.
	Rules *RuleSet
	// Lookup finds a device's type and grid for observations that lack
	// them. Observations of devices it does not know are dropped and
	// counted. It defaults to knowing no device.
	Lookup func(id string) (devices.Device, bool)
	// Devices lists the devices to watch for silence from the start, so a
	// device that never reports still raises its absence alert. It
	// defaults to none: devices are watched from their first observation.
	Devices func() []devices.Device
	// Types finds a device type. It defaults to devices.LookupType.
	Types func(id string) (devices.Type, bool)
	// Ancestors returns the grids above grid, nearest first; rules matching
	// a grid match its descendants. It defaults to none.
	Ancestors func(grid string) []string
	// InScope reports whether grid lies in the subtree rooted at scope
	// (scope itself included), for filters and silences; the
	// API checks tokens' scopes with the same function. It defaults to
	// asking Ancestors.
	InScope func(scope, grid string) bool
	// Store persists alerts and silences; nil keeps them in memory only.
	Store Store
	// Now is the clock. It defaults to time.Now.
	Now func() time.Time
	// Tick is how often timers (for, clear_for, absence, storm groups,
	// escalation, the ends of silences) run. It defaults to 1 second.
	Tick time.Duration
	// GroupWait is how long an outage alert (an absence rule or one that
	// inhibits, such as device_offline) that is ready to fire waits for
	// others of the same rule in the same grid cell; absence alerts wait at
	// least the device type's report interval, since devices of one outage
	// go quiet within one interval of each other. Value alerts never wait:
	// they fire at once. It defaults to 30 seconds.
	GroupWait time.Duration
	// StormMin is how many devices of one grid cell must go out together
	// for one grid-level alert to group them; for a value rule, how many
	// must already fire it with alerts of their own (with Claims, on any
	// node of the cluster) before the next ones join one grid-level alert
	// instead. It defaults to 5; negative turns grouping off.
	StormMin int
	// FlushEvery is how often the changes to alerts and their events are
	// saved. It defaults to 1 second.
	FlushEvery time.Duration
	// MaxUnsaved bounds the alert rows and events kept while the store
	// fails; beyond it the oldest are dropped and counted. It defaults to
	// 100000.
	MaxUnsaved int
	// Retain is how long cleared alerts stay in memory for List and Get.
	// It defaults to 30 days.
	Retain time.Duration
	// ReadSlots is how many staff reads (List, All) scan alerts at
	// once; others wait their turn, parked, so that however many staff ask
	// at once, ingestion keeps its cores. It defaults to GOMAXPROCS-1, at
	// least 1.
	ReadSlots int
	// SilencesEvery is how often the silences are read again from the
	// Store (ReloadSilences), for those the other nodes of a cluster added
	// or ended. It defaults to never: one engine holds them all.
	SilencesEvery time.Duration
	// ReadShare is the share of the process's CPU that the read slots'
	// holders may take while ingestion observes and the machine has no
	// idle CPU: beyond it they wait, parked, so that ingestion keeps the
	// rest. It defaults to DefaultReadShare; a negative share sets no
	// bound.
	ReadShare float64
	// Claims, when set, hold each condition's alert across the nodes of a
	// cluster: an alert ready to fire fires only once its claim is won (see
	// Claims), asked off mu by a goroutine of the engine's. It defaults to
	// none: a single node fires at once.
	Claims Claims
	// Owners, when set, hand each device to one node of a cluster at a
	// time: the engine evaluates a device's observations only while it owns
	// the device, holding them until it does, and carries on the open
	// alerts the device's previous node left (see Owners). It defaults to
	// none: the engine owns every device.
	Owners Owners
	// Shared reports whether the devices of a type are observed by every
	// node of a cluster (cameras, which every node probes), so that they
	// need no owner. It defaults to none.
	Shared func(devices.Type) bool
	// Heard, when set, tells when the cluster last heard from each of
	// devices: the latest receive time after since of a reading of it that
	// any node stored, absent for those none did. Nodes that consume an
	// external broker's shared subscription set it, since each hears a
	// share of every device's messages: before a device this node has not
	// heard from for an absence window is counted silent, Heard is asked
	// (off mu, by a goroutine of the engine's, many devices at once), and
	// a later reading heard elsewhere counts as the device's last
	// observation. An answer counts for HeardFresh; while Heard fails the
	// device is not counted silent, and is asked again every Tick. It
	// defaults to none: this node hears every reading.
	Heard func(ctx context.Context, devices []string, since time.Time) (map[string]time.Time, error)
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil leaves them
	// unregistered.
	Registerer prometheus.Registerer

	flushMu sync.Mutex                      // taken before mu
	mu      handoff.Mutex[[]ingest.Reading] // Do is settle
	// views and each entry's view are what List and Get read, without mu:
	// the engine publishes a changed alert's view as it unlocks mu, so
	// staff reads never wait for ingestion nor ingestion for them.
	views   sync.Map // alert id -> *entry, pending alerts included
	changed []*entry // entries whose view is stale, published by mu.Unlock (settle)
	// fired, fresh, reorder and order are the fired order (see order.go).
	fired   []listed
	fresh   []listed
	reorder bool
	order   atomic.Pointer[[]listed]
	// escalations, silence and waiting are the timers (see timers.go).
	escalations dueHeap[*entry]
	silence     dueHeap[*deviceState]
	waiting     map[*instance]struct{}
	// readSlots holds a token per staff read scanning and pace bounds
	// their CPU (see readSlot); observed counts the observations, which
	// tell pace that ingestion runs.
	readSlots chan struct{}
	pace      *readPace
	observed  atomic.Uint64
	rules     *RuleSet
	gen       int
	devs      map[string]*deviceState
	alerts    map[string]*entry      // every alert in memory, by id
	active    map[string]*entry      // alerts not cleared (pending included)
	grids     map[groupKey]*entry    // open grid-level alerts
	groups    map[groupKey]*group    // storm groups being decided
	subs      map[*Subscription]bool // live subscriptions
	dirty     map[string]*entry      // alerts changed since the last flush
	tombs     []Alert                // pending alerts that died, to save
	events    []Event                // events since the last flush
	retry     struct {               // rows a failed save kept, owned by Flush
		alerts []Alert
		events []Event
	}
	// claims are the claims to ask and release (see claims.go), and kick
	// wakes their goroutine.
	claims struct {
		ask     []*entry
		members []memberClaim
		release []Claim
		kick    chan struct{}
	}
	// heard are the devices whose silence waits for Heard (see heard.go),
	// and kick wakes their goroutine; failing is set while Heard fails.
	heard struct {
		ask     []*deviceState
		kick    chan struct{}
		failing bool
	}
	silences  []Silence
	idBase    string
	seq       uint64
	revision  uint64
	nextPrune time.Time
	env       env
	vm        vm.VM
	m         *engineMetrics
	started   bool
	closed    bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// setDefaults fills in the defaults.
func (e *Engine) setDefaults() {
	if e.Rules == nil {
		e.Rules = DefaultRules()
	}
	if e.Lookup == nil {
		e.Lookup = func(string) (devices.Device, bool) { return devices.Device{}, false }
	}
	if e.Types == nil {
		e.Types = devices.LookupType
	}
	if e.Ancestors == nil {
		e.Ancestors = func(string) []string { return nil }
	}
	if e.InScope == nil {
		e.InScope = func(scope, grid string) bool {
			return grid == scope || slices.Contains(e.Ancestors(grid), scope)
		}
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Tick <= 0 {
		e.Tick = DefaultTick
	}
	if e.GroupWait <= 0 {
		e.GroupWait = DefaultGroupWait
	}
	if e.StormMin == 0 {
		e.StormMin = DefaultStormMin
	}
	if e.FlushEvery <= 0 {
		e.FlushEvery = DefaultFlushEvery
	}
	if e.MaxUnsaved <= 0 {
		e.MaxUnsaved = DefaultMaxUnsaved
	}
	if e.Retain <= 0 {
		e.Retain = DefaultRetain
	}
	if e.ReadSlots <= 0 {
		e.ReadSlots = max(1, runtime.GOMAXPROCS(0)-1)
	}
	e.readSlots = make(chan struct{}, e.ReadSlots)
	if e.ReadShare == 0 {
		e.ReadShare = DefaultReadShare
	}
	if e.ReadShare > 0 {
		e.pace = newReadPace(e.ReadShare, e.observed.Load)
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	e.mu.Do = e.settle
	e.rules = e.Rules
	e.devs = map[string]*deviceState{}
	e.alerts = map[string]*entry{}
	e.active = map[string]*entry{}
	e.grids = map[groupKey]*entry{}
	e.groups = map[groupKey]*group{}
	if e.subs == nil {
		e.subs = map[*Subscription]bool{}
	}
	e.dirty = map[string]*entry{}
	e.waiting = map[*instance]struct{}{}
	e.claims.kick = make(chan struct{}, 1)
	e.heard.kick = make(chan struct{}, 1)
	var b [4]byte
	_, _ = rand.Read(b[:])
	e.idBase = strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 36)
	e.m = newEngineMetrics(e.Registerer)
}

// Start restores the open alerts and pending timers from the store, then
// runs the timers and the saving in the background until Close.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return fmt.Errorf("alerts: engine started twice")
	}
	e.started = true
	e.setDefaults()
	e.mu.Unlock()
	now := e.Now()
	if e.Store != nil {
		alerts, events, err := e.Store.LoadAlerts(ctx, now.Add(-e.Retain))
		if err != nil {
			return fmt.Errorf("alerts: restore: %w", err)
		}
		silences, err := e.Store.LoadSilences(ctx, now)
		if err != nil {
			return fmt.Errorf("alerts: restore: %w", err)
		}
		e.restore(alerts, events, silences, now)
	}
	if e.Devices != nil {
		e.mu.Lock()
		for _, d := range e.Devices() {
			e.device(d.ID, d.Type, d.Grid, now)
		}
		e.mu.Unlock()
	}
	ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.wg.Add(2)
	go e.loop(ctx, e.Tick, e.RunTimers)
	go e.loop(ctx, e.FlushEvery, func() {
		if err := e.Flush(ctx); err != nil {
			e.Logger.Warn("saving alerts failed; keeping them for the next try", "err", err)
		}
	})
	if e.Claims != nil {
		e.wg.Add(1)
		go e.runKicked(ctx, e.claims.kick, e.settleClaims)
	}
	if e.Heard != nil {
		e.wg.Add(1)
		go e.runKicked(ctx, e.heard.kick, e.settleHeard)
	}
	if e.SilencesEvery > 0 && e.Store != nil {
		e.wg.Add(1)
		go e.loop(ctx, e.SilencesEvery, func() {
			if err := e.ReloadSilences(ctx); err != nil && ctx.Err() == nil {
				e.Logger.Warn("reading the silences again failed; retrying", "err", err)
			}
		})
	}
	return nil
}

// loop calls f every period until ctx ends.
func (e *Engine) loop(ctx context.Context, period time.Duration, f func()) {
	defer e.wg.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// Close stops the timers, saves what is unsaved and ends the
// subscriptions. It is safe to call twice. A save that fails is tried
// again, with backoff, for up to 30 seconds: a replicated table refuses
// writes for the seconds its ZooKeeper session takes to come back (a
// fresh-clone run lost a stopping node's 20 unsaved alerts to one "session
// expired").
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		if e.cancel == nil {
			return
		}
		e.cancel()
		e.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		policy := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond),
			backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
		_ = backoff.Retry(func() error { err = e.Flush(ctx); return err }, backoff.WithContext(policy, ctx))
		e.mu.Lock()
		e.closed = true
		e.m.asked.Sub(float64(len(e.claims.ask))) // never answered now
		e.claims.ask = nil
		e.m.heardAsked.Sub(float64(len(e.heard.ask)))
		e.heard.ask = nil
		for s := range e.subs {
			delete(e.subs, s)
			close(s.c)
		}
		e.mu.Unlock()
	})
	return err
}

// SetRules replaces the rule set. Instances of rules that kept their name
// keep their state; alerts of removed rules clear, pending ones are
// dropped.
func (e *Engine) SetRules(rs *RuleSet) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.Now()
	for _, d := range e.devs {
		for name, in := range d.insts {
			if r, ok := rs.byName[name]; ok {
				in.rule = r
				continue
			}
			switch in.phase {
			case phasePending, phaseHeld:
				e.cancelPending(in, now)
			case phaseFiring, phaseClearing:
				e.clear(in, now)
			}
			delete(d.insts, name)
		}
	}
	e.rules = rs
	e.gen++
	// Rules may have gained absence rules or escalations, or lost them.
	for _, d := range e.devs {
		e.recheck(d)
	}
	for _, en := range e.active {
		e.schedule(en)
	}
	e.m.reloads.Inc()
}

// ObserveReadings evaluates telemetry readings; the ingest pipeline calls
// it after decoding, on each publishing client's goroutine. It returns once
// they are evaluated: by this goroutine, or by another that holds the
// engine's mutex, to whom they are handed over (see handoff). It does not
// allocate per reading once a device's state exists.
func (e *Engine) ObserveReadings(rs []ingest.Reading) {
	if len(rs) > 0 {
		e.mu.Hand(rs)
	}
}

// settle, the mutex's Do, evaluates the readings handed over by
// ObserveReadings, then publishes the views of the alerts changed while
// the mutex was held, before any holder lets go.
func (e *Engine) settle(handed [][]ingest.Reading) {
	if !e.closed && e.devs != nil && len(handed) > 0 {
		now := e.Now()
		for _, rs := range handed {
			e.observed.Add(uint64(len(rs)))
			for i := range rs {
				r := &rs[i]
				e.observe(r.Device, "", r.Grid, r.Metric, r.Value, r.TS, now)
			}
		}
	}
	for _, en := range e.changed {
		en.stale = false
		en.view.Store(&alertView{Alert: en.clone(), events: en.events})
		if !en.listed && !en.Fired.IsZero() && en.Condition != ConditionInactive && e.alerts[en.ID] == en { // not handed on (forget)
			e.listFired(en)
		}
	}
	clear(e.changed)
	e.changed = e.changed[:0]
	e.publishOrder()
}

// Observe evaluates observations, such as camera-health measurements or
// status changes.
func (e *Engine) Observe(obs ...Observation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.devs == nil {
		return
	}
	e.observed.Add(uint64(len(obs)))
	now := e.Now()
	for i := range obs {
		o := &obs[i]
		e.observe(o.Device, o.Type, o.Grid, o.Metric, o.Value, o.TS, now)
	}
}

// device returns the state of a device, creating it; nil when its type is
// unknown.
func (e *Engine) device(id, typ, grid string, now time.Time) *deviceState {
	d := e.devs[id]
	if d != nil {
		if grid != "" && grid != d.grid {
			d.grid, d.gen = grid, -1
		}
		return d
	}
	if d = e.newDevice(id, typ, grid, now); d == nil {
		return nil
	}
	d.owned = e.Owners == nil || e.shared(d.typ)
	e.devs[id] = d
	if !d.owned {
		e.Owners.Own(id)
		return d
	}
	e.recheck(d)
	return d
}

// newDevice returns a new state of a device, not owned, last seen at now;
// nil when its type is unknown. typ and grid are looked up when empty.
func (e *Engine) newDevice(id, typ, grid string, now time.Time) *deviceState {
	if typ == "" || grid == "" {
		dev, ok := e.Lookup(id)
		if !ok {
			return nil
		}
		typ, grid = dev.Type, dev.Grid
	}
	t, ok := e.Types(typ)
	if !ok {
		return nil
	}
	return &deviceState{id: id, grid: grid, typ: t, lastSeen: now, latest: map[string]float64{},
		series: map[string]*series{}, insts: map[string]*instance{}, gen: -1}
}

// shared reports whether every node observes the devices of t (Shared).
func (e *Engine) shared(t devices.Type) bool { return e.Shared != nil && e.Shared(t) }

// Unwatched returns the ids of those of devs that this engine keeps no
// state of — it neither owns them nor waits to — leaving out those of the
// types every node observes (Shared): in a cluster, the candidates for
// adoption (see Owners).
func (e *Engine) Unwatched(devs []devices.Device) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, d := range devs {
		if e.devs[d.ID] != nil {
			continue
		}
		if t, ok := e.Types(d.Type); ok && !e.shared(t) {
			out = append(out, d.ID)
		}
	}
	return out
}

// index recomputes which rules apply to d after a rule or grid change.
func (e *Engine) index(d *deviceState) {
	if d.gen == e.gen {
		return
	}
	d.gen = e.gen
	d.byMetric = map[string][]*rule{}
	d.absence = d.absence[:0]
	anc := e.Ancestors(d.grid)
	for _, r := range e.rules.rules {
		if !r.matches(d.id, d.typ.ID, d.typ.Category, d.grid, anc) {
			continue
		}
		if r.Absent > 0 {
			d.absence = append(d.absence, r)
		} else {
			d.byMetric[r.Metric] = append(d.byMetric[r.Metric], r)
		}
	}
	if len(d.absence) > 0 {
		e.recheck(d)
	}
}

// instance returns d's instance of r, creating it.
func (d *deviceState) instance(r *rule) *instance {
	in := d.insts[r.Name]
	if in == nil {
		in = &instance{rule: r, dev: d}
		d.insts[r.Name] = in
	}
	return in
}

// observe evaluates one value. Called with mu held.
func (e *Engine) observe(id, typ, grid, metric string, v float64, ts int64, now time.Time) {
	if e.Owners != nil && e.devs[id] == nil && !wants(metric, v) {
		return
	}
	d := e.device(id, typ, grid, now)
	if d == nil {
		e.m.unknown.Inc()
		return
	}
	if !d.owned {
		e.hold(d, metric, v, ts)
		return
	}
	e.m.observations.Inc()
	e.index(d)
	d.lastSeen = now
	d.latest[metric] = v
	for _, r := range d.absence {
		if in := d.insts[r.Name]; in != nil && in.phase != phaseInactive {
			in.cond, in.clr = false, true
			e.step(in, now, 0)
		}
	}
	rules := d.byMetric[metric]
	if len(rules) == 0 {
		return
	}
	var s *series
	if w := e.rules.windows[metric]; w > 0 {
		if s = d.series[metric]; s == nil {
			s = &series{}
			d.series[metric] = s
		}
		// A reading cannot have been measured after it arrived: one stamped
		// ahead (ingest accepts up to an hour) takes its place at the
		// receive time, so it cannot evict the window's recent readings.
		recv := now.UnixMilli()
		s.add(min(ts, recv), recv, v, w)
	}
	for _, r := range rules {
		e.env = env{Value: v, Avg: v, Low: v, High: v, Samples: 1, M: d.latest}
		if s != nil && r.Window > 0 {
			s.fill(&e.env, r.Window, r.ranged)
		}
		in := d.instance(r)
		in.cond = e.eval(r, r.cond)
		// Only a firing alert asks whether it clears: most instances are
		// inactive, and each expression run is a fetch of its variables
		// by reflection.
		in.clr = (in.phase == phaseFiring || in.phase == phaseClearing) && e.eval(r, r.clear)
		e.step(in, now, v)
	}
}

// eval runs one compiled expression on e.env; an error counts as false.
func (e *Engine) eval(r *rule, p *vm.Program) bool {
	out, err := e.vm.Run(p, &e.env)
	if err != nil {
		e.m.evalErrors.Inc()
		e.Logger.Debug("rule expression failed", "rule", r.Name, "err", err)
		return false
	}
	b, _ := out.(bool)
	return b
}

// step advances an instance's state machine with its last evaluation.
// Called with mu held.
func (e *Engine) step(in *instance, now time.Time, v float64) {
	r := in.rule
	switch in.phase {
	case phaseInactive:
		if !in.cond {
			return
		}
		if e.muted(in, now) {
			if r.Absent == 0 { // a silent device's absence rule asks again every tick
				e.m.inhibited.Inc()
			}
			return
		}
		in.phase, in.since = phasePending, now
		e.startPending(in, now, v)
		if r.For == 0 {
			e.ready(in, now)
		} else {
			e.wait(in)
		}
	case phasePending:
		switch {
		case !in.cond:
			e.cancelPending(in, now)
		case e.muted(in, now):
			e.m.inhibited.Inc()
			e.cancelPending(in, now)
		case now.Sub(in.since) >= r.For:
			e.ready(in, now)
		}
	case phaseHeld:
		if !in.cond || e.muted(in, now) {
			e.cancelPending(in, now)
		}
	case phaseFiring, phaseClearing:
		if in.cond {
			e.repeat(in, now, v)
		}
		switch {
		case !in.clr:
			in.phase = phaseFiring
		case in.phase == phaseFiring && r.ClearFor > 0:
			in.phase, in.since = phaseClearing, now
			e.wait(in)
		case now.Sub(in.since) >= r.ClearFor || r.ClearFor == 0:
			e.clear(in, now)
		}
	}
}

// RunTimers runs every timer that is due against the clock: pending `for`
// and clear_for durations, absence, storm groups, escalation and the ends
// of silences; it looks only at what is due (see
// timers.go), not at every device and alert. The engine calls it every
// Tick; tests with a fake clock call it after moving the clock.
func (e *Engine) RunTimers() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.devs == nil {
		return
	}
	now := e.Now()
	e.runAbsence(now)
	e.runWaiting(now)
	for k, g := range e.groups {
		if !now.Before(g.deadline) {
			delete(e.groups, k)
			e.decide(k, g, now)
		}
	}
	e.runEscalations(now)
	// Notifiers hear of what an ended silence kept quiet at its end, not
	// at the next prune.
	e.expireSilences(now)
	if !now.Before(e.nextPrune) {
		e.prune(now)
		e.nextPrune = now.Add(time.Hour)
	}
}

// startPending records that in's condition began to hold.
func (e *Engine) startPending(in *instance, now time.Time, v float64) {
	if in.alert != nil {
		in.alert.PendingSince = now
		e.touch(in.alert)
		return
	}
	r, d := in.rule, in.dev
	en := &entry{Alert: Alert{
		ID: e.newID(now), Rule: r.Name, Device: d.id, Grid: d.grid, Category: r.category(d.typ),
		Severity: r.Severity, BaseSeverity: r.Severity, Condition: ConditionPending,
		Summary: e.summary(r, v), Value: v, PendingSince: now, LastSeen: now, Updated: now,
	}}
	in.pending = en
	e.alerts[en.ID], e.active[en.ID] = en, en
	e.views.Store(en.ID, en)
	e.touch(en)
}

// cancelPending ends a pending phase whose condition went away.
func (e *Engine) cancelPending(in *instance, now time.Time) {
	in.phase = phaseInactive
	if in.rule.Absent > 0 {
		e.recheck(in.dev) // a silent device asks again
	}
	if en := in.pending; en != nil {
		in.pending = nil
		e.bury(en, now)
	}
	if in.alert != nil && !in.alert.PendingSince.IsZero() {
		in.alert.PendingSince = time.Time{}
		e.touch(in.alert)
	}
}

// bury drops a pending alert that never fired, saving a tombstone so that a
// restart does not restore it.
func (e *Engine) bury(en *entry, now time.Time) {
	en.Condition, en.Updated = ConditionInactive, now
	delete(e.alerts, en.ID)
	delete(e.active, en.ID)
	delete(e.dirty, en.ID)
	e.views.Delete(en.ID)
	en.Revision = e.nextRevisionLocked(now)
	e.tombs = append(e.tombs, en.clone())
}

// ready moves an instance whose condition held long enough towards firing:
// back into the grid-level alert it is a member of, into the grid's open
// storm alert, into a storm group, or straight to firing.
func (e *Engine) ready(in *instance, now time.Time) {
	r, d := in.rule, in.dev
	if en := in.alert; en != nil {
		in.phase = phaseFiring
		e.rejoin(en, d.id, now)
		return
	}
	key := groupKey{r.Name, d.grid}
	if en := e.grids[key]; en != nil && (e.Claims == nil || r.inhibiting()) {
		in.phase, in.alert = phaseFiring, en
		e.bury(in.pending, now)
		in.pending = nil
		e.join(en, d.id, now)
		return
	}
	if e.StormMin <= 0 || r.NoGroup {
		e.fire(in, now)
		return
	}
	if !r.inhibiting() {
		e.fireValue(in, key, now)
		return
	}
	in.phase = phaseHeld
	g := e.groups[key]
	if g == nil {
		wait := e.GroupWait
		if r.Absent > 0 {
			wait = max(wait, d.typ.Interval)
		}
		g = &group{deadline: now.Add(wait)}
		e.groups[key] = g
	}
	g.insts = append(g.insts, in)
}

// fireValue fires a value alert at once: a threshold breach must reach
// staff without waiting for a storm group. Once StormMin devices of the
// cell already fire the rule with alerts of their own, the next one opens
// a grid-level alert that the later ones join. With Claims, the devices
// of the cell may fire on other nodes, and this one's own alert on
// another node: its claim tells (see joinStorm). Called with mu held.
func (e *Engine) fireValue(in *instance, key groupKey, now time.Time) {
	if e.Claims != nil {
		in.pending.cell = e.cellOf(&in.pending.Alert)
		e.fire(in, now)
		return
	}
	firing := e.firingAlone(key)
	if firing < e.StormMin {
		e.fire(in, now)
		return
	}
	e.openGrid(key, []*instance{in}, now,
		fmt.Sprintf("grid-level alert: %d devices of the cell already fire this rule; later ones join it", firing))
}

// firingAlone counts the devices of k's cell whose own alert of k's rule
// fires on this engine. Called with mu held.
func (e *Engine) firingAlone(k groupKey) int {
	n := 0
	for _, en := range e.active {
		if en.Rule == k.rule && en.Grid == k.grid && en.Device != "" && en.Condition == ConditionFiring {
			n++
		}
	}
	return n
}

// decide ends a storm group: enough members still ready fire one
// grid-level alert, fewer fire one each.
func (e *Engine) decide(k groupKey, g *group, now time.Time) {
	var ready []*instance
	for _, in := range g.insts {
		if in.phase != phaseHeld {
			continue
		}
		if e.muted(in, now) {
			e.m.inhibited.Inc()
			e.cancelPending(in, now)
			continue
		}
		ready = append(ready, in)
	}
	if len(ready) < e.StormMin {
		for _, in := range ready {
			e.fire(in, now)
		}
		return
	}
	e.openGrid(k, ready, now, fmt.Sprintf("grid-level alert grouping %d devices", len(ready)))
}

// openGrid opens the grid-level alert of k with members, whose pending
// alerts it replaces, and returns it. Called with mu held.
func (e *Engine) openGrid(k groupKey, members []*instance, now time.Time, note string) *entry {
	first := members[0]
	r := first.rule
	en := &entry{Alert: Alert{
		ID: e.newID(now), Rule: r.Name, Grid: k.grid, Category: first.pending.Category,
		Severity: r.Severity, BaseSeverity: r.Severity, Condition: ConditionPending,
		Summary: fmt.Sprintf("%d devices: %s", len(members), r.Name), Value: first.pending.Value,
		PendingSince: first.since, LastSeen: now, Updated: now,
	}, active: map[string]bool{}}
	e.alerts[en.ID], e.active[en.ID] = en, en
	e.views.Store(en.ID, en)
	for _, in := range members {
		en.Members = append(en.Members, in.dev.id)
		en.active[in.dev.id] = true
		en.Count++
		e.bury(in.pending, now)
		in.pending, in.alert, in.phase = nil, en, phaseFiring
	}
	e.grids[k] = en
	e.open(en, now, note)
	return en
}

// fire turns an instance's pending alert into a firing one.
func (e *Engine) fire(in *instance, now time.Time) {
	en := in.pending
	in.pending, in.alert, in.phase = nil, en, phaseFiring
	en.Count = 1
	e.open(en, now, "")
}

// open makes a pending alert a firing one; with Claims, once it won its
// condition's claim.
func (e *Engine) open(en *entry, now time.Time, note string) {
	if e.Claims != nil && en.claim != claimWon {
		e.askClaim(en, note)
		return
	}
	en.Condition, en.Fired, en.PendingSince = ConditionFiring, now, time.Time{}
	e.record(en, now, ActorSystem, EventFire, string(ConditionPending), string(ConditionFiring), note)
}

// rejoin counts device, a member of the firing grid-level alert en, as
// firing again.
func (e *Engine) rejoin(en *entry, device string, now time.Time) {
	en.active[device] = true
	en.PendingSince, en.LastSeen = time.Time{}, now
	en.Count++
	e.touch(en)
}

// join adds a device to a firing grid-level alert; to one whose claim is
// asked (see Claims) without an event: it fires with its members.
func (e *Engine) join(en *entry, device string, now time.Time) {
	if !slices.Contains(en.Members, device) {
		en.Members = append(en.Members, device)
	}
	e.rejoin(en, device, now)
	if en.Condition == ConditionFiring {
		e.record(en, now, ActorSystem, EventJoin, "", device, "")
	}
}

// repeat records another matching observation of a firing alert.
func (e *Engine) repeat(in *instance, now time.Time, v float64) {
	en := in.alert
	if en == nil {
		return
	}
	en.Count++
	en.LastSeen = now
	if en.Device != "" {
		en.Value = v
		en.Summary = e.summary(in.rule, v)
	}
	e.touch(en)
}

// clear ends a firing phase: the alert's condition clears (for a
// grid-level alert, once its last member cleared).
func (e *Engine) clear(in *instance, now time.Time) {
	in.phase = phaseInactive
	if en := in.alert; en != nil {
		e.clearAlert(en, in.dev.id, now)
	}
}

// clearAlert clears en for device: once no member fires, en is resolved,
// its time escalation undone, and it leaves its instances, so that the
// next firing raises a new alert.
func (e *Engine) clearAlert(en *entry, device string, now time.Time) {
	if en.active != nil {
		delete(en.active, device)
		if len(en.active) > 0 {
			e.touch(en)
			return
		}
	}
	if en.Condition == ConditionPending {
		// Its claim was not answered: it never fired (see settleClaims).
		e.releaseClaim(en)
		e.detach(en, false)
		e.bury(en, now)
		return
	}
	e.resolve(en, now, "")
	e.detach(en, false)
	e.releaseClaim(en)
}

// resolve records that en, firing, cleared (note says why, when not its
// condition), and undoes its time escalation. Called with mu held.
func (e *Engine) resolve(en *entry, now time.Time, note string) {
	en.Condition, en.Cleared = ConditionCleared, now
	e.record(en, now, ActorSystem, EventClear, string(ConditionFiring), string(ConditionCleared), note)
	if en.Escalated {
		from := en.Severity
		en.Severity, en.Escalated = en.BaseSeverity, false
		e.record(en, now, ActorSystem, EventDeescalate, from.String(), en.Severity.String(), "the condition cleared")
	}
}

// detach takes a cleared alert out of the open ones and off its instances;
// with follow, the instances keep firing without it, as they do when
// another node's alert holds the condition's claim. Called with mu held.
func (e *Engine) detach(en *entry, follow bool) {
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
				if follow {
					continue
				}
				if in.phase != phasePending {
					in.phase = phaseInactive
				}
				if in.rule.Absent > 0 {
					e.recheck(d) // a device still silent raises a new alert
				}
			}
		}
	}
}

// LinkCase records that alert id raised or joined case caseID, the case
// loop's answer to its transition: a case event in the alert's trace,
// which subscribers hear of. Linking it to the case it is linked to
// changes nothing.
func (e *Engine) LinkCase(id, caseID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en := e.alerts[id]
	if en == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if en.Case != caseID {
		from := en.Case
		en.Case = caseID
		e.record(en, e.Now(), ActorSystem, EventCase, from, caseID, "")
	}
	return nil
}

// summary is the human line of a value alert.
func (e *Engine) summary(r *rule, v float64) string {
	if r.Absent > 0 {
		return fmt.Sprintf("no report for %.0fs", v)
	}
	return fmt.Sprintf("%s = %g: %s", r.Metric, v, r.Condition)
}

// newID returns a new alert id, unique across restarts.
func (e *Engine) newID(now time.Time) string {
	e.seq++
	return strconv.FormatInt(now.UnixMilli(), 36) + "-" + e.idBase + "-" + strconv.FormatUint(e.seq, 36)
}

// record appends an event to en's trace, bumps its version, marks it for
// saving and publishes the transition.
func (e *Engine) record(en *entry, now time.Time, actor string, kind EventKind, from, to, note string) Event {
	en.Version++
	en.Updated = now
	ev := Event{AlertID: en.ID, Version: en.Version, TS: now, Actor: actor, Kind: kind, From: from, To: to, Note: note}
	e.events = append(e.events, ev)
	e.emit(en, ev)
	return ev
}

// emit adds ev, which en's version is at, to en's trace, marks en for
// saving and publishes the transition. Called with mu held.
func (e *Engine) emit(en *entry, ev Event) {
	en.events = append(en.events, ev)
	e.touch(en)
	e.schedule(en)
	e.m.events.WithLabelValues(string(ev.Kind)).Inc()
	e.publish(Transition{Event: ev, Alert: en.clone(),
		Silenced: len(e.silences) > 0 && e.silenced(en.Rule, en.Device, en.Grid, en.Members, ev.TS, false)})
}

// touch marks en changed: to be saved by the next flush and its view
// published by mu.Unlock (settle). Called with mu held.
func (e *Engine) touch(en *entry) {
	e.dirty[en.ID] = en
	e.republish(en)
}

// republish marks en's view stale, to be published by mu.Unlock (settle). Called with
// mu held.
func (e *Engine) republish(en *entry) {
	if !en.stale {
		en.stale = true
		e.changed = append(e.changed, en)
	}
}

// prune forgets cleared alerts older than Retain.
func (e *Engine) prune(now time.Time) {
	pruned := false
	for id, en := range e.alerts {
		if en.Condition == ConditionCleared && now.Sub(en.Cleared) > e.Retain {
			delete(e.alerts, id)
			e.views.Delete(id)
			en.listed, pruned = false, true
		}
	}
	if pruned {
		e.unlistPruned()
	}
}
