package rtsp

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the Prober's settings.
const (
	DefaultLivenessInterval = time.Minute
	DefaultSampleInterval   = 15 * time.Minute
	DefaultSampleDuration   = 3 * time.Second
	DefaultTimeout          = 5 * time.Second
	DefaultRecheckDelay     = 2 * time.Second
	DefaultConcurrency      = 64
	DefaultJitter           = 0.2
	DefaultTransport        = "tcp"
	// MinTimeout is the shortest Timeout: gortsplib notes a stream's last
	// packet at one-second resolution, so shorter read timeouts fire on
	// healthy streams.
	MinTimeout = 2 * time.Second
)

// Prober checks every camera on a schedule: a cheap liveness probe
// (DESCRIBE) every LivenessInterval and a stream sample (SETUP + PLAY for
// SampleDuration) every SampleInterval, each spread by Jitter, at most
// Concurrency at a time. A failed probe is repeated once after RecheckDelay
// before the camera is declared down; the record says so (Rechecked).
//
// Set the settings, then Start; Close stops it and waits for running probes.
type Prober struct {
	// Targets returns the cameras to probe; it is called on every
	// scheduling round, so registry changes are picked up. Required.
	Targets func() []Target
	// Record stores a record, typically Batcher.Add. A failure is counted
	// and logged. It defaults to storing nothing.
	Record func(ctx context.Context, rec HealthRecord) error
	// Observe, when set, sees every record, such as the alert engine.
	Observe func(rec HealthRecord)
	// Play opens the stream of a target without an RTSP URL
	// (Target.Play), such as a GB/T 28181 channel. Without it such a
	// target is reported in error.
	Play PlayFunc
	// OpenSecret opens a camera's sealed RTSP password (see
	// devices.SecretBox), typically SecretBox.Open. Without it a sealed
	// password cannot be used: the camera is reported auth_failed.
	OpenSecret func(camera, sealed string) (string, error)
	// LivenessInterval is the time between liveness probes of a camera.
	// It defaults to 1 minute.
	LivenessInterval time.Duration
	// SampleInterval is the time between stream samples of a camera. It
	// defaults to 15 minutes.
	SampleInterval time.Duration
	// SampleDuration is how long a sample plays. It defaults to 3 seconds.
	SampleDuration time.Duration
	// Timeout bounds the connection and each RTSP request, and is the
	// longest silence a sample tolerates. It defaults to 5 seconds; values
	// below MinTimeout are raised to it.
	Timeout time.Duration
	// RecheckDelay is the wait before a failed probe is repeated. It
	// defaults to 2 seconds; a negative value disables rechecks.
	RecheckDelay time.Duration
	// Concurrency is the most probes in flight. It defaults to 64.
	Concurrency int
	// Jitter spreads each interval by up to this fraction either way. It
	// defaults to 0.2.
	Jitter float64
	// Transport of samples: "tcp" or "udp". It defaults to "tcp".
	Transport string
	// Diagnosis is the picture diagnosis of stream samples; zero
	// thresholds take their defaults.
	Diagnosis Diagnosis
	// Stills keeps every camera's last good picture, which is also its
	// reference across restarts. Nil keeps none: references are then
	// learned anew at each start.
	Stills *Stills
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer registers the prober's metrics; nil registers none.
	Registerer prometheus.Registerer

	metrics *metrics
	// decoding bounds the samples decoding at once, to the cores.
	decoding chan struct{}
	// memory is what the diagnosis remembers of each camera; memMu guards
	// the map and its entries.
	memMu  sync.Mutex
	memory map[string]*cameraMemory
	// noDecoder logs once that the build has no picture decoder.
	noDecoder sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	started   bool
}

