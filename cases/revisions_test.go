package cases_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
)

// memRevisions is cases.Revisions in memory, shared by the services of a
// test as ZooKeeper is by the nodes.
type memRevisions struct {
	mu   sync.Mutex
	vers map[string]cases.Revision
}

func (m *memRevisions) Revision(_ context.Context, id string) (cases.Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vers[id], nil
}

func (m *memRevisions) Swap(_ context.Context, id string, r cases.Revision, version uint32) (cases.Revision, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vers == nil {
		m.vers = map[string]cases.Revision{}
	}
	if cur := m.vers[id]; cur.Exists != r.Exists || cur.Stamp != r.Stamp {
		return cases.Revision{}, false, nil
	}
	next := cases.Revision{Version: version, Exists: true, Set: t0, Stamp: r.Stamp + 1}
	m.vers[id] = next
	return next, true, nil
}

// noteRace has two services on one store each add notes to one case from
// two goroutines, retrying on a conflict, and returns the notes answered
// and the events stored whose sequence number another event of the case
// already had.
func noteRace(t *testing.T, revs cases.Revisions) (answered, stored, doubled int) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	first := newService(t, store, clk)
	first.Revisions = revs
	c := report(t, first, 39.9)
	// The second node starts after the case was made, and so knows it.
	second := newService(t, store, clk)
	second.Revisions = revs
	nodes := []*cases.Service{first, second}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const notes = 25
	for _, s := range nodes {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < notes; {
					cur, _, err := s.Get(context.Background(), c.ID)
					if err != nil {
						t.Error(err)
						return
					}
					_, err = s.Act(context.Background(), cases.Action{Case: c.ID, Version: cur.Version, Kind: cases.EventNote, Actor: dispatch, Note: "seen"})
					switch {
					case err == nil:
						mu.Lock()
						answered++
						mu.Unlock()
						n++
					case errors.Is(err, cases.ErrConflict), errors.Is(err, cases.ErrNotSaved):
					default:
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, ev := range store.Events() {
		if ev.CaseID != c.ID {
			continue
		}
		if ev.Kind == cases.EventNote {
			stored++
		}
		if seen[ev.Seq] {
			doubled++
		}
		seen[ev.Seq] = true
	}
	return answered, stored, doubled
}

// TestRevisionsKeepActionsLinearizable races notes on one case from two
// services: with Revisions every answered note is stored once and no two
// events share a version; without (the baseline), each node goes on from
// its own copy and stores events on versions the other took.
func TestRevisionsKeepActionsLinearizable(t *testing.T) {
	answered, stored, doubled := noteRace(t, nil)
	t.Logf("baseline, no revisions: %d notes answered, %d stored, %d events on a taken version", answered, stored, doubled)
	answered, stored, doubled = noteRace(t, &memRevisions{})
	t.Logf("with revisions: %d notes answered, %d stored, %d events on a taken version", answered, stored, doubled)
	if answered != 100 || stored != answered || doubled != 0 {
		t.Errorf("with revisions: %d notes answered, %d stored, %d doubled; want 100, 100, 0", answered, stored, doubled)
	}
}
