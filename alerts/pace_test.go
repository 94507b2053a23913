package alerts

import (
	"testing"
	"time"
)

// paceMachine is a simulated machine for readPace: one core of ingestion
// beside a staff read that wants the CPU all the time, on a clock that only
// sleep advances.
type paceMachine struct {
	now        time.Time
	ingest     time.Duration // the process's CPU that is not the staff's
	staff      time.Duration
	idle       time.Duration
	obs        uint64
	idlePerSec time.Duration // the machine's idle CPU a second
	ingesting  bool
}

func (m *paceMachine) pace(share float64) *readPace {
	p := &readPace{share: share, tokens: readBurst, now: func() time.Time { return m.now },
		process:  func() time.Duration { return m.ingest + m.staff },
		idle:     func() (time.Duration, bool) { return m.idle, true },
		observed: func() uint64 { return m.obs },
		sleep:    m.advance}
	p.at = m.now
	return p
}

// advance lets d pass: ingestion takes one core, the machine's idle grows.
func (m *paceMachine) advance(d time.Duration) {
	m.now = m.now.Add(d)
	if m.ingesting {
		m.ingest += d
		m.obs++
	}
	m.idle += time.Duration(float64(m.idlePerSec) * d.Seconds())
}

// run has the staff read batches of 2 ms of CPU, back to back, for d of
// the clock; it returns the staff's share of the process's CPU.
func (m *paceMachine) run(p *readPace, d time.Duration) float64 {
	const batch = 2 * time.Millisecond
	end := m.now.Add(d)
	for m.now.Before(end) {
		p.wait()
		m.staff += batch
		m.advance(batch) // the batch's time passes, ingestion running beside
		p.spend(batch)
	}
	return m.staff.Seconds() / (m.ingest + m.staff).Seconds()
}

// TestReadPaceKeepsStaffToTheirShare checks the read slots' budget: while
// ingestion runs and the machine has no idle CPU, staff scans that would
// take the CPU all the time get their share of the process's CPU, no
// more (beyond the burst) and not much less; with idle CPU, or with no
// ingestion, they are not held back.
func TestReadPaceKeepsStaffToTheirShare(t *testing.T) {
	const share = 0.1
	busy := &paceMachine{now: time.Unix(0, 0), ingesting: true}
	if got := busy.run(busy.pace(share), 20*time.Second); got > share+0.01 || got < share*0.8 {
		t.Errorf("saturated machine, ingestion running: staff took %.3f of the process's CPU, want about %.2f", got, share)
	}
	spare := &paceMachine{now: time.Unix(0, 0), ingesting: true, idlePerSec: time.Second}
	if got := spare.run(spare.pace(share), 20*time.Second); got < 0.45 {
		t.Errorf("a core idle: staff took %.3f of the process's CPU, want half (not held back)", got)
	}
	quiet := &paceMachine{now: time.Unix(0, 0)}
	if got := quiet.run(quiet.pace(share), 20*time.Second); got < 0.99 {
		t.Errorf("no ingestion: staff took %.3f of the process's CPU, want all of it", got)
	}
}
