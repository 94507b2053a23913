package alerts

import (
	"cmp"
	"slices"
	"sort"
	"strings"
)

// listed is one alert of the fired order: its position, which never
// changes once the alert fired, and the entry whose view readers load.
type listed struct {
	fired int64 // Fired, in ms
	id    string
	en    *entry
}

// compareListed orders by fired time, then id: List's "fired" order.
func compareListed(a, b listed) int {
	return cmp.Or(cmp.Compare(a.fired, b.fired), strings.Compare(a.id, b.id))
}

// The fired order is every alert that fired, in the order of
// compareListed: what List and All read instead of ranging over
// every view. Engine.fired is the engine's copy, guarded by mu, and
// Engine.order the snapshot readers load, which mu.Unlock publishes (settle). The
// snapshot is never written: an append writes past the length readers
// hold (or into a new array), and anything else (an alert firing before
// the newest, pruning) builds a new array.

// listFired adds en, which fired, to the fired order that mu.Unlock (settle)
// publishes next. Called with mu held.
func (e *Engine) listFired(en *entry) {
	en.listed = true
	e.fresh = append(e.fresh, listed{fired: en.Fired.UnixMilli(), id: en.ID, en: en})
}

// unlistPruned drops the entries prune forgot from the fired order.
// Called with mu held.
func (e *Engine) unlistPruned() {
	e.fired = slices.DeleteFunc(slices.Clone(e.fired), func(l listed) bool { return !l.en.listed })
	e.reorder = true
}

// publishOrder merges the alerts that fired since the last publication
// into the fired order and publishes it, when it changed. Called with mu
// held.
func (e *Engine) publishOrder() {
	if len(e.fresh) == 0 && !e.reorder {
		return
	}
	fresh := e.fresh
	slices.SortFunc(fresh, compareListed)
	if n := len(e.fired); n == 0 || len(fresh) == 0 || compareListed(e.fired[n-1], fresh[0]) < 0 {
		e.fired = append(e.fired, fresh...) // the usual case: alerts fire in clock order
	} else {
		merged := make([]listed, 0, n+len(fresh)+n/4)
		i := sort.Search(n, func(i int) bool { return compareListed(e.fired[i], fresh[0]) > 0 })
		merged = append(merged, e.fired[:i]...)
		rest := e.fired[i:]
		for len(rest) > 0 && len(fresh) > 0 {
			if compareListed(rest[0], fresh[0]) < 0 {
				merged, rest = append(merged, rest[0]), rest[1:]
			} else {
				merged, fresh = append(merged, fresh[0]), fresh[1:]
			}
		}
		e.fired = append(append(merged, rest...), fresh...)
	}
	clear(e.fresh)
	e.fresh, e.reorder = e.fresh[:0], false
	order := e.fired
	e.order.Store(&order)
}

// firedOrder returns the published fired order.
func (e *Engine) firedOrder() []listed {
	if p := e.order.Load(); p != nil {
		return *p
	}
	return nil
}

// firedStart returns where a walk of order in q's direction starts, after
// q's cursor, and its step: the walk visits i, i+step, … while inside
// order.
func firedStart(order []listed, q sortQuery) (i, step int) {
	if q.desc {
		i = len(order)
		if q.cursor {
			i = sort.Search(len(order), func(i int) bool { return compareListed(order[i], q.after) >= 0 })
		}
		return i - 1, -1
	}
	if q.cursor {
		i = sort.Search(len(order), func(i int) bool { return compareListed(order[i], q.after) > 0 })
	}
	return i, 1
}
