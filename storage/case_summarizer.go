package storage

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Summarizer timing.
const (
	// summaryRetryMin and summaryRetryMax bound the wait before a failed
	// refresh of case summaries is tried again (doubling in between).
	summaryRetryMin = 500 * time.Millisecond
	summaryRetryMax = 30 * time.Second
	// summaryCloseTimeout bounds Close's last refresh.
	summaryCloseTimeout = 10 * time.Second
	// summaryHealWindow is how far before the latest save LoadCases
	// recomputes summaries: the saves whose refresh a crash may have lost.
	summaryHealWindow = 5 * time.Minute
)

// summarizer recomputes the case_summaries rows of the cases SaveCases
// stored events of, after the save rather than within it: a summary is
// derived from the events, and its INSERT … SELECT is the slowest part of
// a save (on a loaded box most of the time from a case's change to its
// row on a console). Refreshes are coalesced: what was asked for while one
// ran is done in the next. A failed refresh is kept and tried again with
// a growing delay. The statistics that read case_summaries (CaseTallies,
// CaseActions) first refresh everything asked for before them (flush), so
// a read after a save sees it; Close refreshes what is left. A crash can
// lose the refreshes still pending: LoadCases asks again for the cases
// saved within summaryHealWindow of the latest save.
type summarizer struct {
	// refresh recomputes the summaries of the cases in since
	// (DB.refreshCaseSummaries).
	refresh func(ctx context.Context, since map[string]time.Time) error
	logger  *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time // case id → its first event's time (zero: anywhere)
	started bool
	kick    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// run is held by the refresh that runs: flush waits for it, so that
	// what it took from pending is stored, or back in pending, when flush
	// looks.
	run sync.Mutex
}

// add asks for the summaries of the cases in since (see
// refreshCaseSummaries) to be recomputed, starting the loop at the first
// call.
func (s *summarizer) add(since map[string]time.Time) {
	if len(since) == 0 {
		return
	}
	s.mu.Lock()
	s.merge(since)
	if !s.started {
		s.started = true
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.wg.Add(1)
		go s.loop(ctx)
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// merge adds since to pending, keeping the earlier bound of a case (zero,
// no bound, being the earliest). The caller holds mu.
func (s *summarizer) merge(since map[string]time.Time) {
	if s.pending == nil {
		s.pending = make(map[string]time.Time, len(since))
	}
	for id, t := range since {
		if cur, ok := s.pending[id]; ok && (cur.IsZero() || (!t.IsZero() && cur.Before(t))) {
			continue
		}
		s.pending[id] = t
	}
}

// loop refreshes whenever kicked, retrying a failure, until ctx ends.
func (s *summarizer) loop(ctx context.Context) {
	defer s.wg.Done()
	wait := summaryRetryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		for {
			err := s.flush(ctx)
			if err == nil || ctx.Err() != nil {
				wait = summaryRetryMin
				break
			}
			s.logger.Warn("refresh case summaries; retrying", "err", err, "in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, summaryRetryMax)
		}
	}
}

// flush recomputes every summary asked for so far. On failure what it
// took goes back to pending.
func (s *summarizer) flush(ctx context.Context) error {
	s.run.Lock()
	defer s.run.Unlock()
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := s.refresh(ctx, batch); err != nil {
		s.mu.Lock()
		s.merge(batch)
		s.mu.Unlock()
		return err
	}
	return nil
}

// close stops the loop and refreshes what is left, within
// summaryCloseTimeout. It is safe to call more than once.
func (s *summarizer) close() error {
	s.mu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	s.wg.Wait()
	ctx, stop := context.WithTimeout(context.Background(), summaryCloseTimeout)
	defer stop()
	return s.flush(ctx)
}
