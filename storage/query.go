package storage

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gridwatch/gridwatch/devices"
)

// MaxBuckets bounds the buckets one TelemetrySeries query may ask for.
const MaxBuckets = 10000

// SeriesQuery asks for one metric of one device over [From, To) in buckets
// of Step. Times are taken at millisecond precision.
type SeriesQuery struct {
	Device, Metric string
	From, To       time.Time
	Step           time.Duration
}

// Validate checks the query and returns the bucket count it spans.
func (q SeriesQuery) Validate() (int64, error) {
	switch {
	case q.Device == "" || q.Metric == "":
		return 0, fmt.Errorf("%w: device and metric are required", ErrBadQuery)
	case q.Step < time.Millisecond || q.Step%time.Millisecond != 0:
		return 0, fmt.Errorf("%w: step %s must be a positive whole number of milliseconds", ErrBadQuery, q.Step)
	case q.From.UnixMilli() >= q.To.UnixMilli():
		return 0, fmt.Errorf("%w: from %s must be before to %s", ErrBadQuery,
			q.From.UTC().Format(time.RFC3339Nano), q.To.UTC().Format(time.RFC3339Nano))
	}
	span, step := q.To.UnixMilli()-q.From.UnixMilli(), q.Step.Milliseconds()
	n := (span + step - 1) / step
	if n > MaxBuckets {
		return 0, fmt.Errorf("%w: %d buckets of %s, at most %d: use a larger step", ErrBadQuery, n, q.Step, MaxBuckets)
	}
	return n, nil
}

// Bucket aggregates the values of one step. Buckets without values are
// left out.
type Bucket struct {
	// Start is the bucket's first millisecond: From + i*Step.
	Start         time.Time
	Avg, Min, Max float64
	Count         uint64
}

// msExpr is the SQL of column col in epoch milliseconds (Int64).
func (db *DB) msExpr(col string) string { return msExpr(db.layout, col) }

// msExpr is the SQL of time column col of tables laid out as c, in epoch
// milliseconds (Int64).
func msExpr(c Capabilities, col string) string {
	if c.DateTime64 {
		return "toUnixTimestamp64Milli(" + col + ")"
	}
	return col
}

// fromMsExpr is the SQL turning a bound epoch-milliseconds value into the
// type of the time columns, so comparisons use the primary key.
func (db *DB) fromMsExpr() string {
	if db.layout.DateTime64 {
		return "fromUnixTimestamp64Milli(toInt64(?))"
	}
	return "toInt64(?)"
}

// TelemetrySeries returns the buckets of q that hold values, ordered by
// start, computed by ClickHouse. Buckets are aligned on q.From; the last
// one ends at q.To.
func (db *DB) TelemetrySeries(ctx context.Context, q SeriesQuery) ([]Bucket, error) {
	if _, err := q.Validate(); err != nil {
		return nil, err
	}
	from, to, step := q.From.UnixMilli(), q.To.UnixMilli(), q.Step.Milliseconds()
	query := "SELECT toInt64(intDiv(" + db.msExpr("ts") + " - toInt64(?), toInt64(?))) AS bucket," +
		" avg(value), min(value), max(value), count()" +
		" FROM " + quoteTable(db.opts.Database, "telemetry") +
		" WHERE device = ? AND metric = ? AND ts >= " + db.fromMsExpr() + " AND ts < " + db.fromMsExpr() +
		" GROUP BY bucket ORDER BY bucket"
	rows, err := db.conn.Query(ctx, query, from, step, q.Device, q.Metric, from, to)
	if err != nil {
		return nil, fmt.Errorf("storage: telemetry series of %s/%s: %w", q.Device, q.Metric, err)
	}
	defer rows.Close()
	var out []Bucket
	for rows.Next() {
		var (
			i int64
			b Bucket
		)
		if err := rows.Scan(&i, &b.Avg, &b.Min, &b.Max, &b.Count); err != nil {
			return nil, fmt.Errorf("storage: telemetry series of %s/%s: %w", q.Device, q.Metric, err)
		}
		b.Start = time.UnixMilli(from + i*step).UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: telemetry series of %s/%s: %w", q.Device, q.Metric, err)
	}
	return out, nil
}

// Latest is the most recent value of one metric.
type Latest struct {
	Metric string
	TS     time.Time
	Value  float64
}

