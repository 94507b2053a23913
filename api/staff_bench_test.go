package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// Sizes of the staff-read benchmark.
const (
	staffAlerts = 100_000
	staffGrids  = 500
	staffToken  = "tok-staff-bench"
)

// staffServer starts an engine holding staffAlerts alerts, one per device,
// spread over staffGrids grids, a tenth of them cleared, and returns the
// API in front of it and the heap the engine holds per alert.
func staffServer(b *testing.B) (http.Handler, uint64) {
	b.Helper()
	rules, err := alerts.ParseRules([]byte(`
rules:
  - name: flood
    match: {types: [water_level]}
    metric: level_cm
    condition: value > 30
    severity: major
    no_group: true
`))
	if err != nil {
		b.Fatal(err)
	}
	devs := make([]devices.Device, 0, staffAlerts)
	for i := range staffAlerts {
		devs = append(devs, devices.Device{ID: "w-" + strconv.Itoa(i), Type: "water_level", Grid: fmt.Sprintf("G%03d", i%staffGrids)})
	}
	reg := devices.NewRegistry(devs)
	heapBefore := liveHeap()
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, StormMin: -1, FlushEvery: time.Hour}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	now := time.Now().UnixMilli()
	for i := range staffAlerts {
		e.ObserveReadings([]ingest.Reading{{TS: now, Device: devs[i].ID, Grid: devs[i].Grid, Metric: "level_cm", Value: 50}})
		if i%10 == 0 {
			e.ObserveReadings([]ingest.Reading{{TS: now, Device: devs[i].ID, Grid: devs[i].Grid, Metric: "level_cm", Value: 10}})
		}
	}
	perAlert := (liveHeap() - heapBefore) / staffAlerts
	s := &Server{Lookup: reg.Lookup, AdminToken: staffToken, Alerts: e, Logger: slog.New(slog.DiscardHandler)}
	h := s.Handler()
	var next string
	if err := staffExport.do(h, &next); err != nil {
		b.Fatal(err)
	}
	return h, perAlert
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// staffRequest is one request a member of staff sends; next is the cursor
// of the next page, kept by the client between its list requests.
type staffRequest struct {
	name string
	path func(next string) string
	// rows is set for the export: at least this many lines must come back.
	rows int
}

// do serves r as the API does, in the calling goroutine; serve also
// returns the CPU time the request took on its thread: what it cost the
// server, garbage collection it was made to assist included, waiting
// excluded.
func (r staffRequest) do(h http.Handler, next *string) error {
	_, err := r.serve(h, next)
	return err
}

func (r staffRequest) serve(h http.Handler, next *string) (time.Duration, error) {
	req := httptest.NewRequest(http.MethodGet, r.path(*next), nil)
	req.Header.Set("Authorization", "Bearer "+staffToken)
	w := &staffResponse{header: http.Header{}, keep: r.rows == 0}
	runtime.LockOSThread()
	start := threadCPU()
	h.ServeHTTP(w, req)
	cpu := threadCPU() - start
	runtime.UnlockOSThread()
	if w.code != 0 && w.code != http.StatusOK {
		return cpu, fmt.Errorf("%s: status %d: %s", r.name, w.code, w.body.String())
	}
	if r.rows > 0 {
		if w.lines < r.rows+1 {
			return cpu, fmt.Errorf("%s: %d lines, want %d rows and the header", r.name, w.lines, r.rows)
		}
		return cpu, nil
	}
	var page struct{ Next string }
	if err := json.Unmarshal(w.body.Bytes(), &page); err != nil {
		return cpu, fmt.Errorf("%s: %w", r.name, err)
	}
	if r.name == staffLists[0].name {
		*next = page.Next
	}
	return cpu, nil
}

// staffResponse is the client's end of a request served in process: it
// keeps a list page and counts an export's lines.
type staffResponse struct {
	header http.Header
	code   int
	keep   bool
	body   bytes.Buffer
	lines  int
}

func (w *staffResponse) Header() http.Header { return w.header }
func (w *staffResponse) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *staffResponse) Write(p []byte) (int, error) {
	if w.keep {
		return w.body.Write(p)
	}
	w.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// threadCPU is the CPU time the calling thread used so far.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	_ = syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// staffLists are the list pages staff ask for, in turn: the default page
// of firing alerts and the page after it, a grid's alerts, a rule's major
// and critical ones, and the cleared ones most recently changed first.
var staffLists = []staffRequest{
	{name: "list_firing", path: func(string) string { return "/api/v1/alerts?condition=firing&limit=50" }},
	{name: "list_next_page", path: func(next string) string { return "/api/v1/alerts?condition=firing&limit=50&cursor=" + next }},
	{name: "list_grid", path: func(string) string { return "/api/v1/alerts?grid=G042&limit=50" }},
	{name: "list_rule_severity", path: func(string) string { return "/api/v1/alerts?rule=flood&severity=major,critical&limit=50" }},
	{name: "list_cleared_by_updated", path: func(string) string { return "/api/v1/alerts?condition=cleared&sort=-updated&limit=50" }},
}

// staffExport is the CSV export of every alert.
var staffExport = staffRequest{name: "export_csv", path: func(string) string { return "/api/v1/alerts/export.csv" }, rows: staffAlerts}

// BenchmarkStaffRead measures what each staff request costs (the requests
// of internal/server's BenchmarkStaffBesideFleet, whose lists this bench's
// engine answers with its own rule), served in process: cpu-ms/op is the
// CPU time of the request on its thread, which a loaded machine inflates
// less than ns/op; heap_B/alert is the heap the engine holds per alert.
// The engine's timers run. Run it by hand:
//
//	go test -run '^$' -bench 'StaffRead$' -benchtime 20x ./api/
func BenchmarkStaffRead(b *testing.B) {
	h, perAlert := staffServer(b)
	for _, r := range append(staffLists, staffExport) {
		b.Run(r.name, func(b *testing.B) {
			var next string
			if err := staffLists[0].do(h, &next); err != nil {
				b.Fatal(err)
			}
			var cpu time.Duration
			for b.Loop() {
				used, err := r.serve(h, &next)
				if err != nil {
					b.Fatal(err)
				}
				cpu += used
			}
			b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(perAlert), "heap_B/alert")
		})
	}
}
