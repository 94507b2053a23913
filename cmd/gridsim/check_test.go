package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// TestCheckIntegration runs 'gridsim check' on acks files against a
// telemetry table holding one message whole, one in part and one twice.
func TestCheckIntegration(t *testing.T) {
	const at = 1700000000001
	whole := []ingest.Reading{{TS: at, Device: "whole", Metric: "pm25", Value: 1}, {TS: at, Device: "whole", Metric: "pm10", Value: 2}}
	clean := telemetryDatabase(t, whole...)
	dirty := telemetryDatabase(t, append(whole,
		ingest.Reading{TS: at, Device: "part", Metric: "pm25", Value: 3},
		ingest.Reading{TS: at, Device: "twice", Metric: "pm25", Value: 4},
		ingest.Reading{TS: at, Device: "twice", Metric: "pm25", Value: 4})...)
	addr := storagetest.Addr(t)
	t.Setenv("CLICKHOUSE_PASSWORD", storagetest.Password(t))

	dir := t.TempDir()
	for _, c := range []struct {
		name, database string
		acks           []simulators.Ack
		summary        string
		fails          bool
	}{
		{"stored once", clean, []simulators.Ack{{Device: "whole", TS: at, Readings: 2}},
			"1 acknowledged messages: 0 missing, 0 readings duplicated", false},
		{"nothing acknowledged", clean, nil, "0 acknowledged messages: 0 missing, 0 readings duplicated", false},
		{"duplicate", dirty, []simulators.Ack{{Device: "whole", TS: at, Readings: 2}},
			"1 acknowledged messages: 0 missing, 1 readings duplicated", true},
		{"missing", dirty, []simulators.Ack{
			{Device: "whole", TS: at, Readings: 2},
			{Device: "part", TS: at, Readings: 2},
			{Device: "never", TS: at, Readings: 1},
		}, "3 acknowledged messages: 2 missing, 1 readings duplicated", true},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".csv")
		writeAcks(t, file, c.acks)
		var stderr bytes.Buffer
		root := rootCmd()
		root.SetErr(&stderr)
		root.SetArgs([]string{"check", "--acks", file, "--clickhouse", addr, "--database", c.database, "--wait", "0"})
		err := root.Execute()
		if !strings.Contains(stderr.String(), c.summary) {
			t.Errorf("%s: printed %q, want %q", c.name, stderr.String(), c.summary)
		}
		if c.fails != errors.Is(err, errCheckFailed) || (!c.fails && err != nil) {
			t.Errorf("%s: error %v, want failure %v", c.name, err, c.fails)
		}
	}
}

// telemetryDatabase creates a database holding readings in its telemetry
// table and returns its name.
func telemetryDatabase(t *testing.T, readings ...ingest.Reading) string {
	t.Helper()
	addr, database := storagetest.Database(t)
	db, err := storage.Open(t.Context(), storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, ingest.TelemetrySchema)
	defer b.Release()
	for _, r := range readings {
		ingest.AppendReading(b, r)
	}
	rec := b.NewRecord()
	defer rec.Release()
	if err := w.Write(t.Context(), ingest.TelemetryTable, "check-1", rec); err != nil {
		t.Fatal(err)
	}
	return database
}

// writeAcks writes acks to file as 'gridsim fleet --acks' does.
func writeAcks(t *testing.T, file string, acks []simulators.Ack) {
	t.Helper()
	a, err := createAckFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, ack := range acks {
		a.Add(ack)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
