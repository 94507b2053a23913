package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

// Alerts is what the alert endpoints need from the alert engine;
// *alerts.Engine is one.
type Alerts interface {
	List(f alerts.Filter) (alerts.Page, error)
	Export(f alerts.Filter, w io.Writer, encode func(b []byte, a *alerts.Alert) []byte) error
	Get(id string) (alerts.Alert, []alerts.Event, error)
	Act(ctx context.Context, a alerts.Action) (alerts.Alert, error)
	Subscribe(buffer int) *alerts.Subscription
	Stats(by alerts.StatsBy, scope string, from, to time.Time) ([]alerts.Stats, error)
	AddSilence(ctx context.Context, s alerts.Silence) (alerts.Silence, error)
	RemoveSilence(ctx context.Context, id string) error
	Silences() []alerts.Silence
}

// alertActions are the work-order actions, each at POST
// /api/v1/alerts/{id}/{action}.
var alertActions = []alerts.ActionKind{
	alerts.ActionAck, alerts.ActionDispatch, alerts.ActionResolve,
	alerts.ActionClose, alerts.ActionReopen, alerts.ActionComment,
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
	for _, kind := range alertActions {
		rt.Require(RoleOperator, "POST /api/v1/alerts/{id}/"+string(kind), s.actOnAlert(kind))
	}
	for _, by := range []alerts.StatsBy{alerts.ByUnit, alerts.ByGrid} {
		rt.Require(RoleViewer, statsPattern(by), s.stats(by))
	}
	s.silenceRoutes(rt)
}

