package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
)

// The request checks every case action shares: the version it names, the
// unit it dispatches to, and the counter of the refused ones.

// etag is the entity tag of a version.
func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// ifMatch folds the request's If-Match header into *version, the version
// the body named (0: none), for an action on a noun ("case"). A
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
// case with nobody to do it, out of every unit's statistics.
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

// actionMetrics counts the case requests refused before they reach the
// case loop.
type actionMetrics struct {
	refused *prometheus.CounterVec
}

func newActionMetrics(reg prometheus.Registerer) *actionMetrics {
	m := &actionMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_api_actions_refused_total",
			Help: "Case requests refused for their request, by reason: bad_body, bad_if_match, weak_etag, versions_differ, version_required, unknown_unit, no_registry, unknown_evidence, bad_photo, photo_too_large.",
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
