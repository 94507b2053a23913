package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// openCases are the statuses of a case being worked.
const openCases = "received,registered,dispatched,handling,suspended,handled,verified"

// TestConsoleLoad measures the console with 5,000 devices and 10,000 open
// cases (e2e/load.test.mjs): the time to the queue's first row (its first
// page of 200) and to the whole queue, and the time from a device's breach
// (mosquitto_pub) and from another client's action to the change on
// screen. The figures are printed (FIGURES {…}) and left in
// load-figures.json, not asserted: a loaded machine says little about
// them. The cases are seeded in ClickHouse before the server starts
// (seedCases), which restores them as it would after a restart.
func TestConsoleLoad(t *testing.T) {
	node := needBrowser(t)
	gen := simulators.City{Devices: 5000, Grids: 100, Seed: 21}
	all, err := gen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	gauges := make([]devices.Device, len(all))
	for i, d := range all {
		d.ID, d.Type, d.Name = fmt.Sprintf("wl-%06d", i+1), "water_level", "Gauge "+d.Name
		gauges[i] = d
	}
	const open = 10000
	var seeded time.Duration
	// The city generator's own devices are not registered: its areas are.
	c := startCity(t, simulators.City{Devices: 1, Grids: 100, Seed: 21}, gauges, floodRules, nil, func(addr, db string) {
		start := time.Now()
		seedCases(t, addr, db, gauges, open)
		seeded = time.Since(start)
	})
	n := c.total(t, "cases", openCases)
	t.Logf("%d open cases (%d seeded in %s), 5,000 devices", n, open, seeded.Round(time.Millisecond))
	if n < open {
		t.Fatalf("the server restored %d open cases, not %d", n, open)
	}
	runNode(t, node, "e2e/load.test.mjs", c, map[string]any{
		"gauges": []map[string]string{asJS(gauges[10]), asJS(gauges[2000]), asJS(gauges[4999])}, "open": n,
	})
}

// seedCases makes n open cases of every open status through a case loop
// over a store in memory, with the intake and lifecycle's own rules (ids,
// deadlines, events): patrol reports and hotline tickets waiting to be
// registered, and operators' cases registered, dispatched, signed for and
// handled; received over the last days, so that some are overdue, and
// ticked at the end, so that their deadline events are recorded. It then
// stores them in ClickHouse in a few large inserts. (Through the API, one
// report and one insert at a time, 10,000 cases take minutes.)
func seedCases(t *testing.T, addr, db string, devs []devices.Device, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cats := cases.DefaultCategories()
	var codes []string
	for _, c := range cats.All() {
		codes = append(codes, c.Code)
	}
	now := time.Now()
	clock := now
	mem := &casestest.Store{}
	svc := &cases.Service{
		Store: mem, Timing: cases.Schedule{Calendar: cases.DefaultCalendar(), Categories: cats},
		Category: func(code string) (string, bool) { c, ok := cats.Get(code); return c.Route, ok },
		Location: cases.DefaultCalendar().Location(), TickEvery: time.Hour, Now: func() time.Time { return clock },
		Logger: slog.New(slog.DiscardHandler),
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ids := make([]string, 0, n)
	patrol := cases.Actor{Name: "patrol-d01", Role: cases.RoleReporter}
	operator := cases.Actor{Name: "dispatcher", Role: cases.RoleDispatcher}
	for i := range n {
		d := devs[i%len(devs)]
		clock = now.Add(-time.Duration(n-i) * 20 * time.Second)
		r := cases.Report{
			Source: cases.SourceOperator, Actor: operator, Category: codes[i%len(codes)], Grid: d.Grid,
			Location: &cases.Point{Lat: d.Lat, Lon: d.Lon}, Description: fmt.Sprintf("seeded case %d near %s", i, d.Name),
		}
		switch step := i % 10; {
		case step < 3:
			r.Source, r.Actor = cases.SourcePatrol, patrol
		case step == 3:
			r.Source, r.Actor, r.Origin = cases.SourceHotline, cases.Actor{Name: "hotline", Role: cases.RoleSystem}, fmt.Sprintf("12345-%07d", i)
		}
		c, _, err := svc.Report(ctx, r)
		if err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		ids = append(ids, c.ID)
		unit := "water"
		if strings.HasPrefix(d.Grid, "D01-") {
			unit = "chengguan-d01"
		}
		crew := cases.Actor{Name: "crew-" + unit, Role: cases.RoleUnit, Unit: unit}
		// The operators' cases go on step by step, a minute apart.
		for _, a := range []cases.Action{
			{Kind: cases.EventRegister, Actor: operator, Force: true},
			{Kind: cases.EventDispatch, Actor: operator, Unit: unit},
			{Kind: cases.EventDispatch, Actor: operator, Unit: unit}, // re-routed: still dispatched
			{Kind: cases.EventSign, Actor: crew},
			{Kind: cases.EventNote, Actor: crew, Note: "on site"},
			{Kind: cases.EventHandle, Actor: crew, Note: "done"},
		}[:max(0, i%10-3)] {
			clock = clock.Add(time.Minute)
			a.Case, a.Version = c.ID, c.Version
			if c, err = svc.Act(ctx, a); err != nil {
				t.Fatalf("case %d: %s: %v", i, a.Kind, err)
			}
		}
	}
	clock = now
	svc.Tick(ctx)
	byCase := map[string][]cases.Event{}
	for _, ev := range mem.Events() {
		byCase[ev.CaseID] = append(byCase[ev.CaseID], ev)
	}
	took := time.Since(now)
	store, err := storage.Open(ctx, storage.Options{Addr: addr, Database: db, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const chunk = 2500
	for start := 0; start < len(ids); start += chunk {
		var part []cases.Case
		var partEvs []cases.Event
		for _, id := range ids[start:min(start+chunk, len(ids))] {
			c, _ := mem.Row(id)
			part = append(part, c)
			partEvs = append(partEvs, byCase[id]...)
		}
		if err := store.SaveCases(ctx, part, 1, partEvs); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seeded %d cases, %d events: made in %s, stored in %s", len(ids), len(mem.Events()), took.Round(time.Millisecond), (time.Since(now) - took).Round(time.Millisecond))
}

// total counts the alerts or cases (what) of the statuses, page by page.
func (c *city) total(t *testing.T, what, statuses string) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		req, _ := http.NewRequest(http.MethodGet, c.url()+"/api/v1/"+what+"?limit=1000&status="+statuses+"&cursor="+url.QueryEscape(cursor), nil)
		req.Header.Set("Authorization", "Bearer "+c.tokens["dispatcher"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page map[string]json.RawMessage
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		var items []json.RawMessage
		if err == nil {
			err = json.Unmarshal(page[what], &items)
		}
		var next string
		if err == nil && page["next"] != nil {
			err = json.Unmarshal(page["next"], &next)
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(items)
		if next == "" {
			return n
		}
		cursor = next
	}
}
