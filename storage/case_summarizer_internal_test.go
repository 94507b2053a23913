package storage

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"
)

// fakeRefresh records the refreshes a summarizer asks for; fail, when set,
// answers each before it is recorded.
type fakeRefresh struct {
	mu    sync.Mutex
	calls []map[string]time.Time
	done  map[string]time.Time // every case refreshed, with its bound
	fail  func(n int) error    // n counts the calls from 0
	// hold, when set, makes each call say it began on entered, then wait
	// for a receive.
	hold, entered chan struct{}
}

func (f *fakeRefresh) refresh(ctx context.Context, since map[string]time.Time) error {
	if f.hold != nil {
		f.entered <- struct{}{}
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.calls)
	f.calls = append(f.calls, maps.Clone(since))
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return err
		}
	}
	if f.done == nil {
		f.done = map[string]time.Time{}
	}
	maps.Copy(f.done, since)
	return nil
}

func (f *fakeRefresh) refreshed(id string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.done[id]
	return t, ok
}

func newTestSummarizer(f *fakeRefresh) *summarizer {
	return &summarizer{refresh: f.refresh, logger: slog.New(slog.DiscardHandler), kick: make(chan struct{}, 1)}
}

// eventually polls cond for at most a minute.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
	}
}

func TestSummarizerRefreshesAfterTheSave(t *testing.T) {
	f := &fakeRefresh{}
	s := newTestSummarizer(f)
	defer s.close()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	s.add(map[string]time.Time{"C1": t0})
	eventually(t, "C1 refreshed in the background", func() bool { _, ok := f.refreshed("C1"); return ok })
}

func TestSummarizerCoalescesAndKeepsTheEarliestBound(t *testing.T) {
	f := &fakeRefresh{hold: make(chan struct{}), entered: make(chan struct{})}
	s := newTestSummarizer(f)
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	s.add(map[string]time.Time{"C1": t0})
	<-f.entered // the loop's first refresh, of C1, runs…
	// …and what is asked for meanwhile is one refresh after it, each case
	// with its earliest bound (none at all being the earliest).
	s.add(map[string]time.Time{"C2": t0.Add(time.Hour), "C3": {}})
	s.add(map[string]time.Time{"C2": t0, "C3": t0})
	s.add(map[string]time.Time{"C2": t0.Add(2 * time.Hour)})
	f.hold <- struct{}{}
	<-f.entered
	f.hold <- struct{}{}
	eventually(t, "the second refresh", func() bool { _, ok := f.refreshed("C2"); return ok })
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 2 {
		t.Fatalf("refreshes %v, want 2", f.calls)
	}
	if got := f.calls[1]; len(got) != 2 || !got["C2"].Equal(t0) || !got["C3"].IsZero() {
		t.Errorf("second refresh %v, want C2 from %s and C3 from anywhere", got, t0)
	}
}

func TestSummarizerRetriesAFailedRefresh(t *testing.T) {
	f := &fakeRefresh{fail: func(n int) error {
		if n < 2 {
			return errors.New("ClickHouse is away")
		}
		return nil
	}}
	s := newTestSummarizer(f)
	defer s.close()
	s.add(map[string]time.Time{"C1": {}})
	eventually(t, "C1 refreshed after two failures", func() bool { _, ok := f.refreshed("C1"); return ok })
}

func TestSummarizerFlushAndClose(t *testing.T) {
	// A refresh that fails in the background leaves the cases pending: a
	// flush (a statistics read) says so, and refreshes them once it can.
	var broken sync.Mutex
	down := true
	f := &fakeRefresh{fail: func(int) error {
		broken.Lock()
		defer broken.Unlock()
		if down {
			return errors.New("ClickHouse is away")
		}
		return nil
	}}
	s := newTestSummarizer(f)
	s.add(map[string]time.Time{"C1": {}})
	eventually(t, "a failed background refresh", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.calls) > 0 })
	if err := s.flush(t.Context()); err == nil {
		t.Fatal("flush succeeded while every refresh fails")
	}
	broken.Lock()
	down = false
	broken.Unlock()
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.refreshed("C1"); !ok {
		t.Fatal("flush returned before C1 was refreshed")
	}
	// Close refreshes what is still pending, and may be called twice.
	s.add(map[string]time.Time{"C2": {}})
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.refreshed("C2"); !ok {
		t.Fatal("close left C2 pending")
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}
