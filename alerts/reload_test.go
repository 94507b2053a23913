package alerts_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// sharedStore keeps the alerts and silences of several engines, as
// ClickHouse does for the nodes of a cluster: the latest revision of each;
// events are not kept.
type sharedStore struct {
	mu       sync.Mutex
	alerts   map[string]alerts.Alert
	silences map[string]alerts.Silence
}

func (s *sharedStore) SaveAlerts(_ context.Context, rows []alerts.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.alerts == nil {
		s.alerts = map[string]alerts.Alert{}
	}
	for _, a := range rows {
		if a.Revision > s.alerts[a.ID].Revision {
			s.alerts[a.ID] = a
		}
	}
	return nil
}

func (s *sharedStore) SaveEvents(context.Context, []alerts.Event) error { return nil }

func (s *sharedStore) LoadAlerts(context.Context, time.Time) ([]alerts.Alert, []alerts.Event, error) {
	return s.find(func(a alerts.Alert) bool { return a.Condition != alerts.ConditionInactive }), nil, nil
}

func (s *sharedStore) LoadOpenAlerts(_ context.Context, devices []string) ([]alerts.Alert, []alerts.Event, error) {
	return s.find(func(a alerts.Alert) bool {
		return slices.Contains(devices, a.Device) && (a.Condition == alerts.ConditionPending || a.Condition == alerts.ConditionFiring)
	}), nil, nil
}

// find returns the alerts kept that match.
func (s *sharedStore) find(match func(alerts.Alert) bool) []alerts.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []alerts.Alert
	for _, a := range s.alerts {
		if match(a) {
			out = append(out, a)
		}
	}
	return out
}

// alert returns the latest revision kept of alert id.
func (s *sharedStore) alert(id string) alerts.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alerts[id]
}

func (s *sharedStore) SaveSilence(_ context.Context, x alerts.Silence) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.silences == nil {
		s.silences = map[string]alerts.Silence{}
	}
	if x.Revision > s.silences[x.ID].Revision {
		s.silences[x.ID] = x
	}
	return nil
}

func (s *sharedStore) LoadSilences(_ context.Context, now time.Time) ([]alerts.Silence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []alerts.Silence
	for _, x := range s.silences {
		if x.Ends.After(now) {
			out = append(out, x)
		}
	}
	return out, nil
}

// TestReloadSilencesTakesOtherEngines: a silence added on one node applies
// on another once it reads them again, and ends there once it was ended on
// the first, at the next reload; a reload that misses a silence set within
// the last minute keeps it (the read may lag).
func TestReloadSilencesTakesOtherEngines(t *testing.T) {
	store, c := &sharedStore{}, &clock{t: t0}
	a := newEngine(t, nil, nil, store, c)
	b := newEngine(t, nil, nil, store, c)
	s, err := a.AddSilence(t.Context(), alerts.Silence{Device: "mh-1", Ends: t0.Add(time.Hour), Actor: "wang"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadSilences(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.Silences(); len(got) != 1 || got[0].ID != s.ID {
		t.Fatalf("the other engine after a reload: %+v", got)
	}
	// A silence set on b just now, missing from a lagging read, stays.
	store.mu.Lock()
	saved := store.silences
	store.silences = nil
	store.mu.Unlock()
	if err := b.ReloadSilences(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.Silences(); len(got) != 1 {
		t.Fatalf("a silence set within the grace, missing from the read, was dropped: %+v", got)
	}
	store.mu.Lock()
	store.silences = saved
	store.mu.Unlock()
	// Ended on a, within the minute: it ends on b at its next reload.
	c.Add(time.Second)
	if err := a.RemoveSilence(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadSilences(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.Silences(); len(got) != 0 {
		t.Fatalf("a silence ended on the first engine still holds on the other: %+v", got)
	}
}