// LatestTelemetry returns the latest value of each metric of device,
// ordered by metric.
func (db *DB) LatestTelemetry(ctx context.Context, device string) ([]Latest, error) {
	if device == "" {
		return nil, fmt.Errorf("%w: device is required", ErrBadQuery)
	}
	ms := db.msExpr("ts")
	query := "SELECT metric, max(" + ms + "), argMax(value, " + ms + ")" +
		" FROM " + quoteTable(db.opts.Database, "telemetry") +
		" WHERE device = ? GROUP BY metric ORDER BY metric"
	rows, err := db.conn.Query(ctx, query, device)
	if err != nil {
		return nil, fmt.Errorf("storage: latest telemetry of %s: %w", device, err)
	}
	defer rows.Close()
	var out []Latest
	for rows.Next() {
		var (
			l  Latest
			ts int64
		)
		if err := rows.Scan(&l.Metric, &ts, &l.Value); err != nil {
			return nil, fmt.Errorf("storage: latest telemetry of %s: %w", device, err)
		}
		l.TS = time.UnixMilli(ts).UTC()
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: latest telemetry of %s: %w", device, err)
	}
	return out, nil
}

// UpsertDevices stores devs in the devices table, stamped with the current
// time; a later row for the same id replaces an earlier one (the table is a
// ReplacingMergeTree: read it with FINAL or argMax). Secrets are not stored.
func (db *DB) UpsertDevices(ctx context.Context, devs []devices.Device) error {
	if len(devs) == 0 {
		return nil
	}
	n := len(devs)
	var (
		ids, types, grids, names = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		lats, lons               = make([]float64, n), make([]float64, n)
		updated                  = make([]int64, n)
		now                      = time.Now().UnixMilli()
	)
	for i, d := range devs {
		ids[i], types[i], grids[i], names[i] = d.ID, d.Type, d.Grid, d.Name
		lats[i], lons[i], updated[i] = d.Lat, d.Lon, now
	}
	query := "INSERT INTO " + quoteTable(db.opts.Database, "devices") + " (id, type, grid, lat, lon, name, updated)"
	cols := []any{ids, types, grids, lats, lons, names, updated}
	if err := insertColumns(ctx, db.conn, query, cols); err != nil {
		return fmt.Errorf("storage: upsert %d devices: %w", n, err)
	}
	return nil
}

// DropExpired enforces Options.RetentionDays on servers without TTL (it is
// harmless on the others, and covers tables created before an upgrade
// brought TTL): it drops the monthly partitions of the tables modern
// servers give a TTL (retentionTables) whose every row is older than now
// minus the retention, and
// returns how many it dropped. Rows are thus kept at least RetentionDays and
// at most a month longer. With RetentionDays 0 it does nothing.
func (db *DB) DropExpired(ctx context.Context, now time.Time) (int, error) {
	if db.opts.RetentionDays == 0 {
		return 0, nil
	}
	cutoff := now.UTC().AddDate(0, 0, -db.opts.RetentionDays)
	dropped := 0
	for _, table := range retentionTables {
		rows, err := db.conn.Query(ctx,
			"SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active",
			db.opts.Database, db.localTable(table))
		if err != nil {
			return dropped, fmt.Errorf("storage: list partitions of %s: %w", table, err)
		}
		var expired []string
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return dropped, fmt.Errorf("storage: list partitions of %s: %w", table, err)
			}
			if end, ok := monthPartitionEnd(p); ok && !end.After(cutoff) {
				expired = append(expired, p)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return dropped, fmt.Errorf("storage: list partitions of %s: %w", table, err)
		}
		for _, p := range expired {
			// p is six digits (checked by monthPartitionEnd): safe as a literal.
			// On a cluster a replica drops it from its shard's others
			// (ReplicatedMergeTree), and ON CLUSTER reaches the other
			// shards, whose partitions this one's parts stand for.
			drop := "ALTER TABLE " + quoteTable(db.opts.Database, db.localTable(table))
			if db.opts.Cluster != "" {
				drop += onCluster(db.opts.Cluster)
			}
			if err := db.conn.Exec(ctx, drop+" DROP PARTITION "+p); err != nil {
				return dropped, fmt.Errorf("storage: drop partition %s of %s: %w", p, table, err)
			}
			db.logger.Info("dropped expired partition", "table", table, "partition", p,
				"retention_days", db.opts.RetentionDays)
			dropped++
		}
	}
	return dropped, nil
}

// retentionTables are the tables clickhouse.retention_days applies to:
// those whose migrations have a TTL clause.
var retentionTables = []string{"telemetry", "rejected", "camera_health"}

// monthPartitionEnd parses a toYYYYMM partition value and returns the first
// instant after that month, in UTC.
func monthPartitionEnd(p string) (time.Time, bool) {
	if len(p) != 6 {
		return time.Time{}, false
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return time.Time{}, false
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return time.Time{}, false
	}
	year, month := n/100, n%100
	if month < 1 || month > 12 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month)+1, 1, 0, 0, 0, 0, time.UTC), true
}

