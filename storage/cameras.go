package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
)

// CameraHealth is the latest or one past probe of a camera, as the API
// shows it.
type CameraHealth struct {
	Camera, Grid, Kind, Status, Detail, Codec, Error string
	TS                                               time.Time
	LatencyMs, FPS, BitrateKbps, LossPct             float64
	Width, Height                                    uint32
	Frozen                                           bool
	// Picture is the picture diagnosis of the probe; in the latest health,
	// of the camera's latest diagnosed sample. Nil without one.
	Picture *PictureHealth
	// Sample is, in the latest health, the camera's latest stream sample
	// (its measured fps, bitrate and loss, which a liveness probe does not
	// measure, and its status, which a later liveness probe's "ok" does
	// not clear); nil without one, and in a probe's history.
	Sample *CameraHealth
}

// PictureHealth is the picture diagnosis of one stream sample (see
// rtsp.HealthRecord for the fields).
type PictureHealth struct {
	TS                                               time.Time
	Pictures                                         uint32
	Conditions                                       []string
	Luma, Contrast, Sharpness, NoiseSigma, CastRatio float64
	FrameDiff, RefCorrelation, OccludedPct           float64
	Referenced                                       bool
}

// healthColumns and pictureColumns are the columns scanned into a
// CameraHealth, in order; the conditions follow, one UInt8 each.
var (
	healthColumns  = []string{"grid", "kind", "status", "detail", "codec", "error", "latency_ms", "fps", "bitrate_kbps", "loss_pct", "width", "height", "frozen"}
	pictureColumns = []string{"pictures", "luma", "contrast", "sharpness", "noise_sigma", "cast_ratio", "frame_diff", "ref_correlation", "occluded_pct", "referenced"}
)

// conditionColumns are the columns of the picture conditions, named as
// the conditions (frozen among them).
func conditionColumns() []string {
	out := make([]string, len(rtsp.Conditions))
	for i, c := range rtsp.Conditions {
		out[i] = string(c)
	}
	return out
}

// diagnosed is true of the rows of diagnosed samples (HealthRecord.Diagnosed).
const diagnosed = "(pictures > 0 OR signal_loss = 1)"

// healthSelect is the select list of camera health: camera, ts, the
// health columns, the picture's ts, the picture and condition columns.
// With latest it aggregates by camera: the latest probe's health and the
// latest diagnosed sample's picture.
func (db *DB) healthSelect(latest bool) string {
	ms := db.msExpr("ts")
	cols := []string{"camera", ms}
	if latest {
		cols[1] = "max(" + ms + ")"
	}
	for _, c := range healthColumns {
		if latest {
			c = "argMax(" + c + ", " + ms + ")"
		}
		cols = append(cols, c)
	}
	if latest {
		cols = append(cols, "maxIf("+ms+", "+diagnosed+")")
	} else {
		cols = append(cols, ms)
	}
	for _, c := range append(slices.Clone(pictureColumns), conditionColumns()...) {
		if latest {
			c = "argMaxIf(" + c + ", " + ms + ", " + diagnosed + ")"
		}
		cols = append(cols, c)
	}
	return strings.Join(cols, ", ")
}

func scanCameraHealth(scan func(dest ...any) error) (CameraHealth, error) {
	var (
		h                CameraHealth
		p                PictureHealth
		ts, picTS        int64
		frozen, referred uint8
		conds            = make([]uint8, len(rtsp.Conditions))
	)
	dest := []any{&h.Camera, &ts, &h.Grid, &h.Kind, &h.Status, &h.Detail, &h.Codec, &h.Error,
		&h.LatencyMs, &h.FPS, &h.BitrateKbps, &h.LossPct, &h.Width, &h.Height, &frozen,
		&picTS, &p.Pictures, &p.Luma, &p.Contrast, &p.Sharpness, &p.NoiseSigma, &p.CastRatio,
		&p.FrameDiff, &p.RefCorrelation, &p.OccludedPct, &referred}
	for i := range conds {
		dest = append(dest, &conds[i])
	}
	if err := scan(dest...); err != nil {
		return h, err
	}
	h.TS, h.Frozen = time.UnixMilli(ts).UTC(), frozen != 0
	for i, c := range rtsp.Conditions {
		if conds[i] != 0 {
			p.Conditions = append(p.Conditions, string(c))
		}
	}
	if p.Pictures > 0 || slices.Contains(p.Conditions, string(rtsp.CondSignalLoss)) {
		p.TS, p.Referenced = time.UnixMilli(picTS).UTC(), referred != 0
		if p.Conditions == nil {
			p.Conditions = []string{}
		}
		h.Picture = &p
	}
	return h, nil
}

