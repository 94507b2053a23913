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
	"github.com/cenkalti/backoff/v4"

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
// and returns both (DropOnCleanup). Creating is retried (see ddl): a loaded
// machine can hold a DDL for tens of seconds.
func Database(t testing.TB) (addr, db string) {
	t.Helper()
	addr = Addr(t)
	db = "gwtest_" + strings.ToLower(rand.Text())
	password := Password(t)
	if err := ddl(addr, password, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		t.Fatalf("storagetest: create database %s on %s: %v", db, addr, err)
	}
	DropOnCleanup(t, addr, db)
	return addr, db
}

// DropOnCleanup drops database db on addr when t ends, retrying (see ddl); a
// drop that still fails is logged, not failed: it is not what t asserts.
func DropOnCleanup(t testing.TB, addr, db string) {
	password := Password(t)
	t.Cleanup(func() {
		if err := ddl(addr, password, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Logf("storagetest: drop database %s on %s (left behind): %v", db, addr, err)
		}
	})
}

// Bounds of ddl: one attempt, and all of them.
const (
	ddlAttempt = time.Minute
	ddlTotal   = 3 * time.Minute
)

// ddl runs query, an idempotent statement, on addr: each attempt on a fresh
// connection (a timed-out one is not reused) and bounded by ddlAttempt,
// retried with backoff until ddlTotal has passed unless the server refuses
// it for good (storage.Permanent).
func ddl(addr, password, query string) error {
	// Cleanups run after t's own context is done: a context of their own.
	ctx, cancel := context.WithTimeout(context.Background(), ddlTotal)
	defer cancel()
	var last error
	op := func() (err error) {
		defer func() { last = err }()
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
			Auth: clickhouse.Auth{Username: storage.LocalUser, Password: password}, DialTimeout: ddlAttempt})
		if err != nil {
			return backoff.Permanent(err)
		}
		defer conn.Close()
		actx, cancel := context.WithTimeout(ctx, ddlAttempt)
		defer cancel()
		if err := conn.Exec(actx, query); err != nil {
			if storage.Classify(err) == storage.Permanent {
				return backoff.Permanent(err)
			}
			return err
		}
		return nil
	}
	policy := backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second), backoff.WithMaxElapsedTime(0))
	if err := backoff.Retry(op, backoff.WithContext(policy, ctx)); err != nil {
		if last != nil && !errors.Is(err, last) {
			return fmt.Errorf("%w (last error: %w)", err, last)
		}
		return err
	}
	return nil
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
		// A loaded machine (CI beside other jobs) can take minutes to
		// start or stop a server.
		StartTimeout: 3 * time.Minute,
		StopTimeout:  2 * time.Minute,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
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
