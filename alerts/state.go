package alerts

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gridwatch/gridwatch/devices"
)

// deviceState is what the engine knows of one device. It is guarded by
// Engine.mu.
type deviceState struct {
	id, grid string
	typ      devices.Type
	// lastSeen is the engine clock at the device's latest observation.
	lastSeen time.Time
	// latest is the latest value of each metric (the m variable).
	latest map[string]float64
	// series holds recent values of the metrics some rule windows.
	series map[string]*series
	// insts are the rule instances of the device, by rule name.
	insts map[string]*instance
	// gen is the rule-set generation that byMetric and absence were
	// computed for.
	gen      int
	byMetric map[string][]*rule
	absence  []*rule
	// due is when the device is held in Engine.silence; zero when not.
	due time.Time
	// owned is set while this node owns the device (always without
	// Engine.Owners); held are the observations that wait for it.
	owned bool
	held  []held
	// heardAt is the engine clock when Engine.Heard was last asked about
	// the device and answered, heardAsked set while it is asked, and
	// heardSince the earliest reading that matters to that ask.
	heardAt, heardSince time.Time
	heardAsked          bool
}

// inhibited reports whether an inhibiting rule fires for the device.
func (d *deviceState) inhibited() bool {
	for _, in := range d.insts {
		if in.rule.inhibiting() && (in.phase == phaseFiring || in.phase == phaseClearing) {
			return true
		}
	}
	return false
}

// phase is the state of a rule instance (prometheus rules/alerting.go's
// inactive -> pending -> firing, plus held and clearing).
type phase uint8

const (
	// phaseInactive: the condition does not hold.
	phaseInactive phase = iota
	// phasePending: the condition holds, for less than the rule's `for`.
	phasePending
	// phaseHeld: ready to fire, waiting for its storm group to be decided.
	phaseHeld
	// phaseFiring: the alert fires.
	phaseFiring
	// phaseClearing: the clear condition holds, for less than clear_for.
	phaseClearing
)

// instance is one rule applied to one device.
type instance struct {
	rule *rule
	dev  *deviceState
	// phase and since, when the phase began (pending and clearing only).
	phase phase
	since time.Time
	// cond and clr are the last evaluation, re-used by timers.
	cond, clr bool
	// pending is the pending alert of a first firing; nil otherwise.
	pending *entry
	// alert is the open alert the instance fires into: its own or a
	// grid-level one; nil when none is open.
	alert *entry
}

// entry is an alert held in memory with its trace.
type entry struct {
	Alert
	events []Event
	// active are the members of a grid-level alert that still fire.
	active map[string]bool
	// view is the alert as readers see it, published by Engine.settle;
	// stale is set while a newer state waits in Engine.changed.
	view  atomic.Pointer[alertView]
	stale bool
	// listed is set once the alert is in the fired order (see order.go).
	listed bool
	// due is when the alert is held in Engine.escalations; zero when not.
	due time.Time
	// claim is where the alert stands with Engine.Claims, and fireNote the
	// note of its fire event while its claim is asked.
	claim    claimState
	fireNote string
	// cell is the grid-level condition the alert is counted under while it
	// holds its claim (see Claim); "" when none. memberClaims, of a
	// grid-level alert, are the claims of its members' own conditions,
	// which it holds until it clears (see joinStorm).
	cell         string
	memberClaims []Claim
	// handed is set for an alert carried on from another node (see Owned),
	// restored for one restored from the store at start (see restore).
	handed, restored bool
}

// alertView is an immutable copy of an alert and its trace: events is the
// entry's append-only slice as it was, which later appends do not change.
// row is the alert's export row, kept by the first export that encoded it.
type alertView struct {
	Alert
	events []Event
	row    atomic.Pointer[encodedRow]
}

// groupKey identifies a storm group: one rule in one grid cell.
type groupKey struct{ rule, grid string }

// group collects instances of one rule in one grid that became ready to
// fire close together, until its deadline decides between one grid-level
// alert and one alert each.
type group struct {
	deadline time.Time
	insts    []*instance
}

// sample is one timed value.
type sample struct {
	ts   int64 // when measured, ms (capped at recv)
	recv int64 // when received, by the engine's clock, ms
	v    float64
	// sum is the sum of v over the samples of the series' array up to this
	// one: a window's sum is then two lookups, not a pass over the window.
	sum float64
}

