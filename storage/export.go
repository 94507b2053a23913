package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet"
	"github.com/apache/arrow/go/v15/parquet/compress"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
)

// ExportFormat is the file format of an export.
type ExportFormat string

// The export formats. Both are zstd-compressed and hold the same Arrow
// schema: times are timestamp[ms, UTC] whatever the server stores them as
// (Int64 epoch ms on 18.16, DateTime64(3) on modern servers), so a file
// exported from one server imports into another.
const (
	// FormatParquet is Apache Parquet, one row group per
	// ExportQuery.RowGroupRows rows, with the Arrow schema stored in the
	// file's metadata (ARROW:schema).
	FormatParquet ExportFormat = "parquet"
	// FormatArrow is the Arrow IPC file format (Feather v2), one record
	// batch per ExportQuery.RowGroupRows rows.
	FormatArrow ExportFormat = "arrow"
)

// ParseExportFormat parses "parquet" or "arrow".
func ParseExportFormat(s string) (ExportFormat, error) {
	switch f := ExportFormat(s); f {
	case FormatParquet, FormatArrow:
		return f, nil
	}
	return "", fmt.Errorf("%w: format %q: want parquet or arrow", ErrBadQuery, s)
}

// ContentType is the media type of the format.
func (f ExportFormat) ContentType() string {
	if f == FormatArrow {
		return "application/vnd.apache.arrow.file"
	}
	return "application/vnd.apache.parquet"
}

// exportRange names the tables Export serves and, for each, the time
// column its range applies to: when a row happened, or for alerts and
// cases, whose rows are revisions, when the alert or case last changed
// (so that exports of consecutive ranges together hold every one's latest
// state). The cases table is what the case loop restores its cases from;
// case_events is their trace.
var exportRange = map[string]string{
	"telemetry":     "ts",
	"rejected":      "ts",
	"camera_health": "ts",
	"device_status": "ts",
	"alerts":        "updated",
	"alert_events":  "ts",
	"cases":         "updated",
	"case_events":   "ts",
}

// ExportTables returns the tables Export serves, sorted.
func ExportTables() []string { return slices.Sorted(maps.Keys(exportRange)) }

// DefaultRowGroupRows is the default of ExportQuery.RowGroupRows.
const DefaultRowGroupRows = 1 << 17

// Keys of the metadata an export carries (Parquet key-value metadata, the
// Arrow schema's metadata in both formats).
const (
	// MetaTable is the table the rows come from.
	MetaTable = "gridwatch.table"
	// MetaFrom and MetaTo are the range, RFC 3339 with milliseconds, UTC.
	MetaFrom = "gridwatch.from"
	MetaTo   = "gridwatch.to"
	// MetaExportID is a random id of the export, from which Import makes
	// batch ids: importing the same file twice stores its telemetry once.
	MetaExportID = "gridwatch.export_id"
)

// ExportQuery asks for the rows of one table over [From, To), taken at
// millisecond precision.
type ExportQuery struct {
	// Table is one of ExportTables.
	Table    string
	From, To time.Time
	// Format defaults to FormatParquet.
	Format ExportFormat
	// RowGroupRows is how many rows one Parquet row group or Arrow record
	// batch holds, and so what the export holds in memory. It defaults to
	// DefaultRowGroupRows.
	RowGroupRows int
	// Progress, when set, is called after each row group with the rows
	// written so far.
	Progress func(rows int64)
}

// withDefaults fills the defaults of q and validates it.
func (q ExportQuery) withDefaults() (ExportQuery, error) {
	if _, ok := exportRange[q.Table]; !ok {
		return q, fmt.Errorf("%w: table %q cannot be exported: want one of %s", ErrBadQuery, q.Table, strings.Join(ExportTables(), ", "))
	}
	if q.From.UnixMilli() >= q.To.UnixMilli() {
		return q, fmt.Errorf("%w: from %s must be before to %s", ErrBadQuery, msTime(q.From), msTime(q.To))
	}
	if q.Format == "" {
		q.Format = FormatParquet
	}
	if _, err := ParseExportFormat(string(q.Format)); err != nil {
		return q, err
	}
	if q.RowGroupRows <= 0 {
		q.RowGroupRows = DefaultRowGroupRows
	}
	return q, nil
}

// Validate checks q as Export would, without a server.
func (q ExportQuery) Validate() error {
	_, err := q.withDefaults()
	return err
}

// msTime formats t as RFC 3339 with milliseconds, in UTC.
func msTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// ExportResult says what an export wrote.
type ExportResult struct {
	// Rows and RowGroups (Arrow record batches) written, and the file's
	// size in bytes.
	Rows      int64
	RowGroups int
	Bytes     int64
}

