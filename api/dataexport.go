package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/storage"
)

// Exporter streams a table's rows over a time range as a file;
// *storage.DB is one.
type Exporter interface {
	Export(ctx context.Context, q storage.ExportQuery, w io.Writer) (storage.ExportResult, error)
}

// Defaults of the table exports.
const (
	// DefaultMaxExports is the default of Server.MaxExports: each export
	// holds a ClickHouse query and a row group in memory.
	DefaultMaxExports = 2
	// DefaultExportWriteTimeout is the default of Server.ExportWriteTimeout.
	DefaultExportWriteTimeout = time.Minute
	// defaultExportRange is the range of an export without 'from'.
	defaultExportRange = 24 * time.Hour
)

// exportMetrics count the table exports.
type exportMetrics struct {
	exports *prometheus.CounterVec
	rows    *prometheus.CounterVec
}

func newExportMetrics(reg prometheus.Registerer) *exportMetrics {
	m := &exportMetrics{
		exports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_api_exports_total",
			Help: "Table exports over the API, by table, format and result: ok, error (cut off after it began, or never begun), busy (MaxExports were running).",
		}, []string{"table", "format", "result"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_api_export_rows_total",
			Help: "Rows sent in complete table exports, by table.",
		}, []string{"table"}),
	}
	if reg != nil {
		reg.MustRegister(m.exports, m.rows)
	}
	return m
}

// exportTable serves GET /api/v1/export/{table}?from=&to=&format=: the
// table's rows over [from, to) (default the last 24 hours) as Parquet or
// Arrow IPC, streamed from ClickHouse as they are read. An export holds
// the rows of the whole city, so a token limited to a grid gets 403. An
// error before the first byte gets a JSON error; after it the connection
// is cut, and the client holds a file without its footer, which no Parquet
// or Arrow reader takes for a whole one.
func (s *Server) exportTable(w http.ResponseWriter, r *http.Request) {
	if p := principalFrom(r.Context()); p.scope != "" {
		writeError(w, http.StatusForbidden, "forbidden", "an export holds the rows of every grid: it needs a token without a grid scope")
		return
	}
	if s.Exports == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "exports are not configured")
		return
	}
	table := r.PathValue("table")
	if !slices.Contains(storage.ExportTables(), table) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no table %q to export: want one of %s", table, strings.Join(storage.ExportTables(), ", ")))
		return
	}
	q := r.URL.Query()
	to, err := parseTime(q.Get("to"), s.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "'to': "+err.Error())
		return
	}
	from, err := parseTime(q.Get("from"), to.Add(-defaultExportRange))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "'from': "+err.Error())
		return
	}
	format := storage.FormatParquet
	if v := q.Get("format"); v != "" {
		if format, err = storage.ParseExportFormat(v); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "'format': "+err.Error())
			return
		}
	}
	eq := storage.ExportQuery{Table: table, From: from, To: to, Format: format}
	if err := eq.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	count := func(result string) { s.exports.exports.WithLabelValues(table, string(format), result).Inc() }
	select {
	case s.exportSlots <- struct{}{}:
		defer func() { <-s.exportSlots }()
	default:
		count("busy")
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "busy", fmt.Sprintf("%d exports are running: try again later", s.MaxExports))
		return
	}
	name := fmt.Sprintf("%s-%s-%s.%s", table, from.UTC().Format("20060102T150405Z"), to.UTC().Format("20060102T150405Z"), format)
	out := &exportResponse{w: w, rc: http.NewResponseController(w), timeout: s.ExportWriteTimeout, begin: func() {
		h := w.Header()
		h.Set("Content-Type", format.ContentType())
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
	}}
	bw := bufio.NewWriterSize(out, 64<<10)
	res, err := s.Exports.Export(r.Context(), eq, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		count("error")
		switch {
		case out.begun:
			s.Logger.Warn("export cut off", "table", table, "format", format, "rows", res.Rows, "err", err)
			panic(http.ErrAbortHandler) // the client must not take the truncated file for a whole one
		case errors.Is(err, storage.ErrBadQuery):
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		default:
			s.internalError(w, r, err)
		}
		return
	}
	if !out.begun { // an exporter that wrote nothing still answers with its headers
		out.begin()
	}
	count("ok")
	s.exports.rows.WithLabelValues(table).Add(float64(res.Rows))
}

// exportResponse writes an export to the client: the status and headers go
// out with the first byte (until then an error can still be answered as
// JSON), and each write must be taken within timeout, so a client that
// stops reading releases its export slot and ClickHouse query.
type exportResponse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	begin   func()
	begun   bool
}

func (e *exportResponse) Write(p []byte) (int, error) {
	if !e.begun {
		e.begun = true
		e.begin()
	}
	if err := e.rc.SetWriteDeadline(time.Now().Add(e.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return e.w.Write(p)
}
