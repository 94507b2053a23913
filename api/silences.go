package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// DefaultMaxSilence is the default of Server.MaxSilence: 30 days, long
// enough for planned works, short enough that a forgotten silence ends.
const DefaultMaxSilence = 30 * 24 * time.Hour

// silenceRoutes registers the silence endpoints beside the alert ones.
func (s *Server) silenceRoutes(rt *routes) {
	rt.Require(RoleViewer, "GET /api/v1/silences", s.listSilences)
	rt.Require(RoleOperator, "POST /api/v1/silences", s.createSilence)
	rt.Require(RoleOperator, "DELETE /api/v1/silences/{id}", s.deleteSilence)
}

// silenceRequest is the body of POST /api/v1/silences. Ends (RFC 3339 or
// ms since the epoch) or Duration (such as "2h") says when it stops.
type silenceRequest struct {
	Rule        string `json:"rule"`
	Device      string `json:"device"`
	Grid        string `json:"grid"`
	Maintenance bool   `json:"maintenance"`
	Ends        string `json:"ends"`
	Duration    string `json:"duration"`
	Reason      string `json:"reason"`
}

// silenceGrid is the grid a silence is bound to: its grid, else its
// device's, else "" for the whole city.
func (s *Server) silenceGrid(sil alerts.Silence) string {
	if sil.Grid != "" {
		return sil.Grid
	}
	if sil.Device == "" {
		return ""
	}
	d, _ := s.Lookup(sil.Device)
	return d.Grid
}

// seesSilence reports whether the principal may see and remove sil: an
// unscoped one sees all, a scoped one those bound within its scope.
func (s *Server) seesSilence(p *principal, sil alerts.Silence) bool {
	if p.scope == "" {
		return true
	}
	g := s.silenceGrid(sil)
	return g != "" && p.sees(g)
}

// listSilences serves GET /api/v1/silences: the silences and maintenance
// windows in force that the principal sees.
func (s *Server) listSilences(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	out := []alerts.Silence{}
	for _, sil := range s.Alerts.Silences() {
		if s.seesSilence(p, sil) {
			out = append(out, sil)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"silences": out})
}

// createSilence serves POST /api/v1/silences. A scoped token silences
// within its scope only: with neither grid nor device, or with a grid
// holding its scope, the silence covers the scope; a grid or device
// outside it is not found.
func (s *Server) createSilence(w http.ResponseWriter, r *http.Request) {
	var req silenceRequest
	if !s.readJSON(w, r, &req) {
		return
	}
	p := principalFrom(r.Context())
	sil := alerts.Silence{Rule: req.Rule, Device: req.Device, Grid: req.Grid, Maintenance: req.Maintenance,
		Actor: p.name, Reason: req.Reason}
	var err error
	switch {
	case req.Ends != "" && req.Duration != "":
		err = errors.New("give 'ends' or 'duration', not both")
	case req.Duration != "":
		var d time.Duration
		if d, err = time.ParseDuration(req.Duration); err == nil {
			sil.Ends = s.Now().Add(d)
		}
	case req.Ends != "":
		sil.Ends, err = parseTime(req.Ends, time.Time{})
	default:
		err = errors.New("'ends' or 'duration' is required")
	}
	if err == nil {
		if left := sil.Ends.Sub(s.Now()); left > s.MaxSilence {
			err = fmt.Errorf("a silence may last at most %s (api.max_silence), this one %s", s.MaxSilence, left.Round(time.Second))
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if sil.Device != "" {
		if d, ok := s.Lookup(sil.Device); !ok || !p.sees(d.Grid) {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("device %q not found", sil.Device))
			return
		}
	}
	switch {
	case p.scope == "":
	case sil.Grid == "" && sil.Device == "" || sil.Grid != "" && s.InScope(sil.Grid, p.scope):
		sil.Grid = p.scope
	case sil.Grid != "" && !p.sees(sil.Grid):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("grid %q not found", sil.Grid))
		return
	}
	sil, err = s.Alerts.AddSilence(r.Context(), sil)
	switch {
	case errors.Is(err, alerts.ErrInvalidSilence):
		writeError(w, http.StatusUnprocessableEntity, "invalid_silence", err.Error())
	case errors.Is(err, alerts.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the alert engine is shutting down")
	case err != nil:
		s.internalError(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, sil)
	}
}

// deleteSilence serves DELETE /api/v1/silences/{id}: the silence ends now.
// One outside the principal's scope is not found.
func (s *Server) deleteSilence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p := principalFrom(r.Context())
	for _, sil := range s.Alerts.Silences() {
		if sil.ID != id || !s.seesSilence(p, sil) {
			continue
		}
		if err := s.Alerts.RemoveSilence(r.Context(), id); err != nil && !errors.Is(err, alerts.ErrNotFound) {
			s.internalError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("silence %q not found", id))
}
