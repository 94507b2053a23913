package api

import (
	"context"
	_ "embed"
	"encoding/csv"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/storage"
)

// defaultStatsPeriod is the period the evaluation covers when from is not
// given.
const defaultStatsPeriod = 30 * 24 * time.Hour

// CaseStats answers the evaluation of cases from the stored case events;
// *storage.DB is one.
type CaseStats interface {
	CaseTallies(ctx context.Context, by storage.CaseStatsBy, from, to time.Time, inScope func(grid string) bool) ([]cases.Tally, error)
	CaseActions(ctx context.Context, from, to time.Time, inScope func(grid string) bool) ([]cases.ActionCount, error)
}

// caseStatsGroups are the rankings of /api/v1/stats/cases/{group}.
var caseStatsGroups = []struct {
	path string
	by   storage.CaseStatsBy
	rank cases.RankBy
}{
	{"units", storage.CaseStatsByUnit, cases.ByScore},
	{"grids", storage.CaseStatsByGrid, cases.ByComposite},
	{"dispatchers", storage.CaseStatsByDispatcher, cases.ByComposite},
}

// caseStatsRoutes registers the case evaluation, when CaseStats is set.
func (s *Server) caseStatsRoutes(rt *routes) {
	if s.CaseStats == nil {
		return
	}
	for _, g := range caseStatsGroups {
		rt.HandleFunc("GET /api/v1/stats/cases/"+g.path, s.caseRanking(g.by, g.rank, writeRankingJSON))
		rt.HandleFunc("GET /api/v1/stats/cases/"+g.path+".csv", s.caseRanking(g.by, g.rank, writeRankingCSV))
	}
	rt.HandleFunc("GET /api/v1/stats/cases/ranking.html", s.caseRanking(storage.CaseStatsByUnit, cases.ByScore, s.writeRankingHTML))
	rt.HandleFunc("GET /api/v1/stats/cases/roles", s.caseRoles)
}

// ranking is one evaluation as the endpoints answer it.
type ranking struct {
	By      storage.CaseStatsBy `json:"by"`
	From    time.Time           `json:"-"`
	To      time.Time           `json:"-"`
	FromMs  int64               `json:"from"`
	ToMs    int64               `json:"to"`
	Results []rankingRow        `json:"results"`
	// names are the units' names, for the HTML page.
	names map[string]string
}

// rankingRow is a cases.Result with its times in seconds.
type rankingRow struct {
	cases.Result
	MTTASeconds float64 `json:"mtta_seconds"`
	MTTRSeconds float64 `json:"mttr_seconds"`
}

// caseScope is the grid filter of p's scope, nil for the whole city.
func caseScope(p *principal) func(string) bool {
	if p.scope == "" {
		return nil
	}
	return p.sees
}

// caseRanking serves a ranking of the assignments dispatched in [from, to)
// (see cases.Tally) through write. Unit rankings list every registered
// unit, those without cases too (they keep the base score), unless the
// token is scoped: then only the units that worked in its subtree, on its
// subtree's cases.
func (s *Server) caseRanking(by storage.CaseStatsBy, rank cases.RankBy, write func(http.ResponseWriter, *ranking)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		from, to, ok := s.timeRange(w, r, defaultStatsPeriod)
		if !ok {
			return
		}
		p := principalFrom(r.Context())
		tallies, err := s.CaseStats.CaseTallies(r.Context(), by, from, to, caseScope(p))
		if err != nil {
			s.caseStatsError(w, err)
			return
		}
		rk := &ranking{By: by, From: from, To: to, FromMs: from.UnixMilli(), ToMs: to.UnixMilli(), names: map[string]string{}}
		if by == storage.CaseStatsByUnit && s.Registry != nil {
			seen := map[string]bool{}
			for _, t := range tallies {
				seen[t.Key] = true
			}
			for _, u := range s.Registry.Units() {
				rk.names[u.Code] = u.Name
				if !seen[u.Code] && p.scope == "" {
					tallies = append(tallies, cases.Tally{Key: u.Code})
				}
			}
		}
		for _, res := range s.CaseEvaluation.Evaluate(tallies, rank, by == storage.CaseStatsByDispatcher) {
			rk.Results = append(rk.Results, rankingRow{Result: res, MTTASeconds: res.MTTA.Seconds(), MTTRSeconds: res.MTTR.Seconds()})
		}
		write(w, rk)
	}
}

func writeRankingJSON(w http.ResponseWriter, rk *ranking) {
	if rk.Results == nil {
		rk.Results = []rankingRow{}
	}
	writeJSON(w, http.StatusOK, rk)
}