// alertFilter reads the list filters of a request, narrowed to the
// principal's scope. ok is false when the grid asked for lies outside the
// scope: nothing can match.
func (s *Server) alertFilter(r *http.Request) (f alerts.Filter, ok bool, err error) {
	q := r.URL.Query()
	f = alerts.Filter{
		Grid: q.Get("grid"), Unit: q.Get("unit"), Rule: q.Get("rule"), Device: q.Get("device"),
		Sort: q.Get("sort"), Cursor: q.Get("cursor"),
	}
	for _, v := range queryList(q["status"]) {
		f.Status = append(f.Status, alerts.Status(v))
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
// oldest event first. The ETag is the alert's version, for If-Match.
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

// etag is the entity tag of an alert version.
func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// actionRequest is the body of an action. Version may instead come in an
// If-Match header.
type actionRequest struct {
	Version uint64 `json:"version"`
	Unit    string `json:"unit"`
	Note    string `json:"note"`
}

// actOnAlert serves POST /api/v1/alerts/{id}/{kind}. The version the actor
// saw is required, in the body or as If-Match; a stale one gets 409.
// Refused requests are counted by reason (actionMetrics).
func (s *Server) actOnAlert(kind alerts.ActionKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req actionRequest
		if r.ContentLength != 0 && !s.readJSON(w, r, &req) {
			s.actions.refused.WithLabelValues("bad_body").Inc()
			return
		}
		if !s.ifMatch(w, r, &req.Version, "alert") {
			return
		}
		if _, _, ok := s.visibleAlert(w, r); !ok {
			return
		}
		if req.Version == 0 {
			s.refuseAction(w, http.StatusPreconditionRequired, "version_required", "send the alert version you saw, as If-Match or the body's \"version\"")
			return
		}
		if kind == alerts.ActionDispatch && req.Unit != "" && !s.knownUnit(w, req.Unit) {
			return
		}
		a, err := s.Alerts.Act(r.Context(), alerts.Action{
			ID: r.PathValue("id"), Kind: kind, Version: req.Version,
			Actor: principalFrom(r.Context()).name, Unit: req.Unit, Note: req.Note,
		})
		if err != nil {
			s.alertError(w, r, err)
			return
		}
		w.Header().Set("ETag", etag(a.Version))
		writeJSON(w, http.StatusOK, a)
	}
}

// ifMatch folds the request's If-Match header into *version, the version
// the body named (0: none), for an action on a noun ("alert", "case"). A
// weak entity tag gets 412, one that is no version or differs from the
// body's 400; each is counted.
func (s *Server) ifMatch(w http.ResponseWriter, r *http.Request, version *uint64, noun string) bool {
	m := r.Header.Get("If-Match")
	if m == "" {
		return true
	}
	if strings.HasPrefix(m, "W/") {
		// RFC 9110 13.1.1: If-Match compares strongly, and a weak
		// validator never matches strongly.
		s.refuseAction(w, http.StatusPreconditionFailed, "weak_etag",
			fmt.Sprintf("If-Match %q is a weak entity tag, which never matches (RFC 9110 compares If-Match strongly): send the %s's ETag as given, such as \"3\"", m, noun))
		return false
	}
	v, err := strconv.ParseUint(strings.Trim(m, `"`), 10, 64)
	if err != nil {
		s.refuseAction(w, http.StatusBadRequest, "bad_if_match", fmt.Sprintf("If-Match must be an %s version such as \"3\", not %q", noun, m))
		return false
	}
	if *version != 0 && *version != v {
		s.refuseAction(w, http.StatusBadRequest, "versions_differ", "If-Match and the body's version differ")
		return false
	}
	*version = v
	return true
}

// knownUnit reports whether unit is in the registry's units table; when it
// is not, it answers 422 unknown_unit (503 without a registry) and counts
// the refusal. A dispatch to a unit that does not exist would leave the
// work order with nobody to do it, out of every unit's statistics.
func (s *Server) knownUnit(w http.ResponseWriter, unit string) bool {
	if s.Registry == nil {
		s.refuseAction(w, http.StatusServiceUnavailable, "no_registry", "the units table is not available: dispatch without a unit keeps the routed one")
		return false
	}
	units := s.Registry.Units()
	if slices.ContainsFunc(units, func(u devices.Unit) bool { return u.Code == unit }) {
		return true
	}
	msg := fmt.Sprintf("unit %q is not in the units table (GET /api/v1/units lists them; gridwatch units import adds them)", unit)
	if len(units) == 0 {
		msg = fmt.Sprintf("unit %q is not in the units table, which is empty: import one with gridwatch units import or units.file (see deploy/units.yaml)", unit)
	}
	s.refuseAction(w, http.StatusUnprocessableEntity, "unknown_unit", msg)
	return false
}

// actionMetrics counts the work-order actions refused before they reach
// the engine.
type actionMetrics struct {
	refused *prometheus.CounterVec
}

func newActionMetrics(reg prometheus.Registerer) *actionMetrics {
	m := &actionMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_api_actions_refused_total",
			Help: "Work-order and case requests refused for their request, by reason: bad_body, bad_if_match, weak_etag, versions_differ, version_required, unknown_unit, no_registry, unknown_evidence, bad_photo, photo_too_large.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.refused)
	}
	return m
}

// refuseAction answers an action request with an error whose code is
// reason, and counts it.
func (s *Server) refuseAction(w http.ResponseWriter, status int, reason, message string) {
	s.actions.refused.WithLabelValues(reason).Inc()
	code := reason
	switch status {
	case http.StatusBadRequest:
		code = "bad_request"
	case http.StatusPreconditionFailed:
		code = "precondition_failed"
	case http.StatusServiceUnavailable:
		code = "unavailable"
	}
	writeError(w, status, code, message)
}

// alertError answers with the status an engine error calls for.
func (s *Server) alertError(w http.ResponseWriter, r *http.Request, err error) {
	var conflict *alerts.ConflictError
	switch {
	case errors.As(err, &conflict):
		w.Header().Set("ETag", etag(conflict.Current))
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, alerts.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("alert %q not found", r.PathValue("id")))
	case errors.Is(err, alerts.ErrInvalidAction):
		writeError(w, http.StatusUnprocessableEntity, "invalid_action", err.Error())
	case errors.Is(err, alerts.ErrBadFilter):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, alerts.ErrNotSaved):
		// Acked means stored: the action is not applied either, so the
		// same request may be sent again.
		s.Logger.Warn("alert action not saved", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "not_saved",
			"the action was not saved (the alert store is unavailable) and nothing changed: retry it")
	case errors.Is(err, alerts.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the alert engine is shutting down")
	default:
		s.internalError(w, r, err)
	}
}
