package alerts

import (
	"cmp"
	"container/heap"
	"encoding/base64"
	"fmt"
	"io"
	"iter"
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
	Rule   string
	Device string
	// Condition and Severity select alerts with any of the values.
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
// starts after the last alert of the previous one in sort order. List reads
// the alerts' published views, without the engine's mutex: it never waits
// for ingestion, nor ingestion for it. In the default order (fired) it
// walks the fired order from the cursor and stops at the end of the page;
// in another it scans every alert, keeping only the page's best (a heap).
func (e *Engine) List(f Filter) (Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	sel, err := e.selectTop(f, limit+1)
	if err != nil {
		return Page{}, err
	}
	var p Page
	if len(sel) > limit {
		sel = sel[:limit]
		last := sel[limit-1]
		p.Next = encodeCursor(last.key, last.v.ID)
	}
	p.Alerts = make([]Alert, len(sel))
	for i, r := range sel {
		p.Alerts[i] = r.v.clone()
	}
	return p, nil
}

// All returns every alert f selects after f.Cursor, in List's order,
// whatever f.Limit: what one pass over them reads instead of a List per
// page. The alerts are the engine's immutable views, not copies: read
// them, never change them. In the fired order they are the alerts that had
// fired at the call, each as it is when the iteration reaches it, read in
// batches of exportBatch (each in one read slot, none held while the
// caller handles them); in another order, as of the call.
func (e *Engine) All(f Filter) (iter.Seq[*Alert], error) {
	batches, err := e.batches(f)
	if err != nil {
		return nil, err
	}
	return func(yield func(*Alert) bool) {
		for batch := range batches {
			for _, v := range batch {
				if !yield(&v.Alert) {
					return
				}
			}
		}
	}, nil
}

// An Encoding turns an alert into its row of an export. Export keeps the
// row it encoded with the alert's immutable view, so that an export
// encodes again only the alerts that changed since the last one: make one
// Encoding with NewEncoding and keep it (each view keeps the rows of one
// Encoding, the last used). Its function must depend on the alert alone,
// and must not block.
type Encoding struct {
	encode func(b []byte, a *Alert) []byte
}

// NewEncoding returns the Encoding of encode, which appends a's row to b.
func NewEncoding(encode func(b []byte, a *Alert) []byte) *Encoding {
	return &Encoding{encode: encode}
}

// encodedRow is a view's row of one Encoding.
type encodedRow struct {
	enc *Encoding
	row []byte
}

// appendRow appends v's row of enc to b, encoding it only when v keeps
// none of enc.
func (enc *Encoding) appendRow(b []byte, v *alertView) []byte {
	if r := v.row.Load(); r != nil && r.enc == enc {
		return append(b, r.row...)
	}
	start := len(b)
	b = enc.encode(b, &v.Alert)
	v.row.Store(&encodedRow{enc: enc, row: slices.Clone(b[start:])})
	return b
}

// Export writes every alert f selects, as All reads them, to w as enc
// encodes them: batch by batch, each batch made in a read slot, so that
// the CPU an export takes counts against ReadSlots as a scan's does, and
// written out after the slot is released, so that a slow client holds
// none. An alert unchanged since an earlier export of enc is not encoded
// again. A bad filter is reported before anything is written; after that,
// the error is w's.
func (e *Engine) Export(f Filter, w io.Writer, enc *Encoding) error {
	batches, err := e.batches(f)
	if err != nil {
		return err
	}
	var buf []byte
	for batch := range batches {
		release := e.readSlot()
		for _, v := range batch {
			buf = enc.appendRow(buf, v)
		}
		release()
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		buf = buf[:0]
	}
	return nil
}

// batches returns the views f selects after f.Cursor, in f's order, in
// batches of up to exportBatch, each read in one read slot: in the fired
// order as the iteration reaches them, in another as of the call. A batch
// is reused for the next one.
func (e *Engine) batches(f Filter) (iter.Seq[[]*alertView], error) {
	q, err := parseSort(f)
	if err != nil {
		return nil, err
	}
	if q.field != "fired" {
		release := e.readSlot()
		sel := e.selectRanked(f, q, -1)
		release()
		return func(yield func([]*alertView) bool) {
			batch := make([]*alertView, 0, min(len(sel), exportBatch))
			for len(sel) > 0 {
				n := min(len(sel), exportBatch)
				for _, r := range sel[:n] {
					batch = append(batch, r.v)
				}
				if !yield(batch) {
					return
				}
				sel, batch = sel[n:], batch[:0]
			}
		}, nil
	}
	order := e.firedOrder()
	return func(yield func([]*alertView) bool) {
		batch := make([]*alertView, 0, exportBatch)
		for i, step := firedStart(order, q); 0 <= i && i < len(order); {
			release := e.readSlot()
			for ; 0 <= i && i < len(order) && len(batch) < exportBatch; i += step {
				if v := order[i].en.view.Load(); v != nil && e.selects(f, &v.Alert) {
					batch = append(batch, v)
				}
			}
			release()
			if len(batch) > 0 && !yield(batch) {
				return
			}
			clear(batch)
			batch = batch[:0]
		}
	}, nil
}

// exportBatch is how many alerts All and Export read in one read slot.
const exportBatch = 1024

// readSlot waits for one of the engine's ReadSlots and returns its
// release. Reads that scan alerts hold one, so that however many staff ask
// at once, they leave cores to ingestion: a waiting read is parked, not
// competing for a core. While ingestion runs on a machine without idle
// CPU, the holders also keep to ReadShare of the process's CPU (see
// readPace).
func (e *Engine) readSlot() (release func()) {
	slots := e.readSlots
	if slots == nil { // not started
		return func() {}
	}
	slots <- struct{}{}
	if e.pace == nil {
		return func() { <-slots }
	}
	e.pace.wait()
	done := e.pace.slot()
	return func() {
		done()
		<-slots
	}
}

// ranked is a view with its sort key.
type ranked struct {
	key int64
	v   *alertView
}

// topHeap holds the best alerts seen so far with the worst on top, in the
// order before says.
type topHeap struct {
	rs     []ranked
	before func(a, b ranked) int
}

func (h *topHeap) Len() int           { return len(h.rs) }
func (h *topHeap) Less(i, j int) bool { return h.before(h.rs[i], h.rs[j]) > 0 }
func (h *topHeap) Swap(i, j int)      { h.rs[i], h.rs[j] = h.rs[j], h.rs[i] }
func (h *topHeap) Push(x any)         { h.rs = append(h.rs, x.(ranked)) }
func (h *topHeap) Pop() any {
	r := h.rs[len(h.rs)-1]
	h.rs = h.rs[:len(h.rs)-1]
	return r
}

// sortQuery is a filter's order and where its cursor left off.
type sortQuery struct {
	field string // fired, updated or severity
	desc  bool
	// cursor is set when the filter continues a page that ended at after.
	cursor bool
	after  listed
}

// parseSort reads f's Sort and Cursor.
func parseSort(f Filter) (sortQuery, error) {
	q := sortQuery{desc: strings.HasPrefix(f.Sort, "-"), field: strings.TrimPrefix(f.Sort, "-")}
	switch q.field {
	case "":
		q.field, q.desc = "fired", true
	case "fired", "updated", "severity":
	default:
		return q, fmt.Errorf("%w: sort %q: want fired, updated or severity, optionally prefixed with -", ErrBadFilter, f.Sort)
	}
	if f.Cursor != "" {
		key, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return q, err
		}
		q.cursor, q.after = true, listed{fired: key, id: id}
	}
	return q, nil
}

