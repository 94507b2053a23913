package alerts

import (
	"context"
	"time"
)

// HeardFresh is how long an answer of Engine.Heard counts: a device this
// node has not heard from for one of its absence windows is counted
// silent only on an answer asked within HeardFresh, so that a reading
// another node received since is seen (once stored, a second or two
// after it arrived).
const HeardFresh = 10 * time.Second

// unheard reports whether d's silence waits for Heard: this node has not
// heard from d for one of its absence windows and the cluster was not
// asked about d within HeardFresh; it then queues d to be asked, and the
// answer looks at d's absence rules again (settleHeard). Called with mu
// held, by checkAbsence with Heard set.
func (e *Engine) unheard(d *deviceState, now time.Time) bool {
	if d.heardAsked {
		return true
	}
	if now.Sub(d.heardAt) < HeardFresh {
		return false
	}
	shortest, longest := absenceWindows(d)
	if now.Sub(d.lastSeen) < shortest {
		return false
	}
	// A reading received before this node's last one, or too long ago
	// for any window, changes nothing.
	d.heardAsked, d.heardSince = true, d.lastSeen
	if from := now.Add(-longest); from.After(d.heardSince) {
		d.heardSince = from
	}
	e.heard.ask = append(e.heard.ask, d)
	e.m.heardAsked.Inc()
	kick(e.heard.kick)
	return true
}

// absenceWindows returns the shortest and the longest window of d's
// absence rules.
func absenceWindows(d *deviceState) (shortest, longest time.Duration) {
	for i, r := range d.absence {
		w := absenceWindow(r, d)
		if i == 0 || w < shortest {
			shortest = w
		}
		longest = max(longest, w)
	}
	return shortest, longest
}

// absenceWindow is how long d must be silent for absence rule r to hold.
func absenceWindow(r *rule, d *deviceState) time.Duration {
	return time.Duration(r.Absent * float64(d.typ.Interval))
}

// settleHeard asks Heard, off mu, when the cluster last heard from the
// devices queued by unheard, takes a later time as the device's last
// observation and looks at their absence rules again; when Heard fails,
// they are asked again at the next Tick, and are not counted silent
// meanwhile.
func (e *Engine) settleHeard(ctx context.Context) {
	e.mu.Lock()
	ask := e.heard.ask
	e.heard.ask = nil
	asked := e.Now()
	since := asked
	ids := make([]string, len(ask))
	for i, d := range ask {
		ids[i] = d.id
		if d.heardSince.Before(since) {
			since = d.heardSince
		}
	}
	e.mu.Unlock()
	if len(ask) == 0 {
		return
	}
	heard, err := e.Heard(ctx, ids, since)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.m.heard.WithLabelValues("error").Add(float64(len(ask)))
		if !e.heard.failing && ctx.Err() == nil {
			e.Logger.Warn("cannot tell whether other nodes heard from quiet devices; not counting them silent, asking again",
				"devices", len(ask), "err", err)
		}
		e.heard.failing = true
		e.heard.ask = append(e.heard.ask, ask...)
		return
	}
	if e.heard.failing {
		e.Logger.Info("other nodes' hearing of quiet devices answered again", "devices", len(ask))
		e.heard.failing = false
	}
	e.m.heardAsked.Sub(float64(len(ask)))
	now := e.Now()
	for _, d := range ask {
		d.heardAsked = false
		if e.devs[d.id] != d {
			continue // forgotten meanwhile
		}
		d.heardAt = asked
		if t, ok := heard[d.id]; ok && t.After(d.lastSeen) {
			d.lastSeen = t
		}
		if shortest, _ := absenceWindows(d); now.Sub(d.lastSeen) < shortest {
			e.m.heard.WithLabelValues("heard").Inc()
		} else {
			e.m.heard.WithLabelValues("silent").Inc()
		}
		if at, ok := e.checkAbsence(d, now); ok {
			e.arm(d, at)
		}
	}
}
