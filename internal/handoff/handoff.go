// Package handoff is a mutex for short work that many goroutines need done
// under it at once, such as each MQTT client's readings going into one
// batch: a goroutine that finds the mutex held hands its work over to the
// holder, who does all the work handed over before it lets go, instead of
// queuing for the mutex itself.
//
// Taken in turn, a mutex that many goroutines want goes to each waiter in
// order, once it is woken and scheduled, and stands idle meanwhile: on a
// busy machine the waiters then spend more time in that queue than in the
// work (a lock convoy), and anything else that runs beside them (a staff
// read, a timer) lengthens it. With the work handed over, one holder serves
// them all, and the others wait only for their work to be done.
package handoff

import "sync"

// Rounds is how many rounds of handed-over work one holder does as it lets
// go: after that it leaves the rest to a goroutine of its own, so that the
// goroutine that happened to take the mutex (an MQTT client's) is not kept
// from its own work for long.
const Rounds = 4

// Mutex is a sync.Mutex whose Unlock first does the work handed over by
// Hand. Lock and TryLock are sync.Mutex's; every holder must let go through
// Unlock or Release, or work handed over meanwhile waits for the next holder. Do may
// let go of the embedded sync.Mutex for a while (to wait for room, say),
// as long as it takes it again before it returns.
type Mutex[W any] struct {
	sync.Mutex
	// Do does work handed over, with the mutex held; Unlock calls it in
	// each round, with no work too, so that it may also finish what the
	// holder did (publish what it changed). Set it before the mutex is
	// first used by Hand; while it is nil, handed work is not done.
	Do func(work []W)

	handed struct {
		mu          sync.Mutex
		work, spare []W
		done        chan struct{}
	}
}

// Hand does w under the mutex: it takes the mutex when it is free, else it
// hands w over to the holder. It returns once w is done. It allocates
// nothing when the mutex is free, else a channel per round of work.
func (m *Mutex[W]) Hand(w W) {
	if m.TryLock() {
		m.put(w, false)
		m.Unlock()
		return
	}
	done := m.put(w, true)
	if m.TryLock() {
		m.Unlock()
	}
	<-done
}

// put adds w to the work handed over; with wait, it returns the channel
// that releases its goroutine once it is done.
func (m *Mutex[W]) put(w W, wait bool) chan struct{} {
	m.handed.mu.Lock()
	defer m.handed.mu.Unlock()
	m.handed.work = append(m.handed.work, w)
	if wait && m.handed.done == nil {
		m.handed.done = make(chan struct{})
	}
	return m.handed.done
}

// Unlock does the work handed over (Do), lets go of the mutex and releases
// the goroutines whose work it did; then it takes the mutex again for work
// handed over since, unless another holder has it (who will do the same).
func (m *Mutex[W]) Unlock() {
	for round := 1; ; round++ {
		work, done := m.take()
		if m.Do != nil {
			m.Do(work)
		}
		if len(work) > 0 {
			clear(work) // the goroutines' work is theirs again once released
			m.handed.spare = work[:0]
		}
		m.Mutex.Unlock()
		if done != nil {
			close(done)
		}
		switch {
		case !m.waiting():
			return
		case round == Rounds:
			go m.serve()
			return
		case !m.TryLock():
			return
		}
	}
}

// Release lets go of the mutex without doing the work handed over, for a
// holder that must not wait on that work, because the work may wait on it
// (a batcher's writer, which frees the room the rows handed over may wait
// for): a goroutine of its own does the work.
func (m *Mutex[W]) Release() {
	m.Mutex.Unlock()
	if m.waiting() {
		go m.serve()
	}
}

// serve takes the mutex to do the work handed over.
func (m *Mutex[W]) serve() {
	m.Lock()
	m.Unlock()
}

// take returns the work handed over and the channel that releases its
// goroutines, nil when none waits. Called with the mutex held.
func (m *Mutex[W]) take() ([]W, chan struct{}) {
	m.handed.mu.Lock()
	defer m.handed.mu.Unlock()
	work, done := m.handed.work, m.handed.done
	if len(work) > 0 {
		// spare is given up until Unlock hands work back: a holder that
		// lets go of the mutex inside Do (to wait) lets another take too.
		m.handed.work, m.handed.spare, m.handed.done = m.handed.spare, nil, nil
	}
	return work, done
}

// waiting reports whether work waits to be done.
func (m *Mutex[W]) waiting() bool {
	m.handed.mu.Lock()
	defer m.handed.mu.Unlock()
	return len(m.handed.work) > 0
}
