package storage_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// reading is one telemetry row.
type reading struct {
	ts, received   int64
	device, metric string
	value          float64
}

// telemetryRecord builds a telemetry batch the way the ingest batcher does.
func telemetryRecord(t testing.TB, rs []reading) arrow.Record {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "ts", Type: arrow.FixedWidthTypes.Timestamp_ms},
		{Name: "received", Type: arrow.FixedWidthTypes.Timestamp_ms},
		{Name: "device", Type: arrow.BinaryTypes.String},
		{Name: "grid", Type: arrow.BinaryTypes.String},
		{Name: "metric", Type: arrow.BinaryTypes.String},
		{Name: "value", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	b := array.NewRecordBuilder(memory.NewGoAllocator(), schema)
	defer b.Release()
	for _, r := range rs {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.ts))
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(r.received))
		b.Field(2).(*array.StringBuilder).Append(r.device)
		b.Field(3).(*array.StringBuilder).Append("g-0101")
		b.Field(4).(*array.StringBuilder).Append(r.metric)
		b.Field(5).(*array.Float64Builder).Append(r.value)
	}
	rec := b.NewRecord()
	t.Cleanup(rec.Release)
	return rec
}

// singleColumn builds a one-column record.
func singleColumn(t *testing.T, name string, arr arrow.Array) arrow.Record {
	t.Helper()
	rec := array.NewRecord(arrow.NewSchema([]arrow.Field{{Name: name, Type: arr.DataType()}}, nil),
		[]arrow.Array{arr}, int64(arr.Len()))
	arr.Release()
	t.Cleanup(rec.Release)
	return rec
}

func newWriter(t *testing.T, db *storage.DB, o storage.WriterOptions) (*storage.Writer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	w, err := storage.NewWriter(db, o)
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

// metricValue returns the value of the counter name{labels...} in reg, 0
// when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return counterOrCount(m)
		}
	}
	return 0
}

func counterOrCount(m *dto.Metric) float64 {
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

func TestWriterIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	w, reg := newWriter(t, db, storage.WriterOptions{})
	ctx := t.Context()
	in := []reading{
		{1732233600123, 1732233600500, "mh-001", "tilt_deg", 1.25},
		{1732233601999, 1732233602001, "mh-001", "tilt_deg", -0.5},
		{1732233600001, 1732233600002, "wl-007", "level_cm", 12},
	}
	if err := w.Write(ctx, "telemetry", "batch-1", telemetryRecord(t, in)); err != nil {
		t.Fatalf("Write: %v", err)
	}

	ms := "ts"
	recv := "received"
	if db.Capabilities().DateTime64 {
		ms, recv = "toUnixTimestamp64Milli(ts)", "toUnixTimestamp64Milli(received)"
	}
	rows, err := db.Conn().Query(ctx, "SELECT toInt64("+ms+"), toInt64("+recv+"), device, metric, value, grid FROM `"+
		db.Database()+"`.telemetry ORDER BY device, ts")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []reading
	for rows.Next() {
		var r reading
		var grid string
		if err := rows.Scan(&r.ts, &r.received, &r.device, &r.metric, &r.value, &grid); err != nil {
			t.Fatal(err)
		}
		if grid != "g-0101" {
			t.Errorf("grid = %q", grid)
		}
		got = append(got, r)
	}
	if len(got) != len(in) {
		t.Fatalf("read %d rows, want %d: %v", len(got), len(in), got)
	}
	for i := range in {
		if got[i] != in[i] {
			t.Errorf("row %d = %+v, want %+v (milliseconds must survive exactly)", i, got[i], in[i])
		}
	}
	table := map[string]string{"table": "telemetry"}
	if v := metricValue(t, reg, "gridwatch_storage_rows_written_total", table); v != 3 {
		t.Errorf("rows written = %v, want 3", v)
	}
	if v := metricValue(t, reg, "gridwatch_storage_batches_written_total", table); v != 1 {
		t.Errorf("batches written = %v, want 1", v)
	}
	if v := metricValue(t, reg, "gridwatch_storage_insert_duration_seconds", table); v != 1 {
		t.Errorf("insert latency observations = %v, want 1", v)
	}
	if err := w.Write(ctx, "telemetry", "empty", telemetryRecord(t, nil)); err != nil {
		t.Errorf("Write of an empty record: %v", err)
	}
}

