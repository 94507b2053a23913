package cases

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestNoticeSendsEachUnitItsMonthSoFar(t *testing.T) {
	var asked [][2]time.Time
	var got []ScoreNotice
	n := &Notice{
		Tallies: func(_ context.Context, from, to time.Time) ([]Tally, error) {
			asked = append(asked, [2]time.Time{from, to})
			return []Tally{{Key: "water", Received: 4, SignedOnTime: 4, ClosedOnTime: 3, Overdue: 1}, {Key: "gone", Overdue: 50}}, nil
		},
		Units:  func() []string { return []string{"water", "gas"} },
		Send:   func(s ScoreNotice) { got = append(got, s) },
		Logger: slog.New(slog.DiscardHandler),
	}
	if err := n.SendFor(context.Background(), sh("2026-03-18 08:00")); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || !asked[0][0].Equal(sh("2026-03-01 00:00")) || !asked[0][1].Equal(sh("2026-03-18 00:00")) {
		t.Fatalf("period %v", asked)
	}
	if len(got) != 3 || got[0].Unit != "water" || got[0].Score != 1000+4+6-5 || got[0].Rank != 1 || got[0].Of != 3 ||
		got[1].Unit != "gas" || got[1].Score != 1000 || got[2].Unit != "gone" || !got[2].CallIn || got[0].Day != "2026-03-18" {
		t.Fatalf("notices %+v", got)
	}
	// On the first of a month the notice covers the whole month before.
	asked = nil
	if err := n.SendFor(context.Background(), sh("2026-03-01 08:00")); err != nil {
		t.Fatal(err)
	}
	if !asked[0][0].Equal(sh("2026-02-01 00:00")) || !asked[0][1].Equal(sh("2026-03-01 00:00")) {
		t.Fatalf("period on the first %v", asked)
	}
	n.Tallies = func(context.Context, time.Time, time.Time) ([]Tally, error) { return nil, errors.New("down") }
	if err := n.SendFor(context.Background(), sh("2026-03-02 08:00")); err == nil {
		t.Fatal("a failed read sent notices")
	}
}

func TestNoticeRunsOnceADayAtItsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var days []string
		n := &Notice{
			Tallies: func(context.Context, time.Time, time.Time) ([]Tally, error) { return nil, nil },
			Units:   func() []string { return []string{"water"} },
			Send: func(s ScoreNotice) {
				mu.Lock()
				days = append(days, s.Day+" "+time.Now().In(shanghai).Format("15:04"))
				mu.Unlock()
			},
			At:     8*time.Hour + 30*time.Minute,
			Logger: slog.New(slog.DiscardHandler),
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		// The bubble starts at midnight UTC, 08:00 in Shanghai.
		time.Sleep(3*24*time.Hour + time.Hour)
		synctest.Wait()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		start := time.Now().Add(-(3*24*time.Hour + time.Hour)).In(shanghai)
		var want []string
		for i := 0; i < 4; i++ {
			want = append(want, start.AddDate(0, 0, i).Format(time.DateOnly)+" 08:30")
		}
		if len(days) != 4 || days[0] != want[0] || days[3] != want[3] {
			t.Fatalf("sent %v, want %v", days, want)
		}
	})
}
