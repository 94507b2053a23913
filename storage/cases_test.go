package storage_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
)

// TestCasesRoundTripIntegration stores cases over several saves and loads
// them back: the latest row of each, its events up to its version, an
// event of a refused action (above the version) left out, closed cases
// before the horizon left out but found by LoadCase.
func TestCasesRoundTripIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	open := cases.Case{ID: "C1", Version: 1, Source: cases.SourcePatrol, Reporter: "li", Category: "road",
		Location: &cases.Point{Lat: 39.9, Lon: 116.4}, Grid: "G1", Status: cases.StatusReceived, Received: t0, Updated: t0}
	ev1 := cases.Event{CaseID: "C1", Seq: 1, TS: t0, Actor: "li", Role: "reporter", Kind: cases.EventReceive,
		To: cases.StatusReceived, Grid: "G1", Category: "road", Source: cases.SourcePatrol, Evidence: []string{"sha256:ab"}}
	if err := db.SaveCases(ctx, []cases.Case{open}, 10, []cases.Event{ev1}); err != nil {
		t.Fatal(err)
	}
	// A dispatch, saved.
	t1 := t0.Add(time.Minute)
	disp := open
	disp.Version, disp.Status, disp.Unit, disp.Updated, disp.SignDue = 2, cases.StatusDispatched, "U1", t1, t1.Add(time.Hour)
	ev2 := cases.Event{CaseID: "C1", Seq: 2, TS: t1, Actor: "wang", Role: "dispatcher", Kind: cases.EventDispatch,
		From: cases.StatusReceived, To: cases.StatusDispatched, Unit: "U1", Due: t1.Add(time.Hour)}
	if err := db.SaveCases(ctx, []cases.Case{disp}, 11, []cases.Event{ev2}); err != nil {
		t.Fatal(err)
	}
	// A refused action's event: stored, its case row not.
	orphan := cases.Event{CaseID: "C1", Seq: 3, TS: t1.Add(time.Second), Actor: "x", Kind: cases.EventSign}
	if err := db.SaveCases(ctx, nil, 0, []cases.Event{orphan}); err != nil {
		t.Fatal(err)
	}
	closed := cases.Case{ID: "C0", Version: 1, Source: cases.SourceHotline, Status: cases.StatusClosed, Received: t0.Add(-90 * 24 * time.Hour),
		Updated: t0.Add(-60 * 24 * time.Hour)}
	if err := db.SaveCases(ctx, []cases.Case{closed}, 12, []cases.Event{{CaseID: "C0", Seq: 1, TS: closed.Updated, Kind: cases.EventClose}}); err != nil {
		t.Fatal(err)
	}
	cs, evs, err := db.LoadCases(ctx, t0.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].ID != "C1" || cs[0].Version != 2 || cs[0].Unit != "U1" || !cs[0].SignDue.Equal(t1.Add(time.Hour)) ||
		cs[0].Location == nil || cs[0].Location.Lat != 39.9 {
		t.Fatalf("loaded %+v", cs)
	}
	if len(evs) != 2 || evs[0].Kind != cases.EventReceive || !slices.Equal(evs[0].Evidence, []string{"sha256:ab"}) ||
		evs[1].Kind != cases.EventDispatch || !evs[1].Due.Equal(t1.Add(time.Hour)) || !evs[1].TS.Equal(t1) || evs[1].Role != "dispatcher" {
		t.Fatalf("events %+v", evs)
	}
	old, oldEvents, err := db.LoadCase(ctx, "C0")
	if err != nil || old.Status != cases.StatusClosed || len(oldEvents) != 1 {
		t.Fatalf("LoadCase(C0) = %+v, %v, %v", old, oldEvents, err)
	}
	if _, _, err := db.LoadCase(ctx, "nope"); !errors.Is(err, cases.ErrNotFound) {
		t.Fatalf("LoadCase(nope): %v", err)
	}
	// What another node saved since revision 11: C1 at its latest row (the
	// dispatch, saved at 11) and C0 (12), not what was saved before.
	changed, changedEvents, err := db.LoadCasesChanged(ctx, 11)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(changed, func(a, b cases.Case) int { return strings.Compare(a.ID, b.ID) })
	if len(changed) != 2 || changed[0].ID != "C0" || changed[1].ID != "C1" || changed[1].Version != 2 || len(changedEvents) != 3 {
		t.Fatalf("LoadCasesChanged(11) = %+v with %d events", changed, len(changedEvents))
	}
	if changed, _, err := db.LoadCasesChanged(ctx, 13); err != nil || len(changed) != 0 {
		t.Fatalf("LoadCasesChanged(13) = %+v, %v", changed, err)
	}
}