func TestWriterTypesIntegration(t *testing.T) {
	db := openDB(t, storage.Options{})
	ctx := t.Context()
	table := "types"
	if err := db.Conn().Exec(ctx, "CREATE TABLE `"+db.Database()+"`."+table+
		" (u64 UInt64, u32 UInt32, u16 UInt16, u8 UInt8, f32 Float32, b UInt8, bin String) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "u64", Type: arrow.PrimitiveTypes.Uint64}, {Name: "u32", Type: arrow.PrimitiveTypes.Uint32},
		{Name: "u16", Type: arrow.PrimitiveTypes.Uint16}, {Name: "u8", Type: arrow.PrimitiveTypes.Uint8},
		{Name: "f32", Type: arrow.PrimitiveTypes.Float32}, {Name: "b", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "bin", Type: arrow.BinaryTypes.Binary},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.Uint64Builder).Append(1 << 63)
	b.Field(1).(*array.Uint32Builder).Append(1 << 31)
	b.Field(2).(*array.Uint16Builder).Append(1 << 15)
	b.Field(3).(*array.Uint8Builder).Append(200)
	b.Field(4).(*array.Float32Builder).Append(1.5)
	b.Field(5).(*array.BooleanBuilder).Append(true)
	b.Field(6).(*array.BinaryBuilder).Append([]byte{0xff, 0, '{'})
	rec := b.NewRecord()
	defer rec.Release()
	w, _ := newWriter(t, db, storage.WriterOptions{})
	if err := w.Write(ctx, table, "types-1", rec); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var (
		u64    uint64
		u32    uint32
		u16    uint16
		u8, bv uint8
		f32    float32
		bin    string
	)
	if err := db.Conn().QueryRow(ctx, "SELECT u64, u32, u16, u8, f32, b, bin FROM `"+db.Database()+"`."+table).
		Scan(&u64, &u32, &u16, &u8, &f32, &bv, &bin); err != nil {
		t.Fatal(err)
	}
	if u64 != 1<<63 || u32 != 1<<31 || u16 != 1<<15 || u8 != 200 || f32 != 1.5 || bv != 1 || bin != "\xff\x00{" {
		t.Errorf("read back %v %v %v %v %v %v %q", u64, u32, u16, u8, f32, bv, bin)
	}
}

func TestWriterPermanentIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	mem := memory.NewGoAllocator()
	str := func(vals ...string) arrow.Array {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		b.AppendValues(vals, nil)
		return b.NewArray()
	}
	i32 := array.NewInt32Builder(mem)
	i32.Append(1)
	for _, c := range []struct {
		name     string
		table    string
		rec      arrow.Record
		attempts int
		is       error
	}{
		{"unknown column", "telemetry", singleColumn(t, "nosuch", str("x")), 1, nil},
		{"unknown table", "nosuch", singleColumn(t, "device", str("x")), 1, nil},
		{"type mismatch", "telemetry", singleColumn(t, "value", str("not a number")), 1, nil},
		{"unsupported arrow type", "telemetry", singleColumn(t, "value", i32.NewArray()), 0, storage.ErrUnsupportedType},
		{"bad column name", "telemetry", singleColumn(t, "value`; DROP", str("x")), 0, storage.ErrBadIdentifier},
		{"bad table name", "tele metry", singleColumn(t, "device", str("x")), 0, storage.ErrBadIdentifier},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, reg := newWriter(t, db, storage.WriterOptions{MaxAttempts: 4, InitialBackoff: time.Millisecond})
			err := w.Write(ctx, c.table, "b", c.rec)
			var we *storage.WriteError
			if !errors.As(err, &we) {
				t.Fatalf("Write = %v, want a *WriteError", err)
			}
			if we.Class != storage.Permanent || we.Attempts != c.attempts || we.Rows != 1 || we.Table != c.table {
				t.Errorf("WriteError = %+v, want permanent after %d attempts of 1 row", we, c.attempts)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("Write = %v, want %v", err, c.is)
			}
			labels := map[string]string{"table": c.table}
			if v := metricValue(t, reg, "gridwatch_storage_insert_retries_total", labels); v != 0 {
				t.Errorf("retries = %v, want 0 for a permanent error", v)
			}
			labels["kind"] = "permanent"
			if v := metricValue(t, reg, "gridwatch_storage_batches_failed_total", labels); v != 1 {
				t.Errorf("failed batches = %v, want 1", v)
			}
		})
	}
	i32.Release()
}

