// Package strikes bans a key once it has had too many events within a
// window: the failed-login and flapping bans of the MQTT broker and the
// failed-digest ban of the GB/T 28181 registrar.
package strikes

import (
	"sync"
	"time"
)

// Rule bans a key once it has Max events within Window, for Ban.
type Rule struct {
	Max         int
	Window, Ban time.Duration
}

// Entry is one key's recent events and ban. The zero value is a key
// without events.
type Entry struct {
	at          []time.Time // within the window
	bannedUntil time.Time
}

// Banned reports whether e is banned at now; a nil e is a key without
// events.
func (e *Entry) Banned(now time.Time) bool { return e != nil && now.Before(e.bannedUntil) }

// Add records an event at now and reports whether it started a ban.
func (r Rule) Add(e *Entry, now time.Time) bool {
	cut := 0
	for cut < len(e.at) && now.Sub(e.at[cut]) > r.Window {
		cut++
	}
	e.at = append(e.at[cut:], now)
	if len(e.at) < r.Max {
		return false
	}
	e.bannedUntil, e.at = now.Add(r.Ban), nil
	return true
}

// Idle reports whether e is neither banned nor has events within the
// window at now, so that forgetting it changes nothing.
func (r Rule) Idle(e *Entry, now time.Time) bool {
	return !e.Banned(now) && (len(e.at) == 0 || now.Sub(e.at[len(e.at)-1]) > r.Window)
}

// sweepEvery is how many new keys trigger a sweep of idle ones, so that a
// Table holds the recently active keys only.
const sweepEvery = 1024

// Table holds the entries of many keys under one Rule. It is safe for
// concurrent use.
type Table[K comparable] struct {
	rule    Rule
	mu      sync.Mutex
	m       map[K]*Entry
	inserts int
}

// NewTable returns an empty table of r.
func NewTable[K comparable](r Rule) *Table[K] {
	return &Table[K]{rule: r, m: map[K]*Entry{}}
}

// Banned reports whether k is banned at now.
func (t *Table[K]) Banned(k K, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k].Banned(now)
}

// Add records an event of k at now and reports whether it started a ban.
func (t *Table[K]) Add(k K, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok {
		e = &Entry{}
		t.m[k] = e
		if t.inserts++; t.inserts%sweepEvery == 0 {
			for k, e := range t.m {
				if t.rule.Idle(e, now) {
					delete(t.m, k)
				}
			}
		}
	}
	return t.rule.Add(e, now)
}

// Len returns the number of keys held.
func (t *Table[K]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
