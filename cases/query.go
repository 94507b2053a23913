package cases

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"
)

// List bounds.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Filter selects cases. Empty fields select all.
type Filter struct {
	Status   []Status
	Category string
	Source   []Source
	Unit     string
	// Grid selects the cases in the subtree of this grid, by InScope.
	Grid    string
	InScope func(scope, grid string) bool
	// Overdue, when set, selects the overdue (true) or the other cases.
	Overdue *bool
	// From and To bound the time of receipt: From <= received < To.
	From, To time.Time
	// Visible, when set, is asked about every case: the API's scope of a
	// token.
	Visible func(*Case) bool
	// Cursor continues a listing where a Page ended.
	Cursor string
	// Limit bounds a page; it defaults to DefaultListLimit.
	Limit int
}

// Page is one page of a listing, newest received first.
type Page struct {
	Cases []Case `json:"cases"`
	// Next is the cursor of the following page; empty on the last one.
	Next string `json:"next,omitempty"`
}

// match reports whether the filter selects c.
func (f *Filter) match(c *Case) bool {
	switch {
	case len(f.Status) > 0 && !slices.Contains(f.Status, c.Status),
		f.Category != "" && c.Category != f.Category,
		len(f.Source) > 0 && !slices.Contains(f.Source, c.Source),
		f.Unit != "" && c.Unit != f.Unit,
		f.Grid != "" && c.Grid != f.Grid && (f.InScope == nil || !f.InScope(f.Grid, c.Grid)),
		f.Overdue != nil && c.IsOverdue() != *f.Overdue,
		!f.From.IsZero() && c.Received.Before(f.From),
		!f.To.IsZero() && !c.Received.Before(f.To),
		f.Visible != nil && !f.Visible(c):
		return false
	}
	return true
}

// cursor is the position after a case in list order.
func cursor(c *Case) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Received.UnixMicro(), 10) + " " + c.ID))
}

// parseCursor reverses cursor.
func parseCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	ts, id, ok := strings.Cut(string(b), " ")
	us, perr := strconv.ParseInt(ts, 10, 64)
	if err != nil || !ok || perr != nil {
		return time.Time{}, "", fmt.Errorf("%w: cursor %q was not issued by a listing", ErrBadFilter, s)
	}
	return time.UnixMicro(us), id, nil
}

// before orders cases newest received first, then by id.
func before(a, b *Case) int {
	return cmp.Or(b.Received.Compare(a.Received), strings.Compare(a.ID, b.ID))
}

// sorted returns copies of the cases f selects, in list order, those
// after pos only (when set), and at most limit of them (0: all). It sorts
// pointers under the read lock and copies only what it returns: a first
// page of 10,000 open cases copies 200.
func (s *Service) sorted(f Filter, pos *Case, limit int) ([]Case, error) {
	if f.Limit < 0 || f.Limit > MaxListLimit {
		return nil, fmt.Errorf("%w: limit must be 1..%d", ErrBadFilter, MaxListLimit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var sel []*Case
	for _, en := range s.cases {
		if f.match(&en.c) && (pos == nil || before(&en.c, pos) > 0) {
			sel = append(sel, &en.c)
		}
	}
	slices.SortFunc(sel, before)
	if limit > 0 && len(sel) > limit {
		sel = sel[:limit]
	}
	out := make([]Case, len(sel))
	for i, c := range sel {
		out[i] = c.Clone()
	}
	return out, nil
}

// List returns one page of the cases the filter selects.
func (s *Service) List(f Filter) (Page, error) {
	var pos *Case
	if f.Cursor != "" {
		ts, id, err := parseCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		pos = &Case{Received: ts, ID: id}
	}
	limit := cmp.Or(f.Limit, DefaultListLimit)
	all, err := s.sorted(f, pos, limit+1)
	if err != nil {
		return Page{}, err
	}
	page := Page{Cases: all}
	if len(all) > limit {
		page.Cases, page.Next = all[:limit], cursor(&all[limit-1])
	}
	return page, nil
}

// All returns every case the filter selects, in list order (Cursor and
// Limit are ignored): the CSV export.
func (s *Service) All(f Filter) (iter.Seq[Case], error) {
	f.Limit = 0
	all, err := s.sorted(f, nil, 0)
	if err != nil {
		return nil, err
	}
	return slices.Values(all), nil
}

// Change is one stored event with the case it led to.
type Change struct {
	Event Event `json:"event"`
	Case  Case  `json:"case"`
}

// Subscription receives the changes of cases as they are stored.
type Subscription struct {
	// C delivers the changes; it is closed by Close or when the service
	// closes.
	C <-chan Change
	c chan Change
	s *Service
	// dropped counts changes lost because C was full; guarded by s.mu.
	dropped uint64
}

// Subscribe returns a subscription buffering up to buffer changes (default
// 256). A subscriber that falls behind loses the newest changes, never
// blocks an action; Dropped counts them.
func (s *Service) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = 256
	}
	sub := &Subscription{c: make(chan Change, buffer), s: s}
	sub.C = sub.c
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.subs == nil {
		close(sub.c)
		return sub
	}
	s.subs[sub] = struct{}{}
	return sub
}

// Dropped returns how many changes the subscriber lost.
func (sub *Subscription) Dropped() uint64 {
	sub.s.mu.RLock()
	defer sub.s.mu.RUnlock()
	return sub.dropped
}

// Close ends the subscription and closes C. It is safe to call twice.
func (sub *Subscription) Close() {
	s := sub.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.c)
	}
}

// publishLocked hands the changes to the subscribers. Called with mu held.
func (s *Service) publishLocked(cs []Case, evs []Event) {
	for _, ev := range evs {
		var c Case
		for i := range cs {
			if cs[i].ID == ev.CaseID {
				c = cs[i]
			}
		}
		for sub := range s.subs {
			select {
			case sub.c <- Change{Event: ev, Case: c.Clone()}:
			default:
				sub.dropped++
				s.m.dropped.Inc()
			}
		}
	}
}