// LatestCameraHealth returns the latest probe of every camera, with its
// latest picture diagnosis and its latest stream sample, ordered by
// camera.
func (db *DB) LatestCameraHealth(ctx context.Context) ([]CameraHealth, error) {
	out, err := db.latestCameraHealth(ctx, "")
	if err != nil {
		return nil, err
	}
	samples, err := db.latestCameraHealth(ctx, "WHERE kind = '"+string(rtsp.KindSample)+"'")
	if err != nil {
		return nil, err
	}
	byCamera := make(map[string]*CameraHealth, len(samples))
	for i := range samples {
		samples[i].Picture = nil // the camera's own Picture has it
		byCamera[samples[i].Camera] = &samples[i]
	}
	for i := range out {
		out[i].Sample = byCamera[out[i].Camera]
	}
	return out, nil
}

// latestCameraHealth returns the latest of the probes where selects, per
// camera, ordered by camera.
func (db *DB) latestCameraHealth(ctx context.Context, where string) ([]CameraHealth, error) {
	query := "SELECT " + db.healthSelect(true) + " FROM " + quoteTable(db.opts.Database, "camera_health") +
		" " + where + " GROUP BY camera ORDER BY camera"
	rows, err := db.conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("storage: latest camera health: %w", err)
	}
	defer rows.Close()
	var out []CameraHealth
	for rows.Next() {
		h, err := scanCameraHealth(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("storage: latest camera health: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: latest camera health: %w", err)
	}
	return out, nil
}

// CameraHistory returns the probes of camera in [from, to), newest first,
// at most limit.
func (db *DB) CameraHistory(ctx context.Context, camera string, from, to time.Time, limit int) ([]CameraHealth, error) {
	if camera == "" || limit <= 0 || !from.Before(to) {
		return nil, fmt.Errorf("%w: camera, a positive limit and from before to are required", ErrBadQuery)
	}
	query := "SELECT " + db.healthSelect(false) + " FROM " + quoteTable(db.opts.Database, "camera_health") +
		" WHERE camera = ? AND ts >= " + db.fromMsExpr() + " AND ts < " + db.fromMsExpr() +
		" ORDER BY ts DESC LIMIT " + fmt.Sprint(limit)
	rows, err := db.conn.Query(ctx, query, camera, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("storage: history of camera %s: %w", camera, err)
	}
	defer rows.Close()
	var out []CameraHealth
	for rows.Next() {
		h, err := scanCameraHealth(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("storage: history of camera %s: %w", camera, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: history of camera %s: %w", camera, err)
	}
	return out, nil
}

// Availability is the share of a day's probes that found a camera, or the
// cameras of a grid, delivering video (status ok or degraded).
type Availability struct {
	// Key is the camera id or the grid code.
	Key string
	// Day is the UTC day.
	Day time.Time
	// Probes counts the day's probes; Up those that found video.
	Probes, Up uint64
	// Pct is 100 * Up / Probes.
	Pct float64
}

// CameraAvailability returns availability per day in [from, to), by camera
// or, with byGrid, by grid, ordered by key and day.
func (db *DB) CameraAvailability(ctx context.Context, from, to time.Time, byGrid bool) ([]Availability, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: from must be before to", ErrBadQuery)
	}
	key := "camera"
	if byGrid {
		key = "grid"
	}
	query := "SELECT " + key + ", toInt64(toUnixTimestamp(toDateTime(toDate(toDateTime(intDiv(" + db.msExpr("ts") + ", 1000), 'UTC')), 'UTC'))) AS day," +
		" count(), countIf(status IN ('ok', 'degraded'))" +
		" FROM " + quoteTable(db.opts.Database, "camera_health") +
		" WHERE ts >= " + db.fromMsExpr() + " AND ts < " + db.fromMsExpr() +
		" GROUP BY " + key + ", day ORDER BY " + key + ", day"
	rows, err := db.conn.Query(ctx, query, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("storage: camera availability: %w", err)
	}
	defer rows.Close()
	var out []Availability
	for rows.Next() {
		var (
			a   Availability
			day int64
		)
		if err := rows.Scan(&a.Key, &day, &a.Probes, &a.Up); err != nil {
			return nil, fmt.Errorf("storage: camera availability: %w", err)
		}
		a.Day = time.Unix(day, 0).UTC()
		if a.Probes > 0 {
			a.Pct = 100 * float64(a.Up) / float64(a.Probes)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: camera availability: %w", err)
	}
	return out, nil
}
