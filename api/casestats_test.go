package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// fakeCaseStats answers from fixed tallies, keeping those whose grid the
// scope accepts; err fails every query.
type fakeCaseStats struct {
	tallies map[storage.CaseStatsBy][]gridTally
	actions []cases.ActionCount
	err     error
}

// gridTally is a tally of one grid, as storage sums them per key.
type gridTally struct {
	grid string
	cases.Tally
}

func (f fakeCaseStats) CaseTallies(_ context.Context, by storage.CaseStatsBy, _, _ time.Time, inScope func(string) bool) ([]cases.Tally, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []cases.Tally
	for _, t := range f.tallies[by] {
		if inScope == nil || inScope(t.grid) {
			out = append(out, t.Tally)
		}
	}
	return out, nil
}

func (f fakeCaseStats) CaseActions(_ context.Context, _, _ time.Time, inScope func(string) bool) ([]cases.ActionCount, error) {
	if f.err != nil {
		return nil, f.err
	}
	if inScope != nil && !inScope("D01-S01-G01") {
		return nil, nil
	}
	return f.actions, nil
}

func TestCaseRanking(t *testing.T) {
	e := &docEnv{alerts: newAlertEnv(t)}
	stats := fakeCaseStats{
		tallies: map[storage.CaseStatsBy][]gridTally{
			storage.CaseStatsByUnit: {
				{"D01-S01-G01", cases.Tally{Key: "water", Received: 10, Signed: 10, SignedOnTime: 9, Handled: 9, HandledOnTime: 8, Closed: 8, ClosedOnTime: 8, Overdue: 2,
					SignTime: 10 * 10 * time.Minute, SignSettled: 10, HandleSettled: 10, CloseSettled: 9, ExtendSettled: 10, ReturnSettled: 10}},
				{"D02-S01-G01", cases.Tally{Key: "=cmd", Received: 60, Overdue: 50}},
			},
		},
		actions: []cases.ActionCount{{Role: "dispatcher", Actor: "d1", Kind: cases.EventDispatch, N: 3}, {Role: "dispatcher", Actor: "d1", Kind: cases.EventMerge, N: 1},
			{Role: "unit", Actor: "u1", Kind: cases.EventSign, N: 2}},
	}
	_, srv := e.server(t, func(s *Server) {
		s.CaseStats = stats
		s.Registry = fakeRegistry{units: []devices.Unit{{Code: "water", Name: "水务局"}, {Code: "gas", Name: "燃气集团 <b>"}}}
		s.CaseLocation = time.FixedZone("CST", 8*3600)
	})
	get := func(path, token string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	code, _, body := get("/api/v1/stats/cases/units?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z", "tok-city")
	var rk struct {
		By      string
		From    int64
		Results []map[string]any
	}
	if err := json.Unmarshal([]byte(body), &rk); code != 200 || err != nil {
		t.Fatalf("%d %s %v", code, body, err)
	}
	// 1000 + 9 + 16 − 10 = 1015; gas has no case: 1000; =cmd 1000 − 250.
	if len(rk.Results) != 3 || rk.Results[0]["key"] != "water" || rk.Results[0]["score"] != 1015.0 || rk.Results[1]["key"] != "gas" ||
		rk.Results[2]["call_in"] != true || rk.Results[0]["mtta_seconds"] != 600.0 || rk.Results[0]["sign_on_time_rate"] != 0.9 ||
		rk.From != time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli() {
		t.Fatalf("ranking %s", body)
	}
	// A D01 token sees D01's cases only, and not the units without any.
	_, _, body = get("/api/v1/stats/cases/units", "tok-viewer")
	if !strings.Contains(body, `"key":"water"`) || strings.Contains(body, `"key":"gas"`) || strings.Contains(body, "cmd") {
		t.Fatalf("scoped ranking %s", body)
	}

	code, ctype, body := get("/api/v1/stats/cases/units.csv", "tok-city")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || ctype != "text/csv; charset=utf-8" || err != nil || len(rows) != 4 || rows[0][1] != "key" || rows[1][1] != "water" ||
		rows[1][2] != "1015" || rows[1][20] != "0.9000" || rows[3][1] != "'=cmd" || rows[0][34] != "close_pending" || rows[1][34] != "1" {
		t.Fatalf("csv %d %s %v %q", code, ctype, err, rows)
	}

	code, ctype, body = get("/api/v1/stats/cases/ranking.html?from=2026-03-01T00:00:00Z&to=2026-04-01T00:00:00Z", "tok-city")
	if code != 200 || ctype != "text/html; charset=utf-8" || !strings.Contains(body, "水务局") || !strings.Contains(body, "燃气集团 &lt;b&gt;") ||
		!strings.Contains(body, `class="callin"`) || !strings.Contains(body, "2026-03-01 08:00 CST") || !strings.Contains(body, "90.0%") || !strings.Contains(body, "<td>10</td><td>1</td>") || !strings.Contains(body, "<td>10 min</td><td>–</td>") || !strings.Contains(body, "回退率") {
		t.Fatalf("html %d %s\n%s", code, ctype, body)
	}

	_, _, body = get("/api/v1/stats/cases/roles", "tok-city")
	var roles struct {
		Roles []struct {
			Role, Actor string
			Total       int
			Actions     map[string]int
		}
	}
	if err := json.Unmarshal([]byte(body), &roles); err != nil || len(roles.Roles) != 2 || roles.Roles[0].Actor != "d1" || roles.Roles[0].Total != 4 ||
		roles.Roles[0].Actions["merge"] != 1 || roles.Roles[1].Role != "unit" {
		t.Fatalf("roles %s %v", body, err)
	}
	if code, _, _ := get("/api/v1/stats/cases/grids?from=5&to=5", "tok-city"); code != http.StatusBadRequest {
		t.Fatalf("an empty period: %d", code)
	}
}
