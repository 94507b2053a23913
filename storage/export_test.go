package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// exportRange is the range the export tests ask for: it spans a month
// boundary, so two monthly partitions, and leaves rows out on both sides.
var (
	exportFrom = time.Date(2024, 11, 30, 12, 0, 0, 0, time.UTC)
	exportTo   = time.Date(2024, 12, 2, 0, 0, 0, 0, time.UTC)
)

// writeTelemetry stores n readings, one every 41 s from a day before
// exportFrom, of 7 devices and 3 metrics, in batches of 1000.
func writeTelemetry(t *testing.T, db *storage.DB, n int) {
	t.Helper()
	start := exportFrom.Add(-24 * time.Hour)
	var rs []storagetest.Reading
	for i := range n {
		ts := start.Add(time.Duration(i) * 41 * time.Second).Add(time.Duration(i%1000) * time.Millisecond).UnixMilli()
		rs = append(rs, storagetest.Reading{TS: ts, Received: ts + 250, Device: fmt.Sprintf("dev-%d", i%7),
			Grid: fmt.Sprintf("D01-G%02d", i%5), Metric: []string{"pm25", "level_cm", "tilt_deg"}[i%3], Value: float64(i)/3 - 100})
		if len(rs) == 1000 || i == n-1 {
			storagetest.WriteTelemetry(t, db, fmt.Sprintf("b%d", i), rs)
			rs = rs[:0]
		}
	}
}

// msCol is the SQL of a time column in epoch milliseconds.
func msCol(db *storage.DB, col string) string {
	if db.Capabilities().DateTime64 {
		return "toUnixTimestamp64Milli(" + col + ")"
	}
	return col
}

