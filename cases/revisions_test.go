package cases_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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

// memClaims is cases.Claims in memory, shared by the services of a test.
type memClaims struct {
	mu     sync.Mutex
	claims map[string]cases.Claim
}

func (m *memClaims) Claim(_ context.Context, key string) (cases.Claim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claims[key], nil
}

func (m *memClaims) Swap(_ context.Context, key string, c cases.Claim, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claims == nil {
		m.claims = map[string]cases.Claim{}
	}
	if m.claims[key].Stamp != c.Stamp {
		return false, nil
	}
	m.claims[key] = cases.Claim{Case: id, Set: t0, Stamp: c.Stamp + 1}
	return true, nil
}

// alertRace has two services each observe a firing alert of their own
// (two alert engines, two alert ids) for each of 20 devices at once,
// retrying on ErrNotSaved, and returns the cases opened per device.
func alertRace(t *testing.T, claims cases.Claims) map[string]int {
	store, clk := &casestest.Store{}, &clock{t: t0}
	revs := &memRevisions{}
	var nodes []*cases.Service
	for range 2 {
		s := newService(t, store, clk)
		s.Revisions, s.Claims = revs, claims
		nodes = append(nodes, s)
	}
	var wg sync.WaitGroup
	for i, s := range nodes {
		for d := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := cases.AlertInfo{ID: fmt.Sprintf("A%d-%d", i, d), Source: cases.SourceAlert, Device: fmt.Sprintf("mh-%d", d),
					Grid: "G7", Category: "manhole", Summary: "cover tilted", Firing: true, Since: t0}
				for {
					_, err := s.ObserveAlert(context.Background(), a)
					if err == nil {
						return
					}
					if !errors.Is(err, cases.ErrNotSaved) {
						t.Error(err)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	opened := map[string]int{}
	for _, ev := range store.Events() {
		if ev.Kind == cases.EventReceive {
			c, _ := store.Row(ev.CaseID)
			opened[c.Device]++
		}
	}
	return opened
}

// TestClaimsRaiseOneCasePerCondition: the same condition firing on two
// nodes opens one case, which the other node's alert joins; the baseline
// without claims opens two.
func TestClaimsRaiseOneCasePerCondition(t *testing.T) {
	count := func(opened map[string]int) (devices, cs int) {
		for _, n := range opened {
			devices++
			cs += n
		}
		return devices, cs
	}
	d, n := count(alertRace(t, nil))
	t.Logf("baseline, no claims: %d cases for %d devices", n, d)
	d, n = count(alertRace(t, &memClaims{}))
	t.Logf("with claims: %d cases for %d devices", n, d)
	if d != 20 || n != 20 {
		t.Errorf("with claims: %d cases for %d devices, want 20 for 20", n, d)
	}
}

// TestSyncListsOtherNodesCases: a node that does not run the sweep still
// reads, every tick, the cases another node made or changed: they are in
// its list and on its change stream.
func TestSyncListsOtherNodesCases(t *testing.T) {
	store, clk := &casestest.Store{}, &clock{t: t0}
	revs := &memRevisions{}
	first := newService(t, store, clk)
	first.Revisions = revs
	second := &cases.Service{Store: store, Timing: naturalTiming{}, Now: clk.Now, TickEvery: 10 * time.Millisecond,
		Revisions: revs, Duty: func(context.Context, func(context.Context)) bool { return false }}
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	sub := second.Subscribe(16)
	c := report(t, first, 39.9)
	do(t, first, c.ID, cases.Action{Kind: cases.EventNote, Actor: dispatch, Note: "seen"})
	var kinds []cases.EventKind
	deadline := time.After(time.Minute)
	for len(kinds) < 2 {
		select {
		case ch := <-sub.C:
			kinds = append(kinds, ch.Event.Kind)
		case <-deadline:
			t.Fatalf("the other node's stream after a minute: %v", kinds)
		}
	}
	p, err := second.List(cases.Filter{})
	if err != nil || len(p.Cases) != 1 || p.Cases[0].ID != c.ID || p.Cases[0].Version != 2 {
		t.Fatalf("the other node's list: %+v (%v)", p.Cases, err)
	}
	if kinds[0] != cases.EventReceive || kinds[1] != cases.EventNote {
		t.Errorf("the other node's stream: %v, want receive, note", kinds)
	}
}
