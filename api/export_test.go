package api

import (
	"bytes"
	"encoding/csv"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
)

// csvCells are cells whose quoting encoding/csv decides in each of its
// ways; they seed FuzzCSVRow.
var csvCells = [][]string{
	{"plain", "", "level_cm = 50: value > 30"},
	{"a,b", `say "hi"`, "two\nlines", "cr\rhere", `\.`},
	{" leading space", "\tleading tab", "\u00a0nbsp", "trailing "},
	{"=HYPERLINK(\"x\")", "+1", "-1", "@sum", "水位超限", ""},
	{""},
}

// TestCSVRowWritesAsEncodingCSV checks that the export's row writer
// writes what encoding/csv's Writer writes for the same cells, so that
// every CSV reader parses the export as before.
func TestCSVRowWritesAsEncodingCSV(t *testing.T) {
	for _, cells := range csvCells {
		checkCSVRow(t, cells)
	}
}

func FuzzCSVRow(f *testing.F) {
	for _, cells := range csvCells {
		for _, c := range cells {
			f.Add(c, "next")
		}
	}
	f.Fuzz(func(t *testing.T, a, b string) { checkCSVRow(t, []string{a, b}) })
}

func checkCSVRow(t *testing.T, cells []string) {
	t.Helper()
	var want bytes.Buffer
	w := csv.NewWriter(&want)
	_ = w.Write(cells)
	w.Flush()
	var row csvRow
	for _, c := range cells {
		row.raw(c)
	}
	row.end()
	if got := string(row.b); got != want.String() {
		t.Errorf("cells %q: row writer wrote %q, encoding/csv %q", cells, got, want.String())
	}
}

// TestExportRowDefusesFormulas checks the export's free-text cells against
// CSV injection: a rule, device or summary that starts like a formula is
// exported with a quote in front.
func TestExportRowDefusesFormulas(t *testing.T) {
	b := appendExportRow(nil, &alerts.Alert{ID: "a1", Rule: "=cmd|' /C calc'!A0", Device: "+d", Summary: "@sum", Fired: time.UnixMilli(1732233600123)})
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 1 || len(rows[0]) != len(exportColumns) {
		t.Fatalf("row %q: %v", b, err)
	}
	if r := rows[0]; r[2] != "'=cmd|' /C calc'!A0" || r[3] != "'+d" || r[9] != "'@sum" || r[12] != "2024-11-22T00:00:00.123Z" {
		t.Errorf("row %q", r)
	}
}

// BenchmarkExportRow measures what the CSV export costs per alert beyond
// reading it: allocs/op should stay 0, so that an export of 100,000
// alerts makes no garbage.
func BenchmarkExportRow(b *testing.B) {
	now := time.Now()
	a := alerts.Alert{ID: "m1abc-xyz-1a2b", Version: 2, Rule: "flood", Device: "w-12345", Grid: "G042", Category: "water",
		Severity: alerts.SeverityMajor, Condition: alerts.ConditionFiring, Case: "C20261202-2KD8NVG6", Summary: "level_cm = 50: value > 30",
		Value: 50, Count: 1234, Fired: now, Updated: now}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		if buf = appendExportRow(buf, &a); len(buf) > 60<<10 {
			buf = buf[:0]
		}
	}
}
