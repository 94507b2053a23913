package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// clickhouseFlags are the flags that point a command at a fresh test
// database; the password goes in the environment.
func clickhouseFlags(t *testing.T) (flags []string, db *storage.DB) {
	t.Helper()
	addr, name := storagetest.Database(t)
	t.Setenv("GRIDWATCH_CLICKHOUSE_PASSWORD", storagetest.Password(t))
	db, err := storage.Open(t.Context(), storage.Options{Addr: addr, Database: name, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return []string{"--clickhouse.addr", addr, "--clickhouse.database", name, "--data_dir", t.TempDir()}, db
}

// countTelemetry is the telemetry row count of db.
func countTelemetry(t *testing.T, db *storage.DB) uint64 {
	t.Helper()
	var n uint64
	if err := db.Conn().QueryRow(t.Context(), "SELECT count() FROM "+db.Database()+".telemetry").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExportImportCLI: `gridwatch export` writes the range's telemetry as
// Parquet and Arrow, and `gridwatch import` restores either into a fresh
// database, once however often it runs.
func TestExportImportCLI(t *testing.T) {
	src, srcDB := clickhouseFlags(t)
	if _, err := run(t, append([]string{"migrate"}, src...)...); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	rs := make([]storagetest.Reading, 3000) // one a minute: 2880 on 2025-03-01 and 03-02, 120 after
	for i := range rs {
		ts := day.Add(time.Duration(i) * time.Minute).UnixMilli()
		rs[i] = storagetest.Reading{TS: ts, Received: ts, Device: fmt.Sprintf("wl-%d", i%4), Grid: "D01-S01-G01", Metric: "level_cm", Value: float64(i)}
	}
	storagetest.WriteTelemetry(t, srcDB, "cli-1", rs)
	dir := t.TempDir()
	for _, format := range []string{"parquet", "arrow"} {
		file := filepath.Join(dir, "march."+format)
		out, err := run(t, append([]string{"export", "--table", "telemetry", "--from", "2025-03-01", "--to", "2025-03-03",
			"--format", format, "--row-group-rows", "1000", "-o", file}, src...)...)
		if err != nil {
			t.Fatalf("export %s: %v\n%s", format, err, out)
		}
		if !strings.Contains(out, "exported 2880 rows of telemetry (3 row groups") {
			t.Errorf("export %s said:\n%s", format, out)
		}
		dst, dstDB := clickhouseFlags(t)
		for range 2 {
			out, err := run(t, append([]string{"import", file}, dst...)...)
			if err != nil {
				t.Fatalf("import %s: %v\n%s", format, err, out)
			}
			if !strings.Contains(out, "2880 rows into telemetry") {
				t.Errorf("import %s said:\n%s", format, out)
			}
			if n := countTelemetry(t, dstDB); n != 2880 {
				t.Fatalf("after import of the %s file the fresh database holds %d rows, want 2880", format, n)
			}
		}
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--table", "registry", "--from", "2025-03-01", "-o", filepath.Join(dir, "x")}, "cannot be exported"},
		{[]string{"export", "--table", "telemetry", "-o", filepath.Join(dir, "x")}, "--from is required"},
		{[]string{"export", "--table", "telemetry", "--from", "yesterday", "-o", filepath.Join(dir, "x")}, "want RFC 3339"},
		{[]string{"export", "--table", "telemetry", "--from", "2025-03-01"}, "-o FILE is required"},
		{[]string{"export", "--table", "telemetry", "--from", "2025-03-01", "-o", filepath.Join(dir, "missing", "x")}, "no such file"},
	} {
		out, err := run(t, append(c.args, src...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v = %v (%s), want an error containing %q", c.args, err, out, c.want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*partial")); len(left) > 0 {
		t.Errorf("failed exports left %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a refused export wrote its file")
	}
}