// storedTelemetry is what ClickHouse holds in the range, one line per row,
// sorted: the reference the exports are compared to.
func storedTelemetry(t *testing.T, db *storage.DB) []string {
	t.Helper()
	ts := msCol(db, "ts")
	rows, err := db.Conn().Query(t.Context(), "SELECT toInt64("+ts+"), toInt64("+msCol(db, "received")+"), device, grid, metric, value FROM "+
		db.Database()+".telemetry WHERE "+ts+" >= ? AND "+ts+" < ?", exportFrom.UnixMilli(), exportTo.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var (
			ts, received         int64
			device, grid, metric string
			value                float64
		)
		if err := rows.Scan(&ts, &received, &device, &grid, &metric, &value); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d|%d|%s|%s|%s|%v", ts, received, device, grid, metric, value))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// recordLines renders the rows of records read back from an export as
// storedTelemetry does, sorted, checking the schema on the way.
func recordLines(t *testing.T, schema *arrow.Schema, recs []arrow.Record) []string {
	t.Helper()
	want := []string{"ts", "received", "device", "grid", "metric", "value"}
	var names []string
	for _, f := range schema.Fields() {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("export columns = %v, want %v (no batch column)", names, want)
	}
	for _, i := range []int{0, 1} {
		if ft := schema.Field(i).Type; !arrow.TypeEqual(ft, arrow.FixedWidthTypes.Timestamp_ms) {
			t.Fatalf("column %s is %s, want timestamp[ms, tz=UTC]", names[i], ft)
		}
	}
	var out []string
	for _, rec := range recs {
		ts, recv := rec.Column(0).(*array.Timestamp), rec.Column(1).(*array.Timestamp)
		dev, grid, metric := rec.Column(2).(*array.String), rec.Column(3).(*array.String), rec.Column(4).(*array.String)
		val := rec.Column(5).(*array.Float64)
		for i := range int(rec.NumRows()) {
			out = append(out, fmt.Sprintf("%d|%d|%s|%s|%s|%v", ts.Value(i), recv.Value(i), dev.Value(i), grid.Value(i), metric.Value(i), val.Value(i)))
		}
	}
	slices.Sort(out)
	return out
}

// readParquet reads a Parquet file with Arrow Go's reader, a second reader
// beside the writer, and returns its schema, records and row groups.
func readParquet(t *testing.T, data []byte) (*arrow.Schema, []arrow.Record, int) {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("read the Parquet export: %v", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 20}, memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 1<<20)
	defer tr.Release()
	var recs []arrow.Record
	for tr.Next() {
		rec := tr.Record()
		rec.Retain()
		recs = append(recs, rec)
	}
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	if v := pf.MetaData().KeyValueMetadata().FindValue(storage.MetaTable); v == nil || *v != "telemetry" {
		t.Errorf("Parquet metadata %s = %v, want telemetry", storage.MetaTable, v)
	}
	return tbl.Schema(), recs, pf.NumRowGroups()
}

// readArrow reads an Arrow IPC file and returns its schema and records.
func readArrow(t *testing.T, data []byte) (*arrow.Schema, []arrow.Record) {
	t.Helper()
	fr, err := ipc.NewFileReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("read the Arrow export: %v", err)
	}
	defer fr.Close()
	var recs []arrow.Record
	for i := range fr.NumRecords() {
		rec, err := fr.RecordAt(i)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	return fr.Schema(), recs
}

func TestExportTelemetryIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	const n = 9000 // 4.3 days at 41 s: rows on both sides of the range
	writeTelemetry(t, db, n)
	want := storedTelemetry(t, db)
	if len(want) < 3000 || len(want) > n-2000 {
		t.Fatalf("the range holds %d of %d rows: the test data misses it", len(want), n)
	}
	q := storage.ExportQuery{Table: "telemetry", From: exportFrom, To: exportTo, RowGroupRows: 700}
	count, err := db.ExportCount(ctx, q)
	if err != nil || count != uint64(len(want)) {
		t.Fatalf("ExportCount = %d, %v; want %d", count, err, len(want))
	}
	files := map[storage.ExportFormat][]byte{}
	for _, format := range []storage.ExportFormat{storage.FormatParquet, storage.FormatArrow} {
		t.Run(string(format), func(t *testing.T) {
			q := q
			q.Format = format
			var progress []int64
			q.Progress = func(rows int64) { progress = append(progress, rows) }
			var buf bytes.Buffer
			res, err := db.Export(ctx, q, &buf)
			if err != nil {
				t.Fatalf("Export: %v", err)
			}
			groups := (len(want) + 699) / 700
			if res.Rows != int64(len(want)) || res.RowGroups != groups || res.Bytes != int64(buf.Len()) {
				t.Errorf("Export = %+v, want %d rows in %d row groups of %d bytes", res, len(want), groups, buf.Len())
			}
			if len(progress) != groups || progress[len(progress)-1] != res.Rows {
				t.Errorf("progress calls = %v, want %d ending at %d", progress, groups, res.Rows)
			}
			var (
				schema *arrow.Schema
				recs   []arrow.Record
			)
			if format == storage.FormatParquet {
				var rowGroups int
				schema, recs, rowGroups = readParquet(t, buf.Bytes())
				if rowGroups != groups {
					t.Errorf("Parquet row groups = %d, want %d", rowGroups, groups)
				}
			} else {
				schema, recs = readArrow(t, buf.Bytes())
				if len(recs) != groups {
					t.Errorf("Arrow record batches = %d, want %d", len(recs), groups)
				}
			}
			got := recordLines(t, schema, recs)
			if len(got) != len(want) {
				t.Fatalf("the %s export holds %d rows, ClickHouse %d", format, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("row %d: export %q, ClickHouse %q", i, got[i], want[i])
				}
			}
			files[format] = buf.Bytes()
		})
	}

	// Restore: each file into a fresh database holds what the range held,
	// and a second import of the same file stores nothing twice.
	for format, data := range files {
		t.Run("import "+string(format), func(t *testing.T) {
			fresh := openMigrated(t, storage.Options{})
			w, err := storage.NewWriter(fresh, storage.WriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "telemetry."+string(format))
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				res, err := storage.Import(ctx, w, f, storage.ImportOptions{BatchRows: 1000})
				f.Close()
				if err != nil {
					t.Fatalf("Import (round %d): %v", round, err)
				}
				if res.Table != "telemetry" || res.Rows != int64(len(want)) {
					t.Errorf("Import (round %d) = %+v, want %d rows of telemetry", round, res, len(want))
				}
				if round == 1 && (res.Batches != 0 || res.Skipped == 0) {
					t.Errorf("second Import = %+v, want every batch skipped", res)
				}
				got := storedTelemetry(t, fresh)
				if !slices.Equal(got, want) {
					t.Fatalf("after import round %d the fresh database holds %d rows, want the %d exported", round, len(got), len(want))
				}
			}
		})
	}
}

