package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/storage"
)

// Cameras answers the camera health queries; *storage.DB is one.
type Cameras interface {
	LatestCameraHealth(ctx context.Context) ([]storage.CameraHealth, error)
	CameraHistory(ctx context.Context, camera string, from, to time.Time, limit int) ([]storage.CameraHealth, error)
	CameraAvailability(ctx context.Context, from, to time.Time, byGrid bool) ([]storage.Availability, error)
}

// Stills returns a camera's still picture (JPEG) and when it was taken, or
// an error wrapping rtsp.ErrNoStill; *rtsp.Stills is one.
type Stills interface {
	Still(camera string) ([]byte, time.Time, error)
}

// Defaults of the camera queries.
const (
	defaultHistoryRange      = 24 * time.Hour
	defaultHistoryLimit      = 500
	maxHistoryLimit          = 10000
	defaultAvailabilityRange = 7 * 24 * time.Hour
)

// cameraJSON is a camera with its latest health. URLs are shown without
// credentials; credentials are never in a response.
type cameraJSON struct {
	ID      string      `json:"id"`
	Grid    string      `json:"grid"`
	Name    string      `json:"name,omitempty"`
	RTSPURL string      `json:"rtsp_url,omitempty"`
	Health  *healthJSON `json:"health"` // null before the first probe
	// Sample is the latest stream sample (fps, bitrate, loss; its status
	// stands until the next sample), left out before the first.
	Sample *healthJSON `json:"sample,omitempty"`
}

// healthJSON is one probe of a camera.
type healthJSON struct {
	Time        string  `json:"time"`
	Kind        string  `json:"kind"`
	Status      string  `json:"status"`
	Detail      string  `json:"detail,omitempty"`
	Codec       string  `json:"codec,omitempty"`
	Width       uint32  `json:"width,omitempty"`
	Height      uint32  `json:"height,omitempty"`
	FPS         float64 `json:"fps,omitempty"`
	BitrateKbps float64 `json:"bitrate_kbps,omitempty"`
	LossPct     float64 `json:"loss_pct,omitempty"`
	LatencyMs   float64 `json:"latency_ms,omitempty"`
	Frozen      bool    `json:"frozen,omitempty"`
	Error       string  `json:"error,omitempty"`
	// Picture is the picture diagnosis; in a camera list, of the latest
	// diagnosed sample, which may be older than the probe.
	Picture *pictureJSON `json:"picture,omitempty"`
}

// pictureJSON is the picture diagnosis of a stream sample.
type pictureJSON struct {
	Time           string   `json:"time"`
	Pictures       uint32   `json:"pictures"`
	Conditions     []string `json:"conditions"`
	Luma           float64  `json:"luma"`
	Contrast       float64  `json:"contrast"`
	Sharpness      float64  `json:"sharpness"`
	NoiseSigma     float64  `json:"noise_sigma"`
	CastRatio      float64  `json:"cast_ratio"`
	FrameDiff      float64  `json:"frame_diff"`
	Referenced     bool     `json:"referenced"`
	RefCorrelation float64  `json:"ref_correlation"`
	OccludedPct    float64  `json:"occluded_pct"`
}

func toHealthJSON(h storage.CameraHealth) *healthJSON {
	out := &healthJSON{
		Time: h.TS.Format(time.RFC3339Nano), Kind: h.Kind, Status: h.Status, Detail: h.Detail, Codec: h.Codec,
		Width: h.Width, Height: h.Height, FPS: h.FPS, BitrateKbps: h.BitrateKbps, LossPct: h.LossPct,
		LatencyMs: h.LatencyMs, Frozen: h.Frozen, Error: h.Error,
	}
	if p := h.Picture; p != nil {
		out.Picture = &pictureJSON{Time: p.TS.Format(time.RFC3339Nano), Pictures: p.Pictures, Conditions: p.Conditions,
			Luma: p.Luma, Contrast: p.Contrast, Sharpness: p.Sharpness, NoiseSigma: p.NoiseSigma, CastRatio: p.CastRatio,
			FrameDiff: p.FrameDiff, Referenced: p.Referenced, RefCorrelation: p.RefCorrelation, OccludedPct: p.OccludedPct}
	}
	return out
}

// cameraRoutes registers the camera endpoints; without Cameras they
// answer 503.
func (s *Server) cameraRoutes(v1 *routes) {
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /api/v1/cameras":              s.listCameras,
		"GET /api/v1/cameras/{id}/health":  s.cameraHistory,
		"GET /api/v1/cameras/availability": s.cameraAvailability,
		"GET /api/v1/cameras/{id}/still":   s.cameraStill,
	} {
		v1.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if s.Cameras == nil || s.Devices == nil {
				writeError(w, http.StatusServiceUnavailable, "unavailable", "camera health is not configured")
				return
			}
			h(w, r)
		})
	}
}

