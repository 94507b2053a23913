package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// fakeExporter is an Exporter whose export is write.
type fakeExporter func(w io.Writer) error

func (f fakeExporter) Export(_ context.Context, q storage.ExportQuery, w io.Writer) (storage.ExportResult, error) {
	if err := q.Validate(); err != nil {
		return storage.ExportResult{}, err
	}
	return storage.ExportResult{Rows: 1}, f(w)
}

// exportServer is an API with one admin token serving exports through ex.
func exportServer(t *testing.T, ex Exporter, configure func(*Server)) (*Server, *httptest.Server) {
	t.Helper()
	s := &Server{
		Store:      fakeStore{},
		Lookup:     func(string) (devices.Device, bool) { return devices.Device{}, false },
		AdminToken: "tok-bootstrap",
		Tokens:     []Token{{Name: "district", Role: RoleAdmin, Grid: "D01", Hash: HashToken("tok-district")}},
		Exports:    ex,
		Registerer: prometheus.NewRegistry(),
		Now:        func() time.Time { return now },
	}
	if configure != nil {
		configure(s)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv
}

func getExport(t *testing.T, srv *httptest.Server, path, token string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// TestExportRoute: the route passes the range and format on, streams what
// the exporter writes as an attachment, answers a failure before the first
// byte as JSON and cuts the connection on one after it.
func TestExportRoute(t *testing.T) {
	var got storage.ExportQuery
	payload := bytes.Repeat([]byte("PAR1 row group "), 10000) // beyond the handler's buffer
	ex := exporterFunc(func(q storage.ExportQuery, w io.Writer) error {
		got = q
		_, err := w.Write(payload)
		return err
	})
	s, srv := exportServer(t, ex, nil)
	resp, body, err := getExport(t, srv, "/api/v1/export/telemetry", "tok-bootstrap")
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, payload) {
		t.Fatalf("export = %d, %d bytes, %v; want 200 and the %d bytes written", resp.StatusCode, len(body), err, len(payload))
	}
	if got.Table != "telemetry" || got.Format != storage.FormatParquet || !got.To.Equal(now) || !got.From.Equal(now.Add(-24*time.Hour)) {
		t.Errorf("default query = %+v, want the last 24 hours of telemetry as Parquet", got)
	}
	if ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"); ct != "application/vnd.apache.parquet" ||
		cd != `attachment; filename="telemetry-20241121T000000Z-20241122T000000Z.parquet"` {
		t.Errorf("headers: Content-Type %q, Content-Disposition %q", ct, cd)
	}
	resp, _, _ = getExport(t, srv, "/api/v1/export/alerts?from=2024-11-01T00:00:00Z&to=1732233600000&format=arrow", "tok-bootstrap")
	if resp.StatusCode != http.StatusOK || got.Table != "alerts" || got.Format != storage.FormatArrow ||
		got.From.UnixMilli() != 1730419200000 || got.To.UnixMilli() != 1732233600000 || resp.Header.Get("Content-Type") != "application/vnd.apache.arrow.file" {
		t.Errorf("export = %d, query %+v", resp.StatusCode, got)
	}
	if n := testutil.ToFloat64(s.exports.exports.WithLabelValues("alerts", "arrow", "ok")); n != 1 {
		t.Errorf("exports_total{alerts,arrow,ok} = %v, want 1", n)
	}

	for _, c := range []struct {
		path, token string
		code        int
	}{
		{"/api/v1/export/registry", "tok-bootstrap", http.StatusNotFound},
		{"/api/v1/export/telemetry?format=csv", "tok-bootstrap", http.StatusBadRequest},
		{"/api/v1/export/telemetry?from=2000&to=1000", "tok-bootstrap", http.StatusBadRequest},
		{"/api/v1/export/telemetry", "tok-district", http.StatusForbidden},
	} {
		resp, body, _ := getExport(t, srv, c.path, c.token)
		if resp.StatusCode != c.code || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s = %d %s, want %d with an error body", c.path, resp.StatusCode, body, c.code)
		}
	}

	_, before := exportServer(t, fakeExporter(func(io.Writer) error { return errDown }), nil)
	resp, body, _ = getExport(t, before, "/api/v1/export/telemetry", "tok-bootstrap")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), `"internal"`) {
		t.Errorf("an export failing before its first byte = %d %s, want 500 internal", resp.StatusCode, body)
	}
	_, after := exportServer(t, fakeExporter(func(w io.Writer) error {
		if _, err := w.Write(payload); err != nil {
			return err
		}
		return errDown
	}), nil)
	resp, body, err = getExport(t, after, "/api/v1/export/telemetry", "tok-bootstrap")
	if err == nil {
		t.Errorf("an export failing after its first byte read as whole: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// exporterFunc is an Exporter that sees the query.
type exporterFunc func(q storage.ExportQuery, w io.Writer) error

func (f exporterFunc) Export(_ context.Context, q storage.ExportQuery, w io.Writer) (storage.ExportResult, error) {
	return storage.ExportResult{}, f(q, w)
}

// TestExportBusy: beyond MaxExports an export gets 503 busy with
// Retry-After, as the document says, and one slot frees when its export
// ends.
func TestExportBusy(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{}, 1)
	s, srv := exportServer(t, fakeExporter(func(w io.Writer) error {
		started <- struct{}{}
		<-release
		return nil
	}), func(s *Server) { s.MaxExports = 1 })
	done := make(chan int)
	go func() { // no t.Fatal off the test's goroutine: the status tells
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/export/telemetry", nil)
		req.Header.Set("Authorization", "Bearer tok-bootstrap")
		resp, err := srv.Client().Do(req)
		if err != nil {
			done <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-started
	doc := fetchOpenAPI(t, srv)
	r := docRequest{name: "an export beyond MaxExports", method: http.MethodGet, path: "/api/v1/export/telemetry", token: "tok-bootstrap",
		pattern: "GET /api/v1/export/{table}", want: http.StatusServiceUnavailable}
	a := sendDoc(t, srv, r)
	checkDocumented(t, doc, r, a)
	if !strings.Contains(string(a.body), `"busy"`) {
		t.Errorf("busy answer: %s", a.body)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("the export running meanwhile = %d, want 200", code)
	}
	if n := testutil.ToFloat64(s.exports.exports.WithLabelValues("telemetry", "parquet", "busy")); n != 1 {
		t.Errorf("exports_total{busy} = %v, want 1", n)
	}
}

// TestExportRouteIntegration: telemetry stored in a real ClickHouse comes
// out of the route as Parquet that Arrow Go's reader reads back whole.
func TestExportRouteIntegration(t *testing.T) {
	db := storagetest.Migrated(t)
	const n = 200_000 // two row groups of the default size
	rs := make([]storagetest.Reading, n)
	for i := range rs {
		ts := now.Add(-time.Hour).UnixMilli() + int64(i)
		rs[i] = storagetest.Reading{TS: ts, Received: ts, Device: fmt.Sprintf("aq-%03d", i%100), Grid: "D01", Metric: "pm25", Value: float64(i)}
	}
	storagetest.WriteTelemetry(t, db, "api-1", rs)
	_, srv := exportServer(t, db, nil)
	resp, body, err := getExport(t, srv, "/api/v1/export/telemetry", "tok-bootstrap")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("export = %d %v: %.200s", resp.StatusCode, err, body)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("read the downloaded Parquet: %v", err)
	}
	defer pf.Close()
	if pf.NumRows() != n || pf.NumRowGroups() != 2 {
		t.Errorf("downloaded Parquet: %d rows in %d row groups, want %d in 2", pf.NumRows(), pf.NumRowGroups(), n)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: n}, memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	var fileSum float64
	for _, chunk := range tbl.Column(int(tbl.Schema().FieldIndices("value")[0])).Data().Chunks() {
		for _, v := range chunk.(*array.Float64).Float64Values() {
			fileSum += v
		}
	}
	var sum float64
	if err := db.Conn().QueryRow(t.Context(), "SELECT sum(value) FROM "+db.Database()+".telemetry").Scan(&sum); err != nil || sum != fileSum {
		t.Errorf("sum of the downloaded values %v, ClickHouse's %v (%v)", fileSum, sum, err)
	}
}
