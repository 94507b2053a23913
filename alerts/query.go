package alerts

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Filter selects alerts for List. Empty fields select everything; pending
// alerts are never listed.
type Filter struct {
	// Grid selects alerts in this grid or below it.
	Grid   string
	Unit   string
	Rule   string
	Device string
	// Status, Condition and Severity select alerts with any of the values.
	Status    []Status
	Condition []Condition
	Severity  []Severity
	// From and To select alerts that fired in [From, To).
	From, To time.Time
	// Sort is fired, updated or severity, prefixed with "-" for descending.
	// It defaults to "-fired": newest first.
	Sort string
	// Limit is the page size. It defaults to 100, at most 1000.
	Limit int
	// Cursor continues a previous List: its Page.Next.
	Cursor string
}

// Page is one page of List.
type Page struct {
	Alerts []Alert `json:"alerts"`
	// Next is the cursor of the next page; empty on the last page.
	Next string `json:"next,omitempty"`
}

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// sortKey returns the value an alert sorts by.
func sortKey(field string, a *Alert) int64 {
	switch field {
	case "updated":
		return a.Updated.UnixMilli()
	case "severity":
		return int64(a.Severity)
	}
	return a.Fired.UnixMilli()
}

// List returns one page of the alerts f selects, in f.Sort order with the
// id breaking ties. A cursor stays valid while alerts change: the next page
// starts after the last alert of the previous one in sort order.
func (e *Engine) List(f Filter) (Page, error) {
	desc := strings.HasPrefix(f.Sort, "-")
	field := strings.TrimPrefix(f.Sort, "-")
	switch field {
	case "":
		field, desc = "fired", true
	case "fired", "updated", "severity":
	default:
		return Page{}, fmt.Errorf("%w: sort %q: want fired, updated or severity, optionally prefixed with -", ErrBadFilter, f.Sort)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	var (
		afterKey int64
		afterID  string
	)
	if f.Cursor != "" {
		var err error
		if afterKey, afterID, err = decodeCursor(f.Cursor); err != nil {
			return Page{}, err
		}
	}
	cmpAlert := func(ak int64, aid string, bk int64, bid string) int {
		c := cmp.Or(cmp.Compare(ak, bk), strings.Compare(aid, bid))
		if desc {
			return -c
		}
		return c
	}
	e.mu.Lock()
	var out []Alert
	for _, en := range e.alerts {
		a := &en.Alert
		if !e.selects(f, a) {
			continue
		}
		if f.Cursor != "" && cmpAlert(sortKey(field, a), a.ID, afterKey, afterID) <= 0 {
			continue
		}
		out = append(out, a.clone())
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Alert) int {
		return cmpAlert(sortKey(field, &a), a.ID, sortKey(field, &b), b.ID)
	})
	var p Page
	if len(out) > limit {
		out = out[:limit]
		last := &out[limit-1]
		p.Next = encodeCursor(sortKey(field, last), last.ID)
	}
	p.Alerts = out
	return p, nil
}

// selects reports whether f selects a. Called with mu held.
func (e *Engine) selects(f Filter, a *Alert) bool {
	switch {
	case a.Condition == ConditionPending,
		f.Unit != "" && a.Unit != f.Unit,
		f.Rule != "" && a.Rule != f.Rule,
		f.Device != "" && a.Device != f.Device && !slices.Contains(a.Members, f.Device),
		len(f.Status) > 0 && !slices.Contains(f.Status, a.Status),
		len(f.Condition) > 0 && !slices.Contains(f.Condition, a.Condition),
		len(f.Severity) > 0 && !slices.Contains(f.Severity, a.Severity),
		!f.From.IsZero() && a.Fired.Before(f.From),
		!f.To.IsZero() && !a.Fired.Before(f.To):
		return false
	}
	return f.Grid == "" || e.InScope(f.Grid, a.Grid)
}

// encodeCursor and decodeCursor turn a position into an opaque string.
func encodeCursor(key int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(key, 10) + ":" + id))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if k, id, ok := strings.Cut(string(b), ":"); ok {
			if n, err := strconv.ParseInt(k, 10, 64); err == nil {
				return n, id, nil
			}
		}
	}
	return 0, "", fmt.Errorf("%w: cursor %q was not issued by List", ErrBadFilter, c)
}

// Get returns an alert and its trace, oldest event first.
func (e *Engine) Get(id string) (Alert, []Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en := e.alerts[id]
	if en == nil || en.Condition == ConditionPending {
		return Alert{}, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return en.clone(), slices.Clone(en.events), nil
}

// Subscription receives transitions: every event with the alert after it.
type Subscription struct {
	// C delivers the transitions; it is closed by Close or when the engine
	// closes.
	C       <-chan Transition
	c       chan Transition
	e       *Engine
	dropped atomic.Uint64
}

// DefaultSubscriptionBuffer is the buffer of a subscription when none is
// asked for.
const DefaultSubscriptionBuffer = 256

// Subscribe returns a subscription to transitions buffering up to buffer
// of them (default 256). A subscriber that falls behind loses the newest
// transitions, never blocks the engine; Dropped counts them.
func (e *Engine) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	s := &Subscription{c: make(chan Transition, buffer), e: e}
	s.C = s.c
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		close(s.c)
		return s
	}
	if e.subs == nil {
		e.subs = map[*Subscription]bool{}
	}
	e.subs[s] = true
	return s
}

// Dropped returns how many transitions the subscription lost.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C. It is safe to call twice.
func (s *Subscription) Close() {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if s.e.subs[s] {
		delete(s.e.subs, s)
		close(s.c)
	}
}

// publish hands t to every subscriber without blocking. Called with mu
// held.
func (e *Engine) publish(t Transition) {
	for s := range e.subs {
		select {
		case s.c <- t:
		default:
			s.dropped.Add(1)
			e.m.dropped.WithLabelValues("subscriber").Inc()
		}
	}
}