// listCameras serves GET /api/v1/cameras: the registry's cameras in the
// caller's scope, each with its latest probe.
func (s *Server) listCameras(w http.ResponseWriter, r *http.Request) {
	latest, err := s.Cameras.LatestCameraHealth(r.Context())
	if err != nil {
		s.storeError(w, err)
		return
	}
	byID := make(map[string]storage.CameraHealth, len(latest))
	for _, h := range latest {
		byID[h.Camera] = h
	}
	p := principalFrom(r.Context())
	out := []cameraJSON{}
	for _, d := range s.Devices() {
		if d.Type != "camera" || !p.sees(d.Grid) {
			continue
		}
		c := cameraJSON{ID: d.ID, Grid: d.Grid, Name: d.Name, RTSPURL: d.RTSPURL}
		if h, ok := byID[d.ID]; ok {
			c.Health = toHealthJSON(h)
			if h.Sample != nil {
				c.Sample = toHealthJSON(*h.Sample)
			}
		}
		out = append(out, c)
	}
	writeJSON(w, http.StatusOK, map[string]any{"cameras": out})
}

// camera finds the camera of a request's {id} in the caller's scope,
// answering 404 when there is none.
func (s *Server) camera(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	d, ok := s.Lookup(id)
	if !ok || d.Type != "camera" || !principalFrom(r.Context()).sees(d.Grid) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("camera %q is not registered", id))
		return "", false
	}
	return id, true
}

// cameraStill serves GET /api/v1/cameras/{id}/still: the camera's last
// good picture as a small JPEG.
func (s *Server) cameraStill(w http.ResponseWriter, r *http.Request) {
	id, ok := s.camera(w, r)
	if !ok {
		return
	}
	if s.Stills == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "camera stills are not configured")
		return
	}
	b, at, err := s.Stills.Still(id)
	if errors.Is(err, rtsp.ErrNoStill) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("camera %q has no still yet: no stream sample found its picture good", id))
		return
	}
	if err != nil {
		s.Logger.Error("camera still failed", "camera", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "camera stills are unavailable")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Last-Modified", at.UTC().Format(http.TimeFormat))
	// The still is the caller's to see, not a shared cache's.
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// cameraHistory serves GET /api/v1/cameras/{id}/health?from=&to=&limit=.
func (s *Server) cameraHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := s.camera(w, r)
	if !ok {
		return
	}
	from, to, ok := s.timeRange(w, r, defaultHistoryRange)
	if !ok {
		return
	}
	limit := defaultHistoryLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHistoryLimit {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("'limit' must be 1..%d, not %q", maxHistoryLimit, v))
			return
		}
		limit = n
	}
	hist, err := s.Cameras.CameraHistory(r.Context(), id, from, to, limit)
	if err != nil {
		s.storeError(w, err)
		return
	}
	out := make([]*healthJSON, len(hist))
	for i, h := range hist {
		out[i] = toHealthJSON(h)
	}
	writeJSON(w, http.StatusOK, map[string]any{"camera": id, "probes": out})
}

// cameraAvailability serves GET /api/v1/cameras/availability?by=camera|grid&from=&to=:
// per day, the share of probes that found video.
func (s *Server) cameraAvailability(w http.ResponseWriter, r *http.Request) {
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "camera"
	}
	if by != "camera" && by != "grid" {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("'by' must be camera or grid, not %q", by))
		return
	}
	from, to, ok := s.timeRange(w, r, defaultAvailabilityRange)
	if !ok {
		return
	}
	rows, err := s.Cameras.CameraAvailability(r.Context(), from, to, by == "grid")
	if err != nil {
		s.storeError(w, err)
		return
	}
	grids := map[string]string{} // camera -> grid, for scoping by camera
	if by == "camera" {
		for _, d := range s.Devices() {
			grids[d.ID] = d.Grid
		}
	}
	type dayJSON struct {
		Key    string  `json:"key"`
		Day    string  `json:"day"`
		Probes uint64  `json:"probes"`
		Up     uint64  `json:"up"`
		Pct    float64 `json:"availability_pct"`
	}
	p := principalFrom(r.Context())
	out := []dayJSON{}
	for _, a := range rows {
		grid := a.Key
		if by == "camera" {
			grid = grids[a.Key]
		}
		if !p.sees(grid) {
			continue
		}
		out = append(out, dayJSON{Key: a.Key, Day: a.Day.Format(time.DateOnly), Probes: a.Probes, Up: a.Up, Pct: a.Pct})
	}
	writeJSON(w, http.StatusOK, map[string]any{"by": by, "days": out})
}

// timeRange parses from and to (default: the span before now), writing
// the error response when they are bad.
func (s *Server) timeRange(w http.ResponseWriter, r *http.Request, span time.Duration) (from, to time.Time, ok bool) {
	q := r.URL.Query()
	to, err := parseTime(q.Get("to"), s.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "'to': "+err.Error())
		return from, to, false
	}
	if from, err = parseTime(q.Get("from"), to.Add(-span)); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "'from': "+err.Error())
		return from, to, false
	}
	if !from.Before(to) {
		writeError(w, http.StatusBadRequest, "bad_request", "'from' must be before 'to'")
		return from, to, false
	}
	return from, to, true
}

// storeError answers a failed camera query.
func (s *Server) storeError(w http.ResponseWriter, err error) {
	if errors.Is(err, storage.ErrBadQuery) {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	s.Logger.Error("camera query failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, "unavailable", "camera health is unavailable")
}
