// Package storagetest gives integration tests a real ClickHouse: the server named by
// $GRIDWATCH_TEST_CLICKHOUSE_ADDR, or else one storage.LocalServer per test binary,
// and a fresh database per test on it. Tests connect as user default with Password:
// the local server's generated one, or $GRIDWATCH_TEST_CLICKHOUSE_PASSWORD.
//
// A test binary that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { storagetest.Main(m) }
package storagetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/storage"
)

// EnvAddr names the environment variable that points integration tests at an
// existing ClickHouse (native protocol, user default); EnvPassword names the one that
// holds that user's password, if it has one.
const (
	EnvAddr     = "GRIDWATCH_TEST_CLICKHOUSE_ADDR"
	EnvPassword = "GRIDWATCH_TEST_CLICKHOUSE_PASSWORD"
)

// shared is the one local server of a test binary. It is package state because all
// tests of the binary share the server, which Main stops when they are done.
var shared struct {
	mu       sync.Mutex
	inMain   bool
	started  bool
	dir      string
	password string
	server   *storage.LocalServer
	err      error
}

// Main is for TestMain: it runs m's tests, stops the shared server afterwards and
// exits with the tests' status.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "storagetest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Addr returns the native address of a ClickHouse for integration tests:
// $GRIDWATCH_TEST_CLICKHOUSE_ADDR when set, else that of a storage.LocalServer started
// on first use, shared by the test binary and stopped by Main. Under -short it skips
// t; when no ClickHouse can be had, it calls Unavailable.
func Addr(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse, skipped under -short")
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("storagetest: run the tests through storagetest.Main, which stops the shared ClickHouse: func TestMain(m *testing.M) { storagetest.Main(m) }")
	}
	if addr := os.Getenv(EnvAddr); addr != "" {
		return addr
	}
	if !shared.started {
		shared.started = true
		shared.err = start()
	}
	if errors.Is(shared.err, storage.ErrNoClickHouse) {
		Unavailable(t, shared.err)
	}
	if shared.err != nil {
		t.Fatalf("storagetest: %v", shared.err)
	}
	return shared.server.Addr()
}

// Password returns the password of user default on Addr: the shared local
// server's, or $GRIDWATCH_TEST_CLICKHOUSE_PASSWORD with an existing server. It
// starts no server: a test that runs a storage.LocalServer of its own may give it
// this password, so that the helpers that connect need only one.
func Password(testing.TB) string {
	if os.Getenv(EnvAddr) != "" {
		return os.Getenv(EnvPassword)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	return passwordLocked()
}

// passwordLocked returns the shared server's password, chosen on first
// use. shared.mu is held.
func passwordLocked() string {
	if shared.password == "" {
		shared.password = rand.Text()
	}
	return shared.password
}

// Options returns storage.Options for a fresh database on Addr(t), made by
// Database, with the password.
func Options(t testing.TB) storage.Options {
	t.Helper()
	addr, db := Database(t)
	return storage.Options{Addr: addr, Database: db, Password: Password(t)}
}

// Database creates a database with a fresh name on Addr(t), drops it when t ends,
// and returns both.
func Database(t testing.TB) (addr, db string) {
	t.Helper()
	addr = Addr(t)
	db = "gwtest_" + strings.ToLower(rand.Text())
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
		Auth: clickhouse.Auth{Username: storage.LocalUser, Password: Password(t)}})
	if err != nil {
		t.Fatalf("storagetest: connect to %s: %v", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		conn.Close()
		t.Fatalf("storagetest: create database %s on %s: %v", db, addr, err)
	}
	t.Cleanup(func() {
		defer conn.Close()
		// t's own context is already done when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			t.Errorf("storagetest: drop database %s on %s: %v", db, addr, err)
		}
	})
	return addr, db
}

// Unavailable ends t because it needs something that is missing here, such as a
// ClickHouse binary: it skips t, but fails it when $CI is set, so that a CI run never
// passes without its integration tests.
func Unavailable(t testing.TB, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(append([]any{"required when CI is set:"}, args...)...)
	}
	t.Skip(args...)
}

// start starts the shared server in a fresh temporary directory. shared.mu
// is held.
func start() error {
	dir, err := os.MkdirTemp("", "gridwatch-clickhouse-")
	if err != nil {
		return err
	}
	shared.dir = dir
	shared.server = &storage.LocalServer{
		Dir:      dir,
		Password: passwordLocked(),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	return shared.server.Start(context.Background())
}

// stop stops the shared server, if one was started, and removes its directory.
func stop() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.dir == "" {
		return nil
	}
	return errors.Join(shared.server.Close(), os.RemoveAll(shared.dir))
}
