package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/alerts"
)

// Alerts and events are written with PrepareBatch straight from the alert
// engine's rows rather than through the Arrow batcher: they are few (a
// flush a second at most), the engine already batches and retries them, and
// their columns (arrays, many timestamps) would need an Arrow schema that
// only maps them back to the same values.

// The alerts table also has the work-order columns of releases whose
// alerts carried work orders (unit, status, refired, acked, dispatched,
// resolved, closed, ack_due, resolve_due, next_reminder, ack_overdue,
// resolve_overdue; migration 0018 comments them so): rows written since
// leave them at their defaults, and LoadAlerts reads status only to leave
// out the work orders closed then. They are not dropped: they hold those
// releases' history, and an import of an export taken then names them.

// alertTimeColumns are the timestamp columns of alerts written, in table
// order.
var alertTimeColumns = []string{"pending_since", "fired", "last_seen", "cleared", "updated"}

// alertTimes returns pointers to a's timestamps, in alertTimeColumns order.
func alertTimes(a *alerts.Alert) []*time.Time {
	return []*time.Time{&a.PendingSince, &a.Fired, &a.LastSeen, &a.Cleared, &a.Updated}
}

// alertColumns are the other columns of alerts written, in table order
// before the timestamps (the escalated flag follows them).
const alertColumns = "id, revision, version, rule, device, grid, members, category, severity, base_severity," +
	" condition, case_id, summary, value, count"

// toMs converts a time to epoch milliseconds, the zero time to 0.
func toMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMs converts epoch milliseconds to a UTC time, 0 to the zero time.
func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// SaveAlerts stores alert rows; the table keeps the highest Revision of
// each id (ReplacingMergeTree: read with LoadAlerts, FINAL or argMax).
func (db *DB) SaveAlerts(ctx context.Context, rows []alerts.Alert) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	str := func() []string { return make([]string, n) }
	var (
		ids, rules, devs, grids, cats = str(), str(), str(), str(), str()
		sevs, bases, conds, links     = str(), str(), str(), str()
		sums                          = str()
		members                       = make([][]string, n)
		revs, vers, counts            = make([]uint64, n), make([]uint64, n), make([]uint64, n)
		values                        = make([]float64, n)
		times                         = make([][]int64, len(alertTimeColumns))
		esc                           = make([]uint8, n)
	)
	for i := range times {
		times[i] = make([]int64, n)
	}
	for i := range rows {
		a := &rows[i]
		ids[i], rules[i], devs[i], grids[i], cats[i] = a.ID, a.Rule, a.Device, a.Grid, a.Category
		sevs[i], bases[i], conds[i], links[i], sums[i] = a.Severity.String(), a.BaseSeverity.String(), string(a.Condition), a.Case, a.Summary
		members[i] = a.Members
		if members[i] == nil {
			members[i] = []string{}
		}
		revs[i], vers[i], counts[i], values[i] = a.Revision, a.Version, a.Count, a.Value
		for j, t := range alertTimes(a) {
			times[j][i] = toMs(*t)
		}
		esc[i] = flag(a.Escalated)
	}
	cols := []any{ids, revs, vers, rules, devs, grids, members, cats, sevs, bases, conds, links, sums, values, counts}
	for _, t := range times {
		cols = append(cols, t)
	}
	cols = append(cols, esc)
	query := "INSERT INTO " + quoteTable(db.opts.Database, "alerts") + " (" + alertColumns + ", " +
		strings.Join(alertTimeColumns, ", ") + ", escalated)"
	if err := insertColumns(ctx, db.conn, query, cols); err != nil {
		return fmt.Errorf("storage: save %d alerts: %w", n, err)
	}
	return nil
}

// flag converts a bool to a UInt8 column value.
func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// SaveEvents stores alert events; a retried event (same alert and version)
// is stored once.
func (db *DB) SaveEvents(ctx context.Context, events []alerts.Event) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	var (
		ts                                 = make([]int64, n)
		ids, actors, kinds, froms, tos, ns = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		vers                               = make([]uint64, n)
	)
	for i, ev := range events {
		ts[i], ids[i], vers[i], actors[i] = toMs(ev.TS), ev.AlertID, ev.Version, ev.Actor
		kinds[i], froms[i], tos[i], ns[i] = string(ev.Kind), ev.From, ev.To, ev.Note
	}
	query := "INSERT INTO " + quoteTable(db.opts.Database, "alert_events") +
		" (ts, alert_id, version, actor, kind, from_state, to_state, note)"
	if err := insertColumns(ctx, db.conn, query, []any{ts, ids, vers, actors, kinds, froms, tos, ns}); err != nil {
		return fmt.Errorf("storage: save %d alert events: %w", n, err)
	}
	return nil
}

// LoadAlerts returns the latest row of every alert that is not a tombstone
// of a pending alert and is not cleared or was cleared at or after
// clearedSince, with the events of those alerts, deduplicated. Work orders
// closed by a release whose alerts carried them are left out.
func (db *DB) LoadAlerts(ctx context.Context, clearedSince time.Time) ([]alerts.Alert, []alerts.Event, error) {
	out, err := db.loadAlerts(ctx, "", "x_condition != 'cleared' OR x_cleared >= ?", clearedSince.UnixMilli())
	if err != nil {
		return nil, nil, err
	}
	events, err := db.alertEvents(ctx, out)
	return out, events, err
}

