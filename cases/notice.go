package cases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ScoreNotice is a unit's daily score notice (每日考核通报): its evaluation
// for the month so far, sent to the unit every morning.
type ScoreNotice struct {
	// Unit is the unit's code.
	Unit string `json:"unit"`
	// Day is the date of the notice (YYYY-MM-DD in the notice's timezone).
	Day string `json:"day"`
	// From and To bound the period evaluated: from the first day of the
	// month of the day before Day to the start of Day.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Of is how many units were ranked.
	Of int `json:"of"`
	Result
	MTTASeconds float64 `json:"mtta_seconds"`
	MTTRSeconds float64 `json:"mttr_seconds"`
}

// Notice sends each unit its ScoreNotice once a day.
type Notice struct {
	// Tallies reads the unit tallies of a period. Required.
	Tallies func(ctx context.Context, from, to time.Time) ([]Tally, error)
	// Units returns the codes of the units to notify: each gets a notice,
	// with the base score when it had no case. Required.
	Units func() []string
	// Send delivers one notice. Required.
	Send func(ScoreNotice)
	// Evaluation scores and ranks the units.
	Evaluation Evaluation
	// Location is the timezone of the days. It defaults to Asia/Shanghai.
	Location *time.Location
	// At is the time of day the notices go out, after midnight. It
	// defaults to 8 hours.
	At time.Duration
	// Duty sends the day's notices if this node is to (the holder of the
	// cluster's lease), and reports whether it did; nil sends them always.
	// A node that does not hold the lease at At asks again every
	// CatchUpEvery for CatchUp, so that a lease handed on at At does not
	// lose the day.
	Duty func(ctx context.Context, send func(context.Context)) bool
	// Claim claims a day's notices (the day as YYYY-MM-DD) cluster-wide
	// before they are sent; false when another node claimed them. nil
	// claims nothing.
	Claim func(ctx context.Context, day string) (bool, error)
	// CatchUp and CatchUpEvery: see Duty. They default to 1 hour and 1
	// minute.
	CatchUp, CatchUpEvery time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (n *Notice) setDefaults() {
	if n.Location == nil {
		n.Location = DefaultCalendar().Location()
	}
	if n.At <= 0 {
		n.At = 8 * time.Hour
	}
	if n.Now == nil {
		n.Now = time.Now
	}
	if n.CatchUp <= 0 {
		n.CatchUp = time.Hour
	}
	if n.CatchUpEvery <= 0 {
		n.CatchUpEvery = time.Minute
	}
	if n.Logger == nil {
		n.Logger = slog.Default()
	}
}

// next returns the first sending time after now.
func (n *Notice) next(now time.Time) time.Time {
	now = now.In(n.Location)
	y, m, d := now.Date()
	at := time.Date(y, m, d, 0, 0, 0, 0, n.Location).Add(n.At)
	if !at.After(now) {
		at = time.Date(y, m, d+1, 0, 0, 0, 0, n.Location).Add(n.At)
	}
	return at
}

// Run sends the notices every day at At until ctx ends. A day whose
// sending time passed while the server was down is not made up (but for
// the catch-up of Duty). The next sending time is counted from the last
// one when the clock stands before it: a wall clock stepped back (or a
// timer that fired before the clock reached At) does not send that day
// again.
func (n *Notice) Run(ctx context.Context) {
	n.setDefaults()
	var last time.Time
	for {
		at := n.next(later(n.Now(), last))
		t := time.NewTimer(at.Sub(n.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		n.deliver(ctx, at)
		last = at
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// deliver sends the notices of the day of at, on the node holding the
// lease when Duty is set, once cluster-wide when Claim is.
func (n *Notice) deliver(ctx context.Context, at time.Time) {
	day := at.In(n.Location).Format(time.DateOnly)
	done := false
	send := func(ctx context.Context) {
		if n.Claim != nil {
			won, err := n.Claim(ctx, day)
			if err != nil {
				n.Logger.Warn("daily score notices not claimed: asked again", "day", day, "err", err)
				return
			}
			if !won {
				done = true // another node sent them
				return
			}
		}
		done = true
		if err := n.SendFor(ctx, at); err != nil && ctx.Err() == nil {
			n.Logger.Error("daily score notices not sent", "day", day, "err", err)
		}
	}
	if n.Duty == nil {
		send(ctx)
		return
	}
	for until := at.Add(n.CatchUp); ; {
		if n.Duty(ctx, send) && done {
			return
		}
		if !n.Now().Before(until) {
			n.Logger.Debug("daily score notices left to the node holding the lease", "day", day)
			return
		}
		t := time.NewTimer(n.CatchUpEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// SendFor evaluates the units for the notices of the day of day and sends
// one to each unit.
func (n *Notice) SendFor(ctx context.Context, day time.Time) error {
	n.setDefaults()
	if n.Tallies == nil || n.Units == nil || n.Send == nil {
		return errors.New("cases: a Notice needs Tallies, Units and Send")
	}
	day = day.In(n.Location)
	y, m, d := day.Date()
	to := time.Date(y, m, d, 0, 0, 0, 0, n.Location)
	py, pm, _ := to.AddDate(0, 0, -1).Date()
	from := time.Date(py, pm, 1, 0, 0, 0, 0, n.Location)
	tallies, err := n.Tallies(ctx, from, to)
	if err != nil {
		return fmt.Errorf("unit tallies %s to %s: %w", from.Format(time.DateOnly), to.Format(time.DateOnly), err)
	}
	seen := map[string]bool{}
	for _, t := range tallies {
		seen[t.Key] = true
	}
	for _, u := range n.Units() {
		if !seen[u] {
			tallies = append(tallies, Tally{Key: u})
			seen[u] = true
		}
	}
	results := n.Evaluation.Evaluate(tallies, ByScore, false)
	for _, r := range results {
		n.Send(ScoreNotice{Unit: r.Key, Day: to.Format(time.DateOnly), From: from, To: to, Of: len(results), Result: r,
			MTTASeconds: r.MTTA.Seconds(), MTTRSeconds: r.MTTR.Seconds()})
	}
	n.Logger.Info("daily score notices sent", "day", to.Format(time.DateOnly), "units", len(results))
	return nil
}
