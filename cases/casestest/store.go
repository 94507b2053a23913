// Package casestest holds what tests of the case loop share: a Store in
// memory.
package casestest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gridwatch/gridwatch/cases"
)

// Store is a cases.Store in memory. Fail, when set, fails every save.
type Store struct {
	mu     sync.Mutex
	rows   map[string]cases.Case
	revs   map[string]uint64 // each row's save revision
	events []cases.Event
	fail   error
}

// Fail makes every later save fail with err; nil ends it.
func (m *Store) Fail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// Events returns every event saved.
func (m *Store) Events() []cases.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]cases.Event(nil), m.events...)
}

// Row returns the stored row of a case.
func (m *Store) Row(id string) (cases.Case, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.rows[id]
	return c.Clone(), ok
}

// SaveCases implements cases.Store.
func (m *Store) SaveCases(_ context.Context, cs []cases.Case, revision uint64, evs []cases.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if m.rows == nil {
		m.rows, m.revs = map[string]cases.Case{}, map[string]uint64{}
	}
	m.events = append(m.events, evs...)
	for _, c := range cs {
		m.rows[c.ID] = c.Clone()
		m.revs[c.ID] = revision
	}
	return nil
}

// LoadCasesChanged implements cases.Store.
func (m *Store) LoadCasesChanged(_ context.Context, since uint64) ([]cases.Case, []cases.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cs []cases.Case
	var evs []cases.Event
	for id, c := range m.rows {
		if m.revs[id] >= since {
			cs = append(cs, c.Clone())
			evs = append(evs, m.eventsOf(c)...)
		}
	}
	return cs, evs, nil
}

// LoadCases implements cases.Store.
func (m *Store) LoadCases(_ context.Context, closedSince time.Time) ([]cases.Case, []cases.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cs []cases.Case
	var evs []cases.Event
	for _, c := range m.rows {
		if c.Open() || !c.Updated.Before(closedSince) {
			cs = append(cs, c.Clone())
			evs = append(evs, m.eventsOf(c)...)
		}
	}
	return cs, evs, nil
}

// LoadCase implements cases.Store.
func (m *Store) LoadCase(_ context.Context, id string) (cases.Case, []cases.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.rows[id]
	if !ok {
		return cases.Case{}, nil, fmt.Errorf("%w: %q", cases.ErrNotFound, id)
	}
	return c.Clone(), m.eventsOf(c), nil
}

// eventsOf returns the events of c up to its version. Called with mu held.
func (m *Store) eventsOf(c cases.Case) []cases.Event {
	var out []cases.Event
	for _, ev := range m.events {
		if ev.CaseID == c.ID && ev.Seq <= c.Version {
			out = append(out, ev)
		}
	}
	return out
}