// LoadOpenAlerts returns the latest row of every device-level alert of the
// given devices that is pending or firing, with its events: what a node
// that takes the devices over from another carries on.
func (db *DB) LoadOpenAlerts(ctx context.Context, devices []string) ([]alerts.Alert, []alerts.Event, error) {
	var out []alerts.Alert
	for start := 0; start < len(devices); start += devicesChunk {
		set := clickhouse.GroupSet{Value: make([]any, 0, devicesChunk)}
		for _, d := range devices[start:min(start+devicesChunk, len(devices))] {
			set.Value = append(set.Value, d)
		}
		as, err := db.loadAlerts(ctx, "device IN ?", "x_condition IN ('pending', 'firing')", set)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, as...)
	}
	events, err := db.alertEvents(ctx, out)
	return out, events, err
}

// loadAlerts returns the latest row of each alert whose rows match rowsWhere
// (every alert when empty) and whose latest row matches latestWhere, beside
// not being a tombstone nor a closed work order; args are the two WHEREs'
// parameters, in order.
func (db *DB) loadAlerts(ctx context.Context, rowsWhere, latestWhere string, args ...any) ([]alerts.Alert, error) {
	// argMax per column, not FINAL: old servers may apply a WHERE on a
	// non-key column before FINAL picks the latest row.
	var sel []string
	for _, c := range strings.Split(alertColumns, ", ") {
		if c != "id" {
			sel = append(sel, "argMax("+c+", revision) AS x_"+c)
		}
	}
	for _, c := range alertTimeColumns {
		sel = append(sel, "argMax("+db.msExpr(c)+", revision) AS x_"+c)
	}
	sel = append(sel, "argMax(escalated, revision) AS x_escalated")
	if rowsWhere != "" {
		rowsWhere = " WHERE " + rowsWhere
	}
	query := "SELECT * FROM (SELECT id, " + strings.Join(sel, ", ") + ", argMax(status, revision) AS x_status" +
		" FROM " + quoteTable(db.opts.Database, "alerts") + rowsWhere + " GROUP BY id)" +
		" WHERE x_condition != 'inactive' AND x_status != 'closed' AND (" + latestWhere + ")"
	rows, err := db.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: load alerts: %w", err)
	}
	defer rows.Close()
	var out []alerts.Alert
	for rows.Next() {
		var (
			a                       alerts.Alert
			sev, base, cond, status string
			ms                      = make([]int64, len(alertTimeColumns))
			esc                     uint8
		)
		dest := []any{&a.ID, &a.Revision, &a.Version, &a.Rule, &a.Device, &a.Grid, &a.Members, &a.Category,
			&sev, &base, &cond, &a.Case, &a.Summary, &a.Value, &a.Count}
		for i := range ms {
			dest = append(dest, &ms[i])
		}
		dest = append(dest, &esc, &status) // x_status is for the WHERE only
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("storage: load alerts: %w", err)
		}
		for i, t := range alertTimes(&a) {
			*t = fromMs(ms[i])
		}
		if a.Severity, err = alerts.ParseSeverity(sev); err != nil {
			return nil, fmt.Errorf("storage: load alert %s: %w", a.ID, err)
		}
		if a.BaseSeverity, err = alerts.ParseSeverity(base); err != nil {
			return nil, fmt.Errorf("storage: load alert %s: %w", a.ID, err)
		}
		a.Condition, a.Escalated = alerts.Condition(cond), esc == 1
		if len(a.Members) == 0 {
			a.Members = nil
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: load alerts: %w", err)
	}
	return out, nil
}

// alertEvents returns the events of the given alerts, one per alert and
// version: the latest, should an action whose save failed half-way have
// left an event of a version the alert reached later by another.
func (db *DB) alertEvents(ctx context.Context, as []alerts.Alert) ([]alerts.Event, error) {
	const chunk = 1000
	var out []alerts.Event
	seen := map[string]map[uint64]bool{}
	for start := 0; start < len(as); start += chunk {
		ids := make([]string, 0, chunk)
		for _, a := range as[start:min(start+chunk, len(as))] {
			ids = append(ids, a.ID)
		}
		query := "SELECT " + db.msExpr("ts") + ", alert_id, version, actor, kind, from_state, to_state, note FROM " +
			quoteTable(db.opts.Database, "alert_events") + " WHERE has(?, alert_id) ORDER BY alert_id, version, ts DESC"
		rows, err := db.conn.Query(ctx, query, ids)
		if err != nil {
			return nil, fmt.Errorf("storage: load alert events: %w", err)
		}
		for rows.Next() {
			var (
				ev   alerts.Event
				ms   int64
				kind string
			)
			if err := rows.Scan(&ms, &ev.AlertID, &ev.Version, &ev.Actor, &kind, &ev.From, &ev.To, &ev.Note); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: load alert events: %w", err)
			}
			if seen[ev.AlertID] == nil {
				seen[ev.AlertID] = map[uint64]bool{}
			}
			if seen[ev.AlertID][ev.Version] {
				continue
			}
			seen[ev.AlertID][ev.Version] = true
			ev.TS, ev.Kind = fromMs(ms), alerts.EventKind(kind)
			out = append(out, ev)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("storage: load alert events: %w", err)
		}
	}
	return out, nil
}