// ExportCount returns how many rows Export would write for q, for a
// progress bar. Rows stored between the two calls make them differ.
func (db *DB) ExportCount(ctx context.Context, q ExportQuery) (uint64, error) {
	q, err := q.withDefaults()
	if err != nil {
		return 0, err
	}
	plan, err := db.exportPlan(ctx, q)
	if err != nil {
		return 0, err
	}
	var n uint64
	if err := db.conn.QueryRow(plan.ctx(ctx), "SELECT count() FROM "+plan.from, plan.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: count %s rows to export: %w", q.Table, err)
	}
	return n, nil
}

// Export writes the rows of q to w in q.Format, streamed: it reads one
// query's result block by block and writes a row group every
// q.RowGroupRows rows, so that it holds about one row group in memory
// whatever the range. Rows come in no particular order. Tables whose
// engine replaces rows (alerts, alert_events, cases, case_events) are
// read FINAL: one row per key, the latest. Internal bookkeeping (telemetry's batch
// column) is left out. On an error the file is incomplete: Parquet and
// Arrow files are only readable once their footer is written, so a
// truncated download is never taken for a whole one.
func (db *DB) Export(ctx context.Context, q ExportQuery, w io.Writer) (ExportResult, error) {
	q, err := q.withDefaults()
	if err != nil {
		return ExportResult{}, err
	}
	plan, err := db.exportPlan(ctx, q)
	if err != nil {
		return ExportResult{}, err
	}
	id, err := exportID()
	if err != nil {
		return ExportResult{}, err
	}
	md := arrow.NewMetadata(
		[]string{MetaTable, MetaFrom, MetaTo, MetaExportID},
		[]string{q.Table, msTime(q.From), msTime(q.To), id})
	fields := make([]arrow.Field, len(plan.cols))
	dest := make([]any, len(plan.cols))
	for i, c := range plan.cols {
		fields[i] = arrow.Field{Name: c.name, Type: c.typ}
		dest[i] = c.dest
	}
	schema := arrow.NewSchema(fields, &md)
	// The query starts before the first byte is written, so that a caller
	// streaming to a client can still answer its failure with an error.
	rows, err := db.conn.Query(plan.ctx(ctx), "SELECT "+plan.columns+" FROM "+plan.from, plan.args...)
	if err != nil {
		return ExportResult{}, fmt.Errorf("storage: export %s: %w", q.Table, err)
	}
	defer rows.Close()
	out := &countingWriter{w: w}
	sink, err := newRecordSink(q.Format, schema, out, q.RowGroupRows)
	if err != nil {
		return ExportResult{}, fmt.Errorf("storage: export %s: %w", q.Table, err)
	}
	res, err := exportRows(q, rows, plan.cols, schema, dest, sink)
	if err == nil {
		err = sink.Close()
	}
	res.Bytes = out.n
	if err != nil {
		return res, fmt.Errorf("storage: export %s: %w", q.Table, err)
	}
	return res, nil
}

// exportRows hands the rows of a query to sink in records of
// q.RowGroupRows rows.
func exportRows(q ExportQuery, rows driver.Rows, cols []exportColumn, schema *arrow.Schema, dest []any, sink recordSink) (ExportResult, error) {
	var res ExportResult
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	flush := func() error {
		rec := b.NewRecord()
		defer rec.Release()
		if err := sink.Write(rec); err != nil {
			return err
		}
		res.Rows += rec.NumRows()
		res.RowGroups++
		if q.Progress != nil {
			q.Progress(res.Rows)
		}
		return nil
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return res, err
		}
		for i, c := range cols {
			c.appendTo(b.Field(i))
		}
		if n++; n == q.RowGroupRows {
			if err := flush(); err != nil {
				return res, err
			}
			n = 0
		}
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	if n > 0 {
		return res, flush()
	}
	return res, nil
}

// exportPlan is the query of one export: its columns, the FROM … WHERE
// part with its arguments, and the settings it runs with.
type exportPlan struct {
	cols     []exportColumn
	columns  string
	from     string
	args     []any
	settings clickhouse.Settings
}

// ctx returns ctx carrying the plan's settings.
func (p exportPlan) ctx(ctx context.Context) context.Context {
	if len(p.settings) == 0 {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(p.settings))
}

