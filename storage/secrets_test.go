package storage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestSealPlainSecretsOnceIntegration attacks the README's promise that
// plain RTSP passwords of earlier versions are re-encrypted once per
// database: a Migrate without a key leaves the pass pending, the first
// Migrate with one seals them at rest and records the pass in
// schema_migrations, and later Migrates (every start and admin command)
// do not scan the registry again, which a plain row written after the pass
// shows by staying as it is.
func TestSealPlainSecretsOnceIntegration(t *testing.T) {
	ctx := t.Context()
	addr, database := storagetest.Database(t)
	key := make([]byte, 32)
	box, err := devices.NewSecretBox(key)
	if err != nil {
		t.Fatal(err)
	}
	open := func(secrets *devices.SecretBox) *storage.DB {
		t.Helper()
		db, err := storage.Open(ctx, storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t), Secrets: secrets}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		return db
	}
	passes := func(db *storage.DB) uint64 {
		t.Helper()
		var n uint64
		if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+database+"`.schema_migrations WHERE name = 'seal_rtsp_passwords'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insertPlain := func(db *storage.DB, id, password string) {
		t.Helper()
		doc := `{"id":"` + id + `","type":"camera","grid":"g-01","rtsp_url":"rtsp://127.0.0.1:1/x","rtsp_user":"admin","rtsp_password":"` + password + `"}`
		batch, err := db.Conn().PrepareBatch(ctx, "INSERT INTO `"+database+"`.registry (kind, key, doc, updated)")
		if err != nil {
			t.Fatal(err)
		}
		if err := batch.Append("device", id, doc, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
		if err := batch.Send(); err != nil {
			t.Fatal(err)
		}
	}
	password := func(db *storage.DB, id string) string {
		t.Helper()
		var doc string
		if err := db.Conn().QueryRow(ctx, "SELECT doc FROM `"+database+"`.registry FINAL WHERE kind = 'device' AND key = ?", id).Scan(&doc); err != nil {
			t.Fatal(err)
		}
		_, pw, _ := strings.Cut(doc, `"rtsp_password":"`)
		pw, _, _ = strings.Cut(pw, `"`)
		return pw
	}

	keyless := open(nil)
	if n := passes(keyless); n != 0 {
		t.Fatalf("a Migrate without a key recorded the sealing pass (%d rows)", n)
	}
	insertPlain(keyless, "cam-legacy", "legacy-pw")

	keyed := open(box)
	if pw := password(keyed, "cam-legacy"); !devices.IsSealed(pw) {
		t.Fatalf("cam-legacy's password after the first Migrate with a key: %q, want it sealed", pw)
	}
	if n := passes(keyed); n != 1 {
		t.Fatalf("sealing pass recorded %d times, want once", n)
	}

	insertPlain(keyed, "cam-late", "late-pw")
	open(box)
	if pw := password(keyed, "cam-late"); pw != "late-pw" {
		t.Errorf("a later Migrate scanned the registry again (cam-late's password is now %q)", pw)
	}
	if n := passes(keyed); n != 1 {
		t.Errorf("sealing pass recorded %d times after another Migrate, want once", n)
	}
}
