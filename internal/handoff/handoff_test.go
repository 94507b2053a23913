package handoff

import (
	"sync"
	"testing"
	"time"
)

// item is one piece of work; times counts how often Do did it.
type item struct{ times int }

// TestEveryHandIsDoneOnceBeforeItReturns has many goroutines hand work at
// once, beside holders that take the mutex for work of their own, and a Do
// that now and then lets go of the mutex to wait (as the batcher's does
// when its batches are all waiting to be written): each Hand returns only
// once its work is done, and every piece is done exactly once.
func TestEveryHandIsDoneOnceBeforeItReturns(t *testing.T) {
	var m Mutex[*item]
	done := 0 // under m
	m.Do = func(work []*item) {
		for i, w := range work {
			w.times++
			done++
			if i%7 == 3 {
				m.Mutex.Unlock()
				time.Sleep(10 * time.Microsecond)
				m.Lock()
			}
		}
	}
	const goroutines, hands = 32, 300
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range hands {
				w := &item{}
				m.Hand(w)
				m.Lock() // the work's own state, read under the mutex
				times := w.times
				m.Unlock()
				if times != 1 {
					t.Errorf("Hand returned with its work done %d times, want 1", times)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range hands {
				m.Lock()
				m.Unlock()
			}
		})
	}
	wg.Wait()
	m.Lock()
	defer m.Unlock()
	if done != goroutines*hands {
		t.Fatalf("Do did %d pieces of work, want %d", done, goroutines*hands)
	}
}

// TestHandWaitsForTheHolder checks that work handed over while another
// holds the mutex is not done, nor its Hand returned, before the holder
// lets go, and that the holder's Unlock does it.
func TestHandWaitsForTheHolder(t *testing.T) {
	var m Mutex[*item]
	m.Do = func(work []*item) {
		for _, w := range work {
			w.times++
		}
	}
	m.Lock()
	w := &item{}
	returned := make(chan struct{})
	go func() {
		m.Hand(w)
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("Hand returned while another held the mutex")
	case <-time.After(100 * time.Millisecond):
	}
	m.Unlock()
	<-returned
	if w.times != 1 {
		t.Fatalf("work done %d times, want 1", w.times)
	}
}

// TestReleaseLeavesTheWorkToAnother checks that a holder letting go with
// Release does not do the work handed over meanwhile, which may wait on it
// (a batcher's writer, whose handed Adds wait for the room it frees), and
// that the work is done all the same.
func TestReleaseLeavesTheWorkToAnother(t *testing.T) {
	var m Mutex[*item]
	unblock := make(chan struct{})
	m.Do = func(work []*item) {
		for _, w := range work {
			<-unblock // the room the holder would free
			w.times++
		}
	}
	m.Lock()
	w := &item{}
	handed := make(chan struct{})
	go func() {
		m.Hand(w)
		close(handed)
	}()
	for !m.waiting() {
		time.Sleep(time.Millisecond)
	}
	released := make(chan struct{})
	go func() {
		m.Release()
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(time.Minute):
		t.Fatal("Release did the work handed over, which waited on the holder")
	}
	close(unblock)
	<-handed
	m.Lock()
	defer m.Unlock()
	if w.times != 1 {
		t.Fatalf("work done %d times, want 1", w.times)
	}
}
