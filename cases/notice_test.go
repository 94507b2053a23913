package cases

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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

// TestNoticeOnceWhenTheClockStepsBack: the wall clock is stepped back a
// minute just after the notices went out (an NTP correction; a server
// test's clock, which stood still while the server started, had the same
// effect): the day's notices are not sent again at its 08:30, and the next
// day's go out once.
func TestNoticeOnceWhenTheClockStepsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu   sync.Mutex
			days []string
			back time.Duration
		)
		n := &Notice{
			Tallies: func(context.Context, time.Time, time.Time) ([]Tally, error) { return nil, nil },
			Units:   func() []string { return []string{"water"} },
			Send: func(s ScoreNotice) {
				mu.Lock()
				days = append(days, s.Day)
				back = time.Minute
				mu.Unlock()
			},
			Now: func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				return time.Now().Add(-back)
			},
			At:     8*time.Hour + 30*time.Minute,
			Logger: slog.New(slog.DiscardHandler),
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		// The bubble starts at midnight UTC, 08:00 in Shanghai.
		time.Sleep(24*time.Hour + time.Hour)
		synctest.Wait()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		start := time.Now().Add(-(24*time.Hour + time.Hour)).In(shanghai)
		want := []string{start.Format(time.DateOnly), start.AddDate(0, 0, 1).Format(time.DateOnly)}
		if len(days) != 2 || days[0] != want[0] || days[1] != want[1] {
			t.Fatalf("sent the notices of %v, want %v, each once", days, want)
		}
	})
}

// TestNoticeOnceAcrossALeaseHandover runs two nodes' notices under one
// lease that node a holds on the first day and node b from 08:32 on the
// second, nobody between 08:29 and 08:32 (a handover at the sending time),
// and both at 08:30 on the third: b catches the second day up within a
// minute of taking the lease, and every day goes out once, the claim shared
// by the nodes keeping the second sender off.
func TestNoticeOnceAcrossALeaseHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now() // 08:00 in Shanghai
		handover := start.Add(24*time.Hour + 29*time.Minute)
		taken := start.Add(24*time.Hour + 32*time.Minute)
		var mu sync.Mutex
		var sent []string
		claimed := ""
		claim := func(_ context.Context, day string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			if day <= claimed {
				return false, nil
			}
			claimed = day
			return true, nil
		}
		node := func(name string, holds func(now time.Time) bool) *Notice {
			return &Notice{
				Tallies: func(context.Context, time.Time, time.Time) ([]Tally, error) { return nil, nil },
				Units:   func() []string { return []string{"water"} },
				Send: func(s ScoreNotice) {
					mu.Lock()
					sent = append(sent, s.Day+" "+time.Now().In(shanghai).Format("15:04")+" "+name)
					mu.Unlock()
				},
				Duty: func(ctx context.Context, send func(context.Context)) bool {
					if !holds(time.Now()) {
						return false
					}
					send(ctx)
					return true
				},
				Claim:  claim,
				At:     8*time.Hour + 30*time.Minute,
				Logger: slog.New(slog.DiscardHandler),
			}
		}
		third := start.Add(48*time.Hour + 30*time.Minute)
		a := node("a", func(now time.Time) bool {
			return now.Before(handover) || !now.Before(third) && now.Before(third.Add(time.Minute))
		})
		b := node("b", func(now time.Time) bool { return !now.Before(taken) })
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, n := range []*Notice{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); n.Run(ctx) }()
		}
		time.Sleep(3*24*time.Hour + time.Hour)
		synctest.Wait()
		cancel()
		wg.Wait()
		day := func(i int) string { return start.AddDate(0, 0, i).In(shanghai).Format(time.DateOnly) }
		mu.Lock()
		defer mu.Unlock()
		// On the third day both think they hold it at 08:30 (a fencing
		// gone wrong): the claim lets one of them send.
		thirdDay := strings.TrimSuffix(strings.TrimSuffix(sent[min(2, len(sent)-1)], " a"), " b")
		want := []string{day(0) + " 08:30 a", day(1) + " 08:32 b", day(2) + " 08:30", day(3) + " 08:30 b"}
		if len(sent) != 4 || sent[0] != want[0] || sent[1] != want[1] || thirdDay != want[2] || sent[3] != want[3] {
			t.Fatalf("sent %v, want %v (the third by a or b)", sent, want)
		}
	})
}
