package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// Defaults of the telemetry series query.
const (
	defaultSeriesRange = time.Hour
	defaultSeriesStep  = time.Minute
)

// bucketJSON is one time bucket of a series.
type bucketJSON struct {
	TS    int64   `json:"ts"` // bucket start, ms since the epoch
	Time  string  `json:"time"`
	Avg   float64 `json:"avg"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Count uint64  `json:"count"`
}

// deviceTelemetry serves GET /api/v1/devices/{id}/telemetry?metric=&from=&to=&step=.
// from and to are RFC 3339 or ms since the epoch (default: the last hour,
// from aligned to step); step is a duration such as 30s or 5m (default 1m).
func (s *Server) deviceTelemetry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.lookupDevice(w, r, id); !ok {
		return
	}
	q := r.URL.Query()
	metric := q.Get("metric")
	if metric == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "query parameter 'metric' is required")
		return
	}
	now := s.Now()
	to, err := parseTime(q.Get("to"), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "'to': "+err.Error())
		return
	}
	step := defaultSeriesStep
	if v := q.Get("step"); v != "" {
		if step, err = time.ParseDuration(v); err != nil || step < time.Millisecond {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("'step' must be a duration of at least 1ms, such as 30s or 5m, not %q", v))
			return
		}
	}
	// Without an explicit from, buckets start on a multiple of step (whole
	// minutes for 1m), as dashboards expect.
	from, err := parseTime(q.Get("from"), to.Add(-defaultSeriesRange).Truncate(step))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "'from': "+err.Error())
		return
	}
	buckets, err := s.Store.TelemetrySeries(r.Context(), storage.SeriesQuery{Device: id, Metric: metric, From: from, To: to, Step: step})
	if errors.Is(err, storage.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := make([]bucketJSON, len(buckets))
	for i, b := range buckets {
		out[i] = bucketJSON{TS: b.Start.UnixMilli(), Time: b.Start.UTC().Format(time.RFC3339Nano), Avg: b.Avg, Min: b.Min, Max: b.Max, Count: b.Count}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"device": id, "metric": metric,
		"from": from.UnixMilli(), "to": to.UnixMilli(), "step_ms": step.Milliseconds(),
		"buckets": out,
	})
}

// latestJSON is a metric's latest value.
type latestJSON struct {
	Metric string  `json:"metric"`
	TS     int64   `json:"ts"`
	Time   string  `json:"time"`
	Value  float64 `json:"value"`
}

// deviceLatest serves GET /api/v1/devices/{id}/latest: the latest value of
// each metric the device reported.
func (s *Server) deviceLatest(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, ok := s.lookupDevice(w, r, id)
	if !ok {
		return
	}
	latest, err := s.Store.LatestTelemetry(r.Context(), id)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := make([]latestJSON, len(latest))
	for i, l := range latest {
		out[i] = latestJSON{Metric: l.Metric, TS: l.TS.UnixMilli(), Time: l.TS.UTC().Format(time.RFC3339Nano), Value: l.Value}
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": id, "type": d.Type, "grid": d.Grid, "metrics": out})
}

// lookupDevice finds a registered device in the request's scope, or
// answers 404: a device outside the scope is as absent as an unknown one.
func (s *Server) lookupDevice(w http.ResponseWriter, r *http.Request, id string) (devices.Device, bool) {
	d, ok := s.Lookup(id)
	if !ok || !principalFrom(r.Context()).sees(d.Grid) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("device %q is not registered", id))
		return devices.Device{}, false
	}
	return d, true
}

// internalError logs err and answers without its details.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "the request failed; see the server log")
}

// parseTime reads an RFC 3339 time or ms since the epoch; empty means def.
func parseTime(v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 or ms since the epoch, not %q", v)
	}
	return t, nil
}