// proxy forwards TCP connections to a backend until closed, which cuts them:
// a ClickHouse that goes away.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) close() {
	p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func TestWriterRetriesTransientIntegration(t *testing.T) {
	addr, database := storagetest.Database(t)
	p := newProxy(t, addr)
	db, err := storage.Open(t.Context(), storage.Options{Addr: p.l.Addr().String(), Database: database, Password: storagetest.Password(t),
		DialTimeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, reg := newWriter(t, db, storage.WriterOptions{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	rec := telemetryRecord(t, []reading{{1732233600123, 1732233600123, "d", "m", 1}})
	if err := w.Write(t.Context(), "telemetry", "up", rec); err != nil {
		t.Fatalf("Write through the proxy: %v", err)
	}
	p.close()
	err = w.Write(t.Context(), "telemetry", "down", rec)
	var we *storage.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("Write with the server gone = %v, want a *WriteError", err)
	}
	if we.Class != storage.Transient || we.Attempts != 3 || we.Rows != 1 {
		t.Errorf("WriteError = %+v, want transient after 3 attempts", we)
	}
	labels := map[string]string{"table": "telemetry"}
	if v := metricValue(t, reg, "gridwatch_storage_insert_retries_total", labels); v != 2 {
		t.Errorf("retries = %v, want 2", v)
	}
	labels["kind"] = "transient"
	if v := metricValue(t, reg, "gridwatch_storage_batches_failed_total", labels); v != 1 {
		t.Errorf("failed batches = %v, want 1", v)
	}

	// A cancelled context ends the retries at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	w2, _ := newWriter(t, db, storage.WriterOptions{MaxAttempts: 100, InitialBackoff: time.Hour})
	start := time.Now()
	if err := w2.Write(ctx, "telemetry", "cancelled", rec); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Minute { // Far below the hour of backoff, far above a loaded machine's delays.
		t.Errorf("cancelled Write took %s", d)
	}
}

func TestWriterLedgerIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	w, _ := newWriter(t, db, storage.WriterOptions{})
	ctx := t.Context()
	a := telemetryRecord(t, []reading{{1732233600123, 1732233600500, "mh-001", "tilt_deg", 1.25}})
	b := telemetryRecord(t, []reading{
		{1732233601123, 1732233601500, "mh-001", "tilt_deg", 2},
		{1732233602123, 1732233602500, "mh-001", "tilt_deg", 3},
	})
	if err := w.WriteParts(ctx, "telemetry", []storage.Part{{ID: "a", Record: a}, {ID: "b", Record: b}}); err != nil {
		t.Fatalf("WriteParts: %v", err)
	}
	never := telemetryRecord(t, []reading{{1732233601500, 1732233601500, "mh-001", "tilt_deg", 2}})
	stored, err := w.Stored(ctx, "telemetry", []storage.Part{{ID: "a", Record: a}, {ID: "b", Record: b}, {ID: "never", Record: never}})
	if err != nil {
		t.Fatal(err)
	}
	if !stored["a"] || !stored["b"] || stored["never"] {
		t.Fatalf("Stored = %v, want a and b only", stored)
	}
	var n uint64
	if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+db.Database()+"`.telemetry WHERE batch = 'b'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("rows of batch b = %d, want 2", n)
	}
	// The rejected table has no ledger column: nothing is ever reported
	// stored, so replays into it are at least once.
	if stored, err := w.Stored(ctx, "rejected", []storage.Part{{ID: "a", Record: a}}); err != nil || len(stored) != 0 {
		t.Fatalf("Stored on a table without ledger = %v, %v; want none", stored, err)
	}
}
