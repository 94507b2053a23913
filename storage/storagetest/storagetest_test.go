package storagetest_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

func TestDatabaseIntegration(t *testing.T) {
	var addr, db string
	t.Run("created", func(t *testing.T) {
		addr, db = storagetest.Database(t)
		if _, other := storagetest.Database(t); other == db {
			t.Errorf("two calls returned the same database %q", db)
		}
		if !databaseExists(t, addr, db) {
			t.Errorf("database %q does not exist on %s", db, addr)
		}
	})
	if db == "" {
		return // The subtest was skipped or failed before creating the database.
	}
	if databaseExists(t, addr, db) {
		t.Errorf("database %q still exists after its test ended", db)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		wantSkip bool
	}{
		{"local run skips", "", true},
		{"CI run fails", "true", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				storagetest.Unavailable(r, "no ClickHouse")
			}()
			<-done
			if r.skipped != tt.wantSkip || r.failed == tt.wantSkip {
				t.Errorf("with CI=%q: skipped=%v failed=%v, want skipped=%v", tt.ci, r.skipped, r.failed, tt.wantSkip)
			}
		})
	}
}

// recorder is a testing.TB that records how a helper ended it; like the real ones,
// its Skip and Fatal end the calling goroutine.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Skip(...any) {
	r.skipped = true
	runtime.Goexit()
}

func (r *recorder) Fatal(...any) {
	r.failed = true
	runtime.Goexit()
}

func databaseExists(t *testing.T, addr, db string) bool {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
		Auth: clickhouse.Auth{Username: storage.LocalUser, Password: storagetest.Password(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n); err != nil {
		t.Fatalf("look up database %s: %v", db, err)
	}
	return n == 1
}
