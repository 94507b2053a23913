package storage

import (
	"context"
	"fmt"
	"time"
)

// CameraHealth is the latest or one past probe of a camera, as the API
// shows it.
type CameraHealth struct {
	Camera, Grid, Kind, Status, Detail, Codec, Error string
	TS                                               time.Time
	LatencyMs, FPS, BitrateKbps, LossPct             float64
	Width, Height                                    uint32
	Frozen                                           bool
}

// cameraHealthColumns are the columns scanned into a CameraHealth, in order.
func (db *DB) cameraHealthColumns() string {
	return "camera, grid, kind, status, detail, codec, error, " + db.msExpr("ts") +
		", latency_ms, fps, bitrate_kbps, loss_pct, width, height, frozen"
}

func scanCameraHealth(scan func(dest ...any) error) (CameraHealth, error) {
	var (
		h      CameraHealth
		ts     int64
		frozen uint8
	)
	err := scan(&h.Camera, &h.Grid, &h.Kind, &h.Status, &h.Detail, &h.Codec, &h.Error, &ts,
		&h.LatencyMs, &h.FPS, &h.BitrateKbps, &h.LossPct, &h.Width, &h.Height, &frozen)
	h.TS, h.Frozen = time.UnixMilli(ts).UTC(), frozen != 0
	return h, err
}

// LatestCameraHealth returns the latest probe of every camera, ordered by
// camera.
func (db *DB) LatestCameraHealth(ctx context.Context) ([]CameraHealth, error) {
	ms := db.msExpr("ts")
	query := "SELECT camera, argMax(grid, " + ms + "), argMax(kind, " + ms + "), argMax(status, " + ms + ")," +
		" argMax(detail, " + ms + "), argMax(codec, " + ms + "), argMax(error, " + ms + "), max(" + ms + ")," +
		" argMax(latency_ms, " + ms + "), argMax(fps, " + ms + "), argMax(bitrate_kbps, " + ms + ")," +
		" argMax(loss_pct, " + ms + "), argMax(width, " + ms + "), argMax(height, " + ms + "), argMax(frozen, " + ms + ")" +
		" FROM " + quoteTable(db.opts.Database, "camera_health") + " GROUP BY camera ORDER BY camera"
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
	query := "SELECT " + db.cameraHealthColumns() + " FROM " + quoteTable(db.opts.Database, "camera_health") +
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
