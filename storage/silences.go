package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// silenceColumns are the columns of silences, in table order.
const silenceColumns = "id, revision, rule, device, grid, maintenance, ends, actor, reason"

// SaveSilence stores a silence; the table keeps the highest Revision of each
// id, so a silence ended early is saved again with its new end.
func (db *DB) SaveSilence(ctx context.Context, s alerts.Silence) error {
	cols := []any{[]string{s.ID}, []uint64{s.Revision}, []string{s.Rule}, []string{s.Device}, []string{s.Grid},
		[]uint8{flag(s.Maintenance)}, []int64{toMs(s.Ends)}, []string{s.Actor}, []string{s.Reason}}
	query := "INSERT INTO " + quoteTable(db.opts.Database, "silences") + " (" + silenceColumns + ")"
	if err := insertColumns(ctx, db.conn, query, cols); err != nil {
		return fmt.Errorf("storage: save silence %s: %w", s.ID, err)
	}
	return nil
}

// LoadSilences returns the latest version of every silence that ends after
// now.
func (db *DB) LoadSilences(ctx context.Context, now time.Time) ([]alerts.Silence, error) {
	// argMax per column, not FINAL, as in LoadAlerts.
	query := "SELECT * FROM (SELECT id, max(revision), argMax(rule, revision), argMax(device, revision)," +
		" argMax(grid, revision), argMax(maintenance, revision), argMax(" + db.msExpr("ends") + ", revision) AS x_ends," +
		" argMax(actor, revision), argMax(reason, revision)" +
		" FROM " + quoteTable(db.opts.Database, "silences") + " GROUP BY id) WHERE x_ends > ? ORDER BY x_ends, id"
	rows, err := db.conn.Query(ctx, query, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("storage: load silences: %w", err)
	}
	defer rows.Close()
	var out []alerts.Silence
	for rows.Next() {
		var (
			s           alerts.Silence
			maintenance uint8
			ends        int64
		)
		if err := rows.Scan(&s.ID, &s.Revision, &s.Rule, &s.Device, &s.Grid, &maintenance, &ends, &s.Actor, &s.Reason); err != nil {
			return nil, fmt.Errorf("storage: load silences: %w", err)
		}
		s.Maintenance, s.Ends = maintenance == 1, fromMs(ends)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: load silences: %w", err)
	}
	return out, nil
}