func TestExportRefusesBadQueries(t *testing.T) {
	for _, q := range []storage.ExportQuery{
		{Table: "registry", From: exportFrom, To: exportTo},
		{Table: "telemetry", From: exportTo, To: exportFrom},
		{Table: "telemetry", From: exportFrom, To: exportTo, Format: "csv"},
	} {
		if err := q.Validate(); !errors.Is(err, storage.ErrBadQuery) {
			t.Errorf("Validate(%+v) = %v, want ErrBadQuery", q, err)
		}
	}
}

// insertRows inserts whole columns into table: cols holds one slice per
// column named in names.
func insertRows(ctx context.Context, t *testing.T, db *storage.DB, table string, names []string, cols ...any) {
	t.Helper()
	batch, err := db.Conn().PrepareBatch(ctx, "INSERT INTO "+db.Database()+"."+table+" ("+strings.Join(names, ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		if err := batch.Column(i).Append(c); err != nil {
			t.Fatalf("column %s: %v", names[i], err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestExportAlertsAndCasesIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	in, out := exportFrom.Add(time.Hour+123*time.Millisecond).UnixMilli(), exportTo.Add(time.Hour).UnixMilli()
	// a1 has two revisions in the range: the export holds the latest. a2
	// changed last after the range, a3 within it.
	insertRows(ctx, t, db, "alerts", []string{"id", "revision", "rule", "members", "fired", "updated"},
		[]string{"a1", "a1", "a2", "a3"}, []uint64{1, 2, 1, 1}, []string{"r", "r", "r", "storm"},
		[][]string{{"d1"}, {"d1", "d2"}, {}, {"x", "y", "z"}},
		[]int64{in, in, in, in}, []int64{in, in + 1000, out, in + 2000})
	insertRows(ctx, t, db, "case_events", []string{"ts", "case_id", "seq", "kind", "note", "evidence", "due"},
		[]int64{in, in + 1, out}, []string{"c1", "c1", "c2"}, []uint32{1, 2, 1}, []string{"register", "dispatch", "register"},
		[]string{"井盖缺失", "", "late"}, [][]string{{"sha256:aa", "sha256:bb"}, {}, {"x"}}, []int64{in + 3600_000, 0, 0})

	// c1 as the case loop stored it: its row, with the whole case as JSON.
	doc := `{"id":"c1","version":2,"source":"patrol","category":"E0101","grid":"G1","unit":"U1","status":"dispatched","received":"` +
		time.UnixMilli(in).UTC().Format(time.RFC3339Nano) + `","updated":"` + time.UnixMilli(in+1).UTC().Format(time.RFC3339Nano) + `"}`
	insertRows(ctx, t, db, "cases", []string{"id", "revision", "version", "status", "unit", "received", "updated", "doc"},
		[]string{"c1", "c2"}, []uint64{1, 1}, []uint32{2, 1}, []string{"dispatched", "received"}, []string{"U1", ""},
		[]int64{in, out}, []int64{in + 1, out}, []string{doc, `{"id":"c2"}`})

	export := func(table string) []byte {
		t.Helper()
		var buf bytes.Buffer
		if _, err := db.Export(ctx, storage.ExportQuery{Table: table, From: exportFrom, To: exportTo}, &buf); err != nil {
			t.Fatalf("Export %s: %v", table, err)
		}
		return buf.Bytes()
	}
	readRows := func(data []byte, cols ...string) []string {
		t.Helper()
		pf, err := file.NewParquetReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 100}, memory.NewGoAllocator())
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		tr := array.NewTableReader(tbl, 100)
		defer tr.Release()
		var lines []string
		for tr.Next() {
			rec := tr.Record()
			for i := range int(rec.NumRows()) {
				var parts []string
				for _, c := range cols {
					idx := rec.Schema().FieldIndices(c)
					if len(idx) != 1 {
						t.Fatalf("export lacks column %s", c)
					}
					parts = append(parts, rec.Column(idx[0]).ValueStr(i))
				}
				lines = append(lines, strings.Join(parts, "|"))
			}
		}
		slices.Sort(lines)
		return lines
	}
	stamp := func(ms int64) string {
		return arrow.Timestamp(ms).ToTime(arrow.Millisecond).UTC().Format("2006-01-02 15:04:05.999999999Z0700")
	}
	alerts := export("alerts")
	wantAlerts := []string{
		"a1|2|[\"d1\",\"d2\"]|" + stamp(in+1000),
		"a3|1|[\"x\",\"y\",\"z\"]|" + stamp(in+2000),
	}
	if got := readRows(alerts, "id", "revision", "members", "updated"); !slices.Equal(got, wantAlerts) {
		t.Errorf("alerts export = %q, want %q", got, wantAlerts)
	}
	cases := export("case_events")
	wantCases := []string{
		"c1|1|register|井盖缺失|[\"sha256:aa\",\"sha256:bb\"]|" + stamp(in+3600_000),
		"c1|2|dispatch||[]|" + stamp(0),
	}
	if got := readRows(cases, "case_id", "seq", "kind", "note", "evidence", "due"); !slices.Equal(got, wantCases) {
		t.Errorf("case_events export = %q, want %q", got, wantCases)
	}

	// Both restore into a fresh database, arrays included.
	fresh := openMigrated(t, storage.Options{})
	w, err := storage.NewWriter(fresh, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caseRows := export("cases")
	if got, want := readRows(caseRows, "id", "version", "status"), []string{"c1|2|dispatched"}; !slices.Equal(got, want) {
		t.Errorf("cases export = %q, want %q", got, want)
	}
	for _, data := range [][]byte{alerts, cases, caseRows} {
		if _, err := storage.Import(ctx, w, bytes.NewReader(data), storage.ImportOptions{}); err != nil {
			t.Fatalf("Import: %v", err)
		}
	}
	var buf bytes.Buffer
	if _, err := fresh.Export(ctx, storage.ExportQuery{Table: "case_events", From: exportFrom, To: exportTo}, &buf); err != nil {
		t.Fatal(err)
	}
	if got := readRows(buf.Bytes(), "case_id", "seq", "kind", "note", "evidence", "due"); !slices.Equal(got, wantCases) {
		t.Errorf("case_events restored = %q, want %q", got, wantCases)
	}
	// The case loop finds c1 again, with its two events.
	loaded, loadedEvs, err := fresh.LoadCases(ctx, exportFrom)
	if err != nil || len(loaded) != 1 || loaded[0].ID != "c1" || loaded[0].Status != "dispatched" || loaded[0].Unit != "U1" || len(loadedEvs) != 2 {
		t.Errorf("cases restored %+v, %d events (%v)", loaded, len(loadedEvs), err)
	}
	// The restored events count in the case statistics: c1's two.
	acts, err := fresh.CaseActions(ctx, exportFrom, exportTo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 2 || acts[0].Kind != "dispatch" || acts[0].N != 1 || acts[1].Kind != "register" || acts[1].N != 1 {
		t.Errorf("actions of the restored cases %+v", acts)
	}
	buf.Reset()
	if _, err := fresh.Export(ctx, storage.ExportQuery{Table: "alerts", From: exportFrom, To: exportTo}, &buf); err != nil {
		t.Fatal(err)
	}
	if got := readRows(buf.Bytes(), "id", "revision", "members", "updated"); !slices.Equal(got, wantAlerts) {
		t.Errorf("alerts restored = %q, want %q", got, wantAlerts)
	}

	// Camera health (unsigned and float columns): every column of the
	// range's rows comes back from a restore as exported.
	recs := []rtsp.HealthRecord{
		{TS: in, Camera: "cam1", Grid: "g1", Kind: rtsp.KindSample, Status: rtsp.StatusOK, FPS: 25, Width: 320, Height: 240, Codec: "H264", Frames: 75, LossPct: 0.5, Frozen: true},
		{TS: in + 1, Camera: "cam2", Grid: "g1", Kind: rtsp.KindLiveness, Status: rtsp.StatusUnreachable, Error: "request timed out"},
		{TS: out, Camera: "cam1", Grid: "g1", Kind: rtsp.KindLiveness, Status: rtsp.StatusOK},
	}
	b := array.NewRecordBuilder(memory.NewGoAllocator(), rtsp.Schema)
	defer b.Release()
	for _, r := range recs {
		rtsp.AppendRecord(b, r)
	}
	rec := b.NewRecord()
	defer rec.Release()
	dw, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dw.Write(ctx, rtsp.Table, "cameras-1", rec); err != nil {
		t.Fatal(err)
	}
	cameras := export("camera_health")
	var names []string
	for _, f := range rtsp.Schema.Fields() {
		names = append(names, f.Name)
	}
	wantCameras := readRows(cameras, names...)
	if len(wantCameras) != 2 || !strings.Contains(wantCameras[0], "|320|240|") || !strings.Contains(wantCameras[1], "request timed out") {
		t.Errorf("camera_health export = %q, want cam1's sample and cam2's failure", wantCameras)
	}
	if _, err := storage.Import(ctx, w, bytes.NewReader(cameras), storage.ImportOptions{}); err != nil {
		t.Fatalf("Import camera_health: %v", err)
	}
	buf.Reset()
	if _, err := fresh.Export(ctx, storage.ExportQuery{Table: "camera_health", From: exportFrom, To: exportTo}, &buf); err != nil {
		t.Fatal(err)
	}
	if got := readRows(buf.Bytes(), names...); !slices.Equal(got, wantCameras) {
		t.Errorf("camera_health restored = %q, want %q", got, wantCameras)
	}

	// A file that is no export is refused with its reason.
	if _, err := storage.Import(ctx, w, bytes.NewReader([]byte("id,type,grid\n")), storage.ImportOptions{}); !errors.Is(err, storage.ErrNotExport) {
		t.Errorf("Import of a CSV file = %v, want ErrNotExport", err)
	}
}

// BenchmarkExport stores a city's telemetry (1,000 devices, 3 metrics each,
// one message a minute, values in a random walk) and exports it, reporting
// what the sizing guide uses: ClickHouse's bytes on disk per row, each
// format's bytes per row and rows/s, and the Go heap in use while the
// export runs, sampled, for 10^6 and 3×10^6 rows side by side (streamed, it
// should not grow with the range).
//
//	go test -run '^$' -bench Export -benchtime 1x ./storage/
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{1_000_000, 3_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			db := storagetest.Migrated(b)
			start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			value := make([]float64, 3000)
			rnd := uint64(1)
			var rs []storagetest.Reading
			for i := range n {
				series := i % 3000
				ts := start.Add(time.Duration(i/3000) * time.Minute).Add(time.Duration(series%1000) * time.Millisecond * 37).UnixMilli()
				rnd = rnd*6364136223846793005 + 1442695040888963407
				value[series] += float64(int64(rnd>>33)%201-100) / 100
				rs = append(rs, storagetest.Reading{TS: ts, Received: ts + 120, Device: fmt.Sprintf("aq-%06d", series/3),
					Grid: fmt.Sprintf("D%02d-S%02d-G%02d", series%7, series%11, series%13), Metric: []string{"pm25", "pm10", "no2"}[series%3],
					Value: math.Round(value[series]*10) / 10})
				if len(rs) == 100_000 || i == n-1 {
					storagetest.WriteTelemetry(b, db, fmt.Sprint("bench-", i), rs)
					rs = rs[:0]
				}
			}
			if err := db.Conn().Exec(b.Context(), "OPTIMIZE TABLE "+db.Database()+".telemetry FINAL"); err != nil {
				b.Fatal(err)
			}
			var disk uint64
			if err := db.Conn().QueryRow(b.Context(), "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = ? AND table = 'telemetry' AND active",
				db.Database()).Scan(&disk); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(disk)/float64(n), "clickhouse-B/row")
			for _, format := range []storage.ExportFormat{storage.FormatParquet, storage.FormatArrow} {
				var (
					peak uint64
					done = make(chan struct{})
					wg   sync.WaitGroup
				)
				runtime.GC()
				wg.Add(1)
				go func() {
					defer wg.Done()
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapInuse)
						select {
						case <-done:
							return
						case <-time.After(20 * time.Millisecond):
						}
					}
				}()
				began := time.Now()
				res, err := db.Export(b.Context(), storage.ExportQuery{Table: "telemetry", From: start, To: start.Add(365 * 24 * time.Hour), Format: format}, io.Discard)
				elapsed := time.Since(began)
				close(done)
				wg.Wait()
				if err != nil || res.Rows != int64(n) {
					b.Fatalf("Export %s = %+v, %v; want %d rows", format, res, err, n)
				}
				b.ReportMetric(float64(res.Bytes)/float64(n), string(format)+"-B/row")
				b.ReportMetric(float64(n)/elapsed.Seconds(), string(format)+"-rows/s")
				b.ReportMetric(float64(peak)/(1<<20), string(format)+"-heap-MiB")
			}
		})
	}
}
