package storage

import (
	"context"
	"fmt"
	"slices"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/compute"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Unstored returns parts without the readings that table holds already:
// the rows whose device, ts and metric a stored row has, whichever batch
// stored it. It is the replay's second look, after the ledger (Stored,
// which waits for the INSERTs in doubt first), where more than one node
// stores a fleet's telemetry: a device that got no PUBACK from a node that
// then died resends to another, which stores the resend under its own batch
// id, while the first node's spool still holds the first copy; whichever
// copy is replayed second is left out here. Parts of a table without device, ts and metric
// columns of those types are returned as they are, and so are the parts
// whose last INSERT had an unknown status (see Writer): the rows found may
// be their own, in a part the replica could still drop.
//
// A kept part is the part itself or, when rows were left out, a part of a
// new record, which the caller releases; dropped counts the rows left out.
func (w *Writer) Unstored(ctx context.Context, table string, parts []Part) (kept []Part, dropped int, err error) {
	return w.unstored(ctx, table, parts, func(Part) bool { return true })
}

// UnstoredInDoubt is Unstored for the parts the ledger cannot vouch for,
// on a lone node's replay and an import: those over several partitions
// (spansPartitions), which an INSERT that failed may have stored in part.
// The others are returned as they are: with one node storing the fleet,
// the ledger tells whether a batch of one partition is stored.
func (w *Writer) UnstoredInDoubt(ctx context.Context, table string, parts []Part) (kept []Part, dropped int, err error) {
	return w.unstored(ctx, table, parts, spansPartitions)
}

// unstored is Unstored for the parts look accepts.
func (w *Writer) unstored(ctx context.Context, table string, parts []Part, look func(Part) bool) (kept []Part, dropped int, err error) {
	if err := checkIdent("table", table); err != nil {
		return nil, 0, err
	}
	checked := make([]bool, len(parts))
	var check []Part
	w.mu.Lock()
	for i, p := range parts {
		if !w.unknown[p.ID] && readingColumns(p.Record) != nil && look(p) {
			checked[i] = true
			check = append(check, p)
		}
	}
	w.mu.Unlock()
	if len(check) == 0 {
		return parts, 0, nil
	}
	stored, err := w.storedReadings(ctx, table, check)
	if err != nil {
		return nil, 0, err
	}
	for i, p := range parts {
		keep := p
		if checked[i] {
			var n int
			keep, n, err = leaveOut(ctx, p, stored)
			if err != nil {
				for _, k := range kept {
					if !containsRecord(parts, k.Record) {
						k.Record.Release()
					}
				}
				return nil, 0, fmt.Errorf("storage: leave stored readings out of batch %s: %w", p.ID, err)
			}
			dropped += n
		}
		if keep.Record != nil {
			kept = append(kept, keep)
		}
	}
	return kept, dropped, nil
}

// leaveOut returns p without its rows in stored, and how many it left
// out: p itself when none, a part with no record when all, else a part of
// a new record.
func leaveOut(ctx context.Context, p Part, stored map[readingKey]bool) (Part, int, error) {
	cols := readingColumns(p.Record)
	rows := int(p.Record.NumRows())
	mask := array.NewBooleanBuilder(memory.DefaultAllocator)
	defer mask.Release()
	n := 0
	for i := range rows {
		have := stored[readingKey{cols.device.Value(i), int64(cols.ts.Value(i)), cols.metric.Value(i)}]
		mask.Append(!have)
		if have {
			n++
		}
	}
	switch n {
	case 0:
		return p, 0, nil
	case rows:
		return Part{ID: p.ID}, n, nil
	}
	filter := mask.NewArray()
	defer filter.Release()
	rec, err := compute.FilterRecordBatch(ctx, p.Record, filter, compute.DefaultFilterOptions())
	if err != nil {
		return Part{}, 0, err
	}
	return Part{ID: p.ID, Record: rec}, n, nil
}

// containsRecord reports whether one of parts has rec.
func containsRecord(parts []Part, rec arrow.Record) bool {
	for _, p := range parts {
		if p.Record == rec {
			return true
		}
	}
	return false
}

// readingKey is a reading's identity: its device, time (ms) and metric.
type readingKey struct {
	device string
	ts     int64
	metric string
}

// readings are the identity columns of a record of readings.
type readings struct {
	device, metric *array.String
	ts             *array.Timestamp
}

// readingColumns returns rec's device, ts and metric columns, or nil when
// it lacks one of them or one has nulls or another type.
func readingColumns(rec arrow.Record) *readings {
	col := func(name string) arrow.Array {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) != 1 || rec.Column(idx[0]).NullN() > 0 {
			return nil
		}
		return rec.Column(idx[0])
	}
	device, ok1 := col("device").(*array.String)
	metric, ok2 := col("metric").(*array.String)
	ts, ok3 := col("ts").(*array.Timestamp)
	if !ok1 || !ok2 || !ok3 || ts.DataType().(*arrow.TimestampType).Unit != arrow.Millisecond {
		return nil
	}
	return &readings{device: device, metric: metric, ts: ts}
}

// devicesChunk is how many devices the IN list of one query names (the
// readings storedReadings looks up, the alerts LoadOpenAlerts loads), so
// that the query stays far below max_query_size (256 KiB) for any fleet.
const devicesChunk = 1000

// storedReadings returns which readings of the devices of parts, within
// their time range, table holds, on any replica (everyReplica). The devices
// lead the tables' sort key, so the lookup reads their granules only.
func (w *Writer) storedReadings(ctx context.Context, table string, parts []Part) (map[readingKey]bool, error) {
	seen := map[string]bool{}
	var devices []any
	for _, p := range parts {
		cols := readingColumns(p.Record)
		for i := range cols.device.Len() {
			if d := cols.device.Value(i); !seen[d] {
				seen[d] = true
				devices = append(devices, d)
			}
		}
	}
	bound, args := w.tsBound(parts)
	out := make(map[readingKey]bool)
	err := w.db.everyReplica(ctx, table, func(conn driver.Conn, from string) error {
		query := "SELECT DISTINCT device, toInt64(" + w.db.msExpr("ts") + "), metric FROM " + from + " WHERE " + bound + "device IN ?"
		for start := 0; start < len(devices); start += devicesChunk {
			chunk := clickhouse.GroupSet{Value: devices[start:min(start+devicesChunk, len(devices))]}
			if err := scanReadings(ctx, conn, query, append(slices.Clip(args), chunk), out); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: stored readings in %s: %w", table, err)
	}
	return out, nil
}

// scanReadings adds the readings query finds to out.
func scanReadings(ctx context.Context, conn driver.Conn, query string, args []any, out map[readingKey]bool) error {
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k readingKey
		if err := rows.Scan(&k.device, &k.ts, &k.metric); err != nil {
			return err
		}
		out[k] = true
	}
	return rows.Err()
}
