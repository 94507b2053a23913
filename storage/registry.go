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

// deviceDoc is a device as stored: everything but the plain secret, the
// RTSP and SIP passwords sealed (devices.SecretBox).
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
	SIPPassword     string    `json:"sip_password,omitempty"`
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
// hash them into SecretHash first. Plain RTSP passwords are sealed with
// Options.Secrets.
func (db *DB) SaveDevices(ctx context.Context, devs []devices.Device) error {
	keys, docs := make([]string, len(devs)), make([]string, len(devs))
	for i, d := range devs {
		d, err := db.SealSecrets(d)
		if err != nil {
			return err
		}
		b, err := json.Marshal(docOf(d))
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

// SealSecrets returns d with its RTSP and SIP passwords sealed with
// Options.Secrets; sealed ones are kept as they are. Sealing is
// deterministic, so a device imported twice compares equal to the stored
// one.
func (db *DB) SealSecrets(d devices.Device) (devices.Device, error) {
	for _, p := range []*string{&d.RTSPPassword, &d.SIPPassword} {
		if *p == "" || devices.IsSealed(*p) {
			continue
		}
		if db.opts.Secrets == nil {
			if db.opts.NoSecrets != nil {
				return d, fmt.Errorf("%w: device %s: %w", ErrNoSecretKey, d.ID, db.opts.NoSecrets)
			}
			return d, fmt.Errorf("%w: device %s", ErrNoSecretKey, d.ID)
		}
		*p = db.opts.Secrets.Seal(d.ID, *p)
	}
	return d, nil
}

// LoadDevices returns every device in the registry, ordered by id, with
// their RTSP passwords as stored: sealed, since Migrate seals those that
// earlier versions stored in plain text. Passwords sealed under another key
// than Options.Secrets are logged once per load; the prober reports those
// cameras auth_failed with the reason.
func (db *DB) LoadDevices(ctx context.Context) ([]devices.Device, error) {
	var (
		out     []devices.Device
		foreign = map[string]int{}
	)
	err := db.loadDocs(ctx, kindDevice, func(doc []byte) error {
		var d deviceDoc
		if err := json.Unmarshal(doc, &d); err != nil {
			return err
		}
		dev := d.device()
		if sk := db.opts.Secrets; sk != nil && devices.IsSealed(dev.RTSPPassword) {
			if id := devices.SealedKeyID(dev.RTSPPassword); id != sk.KeyID() {
				foreign[id]++
			}
		}
		out = append(out, dev)
		return nil
	})
	for id, n := range foreign {
		db.logger.Error("RTSP passwords sealed under another secrets key: those cameras cannot be probed; every node sharing a registry needs the same secrets.key_file",
			"cameras", n, "sealed_key", id, "this_node_key", db.opts.Secrets.KeyID())
	}
	return out, err
}

// docOf returns d as stored.
func docOf(d devices.Device) deviceDoc {
	return deviceDoc{
		ID: d.ID, Type: d.Type, Grid: d.Grid, Lat: d.Lat, Lon: d.Lon, Name: d.Name, InstallDate: d.InstallDate,
		SecretHash: d.SecretHash, PrevSecretHash: d.PrevSecretHash, PrevSecretUntil: d.PrevSecretUntil,
		RTSPURL: d.RTSPURL, RTSPSubURL: d.RTSPSubURL, RTSPUser: d.RTSPUser, RTSPPassword: d.RTSPPassword,
		SIPPassword: d.SIPPassword,
	}
}

// device returns the device d stores.
func (d deviceDoc) device() devices.Device {
	return devices.Device{
		ID: d.ID, Type: d.Type, Grid: d.Grid, Lat: d.Lat, Lon: d.Lon, Name: d.Name, InstallDate: d.InstallDate,
		SecretHash: d.SecretHash, PrevSecretHash: d.PrevSecretHash, PrevSecretUntil: d.PrevSecretUntil,
		RTSPURL: d.RTSPURL, RTSPSubURL: d.RTSPSubURL, RTSPUser: d.RTSPUser, RTSPPassword: d.RTSPPassword,
		SIPPassword: d.SIPPassword,
	}
}

// sealPlainSecrets re-encrypts at rest the RTSP passwords that versions
// before sealing stored in plain text. Each such document is written again,
// sealed, with its own version (updated), so that an import racing with it,
// being newer, still wins; then the table is merged so that the plain rows
// leave the disk. It returns how many documents it sealed.
func (db *DB) sealPlainSecrets(ctx context.Context) (int, error) {
	if db.opts.Secrets == nil {
		return 0, nil
	}
	table := quoteTable(db.opts.Database, "registry")
	rows, err := db.conn.Query(ctx, "SELECT key, doc, toInt64("+db.msExpr("updated")+") FROM "+table+
		" FINAL WHERE kind = ? AND position(doc, '\"rtsp_password\":\"') > 0 AND position(doc, '\"rtsp_password\":\"gwsec1:') = 0", kindDevice)
	if err != nil {
		return 0, fmt.Errorf("storage: find plain RTSP passwords: %w", err)
	}
	defer rows.Close()
	var (
		keys, docs []string
		updated    []int64
	)
	for rows.Next() {
		var (
			key, doc string
			ms       int64
			d        deviceDoc
		)
		if err := rows.Scan(&key, &doc, &ms); err != nil {
			return 0, fmt.Errorf("storage: find plain RTSP passwords: %w", err)
		}
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			return 0, fmt.Errorf("storage: device %s: %w", key, err)
		}
		dev, err := db.SealSecrets(d.device())
		if err != nil {
			return 0, err
		}
		b, err := json.Marshal(docOf(dev))
		if err != nil {
			return 0, fmt.Errorf("storage: encode device %s: %w", key, err)
		}
		keys, docs, updated = append(keys, key), append(docs, string(b)), append(updated, ms)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("storage: find plain RTSP passwords: %w", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if err := db.insertDocs(ctx, kindDevice, keys, docs, updated); err != nil {
		return 0, err
	}
	// On a cluster the merge of a replicated table is one for its replicas;
	// 18.16 fails OPTIMIZE ON CLUSTER on those, so the other shards'
	// registry merges in its own time.
	if err := db.conn.Exec(ctx, "OPTIMIZE TABLE "+quoteTable(db.opts.Database, db.localTable("registry"))+" FINAL"); err != nil {
		return len(keys), fmt.Errorf("storage: merge the registry after sealing %d RTSP passwords (the plain rows stay on disk until it merges): %w", len(keys), err)
	}
	return len(keys), nil
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
	updated := make([]int64, len(keys))
	now := time.Now().UnixMilli()
	for i := range keys {
		updated[i] = now
	}
	return db.insertDocs(ctx, kind, keys, docs, updated)
}

// insertDocs inserts one document per key with its version, updated (ms).
func (db *DB) insertDocs(ctx context.Context, kind string, keys, docs []string, updated []int64) error {
	if len(keys) == 0 {
		return nil
	}
	kinds := make([]string, len(keys))
	for i := range keys {
		kinds[i] = kind
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