// series is the recent values of one metric of one device, oldest first
// (by ts), spanning at most the longest window of the rules that use it.
// A device reporting far faster than its interval keeps maxSamples in its
// windows, and every reading asks for their avg: adding a sample and the
// window's figures other than low and high cost O(1) amortised, not a pass
// over the samples.
type series struct {
	samples []sample
	// minRecv is at most the earliest recv of samples (it may lag after
	// samples leave), so that add scans for samples received a window ago
	// only when there may be one.
	minRecv int64
}

// maxSamples bounds a series, whatever its window: a device reporting far
// faster than its interval cannot grow the engine's memory.
const maxSamples = 512

// add appends a sample received at recv and drops those measured more
// than window before the newest, and those received more than window
// before recv. Out-of-order samples are inserted in place.
func (s *series) add(ts, recv int64, v float64, window time.Duration) {
	// Whatever their stamps, samples a window old by the engine's clock go:
	// after a device's clock jumped back (one without a real-time clock
	// rebooting into 2000), its readings stamped before the jump would stay
	// the newest, and the window frozen on them, for good.
	if old := recv - window.Milliseconds(); len(s.samples) > 0 && s.minRecv < old {
		s.dropReceivedBefore(old, recv)
	}
	if len(s.samples) == 0 || recv < s.minRecv {
		s.minRecv = recv
	}
	if len(s.samples) == cap(s.samples) {
		// Dropped samples are resliced off the front, so the array runs
		// out at its end: a new one twice the length, its sums restarted,
		// so that they never grow past a few windows' worth.
		grown := make([]sample, len(s.samples), 2*len(s.samples)+4)
		copy(grown, s.samples)
		s.samples = grown
		s.resum(0)
	}
	i := len(s.samples)
	for i > 0 && s.samples[i-1].ts > ts {
		i--
	}
	s.samples = slices.Insert(s.samples, i, sample{ts: ts, recv: recv, v: v})
	s.resum(i)
	cut := s.samples[len(s.samples)-1].ts - window.Milliseconds()
	drop := 0
	for drop < len(s.samples)-1 && (s.samples[drop].ts < cut || len(s.samples)-drop > maxSamples) {
		drop++
	}
	s.samples = s.samples[drop:]
}

// dropReceivedBefore drops the samples received before old and sets
// minRecv to the earliest recv left (recv when none is).
func (s *series) dropReceivedBefore(old, recv int64) {
	kept, least, suffix := 0, recv, true
	for _, p := range s.samples {
		switch {
		case p.recv >= old:
			kept, least = kept+1, min(least, p.recv)
		case kept > 0:
			suffix = false // a sample to drop after one to keep
		}
	}
	s.minRecv = least
	if suffix {
		s.samples = s.samples[len(s.samples)-kept:]
		return
	}
	out := s.samples[:0]
	for _, p := range s.samples {
		if p.recv >= old {
			out = append(out, p)
		}
	}
	s.samples = out
	s.resum(0)
}

// resum recomputes the running sums from sample i on.
func (s *series) resum(i int) {
	sum := 0.0
	if i > 0 {
		sum = s.samples[i-1].sum
	}
	for j := i; j < len(s.samples); j++ {
		sum += s.samples[j].v
		s.samples[j].sum = sum
	}
}

// fill sets the window variables of en over the last window before the
// newest sample; low and high only when ranged (a pass over the window).
func (s *series) fill(en *env, window time.Duration, ranged bool) {
	if len(s.samples) == 0 {
		return
	}
	last := s.samples[len(s.samples)-1]
	first, _ := slices.BinarySearchFunc(s.samples, last.ts-window.Milliseconds(),
		func(p sample, cut int64) int { return cmp.Compare(p.ts, cut) })
	f := s.samples[first]
	n := len(s.samples) - first
	en.Samples = n
	en.Avg = (last.sum - f.sum + f.v) / float64(n)
	en.Low, en.High = last.v, last.v
	if ranged {
		for _, p := range s.samples[first:] {
			en.Low, en.High = min(en.Low, p.v), max(en.High, p.v)
		}
	}
	en.Delta = last.v - f.v
	if span := last.ts - f.ts; span > 0 {
		en.Rate = en.Delta / float64(span) * 60000
	}
}
