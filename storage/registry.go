package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/paulmach/orb/geojson"

	"github.com/gridwatch/gridwatch/devices"
)

// The registry table holds the device registry as one JSON document per
// device, grid or unit, keyed by (kind, key). ClickHouse is the registry's home so
// that several stateless gridwatch nodes share it: `gridwatch devices
// import` writes here, and every node notices the change through
// RegistryVersion and reloads. Documents rather than columns keep the
// registry's evolving fields (camera URLs, credential hashes) out of DDL
// migrations; the devices table keeps the columns queries join on.
const (
	kindDevice = "device"
	kindGrid   = "grid"
	kindUnit   = "unit"
)

// deviceDoc is a device as stored: everything but the plain secret.
type deviceDoc struct {
	ID              string    `json:"id"`
	Type            string    `json:"type"`
	Grid            string    `json:"grid"`
	Lat             float64   `json:"lat,omitempty"`
	Lon             float64   `json:"lon,omitempty"`
	Name            string    `json:"name,omitempty"`
	InstallDate     string    `json:"install_date,omitempty"`
	SecretHash      string    `json:"secret_hash,omitempty"`
	PrevSecretHash  string    `json:"prev_secret_hash,omitempty"`
	PrevSecretUntil time.Time `json:"prev_secret_until,omitzero"`
	RTSPURL         string    `json:"rtsp_url,omitempty"`
	RTSPSubURL      string    `json:"rtsp_sub_url,omitempty"`
	RTSPUser        string    `json:"rtsp_user,omitempty"`
	RTSPPassword    string    `json:"rtsp_password,omitempty"`
}

// gridDoc is a grid as stored, its geometry as GeoJSON.
type gridDoc struct {
	Code     string            `json:"code"`
	Name     string            `json:"name,omitempty"`
	Level    string            `json:"level"`
	Parent   string            `json:"parent,omitempty"`
	Geometry *geojson.Geometry `json:"geometry"`
}

// SaveDevices stores devs in the registry, replacing the stored devices with
// the same ids, and in the devices table. Plain secrets are never stored:
// hash them into SecretHash first.
func (db *DB) SaveDevices(ctx context.Context, devs []devices.Device) error {
	keys, docs := make([]string, len(devs)), make([]string, len(devs))
	for i, d := range devs {
		b, err := json.Marshal(deviceDoc{
			ID: d.ID, Type: d.Type, Grid: d.Grid, Lat: d.Lat, Lon: d.Lon, Name: d.Name, InstallDate: d.InstallDate,
			SecretHash: d.SecretHash, PrevSecretHash: d.PrevSecretHash, PrevSecretUntil: d.PrevSecretUntil,
			RTSPURL: d.RTSPURL, RTSPSubURL: d.RTSPSubURL, RTSPUser: d.RTSPUser, RTSPPassword: d.RTSPPassword,
		})
		if err != nil {
			return fmt.Errorf("storage: encode device %s: %w", d.ID, err)
		}
		keys[i], docs[i] = d.ID, string(b)
	}
	if err := db.saveDocs(ctx, kindDevice, keys, docs); err != nil {
		return err
	}
	return db.UpsertDevices(ctx, devs)
}

// LoadDevices returns every device in the registry, ordered by id.
func (db *DB) LoadDevices(ctx context.Context) ([]devices.Device, error) {
	var out []devices.Device
	err := db.loadDocs(ctx, kindDevice, func(doc []byte) error {
		var d deviceDoc
		if err := json.Unmarshal(doc, &d); err != nil {
			return err
		}
		out = append(out, devices.Device{
			ID: d.ID, Type: d.Type, Grid: d.Grid, Lat: d.Lat, Lon: d.Lon, Name: d.Name, InstallDate: d.InstallDate,
			SecretHash: d.SecretHash, PrevSecretHash: d.PrevSecretHash, PrevSecretUntil: d.PrevSecretUntil,
			RTSPURL: d.RTSPURL, RTSPSubURL: d.RTSPSubURL, RTSPUser: d.RTSPUser, RTSPPassword: d.RTSPPassword,
		})
		return nil
	})
	return out, err
}

// SaveGrids stores grids in the registry, replacing those with the same codes.
func (db *DB) SaveGrids(ctx context.Context, grids []devices.Grid) error {
	keys, docs := make([]string, len(grids)), make([]string, len(grids))
	for i, g := range grids {
		b, err := json.Marshal(gridDoc{Code: g.Code, Name: g.Name, Level: g.Level, Parent: g.Parent, Geometry: geojson.NewGeometry(g.Geometry)})
		if err != nil {
			return fmt.Errorf("storage: encode grid %s: %w", g.Code, err)
		}
		keys[i], docs[i] = g.Code, string(b)
	}
	return db.saveDocs(ctx, kindGrid, keys, docs)
}

