package simulation_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// BenchmarkAlertIntake raises a flood of alerts, each of its own manhole
// cover 100 m from the next, into a case loop on a fresh ClickHouse
// database, and reports the cases opened per second: one transition at a
// time through ObserveAlert (each case its own save, as the server took
// alerts before), beside ObserveAlerts in batches as the server's intake
// drains them now, the baseline's own count of alerts first and then
// 10,000. Every case is registered and dispatched by the system.
//
//	go test ./cases/simulation -run '^$' -bench AlertIntake -benchtime 1x
func BenchmarkAlertIntake(b *testing.B) {
	for _, bc := range []struct {
		name    string
		alerts  int
		batched bool
	}{
		{"one_by_one/500", 500, false},
		{"batched/500", 500, true},
		{"batched/10000", 10000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var took time.Duration
			for range b.N {
				took += raiseAlerts(b, bc.alerts, bc.batched)
			}
			b.ReportMetric(float64(bc.alerts*b.N)/took.Seconds(), "cases/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// raiseAlerts raises n alerts into a case loop on a fresh database and
// returns how long the intake took.
func raiseAlerts(b *testing.B, n int, batched bool) time.Duration {
	b.StopTimer()
	ctx := context.Background()
	addr, database := storagetest.Database(b) // skips under -short
	db, err := storage.Open(ctx, storage.Options{Addr: addr, Database: database, Password: storagetest.Password(b)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	cats := cases.DefaultCategories()
	svc := &cases.Service{
		Store:  db,
		Timing: cases.Schedule{Calendar: cases.DefaultCalendar(), Categories: cats},
		Category: func(code string) (string, bool) {
			c, ok := cats.Get(code)
			return c.Route, ok
		},
		Route:     unitFor,
		TickEvery: time.Hour,
		Logger:    slog.New(slog.DiscardHandler),
	}
	if err := svc.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	fired := time.Now()
	as := make([]cases.AlertInfo, n)
	for i := range as {
		as[i] = cases.AlertInfo{ID: fmt.Sprintf("a-%d", i), Source: cases.SourceAlert, Device: fmt.Sprintf("mh-%d", i),
			Grid: grids[i%len(grids)], Category: "C0150", Summary: "tilt = 30: tilt > 15", Firing: true, Since: fired,
			Location: &cases.Point{Lat: 34.7 + float64(i/100)*0.0009, Lon: 111.2 + float64(i%100)*0.0011}}
	}
	b.StartTimer()
	start := time.Now()
	var results []cases.Observed
	if batched {
		for i := 0; i < n; i += cases.MaxAlertBatch {
			results = append(results, svc.ObserveAlerts(ctx, as[i:min(i+cases.MaxAlertBatch, n)])...)
		}
	} else {
		for _, a := range as {
			id, err := svc.ObserveAlert(ctx, a)
			results = append(results, cases.Observed{Case: id, Err: err})
		}
	}
	took := time.Since(start)
	b.StopTimer()
	ids := map[string]bool{}
	for i, r := range results {
		if r.Err != nil || r.Case == "" {
			b.Fatalf("alert %d: case %q, %v", i, r.Case, r.Err)
		}
		if c, _, err := svc.Get(ctx, r.Case); err != nil || c.Status != cases.StatusDispatched {
			b.Fatalf("alert %d: case %s is %s, want dispatched (%v)", i, r.Case, c.Status, err)
		}
		ids[r.Case] = true
	}
	if len(ids) != n {
		b.Fatalf("%d alerts opened %d cases", n, len(ids))
	}
	return took
}