// exportPlan reads the table's columns and engine from the server and
// builds the query of q.
func (db *DB) exportPlan(ctx context.Context, q ExportQuery) (exportPlan, error) {
	var plan exportPlan
	var engine string
	err := db.conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?",
		db.opts.Database, db.localTable(q.Table)).Scan(&engine)
	if err != nil {
		return plan, fmt.Errorf("storage: export %s: look up the table (run gridwatch migrate?): %w", q.Table, err)
	}
	rows, err := db.conn.Query(ctx,
		"SELECT name, type, default_kind FROM system.columns WHERE database = ? AND table = ?",
		db.opts.Database, q.Table)
	if err != nil {
		return plan, fmt.Errorf("storage: export %s: read columns: %w", q.Table, err)
	}
	defer rows.Close()
	times := timeColumns()[q.Table]
	rangeCol, rangeType, hasDate := exportRange[q.Table], "", false
	var exprs []string
	for rows.Next() {
		var name, typ, kind string
		if err := rows.Scan(&name, &typ, &kind); err != nil {
			return plan, fmt.Errorf("storage: export %s: read columns: %w", q.Table, err)
		}
		switch {
		case name == DateColumn && (kind == "MATERIALIZED" || db.opts.Cluster != "" && kind == "DEFAULT"):
			hasDate = true
			continue
		case kind == "MATERIALIZED" || kind == "ALIAS" || q.Table == "telemetry" && name == BatchColumn:
			continue
		case name == rangeCol:
			rangeType = typ
		}
		c, err := newExportColumn(name, typ, times[name])
		if err != nil {
			return plan, fmt.Errorf("storage: export %s: %w", q.Table, err)
		}
		plan.cols = append(plan.cols, c)
		exprs = append(exprs, c.expr)
	}
	if err := rows.Err(); err != nil {
		return plan, fmt.Errorf("storage: export %s: read columns: %w", q.Table, err)
	}
	if rangeType == "" {
		return plan, fmt.Errorf("storage: export %s: the table has no column %s", q.Table, rangeCol)
	}
	bound := "toInt64(?)"
	if strings.HasPrefix(rangeType, "DateTime64") {
		bound = "fromUnixTimestamp64Milli(toInt64(?))"
	}
	from, to := q.From.UnixMilli(), q.To.UnixMilli()
	plan.columns = strings.Join(exprs, ", ")
	plan.from = quoteTable(db.opts.Database, q.Table)
	if strings.HasPrefix(strings.TrimPrefix(engine, "Replicated"), "Replacing") {
		plan.from += " FINAL"
		// The range applies to the merged row: moved to PREWHERE, it
		// would pick rows before FINAL merges them and could return an
		// alert's older revision.
		plan.settings = clickhouse.Settings{"optimize_move_to_prewhere": 0}
	}
	plan.from += " WHERE `" + rangeCol + "` >= " + bound + " AND `" + rangeCol + "` < " + bound
	plan.args = []any{from, to}
	if hasDate && rangeCol == "ts" {
		// On the Int64 layout the partition index covers the materialized
		// date, not ts: bound it too, so old months are not read.
		plan.from += " AND date >= toDate(?) AND date <= toDate(?)"
		plan.args = append(plan.args, time.UnixMilli(from).UTC().Format(time.DateOnly), time.UnixMilli(to-1).UTC().Format(time.DateOnly))
	}
	return plan, nil
}

// exportColumn is one column of an export: the expression that selects it,
// its Arrow type, where Scan puts a row's value and how that value is
// appended to the column's builder.
type exportColumn struct {
	name     string
	expr     string
	typ      arrow.DataType
	dest     any
	appendTo func(array.Builder)
}