// selectTop returns the first n views f selects after its cursor, in
// f.Sort order, in a read slot.
func (e *Engine) selectTop(f Filter, n int) ([]ranked, error) {
	q, err := parseSort(f)
	if err != nil {
		return nil, err
	}
	defer e.readSlot()()
	if q.field != "fired" {
		return e.selectRanked(f, q, n), nil
	}
	var out []ranked
	order := e.firedOrder()
	for i, step := firedStart(order, q); 0 <= i && i < len(order) && len(out) < n; i += step {
		if v := order[i].en.view.Load(); v != nil && e.selects(f, &v.Alert) {
			out = append(out, ranked{key: v.Fired.UnixMilli(), v: v})
		}
	}
	return out, nil
}

// selectRanked returns the first n views (all for n < 0) f selects after
// q's cursor, in q's order, from a scan of every alert. Called in a read
// slot.
func (e *Engine) selectRanked(f Filter, q sortQuery, n int) []ranked {
	after := ranked{key: q.after.fired, v: &alertView{Alert: Alert{ID: q.after.id}}}
	before := func(a, b ranked) int {
		c := cmp.Or(cmp.Compare(a.key, b.key), strings.Compare(a.v.ID, b.v.ID))
		if q.desc {
			return -c
		}
		return c
	}
	h := &topHeap{before: before}
	for _, l := range e.firedOrder() {
		v := l.en.view.Load()
		if v == nil || !e.selects(f, &v.Alert) {
			continue
		}
		r := ranked{key: sortKey(q.field, &v.Alert), v: v}
		switch {
		case q.cursor && before(r, after) <= 0:
		case n < 0 || len(h.rs) < n:
			if n < 0 {
				h.rs = append(h.rs, r)
			} else {
				heap.Push(h, r)
			}
		case before(r, h.rs[0]) < 0:
			h.rs[0] = r
			heap.Fix(h, 0)
		}
	}
	slices.SortFunc(h.rs, before)
	return h.rs
}

// selects reports whether f selects a.
func (e *Engine) selects(f Filter, a *Alert) bool {
	switch {
	case a.Condition == ConditionPending,
		f.Rule != "" && a.Rule != f.Rule,
		f.Device != "" && a.Device != f.Device && !slices.Contains(a.Members, f.Device),
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

// Get returns an alert and its trace, oldest event first, from its
// published view.
func (e *Engine) Get(id string) (Alert, []Event, error) {
	var view *alertView
	if en, ok := e.views.Load(id); ok {
		view = en.(*entry).view.Load()
	}
	if view == nil || view.Condition == ConditionPending {
		return Alert{}, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return view.clone(), slices.Clone(view.events), nil
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
