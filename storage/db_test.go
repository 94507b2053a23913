package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// openDB opens a fresh database on the test ClickHouse with o's other settings.
func openDB(t testing.TB, o storage.Options) *storage.DB {
	t.Helper()
	o.Addr, o.Database = storagetest.Database(t)
	o.Password = storagetest.Password(t)
	db, err := storage.Open(t.Context(), o, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openMigrated is openDB followed by Migrate.
func openMigrated(t testing.TB, o storage.Options) *storage.DB {
	t.Helper()
	db := openDB(t, o)
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

func TestOpenRejectsOptions(t *testing.T) {
	for _, o := range []storage.Options{
		{},
		{Addr: "127.0.0.1:9000", Database: "a-b"},
		{Addr: "127.0.0.1:9000", RetentionDays: -1},
		{Addr: "127.0.0.1:9000", Failover: []string{"127.0.0.1:9001"}}, // failover without a cluster
	} {
		if db, err := storage.Open(t.Context(), o, nil); err == nil {
			db.Close()
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = storage.Open(t.Context(), storage.Options{Addr: addr, Password: "s3cret-pw", DialTimeout: time.Second}, nil)
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if got := err.Error(); !strings.Contains(got, addr) || strings.Contains(got, "s3cret-pw") {
		t.Errorf("error %q should name %s and never the password", got, addr)
	}
}

func TestMigrateIntegration(t *testing.T) {
	db := openDB(t, storage.Options{})
	ctx := t.Context()
	if err := db.Ready(ctx); !errors.Is(err, storage.ErrSchemaOutdated) {
		t.Fatalf("Ready before Migrate = %v, want ErrSchemaOutdated", err)
	}
	for i := range 2 {
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after Migrate: %v", err)
	}
	s, err := db.Schema()
	if err != nil {
		t.Fatal(err)
	}
	var recorded uint64
	if err := db.Conn().QueryRow(ctx, fmt.Sprintf("SELECT count() FROM `%s`.schema_migrations", db.Database())).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != uint64(len(s.Migrations)) {
		t.Errorf("bookkeeping holds %d rows after two Migrates, want %d", recorded, len(s.Migrations))
	}
	// A crash between running migrations and recording them: every one
	// runs again, the ADD COLUMNs on a server without IF NOT EXISTS too.
	if err := db.Conn().Exec(ctx, fmt.Sprintf("TRUNCATE TABLE `%s`.schema_migrations", db.Database())); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with no migration recorded, all run: %v", err)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready after Migrate ran them again: %v", err)
	}
	// An ADD COLUMN whose columns are there is not run again (on a cluster
	// it fails on every replica, which 18.16 could leave unfinished);
	// one adding a column not there, or doing more, is.
	table := fmt.Sprintf("`%s`.`camera_health`", db.Database())
	for _, c := range []struct {
		st   string
		want bool
	}{
		{"ALTER TABLE " + table + "\n    ADD COLUMN `pictures` UInt32 DEFAULT 0,\n    ADD COLUMN `luma` Float64 DEFAULT 0", true},
		{"ALTER TABLE " + table + "\n    ADD COLUMN `pictures` UInt32 DEFAULT 0,\n    ADD COLUMN `not_there` Float64 DEFAULT 0", false},
		{"ALTER TABLE " + table + "\n    ADD COLUMN `pictures` UInt32 DEFAULT 0,\n    DROP COLUMN `luma`", false},
		{"CREATE TABLE IF NOT EXISTS " + table + " (a UInt8) ENGINE = Memory", false},
	} {
		if got := storage.ColumnsThere(ctx, db, c.st); got != c.want {
			t.Errorf("columns there for %q = %v, want %v", c.st, got, c.want)
		}
	}

	caps := db.Capabilities()
	timeType, lc := "Int64", func(s string) string { return s }
	if caps.DateTime64 {
		timeType = "DateTime64(3, 'UTC')"
	}
	if caps.LowCardinality {
		lc = func(s string) string { return "LowCardinality(" + s + ")" }
	}
	want := map[string][]string{
		"telemetry": {"ts " + timeType, "received " + timeType, "device String", "grid " + lc("String"),
			"metric " + lc("String"), "value Float64"},
		"rejected": {"ts " + timeType, "device String", "topic String", "reason " + lc("String"),
			"detail String", "payload String"},
		"devices": {"id String", "type " + lc("String"), "grid " + lc("String"), "lat Float64",
			"lon Float64", "name String", "updated " + timeType},
	}
	// Migration 0009 adds the ledger column after the columns of 0001.
	want["telemetry"] = append(want["telemetry"], "batch String")
	if !caps.DateTime64 {
		want["telemetry"] = append(want["telemetry"], "date Date")
		want["rejected"] = append(want["rejected"], "date Date")
	}
	for table, cols := range want {
		rows, err := db.Conn().Query(ctx,
			"SELECT name, type FROM system.columns WHERE database = ? AND table = ?",
			db.Database(), table)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			got = append(got, name+" "+typ)
		}
		rows.Close()
		if fmt.Sprint(got) != fmt.Sprint(cols) {
			t.Errorf("%s columns = %v, want %v", table, got, cols)
		}
	}
}

// TestAlertWorkOrderColumnsDocumented checks migration 0018: the columns
// of the alerts table that only releases whose alerts carried work orders
// wrote say so in the schema, and no other column of the table does.
func TestAlertWorkOrderColumnsDocumented(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	rows, err := db.Conn().Query(t.Context(), "SELECT name, comment FROM system.columns WHERE database = ? AND table = 'alerts'", db.Database())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var unused []string
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(comment, "unused"):
			unused = append(unused, name)
		case comment != "":
			t.Errorf("column %s has the comment %q", name, comment)
		}
	}
	want := []string{"ack_due", "ack_overdue", "acked", "closed", "dispatched", "next_reminder", "refired", "resolve_due",
		"resolve_overdue", "resolved", "status", "unit"}
	if slices.Sort(unused); !slices.Equal(unused, want) {
		t.Errorf("columns documented unused %v, want %v", unused, want)
	}
}

func TestCloseTwiceIntegration(t *testing.T) {
	db := openDB(t, storage.Options{})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.Ready(context.Background()); err == nil {
		t.Error("Ready after Close succeeded")
	}
}

func TestOpenCreatesDatabaseIntegration(t *testing.T) {
	addr, existing := storagetest.Database(t)
	name := existing + "_new"
	db, err := storage.Open(t.Context(), storage.Options{Addr: addr, Database: name, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	storagetest.DropOnCleanup(t, addr, name)
	var n uint64
	if err := db.Conn().QueryRow(t.Context(), "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("database %s not created", name)
	}
}
