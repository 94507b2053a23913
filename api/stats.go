package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// defaultStatsPeriod is the period statistics cover when from is not given.
const defaultStatsPeriod = 30 * 24 * time.Hour

// statsJSON is one row of the statistics: alerts.Stats with durations in
// seconds.
type statsJSON struct {
	Key            string  `json:"key"`
	Rank           int     `json:"rank"`
	Score          float64 `json:"score"`
	Flagged        bool    `json:"flagged"`
	Received       int     `json:"received"`
	AckedOnTime    int     `json:"acked_on_time"`
	ResolvedOnTime int     `json:"resolved_on_time"`
	Overdue        int     `json:"overdue"`
	OverdueNow     int     `json:"overdue_now"`
	MTTASeconds    float64 `json:"mtta_seconds"`
	MTTRSeconds    float64 `json:"mttr_seconds"`
}

// stats serves GET /api/v1/stats/units and /api/v1/stats/grids?from=&to=:
// the work-order figures of every unit or grid for alerts that fired in
// [from, to) (default: the last 30 days), ranked by score. A grid-scoped
// token sees the figures of the alerts in its subtree only: the units that
// work there and the grids of the subtree, ranked among themselves.
func (s *Server) stats(by alerts.StatsBy) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := principalFrom(r.Context())
		q := r.URL.Query()
		to, err := parseTime(q.Get("to"), s.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "'to': "+err.Error())
			return
		}
		from, err := parseTime(q.Get("from"), to.Add(-defaultStatsPeriod))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "'from': "+err.Error())
			return
		}
		rows, err := s.Alerts.Stats(by, p.scope, from, to)
		if err != nil {
			s.alertError(w, r, err)
			return
		}
		out := make([]statsJSON, 0, len(rows))
		for _, st := range rows {
			out = append(out, statsJSON{
				Key: st.Key, Rank: st.Rank, Score: st.Score, Flagged: st.Flagged,
				Received: st.Received, AckedOnTime: st.AckedOnTime, ResolvedOnTime: st.ResolvedOnTime,
				Overdue: st.Overdue, OverdueNow: st.OverdueNow,
				MTTASeconds: st.MTTA.Seconds(), MTTRSeconds: st.MTTR.Seconds(),
			})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"by": by, "from": from.UnixMilli(), "to": to.UnixMilli(), "stats": out,
		})
	}
}

// statsPattern is the route of the statistics grouped by.
func statsPattern(by alerts.StatsBy) string { return fmt.Sprintf("GET /api/v1/stats/%ss", by) }