// rankingColumns is the header of the ranking CSV.
var rankingColumns = []string{
	"rank", "key", "score", "band", "call_in", "composite", "received", "accountable", "signed_on_time", "handled", "handled_on_time",
	"closed", "closed_on_time", "overdue", "reworked", "reworks", "extended", "misrouted", "wrong_returns", "withdrawn",
	"sign_on_time_rate", "handling_rate", "handling_on_time_rate", "closing_rate", "closing_on_time_rate",
	"rework_rate", "extension_rate", "return_rate", "satisfaction", "evaluations", "mtta_seconds", "mttr_seconds",
	"sign_pending", "handle_pending", "close_pending",
}

func writeRankingCSV(w http.ResponseWriter, rk *ranking) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="case-ranking-`+string(rk.By)+`.csv"`)
	out := csv.NewWriter(w)
	_ = out.Write(rankingColumns)
	n := strconv.Itoa
	for _, r := range rk.Results {
		_ = out.Write([]string{
			n(r.Rank), cell(r.Key), num(r.Score), cell(r.Band), strconv.FormatBool(r.CallIn), opt(r.Composite),
			n(r.Received), n(r.Accountable()), n(r.SignedOnTime), n(r.Handled), n(r.HandledOnTime),
			n(r.Closed), n(r.ClosedOnTime), n(r.Overdue), n(r.Reworked), n(r.Reworks), n(r.Extended),
			n(r.Misrouted), n(r.WrongReturns), n(r.Withdrawn),
			opt(r.SignOnTime), opt(r.Handling), opt(r.HandlingOnTime), opt(r.Closing), opt(r.ClosingOnTime),
			opt(r.Rework), opt(r.Extension), opt(r.Return), opt(r.Satisfaction), n(r.SatisfactionN),
			num(r.MTTASeconds), num(r.MTTRSeconds),
			n(r.SignPending), n(r.HandlePending), n(r.ClosePending),
		})
	}
	out.Flush()
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// opt is a rate or mean, empty without a value.
func opt(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 4, 64)
}

//go:embed ranking.html.tmpl
var rankingPage string

var rankingTemplate = template.Must(template.New("ranking").Funcs(template.FuncMap{
	"pct": func(v *float64) string {
		if v == nil {
			return "–"
		}
		return strconv.FormatFloat(100**v, 'f', 1, 64) + "%"
	},
	"one": func(v *float64) string {
		if v == nil {
			return "–"
		}
		return strconv.FormatFloat(*v, 'f', 1, 64)
	},
	"day": func(t time.Time) string { return t.Format("2006-01-02 15:04 MST") },
	// dur is a mean time in minutes, or hours from 10 hours on; "–"
	// without any (nothing signed for or handled).
	"dur": func(d time.Duration) string {
		switch {
		case d <= 0:
			return "–"
		case d < 10*time.Hour:
			return strconv.FormatFloat(d.Minutes(), 'f', 0, 64) + " min"
		}
		return strconv.FormatFloat(d.Hours(), 'f', 1, 64) + " h"
	},
}).Parse(rankingPage))

// writeRankingHTML writes the unit ranking as a printable page, for the
// periodic public ranking.
func (s *Server) writeRankingHTML(w http.ResponseWriter, rk *ranking) {
	loc := s.CaseLocation
	if loc == nil {
		loc = time.UTC
	}
	rk.From, rk.To = rk.From.In(loc), rk.To.In(loc)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := rankingTemplate.Execute(w, rk); err != nil {
		s.Logger.Warn("ranking page not written", "err", err)
	}
}

// Name is the registered name of a unit, or its code.
func (rk *ranking) Name(code string) string {
	if n := rk.names[code]; n != "" {
		return n
	}
	return code
}

// caseRoles serves GET /api/v1/stats/cases/roles: what each member of
// staff did in [from, to), by role: every kind of event they recorded,
// counted.
func (s *Server) caseRoles(w http.ResponseWriter, r *http.Request) {
	from, to, ok := s.timeRange(w, r, defaultStatsPeriod)
	if !ok {
		return
	}
	acts, err := s.CaseStats.CaseActions(r.Context(), from, to, caseScope(principalFrom(r.Context())))
	if err != nil {
		s.caseStatsError(w, err)
		return
	}
	type actor struct {
		Role    string         `json:"role"`
		Actor   string         `json:"actor"`
		Actions map[string]int `json:"actions"`
		Total   int            `json:"total"`
	}
	out := []*actor{}
	for _, a := range acts {
		if len(out) == 0 || out[len(out)-1].Role != a.Role || out[len(out)-1].Actor != a.Actor {
			out = append(out, &actor{Role: a.Role, Actor: a.Actor, Actions: map[string]int{}})
		}
		last := out[len(out)-1]
		last.Actions[string(a.Kind)] += a.N
		last.Total += a.N
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from.UnixMilli(), "to": to.UnixMilli(), "roles": out})
}

// caseStatsError answers a failed statistics query.
func (s *Server) caseStatsError(w http.ResponseWriter, err error) {
	s.Logger.Error("case statistics failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "unavailable", "case statistics are unavailable")
}
