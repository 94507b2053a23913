package alerts

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// StatsBy says what statistics are grouped by.
type StatsBy string

// Groupings of Stats.
const (
	// ByUnit groups by the unit an alert is routed or dispatched to.
	ByUnit StatsBy = "unit"
	// ByGrid groups by grid: an alert counts for its grid and every grid
	// above it.
	ByGrid StatsBy = "grid"
)

// Stats are the work-order figures of one unit or grid for a period.
type Stats struct {
	// Key is the unit or grid; "" collects alerts without a unit.
	Key string `json:"key"`
	// Received counts the alerts that fired in the period.
	Received int `json:"received"`
	// AckedOnTime and ResolvedOnTime count those acknowledged and resolved
	// by their deadlines.
	AckedOnTime    int `json:"acked_on_time"`
	ResolvedOnTime int `json:"resolved_on_time"`
	// Overdue counts the deadlines they missed.
	Overdue int `json:"overdue"`
	// A reopened work order starts its deadlines afresh and counts as its
	// reopened self.
	// OverdueNow counts the open work orders past a deadline now, whenever
	// they fired.
	OverdueNow int `json:"overdue_now"`
	// MTTA and MTTR are the mean times from firing to acknowledgement and
	// to resolution, of the received alerts that got there.
	MTTA time.Duration `json:"mtta"`
	MTTR time.Duration `json:"mttr"`
	// Score is AckedOnTime*ack_on_time + ResolvedOnTime*resolve_on_time -
	// (Overdue+OverdueNow)*overdue, as set in the rules file's scoring.
	Score float64 `json:"score"`
	// Rank is the position by score, 1 the best.
	Rank int `json:"rank"`
	// Flagged is set when Score is below the scoring threshold.
	Flagged bool `json:"flagged"`
}

// Stats returns the statistics of every unit or grid for alerts that fired
// in [from, to), ranked by score (best first, ties by key). A non-empty
// scope counts only the alerts of that grid's subtree and, by grid, only
// the grids in it: what a grid manager answers for.
func (e *Engine) Stats(by StatsBy, scope string, from, to time.Time) ([]Stats, error) {
	if by != ByUnit && by != ByGrid {
		return nil, fmt.Errorf("%w: group by %q: want unit or grid", ErrBadFilter, by)
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: from %s must be before to %s", ErrBadFilter, from, to)
	}
	// Stats reads the published views of the fired order, as List does.
	now := e.Now()
	type acc struct {
		Stats
		ackSum, resolveSum time.Duration
		acks, resolves     int
	}
	groups := map[string]*acc{}
	keys := make([]string, 0, 4)
	defer e.readSlot()()
	for _, l := range e.firedOrder() {
		v := l.en.view.Load()
		if v == nil {
			continue
		}
		a := &v.Alert
		if a.Condition == ConditionPending || a.Fired.IsZero() {
			continue
		}
		received := !a.Fired.Before(from) && a.Fired.Before(to)
		overdueNow := a.Overdue(now)
		if !received && !overdueNow || scope != "" && !e.InScope(scope, a.Grid) {
			continue
		}
		keys = keys[:0]
		if by == ByUnit {
			keys = append(keys, a.Unit)
		} else {
			keys = append(append(keys, a.Grid), e.Ancestors(a.Grid)...)
			if scope != "" {
				keys = slices.DeleteFunc(keys, func(k string) bool { return !e.InScope(scope, k) })
			}
		}
		for _, k := range keys {
			g := groups[k]
			if g == nil {
				g = &acc{Stats: Stats{Key: k}}
				groups[k] = g
			}
			if overdueNow {
				g.OverdueNow++
			}
			if !received {
				continue
			}
			g.Received++
			if !a.Acked.IsZero() {
				g.acks++
				g.ackSum += a.Acked.Sub(a.Fired)
				if a.Acked.Before(a.AckDue) && !a.AckOverdue {
					g.AckedOnTime++
				}
			}
			if !a.Resolved.IsZero() {
				g.resolves++
				g.resolveSum += a.Resolved.Sub(a.Fired)
				if a.Resolved.Before(a.ResolveDue) && !a.ResolveOverdue {
					g.ResolvedOnTime++
				}
			}
			g.Overdue += btoi(a.AckOverdue) + btoi(a.ResolveOverdue)
		}
	}
	sc := e.ruleView.Load().File.Scoring
	out := make([]Stats, 0, len(groups))
	for _, g := range groups {
		if g.acks > 0 {
			g.MTTA = g.ackSum / time.Duration(g.acks)
		}
		if g.resolves > 0 {
			g.MTTR = g.resolveSum / time.Duration(g.resolves)
		}
		g.Score = float64(g.AckedOnTime)*sc.AckOnTime + float64(g.ResolvedOnTime)*sc.ResolveOnTime -
			float64(g.Overdue+g.OverdueNow)*sc.Overdue
		g.Flagged = g.Score < sc.Threshold
		out = append(out, g.Stats)
	}
	slices.SortFunc(out, func(a, b Stats) int { return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(a.Key, b.Key)) })
	for i := range out {
		out[i].Rank = i + 1
	}
	return out, nil
}

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