// defaults fills in the settings left zero. It writes only what it
// changes, so that a Check beside another Check's probe races no field.
func (p *Prober) defaults() {
	if p.LivenessInterval <= 0 {
		p.LivenessInterval = DefaultLivenessInterval
	}
	if p.SampleInterval <= 0 {
		p.SampleInterval = DefaultSampleInterval
	}
	if p.SampleDuration <= 0 {
		p.SampleDuration = DefaultSampleDuration
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.Timeout < MinTimeout {
		p.Timeout = MinTimeout
	}
	if p.RecheckDelay == 0 {
		p.RecheckDelay = DefaultRecheckDelay
	}
	if p.Concurrency <= 0 {
		p.Concurrency = DefaultConcurrency
	}
	if p.Jitter <= 0 || p.Jitter >= 1 {
		p.Jitter = DefaultJitter
	}
	if p.Transport == "" {
		p.Transport = DefaultTransport
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.metrics == nil {
		p.metrics = newMetrics(p.Registerer)
	}
	if d := p.Diagnosis.withDefaults(); d != p.Diagnosis {
		p.Diagnosis = d
	}
	if p.decoding == nil {
		p.decoding = make(chan struct{}, runtime.GOMAXPROCS(0))
		p.memory = map[string]*cameraMemory{}
	}
}

// Check probes t once, with a recheck after a failure, and returns the
// record without storing it.
func (p *Prober) Check(ctx context.Context, t Target, kind Kind) HealthRecord {
	p.mu.Lock()
	p.defaults()
	p.mu.Unlock()
	return p.check(ctx, t, kind)
}

func (p *Prober) check(ctx context.Context, t Target, kind Kind) HealthRecord {
	rec := p.probeOnce(ctx, t, kind)
	if rec.Status.Up() || p.RecheckDelay < 0 || ctx.Err() != nil {
		return rec
	}
	select {
	case <-ctx.Done():
		return rec
	case <-time.After(p.RecheckDelay):
	}
	again := p.probeOnce(ctx, t, kind)
	again.Rechecked = true
	return again
}

// Sweep probes every target once, Concurrency at a time, stores and
// observes each record, and returns them in target order. It is one round
// of the schedule without the schedule; benchmarks and `gridsim` use it.
func (p *Prober) Sweep(ctx context.Context, kind Kind) []HealthRecord {
	p.mu.Lock()
	p.defaults()
	p.mu.Unlock()
	targets := p.Targets()
	out := make([]HealthRecord, len(targets))
	sem := make(chan struct{}, p.Concurrency)
	var wg sync.WaitGroup
	for i, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out[:i]
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = p.run(ctx, t, kind)
		}()
	}
	wg.Wait()
	return out
}

// run checks t, then hands the record on.
func (p *Prober) run(ctx context.Context, t Target, kind Kind) HealthRecord {
	rec := p.check(ctx, t, kind)
	if ctx.Err() != nil {
		return rec // cut short by shutdown: not a finding about the camera
	}
	p.metrics.observe(rec)
	if p.Record != nil {
		if err := p.Record(ctx, rec); err != nil {
			p.metrics.dropped.Inc()
			p.Logger.Warn("camera health record dropped", "camera", rec.Camera, "err", err)
		}
	}
	if p.Observe != nil {
		p.Observe(rec)
	}
	return rec
}

// Start runs the schedule until Close.
func (p *Prober) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Targets == nil {
		return ErrNoTargets
	}
	if p.started {
		return ErrStarted
	}
	if p.Transport != "" && p.Transport != "tcp" && p.Transport != "udp" {
		return fmt.Errorf("rtsp: transport %q: want tcp or udp", p.Transport)
	}
	p.defaults()
	p.started = true
	ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.schedule(ctx)
	}()
	return nil
}

// Close stops the schedule and waits for the probes in flight. It is safe
// to call twice.
func (p *Prober) Close() error {
	p.mu.Lock()
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
	return nil
}

// due is when a camera's next probes are due.
type due struct {
	liveness, sample time.Time
	running          bool
	// waiting is set when the camera was found due with every worker busy,
	// so that its late start is counted once.
	waiting bool
}