// newExportColumn maps a column of ClickHouse type typ onto Arrow. A time
// column, Int64 epoch ms or DateTime64(3), becomes timestamp[ms, UTC].
func newExportColumn(name, typ string, isTime bool) (exportColumn, error) {
	if err := checkIdent("column", name); err != nil {
		return exportColumn{}, err
	}
	quoted := "`" + name + "`"
	switch {
	case isTime && typ == "Int64":
		return timeColumn(name, quoted), nil
	case isTime && strings.HasPrefix(typ, "DateTime64(3"):
		return timeColumn(name, "toUnixTimestamp64Milli("+quoted+")"), nil
	}
	switch typ {
	case "String", "LowCardinality(String)":
		return scalarColumn[string, *array.StringBuilder](name, quoted, arrow.BinaryTypes.String), nil
	case "Float64":
		return scalarColumn[float64, *array.Float64Builder](name, quoted, arrow.PrimitiveTypes.Float64), nil
	case "Float32":
		return scalarColumn[float32, *array.Float32Builder](name, quoted, arrow.PrimitiveTypes.Float32), nil
	case "Int64":
		return scalarColumn[int64, *array.Int64Builder](name, quoted, arrow.PrimitiveTypes.Int64), nil
	case "UInt64":
		return scalarColumn[uint64, *array.Uint64Builder](name, quoted, arrow.PrimitiveTypes.Uint64), nil
	case "UInt32":
		return scalarColumn[uint32, *array.Uint32Builder](name, quoted, arrow.PrimitiveTypes.Uint32), nil
	case "UInt16":
		return scalarColumn[uint16, *array.Uint16Builder](name, quoted, arrow.PrimitiveTypes.Uint16), nil
	case "UInt8":
		return scalarColumn[uint8, *array.Uint8Builder](name, quoted, arrow.PrimitiveTypes.Uint8), nil
	case "Array(String)", "Array(LowCardinality(String))":
		v := new([]string)
		return exportColumn{name: name, expr: quoted, typ: arrow.ListOf(arrow.BinaryTypes.String), dest: v,
			appendTo: func(b array.Builder) {
				lb := b.(*array.ListBuilder)
				lb.Append(true)
				lb.ValueBuilder().(*array.StringBuilder).AppendValues(*v, nil)
			}}, nil
	}
	return exportColumn{}, fmt.Errorf("%w: column %s of ClickHouse type %s cannot be exported", ErrUnsupportedType, name, typ)
}

// scalarColumn is a column whose values Scan puts in a T that builder B
// appends as it is.
func scalarColumn[T any, B interface{ Append(T) }](name, expr string, typ arrow.DataType) exportColumn {
	v := new(T)
	return exportColumn{name: name, expr: expr, typ: typ, dest: v, appendTo: func(b array.Builder) { b.(B).Append(*v) }}
}

// timeColumn is a time column selected as epoch milliseconds by expr.
func timeColumn(name, expr string) exportColumn {
	v := new(int64)
	return exportColumn{name: name, expr: expr + " AS `" + name + "`", typ: arrow.FixedWidthTypes.Timestamp_ms, dest: v,
		appendTo: func(b array.Builder) { b.(*array.TimestampBuilder).Append(arrow.Timestamp(*v)) }}
}

// timeColumns lists, per table, the columns holding millisecond times: the
// ones the schema renders as DateTime64 on a server that has it (and as
// Int64 epoch ms on one that does not). It is read off that rendering, so
// that a time column a migration adds is exported as a time without a list
// to keep beside the migrations.
var timeColumns = sync.OnceValue(func() map[string]map[string]bool {
	caps, err := CapabilitiesFor("24.8")
	if err != nil {
		panic(err) // a constant version
	}
	s, err := RenderSchema(caps, SchemaOptions{})
	if err != nil {
		panic(fmt.Sprintf("storage: render the schema: %v", err)) // the embedded templates; TestTimeColumns renders them too
	}
	out := map[string]map[string]bool{}
	for _, m := range s.Migrations {
		for _, sql := range m.Statements {
			table := createTableRE.FindStringSubmatch(sql)
			if table == nil {
				continue
			}
			for _, col := range timeColumnRE.FindAllStringSubmatch(sql, -1) {
				if out[table[1]] == nil {
					out[table[1]] = map[string]bool{}
				}
				out[table[1]][col[1]] = true
			}
		}
	}
	return out
})

var (
	createTableRE = regexp.MustCompile("CREATE TABLE IF NOT EXISTS `[^`]+`\\.`([^`]+)`")
	timeColumnRE  = regexp.MustCompile("(?m)^\\s*`([^`]+)` DateTime64\\(3")
)

// exportID returns a new random export id.
func exportID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("storage: export id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// recordSink writes records to a file of one format.
type recordSink interface {
	Write(arrow.Record) error
	Close() error
}

// newRecordSink returns the writer of format f, writing to w.
func newRecordSink(f ExportFormat, schema *arrow.Schema, w *countingWriter, rowGroupRows int) (recordSink, error) {
	if f == FormatArrow {
		return ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithZstd())
	}
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithMaxRowGroupLength(int64(rowGroupRows)),
		parquet.WithCreatedBy("gridwatch"),
	)
	return pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
}

// countingWriter counts the bytes written through it. Its Seek tells the
// position only, which is all the Arrow IPC file writer asks, so that the
// file format streams to a writer that cannot seek (an HTTP response).
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errSeek is countingWriter's answer to anything but telling the position.
var errSeek = errors.New("storage: export writer cannot seek")

func (c *countingWriter) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekCurrent {
		return c.n, errSeek
	}
	return c.n, nil
}
