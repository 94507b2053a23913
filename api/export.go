package api

import (
	"encoding/csv"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// exportColumns is the header of the CSV export.
var exportColumns = []string{
	"id", "version", "rule", "device", "grid", "category", "unit", "severity", "condition", "status",
	"summary", "value", "count", "fired", "acked", "dispatched", "resolved", "closed", "cleared",
	"ack_due", "resolve_due", "ack_overdue", "resolve_overdue", "escalated", "updated",
}

// exportAlerts serves GET /api/v1/alerts/export.csv: every alert the list
// filters select (cursor and limit aside), as CSV in the list's order, read
// in one pass. Times are RFC 3339 in UTC, empty when unset.
func (s *Server) exportAlerts(w http.ResponseWriter, r *http.Request) {
	f, ok, err := s.alertFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.Cursor = ""
	var all iter.Seq[*alerts.Alert]
	if ok {
		// The alerts are selected before the header goes out, so a bad
		// filter still gets a JSON error.
		if all, err = s.Alerts.All(f); err != nil {
			s.alertError(w, r, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="alerts.csv"`)
	out := csv.NewWriter(w)
	_ = out.Write(exportColumns)
	if all != nil {
		for a := range all {
			if err := out.Write(exportRow(a)); err != nil {
				return // the client went away
			}
		}
	}
	out.Flush()
}

// exportRow is one alert as a CSV row.
func exportRow(a *alerts.Alert) []string {
	return []string{
		a.ID, strconv.FormatUint(a.Version, 10), cell(a.Rule), cell(a.Device), cell(a.Grid), cell(a.Category), cell(a.Unit),
		a.Severity.String(), string(a.Condition), string(a.Status), cell(a.Summary),
		strconv.FormatFloat(a.Value, 'g', -1, 64), strconv.FormatUint(a.Count, 10),
		csvTime(a.Fired), csvTime(a.Acked), csvTime(a.Dispatched), csvTime(a.Resolved), csvTime(a.Closed), csvTime(a.Cleared),
		csvTime(a.AckDue), csvTime(a.ResolveDue),
		strconv.FormatBool(a.AckOverdue), strconv.FormatBool(a.ResolveOverdue), strconv.FormatBool(a.Escalated),
		csvTime(a.Updated),
	}
}

// cell defuses text a spreadsheet would run as a formula (CSV injection):
// a leading = + - @ tab or carriage return gets a quote in front.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