// ReadingKey identifies a telemetry row of one device: its time in ms since
// the epoch and its metric.
type ReadingKey struct {
	TS     int64
	Metric string
}

// StoredReadings returns which readings of device at the times ts (ms since
// the epoch) the telemetry table holds. Ingest asks it about redelivered
// messages, so that a message stored before its PUBACK was lost is not
// stored twice; on a cluster it reads every replica (everyReplica), so
// that a copy another node stored through another replica a moment ago
// is found.
func (db *DB) StoredReadings(ctx context.Context, device string, ts []int64) (map[ReadingKey]bool, error) {
	out := make(map[ReadingKey]bool)
	if len(ts) == 0 {
		return out, nil
	}
	err := db.everyReplica(ctx, "telemetry", func(conn driver.Conn, from string) error {
		rows, err := conn.Query(ctx, "SELECT DISTINCT toInt64("+db.msExpr("ts")+"), metric FROM "+from+
			" WHERE device = ? AND has(?, toInt64("+db.msExpr("ts")+"))", device, ts)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k ReadingKey
			if err := rows.Scan(&k.TS, &k.Metric); err != nil {
				return err
			}
			out[k] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("storage: stored readings of %s: %w", device, err)
	}
	return out, nil
}

// HeardLate is how long before it arrived a reading may be stamped and
// still be found by LastHeard: the bound on ts that keeps its lookup to
// the partitions and granules of the time asked.
const HeardLate = 24 * time.Hour

// heardChunk is how many devices one query of LastHeard asks about.
const heardChunk = 1000

// LastHeard returns, for each of devices that the telemetry table holds a
// reading of received at or after since, the latest receive time of one:
// when the cluster last heard from it, whichever node stored the reading.
// The alert engine of a node consuming a shared subscription asks it
// before it counts a device silent (alerts.Engine.Heard). On a cluster it
// reads every replica (everyReplica), so that a reading another node
// stored through another replica a moment ago is found. Readings stamped
// more than HeardLate before since are not looked at.
func (db *DB) LastHeard(ctx context.Context, devices []string, since time.Time) (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	from := since.UnixMilli()
	for start := 0; start < len(devices); start += heardChunk {
		chunk := devices[start:min(start+heardChunk, len(devices))]
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, id := range chunk {
			set.Value[i] = id
		}
		err := db.everyReplica(ctx, "telemetry", func(conn driver.Conn, table string) error {
			rows, err := conn.Query(ctx, "SELECT device, toInt64(max("+db.msExpr("received")+")) FROM "+table+
				" WHERE device IN ? AND "+tsSince(db.layout, from-HeardLate.Milliseconds())+
				" AND received >= "+db.fromMsExpr()+" GROUP BY device", set, from)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var (
					dev string
					ms  int64
				)
				if err := rows.Scan(&dev, &ms); err != nil {
					return err
				}
				if t := time.UnixMilli(ms); t.After(out[dev]) {
					out[dev] = t
				}
			}
			return rows.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("storage: when %d devices were last heard: %w", len(chunk), err)
		}
	}
	return out, nil
}

// MessageRows counts the telemetry rows stored for one device's message:
// the rows at its time, and how many of them repeat a metric already
// counted at that time (a reading stored twice).
type MessageRows struct {
	Rows, Repeated uint64
}

// TelemetryMessages counts the telemetry rows of every device per message
// time (ms since the epoch). It reads the whole table: it is for checking a
// test run against what its devices were acknowledged, not for production
// queries.
func (db *DB) TelemetryMessages(ctx context.Context) (map[string]map[int64]MessageRows, error) {
	query := "SELECT device, at, sum(n), toUInt64(sum(n - 1)) FROM (" +
		"SELECT device, toInt64(" + db.msExpr("ts") + ") AS at, metric, count() AS n FROM " +
		quoteTable(db.opts.Database, "telemetry") + " GROUP BY device, at, metric" +
		") GROUP BY device, at"
	rows, err := db.conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("storage: count telemetry messages: %w", err)
	}
	defer rows.Close()
	out := make(map[string]map[int64]MessageRows)
	for rows.Next() {
		var (
			dev string
			at  int64
			m   MessageRows
		)
		if err := rows.Scan(&dev, &at, &m.Rows, &m.Repeated); err != nil {
			return nil, fmt.Errorf("storage: count telemetry messages: %w", err)
		}
		if out[dev] == nil {
			out[dev] = make(map[int64]MessageRows)
		}
		out[dev][at] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: count telemetry messages: %w", err)
	}
	return out, nil
}