// ready is a camera whose probe has been due since at.
type ready struct {
	t  Target
	d  *due
	at time.Time
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// schedule owns the per-camera due times. Every tick, and whenever a probe
// ends, it starts the due probes, oldest due first, on at most Concurrency
// workers. A due probe that finds every worker busy stays due, is counted
// late once, and starts as soon as a worker is free, its lag observed: no
// probe is skipped. A camera is never probed twice at once.
func (p *Prober) schedule(ctx context.Context) {
	tick := min(p.LivenessInterval, p.SampleInterval) / 20
	tick = max(tick, 10*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	state := map[string]*due{}
	done := make(chan string, p.Concurrency)
	sem := make(chan struct{}, p.Concurrency)
	var (
		workers sync.WaitGroup
		queue   []ready
		first   = true
	)
	defer workers.Wait()
	for {
		now := time.Now()
		seen := make(map[string]bool)
		queue = queue[:0]
		for _, t := range p.Targets() {
			seen[t.Camera] = true
			d := state[t.Camera]
			if d == nil {
				// A new camera starts at a random point of its intervals,
				// so that a large registry does not probe in bursts.
				d = &due{
					liveness: now.Add(time.Duration(rand.Int64N(int64(p.LivenessInterval)))),
					sample:   now.Add(time.Duration(rand.Int64N(int64(p.SampleInterval)))),
				}
				if t.Play {
					d.liveness = d.sample // only sampled
				}
				state[t.Camera] = d
			}
			if at := minTime(d.liveness, d.sample); !d.running && !now.Before(at) {
				queue = append(queue, ready{t: t, d: d, at: at})
			}
		}
		slices.SortFunc(queue, func(a, b ready) int { return a.at.Compare(b.at) })
		waiting := 0
	dispatch:
		for i, r := range queue {
			select {
			case sem <- struct{}{}:
			default:
				// Every worker is busy: this probe and the later ones stay
				// due, for the next free worker.
				for _, w := range queue[i:] {
					if !w.d.waiting {
						w.d.waiting = true
						p.metrics.late.Inc()
					}
				}
				waiting = len(queue) - i
				break dispatch
			}
			kind := KindLiveness
			if !now.Before(r.d.sample) {
				kind = KindSample
				r.d.sample = now.Add(p.jitter(p.SampleInterval))
			}
			r.d.liveness = now.Add(p.jitter(p.LivenessInterval))
			if r.t.Play {
				r.d.liveness = r.d.sample
			}
			r.d.running, r.d.waiting = true, false
			p.metrics.lag.Observe(now.Sub(r.at).Seconds())
			workers.Add(1)
			go func() {
				defer func() { <-sem; done <- r.t.Camera; workers.Done() }()
				p.run(ctx, r.t, kind)
			}()
		}
		p.metrics.waiting.Set(float64(waiting))
		// The first round also drops the stills of cameras removed while
		// the prober was not running.
		removed := first
		first = false
		for id, d := range state {
			if !seen[id] && !d.running {
				delete(state, id)
				removed = true
			}
		}
		if removed && len(seen) > 0 { // no registry is no reason to drop stills
			p.forget(seen)
		}
		select {
		case <-ctx.Done():
			// Drain completions so the deferred workers.Wait cannot block
			// on a full done channel.
			go func() {
				for range done {
				}
			}()
			workers.Wait()
			close(done)
			return
		case id := <-done:
			if d := state[id]; d != nil {
				d.running = false
			}
		case <-ticker.C:
		}
	drain:
		for {
			select {
			case id := <-done:
				if d := state[id]; d != nil {
					d.running = false
				}
			default:
				break drain
			}
		}
	}
}

// jitter returns d spread by up to p.Jitter either way.
func (p *Prober) jitter(d time.Duration) time.Duration {
	f := 1 + p.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
