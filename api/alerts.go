package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gridwatch/gridwatch/alerts"
)

// Alerts is what the alert endpoints need from the alert engine;
// *alerts.Engine is one.
type Alerts interface {
	List(f alerts.Filter) (alerts.Page, error)
	Export(f alerts.Filter, w io.Writer, enc *alerts.Encoding) error
	Get(id string) (alerts.Alert, []alerts.Event, error)
	Subscribe(buffer int) *alerts.Subscription
	AddSilence(ctx context.Context, s alerts.Silence) (alerts.Silence, error)
	RemoveSilence(ctx context.Context, id string) error
	Silences() []alerts.Silence
}

// goneAlertActions are the work-order actions alerts had, at POST
// /api/v1/alerts/{id}/{action}: the work is the case's now, and each
// answers 410 Gone pointing at the case (see alertActionGone).
var goneAlertActions = []string{"ack", "dispatch", "resolve", "close", "reopen", "comment"}

// goneStats are the routes of the alert work-order statistics, each with
// the case evaluation's route that replaced it.
var goneStats = map[string]string{
	"GET /api/v1/stats/units": "/api/v1/stats/cases/units",
	"GET /api/v1/stats/grids": "/api/v1/stats/cases/grids",
}

// alertRoutes registers the alert endpoints when an engine is configured.
func (s *Server) alertRoutes(rt *routes) {
	if s.Alerts == nil {
		return
	}
	rt.Require(RoleViewer, "GET /api/v1/alerts", s.listAlerts)
	rt.Require(RoleViewer, "GET /api/v1/alerts/{id}", s.getAlert)
	rt.Require(RoleViewer, "GET /api/v1/alerts/stream", s.streamAlerts)
	rt.Require(RoleViewer, "GET /api/v1/alerts/export.csv", s.exportAlerts)
	for _, kind := range goneAlertActions {
		rt.Require(RoleViewer, "POST /api/v1/alerts/{id}/"+kind, s.alertActionGone)
	}
	for pattern, moved := range goneStats {
		rt.Require(RoleViewer, pattern, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusGone, "gone", fmt.Sprintf(
				"the alert work-order statistics are gone with the alert work orders: the evaluation of cases is at %s", moved))
		})
	}
	s.silenceRoutes(rt)
}

// alertActionGone serves POST /api/v1/alerts/{id}/{action}, the actions of
// the alert work orders that were removed: 410 Gone, naming the alert's
// case (also as a Link header) when it has one. An alert outside the
// principal's scope is not found, as everywhere.
func (s *Server) alertActionGone(w http.ResponseWriter, r *http.Request) {
	a, _, ok := s.visibleAlert(w, r)
	if !ok {
		return
	}
	msg := "alerts no longer carry work orders: an alert is a detection record, and the work it calls for is its case. "
	if a.Case != "" {
		path := "/api/v1/cases/" + url.PathEscape(a.Case)
		w.Header().Set("Link", "<"+path+`>; rel="related"`)
		msg += fmt.Sprintf("Act on case %s: POST %s/{action}", a.Case, path)
	} else {
		msg += "Act on the case it raised, once the case loop took it in: POST /api/v1/cases/{case}/{action}"
	}
	writeError(w, http.StatusGone, "gone", msg+" (sign, handle, verify_pass, close, note, ...; GET /api/v1/cases?source=alert lists the cases raised by alerts)")
}

// alertFilter reads the list filters of a request, narrowed to the
// principal's scope. ok is false when the grid asked for lies outside the
// scope: nothing can match.
func (s *Server) alertFilter(r *http.Request) (f alerts.Filter, ok bool, err error) {
	q := r.URL.Query()
	for key, moved := range map[string]string{"status": "condition=firing|cleared, or the cases' status", "unit": "the cases' unit"} {
		if q.Has(key) {
			// Alerts lost their work orders: a filter that silently
			// selected every alert would mislead.
			return f, false, fmt.Errorf("'%s': alerts have no %s since they stopped carrying work orders; filter by %s (GET /api/v1/cases?%s=)", key, key, moved, key)
		}
	}
	f = alerts.Filter{
		Grid: q.Get("grid"), Rule: q.Get("rule"), Device: q.Get("device"),
		Sort: q.Get("sort"), Cursor: q.Get("cursor"),
	}
	for _, v := range queryList(q["condition"]) {
		f.Condition = append(f.Condition, alerts.Condition(v))
	}
	for _, v := range queryList(q["severity"]) {
		sev, err := alerts.ParseSeverity(v)
		if err != nil {
			return f, false, fmt.Errorf("'severity': %w", err)
		}
		f.Severity = append(f.Severity, sev)
	}
	if v := q.Get("from"); v != "" {
		if f.From, err = parseTime(v, f.From); err != nil {
			return f, false, fmt.Errorf("'from': %w", err)
		}
	}
	if v := q.Get("to"); v != "" {
		if f.To, err = parseTime(v, f.To); err != nil {
			return f, false, fmt.Errorf("'to': %w", err)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, false, fmt.Errorf("'from' must be before 'to'")
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit <= 0 || f.Limit > alerts.MaxListLimit {
			return f, false, fmt.Errorf("'limit' must be 1..%d, not %q", alerts.MaxListLimit, v)
		}
	}
	p := principalFrom(r.Context())
	switch {
	case p.scope == "":
	case f.Grid == "" || s.InScope(f.Grid, p.scope):
		// Nothing asked for, or an area holding the scope: the scope.
		f.Grid = p.scope
	case !p.sees(f.Grid):
		return f, false, nil
	}
	return f, true, nil
}

// queryList splits repeated and comma-separated query values.
func queryList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// listAlerts serves GET /api/v1/alerts: one page of the alerts the filters
// select, with the cursor of the next page.
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	f, ok, err := s.alertFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	page := alerts.Page{Alerts: []alerts.Alert{}}
	if ok {
		if page, err = s.Alerts.List(f); err != nil {
			s.alertError(w, r, err)
			return
		}
		if page.Alerts == nil {
			page.Alerts = []alerts.Alert{}
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// visibleAlert returns the alert with its trace, or answers 404 when it does
// not exist or lies outside the principal's scope.
func (s *Server) visibleAlert(w http.ResponseWriter, r *http.Request) (alerts.Alert, []alerts.Event, bool) {
	id := r.PathValue("id")
	a, events, err := s.Alerts.Get(id)
	if err == nil && !principalFrom(r.Context()).sees(a.Grid) {
		err = fmt.Errorf("%w: %q", alerts.ErrNotFound, id)
	}
	if err != nil {
		s.alertError(w, r, err)
		return alerts.Alert{}, nil, false
	}
	return a, events, true
}

// alertJSON is an alert with its timeline.
type alertJSON struct {
	alerts.Alert
	Timeline []alerts.Event `json:"timeline"`
}

// getAlert serves GET /api/v1/alerts/{id}: the alert and its timeline,
// oldest event first. The ETag is the alert's version.
func (s *Server) getAlert(w http.ResponseWriter, r *http.Request) {
	a, events, ok := s.visibleAlert(w, r)
	if !ok {
		return
	}
	if events == nil {
		events = []alerts.Event{}
	}
	w.Header().Set("ETag", etag(a.Version))
	writeJSON(w, http.StatusOK, alertJSON{Alert: a, Timeline: events})
}

// alertError answers with the status an engine error calls for.
func (s *Server) alertError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, alerts.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("alert %q not found", r.PathValue("id")))
	case errors.Is(err, alerts.ErrBadFilter):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, alerts.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the alert engine is shutting down")
	default:
		s.internalError(w, r, err)
	}
}