// LoadGrids returns every grid in the registry, ordered by code.
func (db *DB) LoadGrids(ctx context.Context) ([]devices.Grid, error) {
	var out []devices.Grid
	err := db.loadDocs(ctx, kindGrid, func(doc []byte) error {
		var g gridDoc
		if err := json.Unmarshal(doc, &g); err != nil {
			return err
		}
		grid := devices.Grid{Code: g.Code, Name: g.Name, Level: g.Level, Parent: g.Parent}
		if g.Geometry != nil {
			grid.Geometry = g.Geometry.Geometry()
		}
		out = append(out, grid)
		return nil
	})
	return out, err
}

// SaveUnits stores units in the registry, replacing those with the same
// codes. A unit is stored as its JSON form.
func (db *DB) SaveUnits(ctx context.Context, units []devices.Unit) error {
	keys, docs := make([]string, len(units)), make([]string, len(units))
	for i, u := range units {
		b, err := json.Marshal(u)
		if err != nil {
			return fmt.Errorf("storage: encode unit %s: %w", u.Code, err)
		}
		keys[i], docs[i] = u.Code, string(b)
	}
	return db.saveDocs(ctx, kindUnit, keys, docs)
}

// LoadUnits returns every unit in the registry, ordered by code.
func (db *DB) LoadUnits(ctx context.Context) ([]devices.Unit, error) {
	var out []devices.Unit
	err := db.loadDocs(ctx, kindUnit, func(doc []byte) error {
		var u devices.Unit
		if err := json.Unmarshal(doc, &u); err != nil {
			return err
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// RegistryVersion returns a value that changes whenever the registry does:
// the row count and the latest update time. Polling it costs one tiny query.
func (db *DB) RegistryVersion(ctx context.Context) (string, error) {
	var (
		n       uint64
		updated int64
	)
	row := db.conn.QueryRow(ctx, "SELECT count(), toInt64(max("+db.msExpr("updated")+")) FROM "+quoteTable(db.opts.Database, "registry"))
	if err := row.Scan(&n, &updated); err != nil {
		return "", fmt.Errorf("storage: registry version: %w", err)
	}
	return fmt.Sprintf("%d@%d", n, updated), nil
}

// saveDocs inserts one document per key, stamped with the current time.
func (db *DB) saveDocs(ctx context.Context, kind string, keys, docs []string) error {
	if len(keys) == 0 {
		return nil
	}
	kinds, updated := make([]string, len(keys)), make([]int64, len(keys))
	now := time.Now().UnixMilli()
	for i := range keys {
		kinds[i], updated[i] = kind, now
	}
	query := "INSERT INTO " + quoteTable(db.opts.Database, "registry") + " (kind, key, doc, updated)"
	if err := insertColumns(ctx, db.conn, query, []any{kinds, keys, docs, updated}); err != nil {
		return fmt.Errorf("storage: save %d %ss: %w", len(keys), kind, err)
	}
	return nil
}

// loadDocs calls fn with the latest document of every key of kind, in key
// order. FINAL collapses the versions ReplacingMergeTree has not merged yet.
func (db *DB) loadDocs(ctx context.Context, kind string, fn func(doc []byte) error) error {
	rows, err := db.conn.Query(ctx, "SELECT key, doc FROM "+quoteTable(db.opts.Database, "registry")+
		" FINAL WHERE kind = ? ORDER BY key", kind)
	if err != nil {
		return fmt.Errorf("storage: load %ss: %w", kind, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, doc string
		if err := rows.Scan(&key, &doc); err != nil {
			return fmt.Errorf("storage: load %ss: %w", kind, err)
		}
		if err := fn([]byte(doc)); err != nil {
			return fmt.Errorf("storage: load %s %s: %w", kind, key, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: load %ss: %w", kind, err)
	}
	return nil
}

// LatestStatus returns the latest status change of every device that has
// one, for devices.NewStatusTracker.
func (db *DB) LatestStatus(ctx context.Context) ([]devices.StatusChange, error) {
	ms := db.msExpr("ts")
	rows, err := db.conn.Query(ctx, "SELECT device, toInt64(max("+ms+")), argMax(status, "+ms+"), argMax(reason, "+ms+")"+
		" FROM "+quoteTable(db.opts.Database, "device_status")+" GROUP BY device")
	if err != nil {
		return nil, fmt.Errorf("storage: latest device status: %w", err)
	}
	defer rows.Close()
	var out []devices.StatusChange
	for rows.Next() {
		var (
			c              devices.StatusChange
			ts             int64
			status, reason string
		)
		if err := rows.Scan(&c.Device, &ts, &status, &reason); err != nil {
			return nil, fmt.Errorf("storage: latest device status: %w", err)
		}
		c.At, c.Online, c.Reason = time.UnixMilli(ts).UTC(), status == "online", reason
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: latest device status: %w", err)
	}
	return out, nil
}
