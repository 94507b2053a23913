package storage

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gridwatch/gridwatch/devices"
)

// Options say which ClickHouse to use and how.
type Options struct {
	// Addr is the server's native-protocol address, host:port. Required.
	Addr string
	// Failover lists, in order, the other servers of Cluster (their
	// native-protocol addresses) to connect to while Addr does not answer:
	// a replica that stops then costs the spooling of the INSERTs in flight,
	// not of every batch until it is back. Connections then live at most 5
	// minutes, so that the node is back on Addr within that once it
	// answers. It defaults to none: every connection is to Addr.
	Failover []string
	// Database holds gridwatch's tables; Open creates it when missing. It
	// defaults to "gridwatch".
	Database string
	// User defaults to "default"; Password to none. The password is never
	// logged nor put in errors.
	User, Password string
	// TLS, when set, is used for the connection.
	TLS *tls.Config
	// DialTimeout bounds connecting. It defaults to 10 seconds.
	DialTimeout time.Duration
	// ReadTimeout bounds waiting for the server during a query. It defaults
	// to 5 minutes.
	ReadTimeout time.Duration
	// MaxOpenConns bounds the connection pool. It defaults to 10.
	MaxOpenConns int
	// MaxIdleConns bounds the connections the pool keeps open while
	// unused; one released beyond it is closed. Each keeps the encoding
	// and compression buffers of the largest INSERT it sent, and the pool
	// hands out its idle connections in turn, so every one it keeps grows
	// them: at 10 they were a quarter of a durable node's heap. It
	// defaults to 2, the telemetry INSERTs in flight, and is at most
	// MaxOpenConns.
	MaxIdleConns int
	// RetentionDays is how long telemetry and rejected rows are kept. It
	// defaults to 0: forever.
	RetentionDays int
	// Secrets seals the RTSP passwords of the registry. Without it, devices
	// with a plain RTSP password cannot be saved (ErrNoSecretKey), and
	// Migrate leaves plain ones from earlier versions as they are.
	Secrets *devices.SecretBox
	// NoSecrets, when Secrets is nil, says why; the ErrNoSecretKey errors
	// wrap it, so that they tell the operator what to do.
	NoSecrets error
	// Cluster, when set, names the cluster in the server's remote_servers
	// that the schema is created on (SchemaOptions.Cluster): Addr is then
	// one of its servers, and reads and writes go through the Distributed
	// tables, inserts synchronously (insert_distributed_sync), so that an
	// INSERT answered is stored on every shard it touches. It defaults to
	// none: one server.
	Cluster string
}

// Defaults of Options.
const (
	DefaultUser         = "default"
	DefaultDialTimeout  = 10 * time.Second
	DefaultReadTimeout  = 5 * time.Minute
	DefaultMaxOpenConns = 10
	DefaultMaxIdleConns = 2
)

// failback bounds a connection's life when there are Failover servers, so
// that a node that failed over opens its connections to Addr again within
// it once Addr answers (clickhouse-go's default is an hour).
const failback = 5 * time.Minute

// skipDown is how long a server that failed a connection is tried after
// the others, by the connections a pool with Failover servers opens.
const skipDown = 30 * time.Second

// inOrder is the dial strategy of a pool with Failover servers: each new
// connection goes to the first server that answers, in order (as
// clickhouse-go's ConnOpenInOrder), except that the servers that failed a
// connection in the last skipDown are tried last. A server that accepts
// and then hangs costs a connection the dial timeout: it then costs that
// once per skipDown, not every connection the pool opens meanwhile.
type inOrder struct {
	mu   sync.Mutex
	down map[string]time.Time // when each server last failed, until one connects
}

func (s *inOrder) dial(ctx context.Context, _ int, opt *clickhouse.Options, dial clickhouse.Dial) (clickhouse.DialResult, error) {
	s.mu.Lock()
	var up, down []string
	for _, a := range opt.Addr {
		if at, ok := s.down[a]; ok && time.Since(at) < skipDown {
			down = append(down, a)
		} else {
			up = append(up, a)
		}
	}
	s.mu.Unlock()
	var err error
	for _, a := range append(up, down...) {
		if ctx.Err() != nil {
			return clickhouse.DialResult{}, ctx.Err()
		}
		var r clickhouse.DialResult
		r, err = dial(ctx, a, opt)
		s.mu.Lock()
		switch {
		case err == nil:
			delete(s.down, a)
		case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			// The server's failure (the driver dials and shakes hands
			// under DialTimeout, not ctx), even when ctx ran out meanwhile:
			// an INSERT's timeout is the dial timeout by default.
			s.down[a] = time.Now()
		}
		s.mu.Unlock()
		if err == nil {
			return r, nil
		}
	}
	return clickhouse.DialResult{}, err
}

// withDefaults fills the defaults of o and validates it.
func (o Options) withDefaults() (Options, error) {
	if o.Addr == "" {
		return o, errors.New("storage: no ClickHouse address")
	}
	if len(o.Failover) > 0 && o.Cluster == "" {
		return o, errors.New("storage: failover servers without a cluster: a lone server has no replica to fail over to")
	}
	s, err := SchemaOptions{Database: o.Database, RetentionDays: o.RetentionDays, Cluster: o.Cluster}.withDefaults()
	if err != nil {
		return o, err
	}
	o.Database = s.Database
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = DefaultMaxOpenConns
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = DefaultMaxIdleConns
	}
	o.MaxIdleConns = min(o.MaxIdleConns, o.MaxOpenConns)
	return o, nil
}

// DB is a connection pool to one ClickHouse server (or cluster entry point)
// and the schema layout found there. It is safe for concurrent use.
type DB struct {
	conn   driver.Conn
	opts   Options
	logger *slog.Logger
	// caps are the server's capabilities.
	caps Capabilities
	// layout are the capabilities the tables were created with: caps,
	// except that telemetry created with Int64 timestamps by an older server
	// keeps that layout after an upgrade.
	layout Capabilities

	// summaries recomputes case summaries after saves (summarizer).
	summaries     *summarizer
	summariesOnce sync.Once

	// replicas are the cluster's other servers (everyReplica).
	replicas replicaSet

	closeOnce sync.Once
	closeErr  error
}

// summarizer returns the DB's, made at first use.
func (db *DB) summarizer() *summarizer {
	db.summariesOnce.Do(func() {
		db.summaries = &summarizer{refresh: db.refreshCaseSummaries, logger: db.logger, kick: make(chan struct{}, 1)}
	})
	return db.summaries
}

// Open connects to the server, checks it answers, reads its version and
// creates the database when missing. It does not migrate: call Migrate.
// A nil logger discards.
func Open(ctx context.Context, o Options, logger *slog.Logger) (*DB, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := dial(o, append([]string{o.Addr}, o.Failover...), o.MaxOpenConns, o.MaxIdleConns)
	if err != nil {
		return nil, err
	}
	db := &DB{conn: conn, opts: o, logger: logger}
	if err := db.init(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	logger.Info("connected to ClickHouse", "addr", o.Addr, "failover", o.Failover, "database", o.Database, "cluster", o.Cluster,
		"server", db.caps.Version.String(), "datetime64", db.layout.DateTime64,
		"low_cardinality", db.layout.LowCardinality, "ttl", db.caps.TTL)
	return db, nil
}

// dial opens a connection pool with o's credentials, TLS and timeouts to
// the first server of addrs that answers, in order, each time it opens a
// connection.
func dial(o Options, addrs []string, maxOpen, maxIdle int) (driver.Conn, error) {
	var settings clickhouse.Settings
	if o.Cluster != "" {
		settings = clickhouse.Settings{"insert_distributed_sync": 1}
	}
	opts := &clickhouse.Options{
		Addr:             addrs,
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		Settings:         settings,
		Auth:             clickhouse.Auth{Username: o.User, Password: o.Password},
		TLS:              o.TLS,
		ClientInfo: clickhouse.ClientInfo{
			Products: []struct{ Name, Version string }{{Name: "gridwatch"}},
		},
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		// An INSERT's block is encoded into the connection's buffer and
		// compressed, then sent, once the buffer holds this much (after a
		// whole column): at the driver's 10 MiB, each pooled connection
		// kept buffers the size of a whole batch. 1 MiB bounds them by
		// about a column of one batch.
		MaxCompressionBuffer: 1 << 20,
		DialTimeout:          o.DialTimeout,
		ReadTimeout:          o.ReadTimeout,
		MaxOpenConns:         maxOpen,
		MaxIdleConns:         maxIdle,
	}
	if len(addrs) > 1 {
		opts.ConnMaxLifetime = failback
		opts.DialStrategy = (&inOrder{down: map[string]time.Time{}}).dial
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", strings.Join(addrs, ","), err)
	}
	return conn, nil
}

// init pings, reads the version and the layout, and creates the database.
func (db *DB) init(ctx context.Context) error {
	if err := db.conn.Ping(ctx); err != nil {
		return fmt.Errorf("storage: ping %s: %w", db.opts.Addr, err)
	}
	var version string
	if err := db.conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return fmt.Errorf("storage: read server version: %w", err)
	}
	caps, err := CapabilitiesFor(version)
	if err != nil {
		return err
	}
	db.caps, db.layout = caps, caps
	if err := db.checkCluster(ctx); err != nil {
		return err
	}
	// Creating only when missing spares users without the CREATE DATABASE
	// grant an error about a database that is there.
	var exists uint64
	if err := db.conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", db.opts.Database).Scan(&exists); err != nil {
		return fmt.Errorf("storage: look up database %s: %w", db.opts.Database, err)
	}
	if exists == 0 {
		create := "CREATE DATABASE IF NOT EXISTS `" + db.opts.Database + "`"
		if db.opts.Cluster != "" {
			create += onCluster(db.opts.Cluster)
		}
		if err := db.conn.Exec(ctx, create); err != nil {
			return fmt.Errorf("storage: create database %s: %w", db.opts.Database, err)
		}
		db.logger.Info("created database", "database", db.opts.Database)
	}
	var tsType string
	err = db.conn.QueryRow(ctx,
		"SELECT type FROM system.columns WHERE database = ? AND table = 'telemetry' AND name = 'ts'",
		db.opts.Database).Scan(&tsType)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// A fresh database: Migrate creates the tables for this server.
	case err != nil:
		return fmt.Errorf("storage: read telemetry layout: %w", err)
	case tsType == "Int64" && caps.DateTime64:
		db.layout.DateTime64 = false
		db.logger.Info("telemetry keeps Int64 millisecond timestamps from an older server",
			"database", db.opts.Database, "server", caps.Version.String())
	}
	return nil
}

// checkCluster checks, on a cluster, that the server knows it and has the
// macros its replicated tables are named by.
func (db *DB) checkCluster(ctx context.Context) error {
	if db.opts.Cluster == "" {
		return nil
	}
	var hosts uint64
	if err := db.conn.QueryRow(ctx, "SELECT count() FROM system.clusters WHERE cluster = ?", db.opts.Cluster).Scan(&hosts); err != nil {
		return fmt.Errorf("storage: look up cluster %s: %w", db.opts.Cluster, err)
	}
	if hosts == 0 {
		return fmt.Errorf("%w: %s has no cluster %q in its remote_servers", ErrNoCluster, db.opts.Addr, db.opts.Cluster)
	}
	var macros uint64
	if err := db.conn.QueryRow(ctx, "SELECT count() FROM system.macros WHERE macro IN ('shard', 'replica')").Scan(&macros); err != nil {
		return fmt.Errorf("storage: look up the macros of %s: %w", db.opts.Addr, err)
	}
	if macros != 2 {
		return fmt.Errorf("%w: %s lacks the macros shard and replica that name its replicated tables", ErrNoCluster, db.opts.Addr)
	}
	return nil
}

// Cluster returns the cluster the tables are on, or "" for one server.
func (db *DB) Cluster() string { return db.opts.Cluster }

// localTable is the table holding table's rows on the connected server:
// table itself on one server, its local table on a cluster.
func (db *DB) localTable(table string) string {
	if db.opts.Cluster == "" {
		return table
	}
	return localTable(table)
}

// Capabilities returns the server's capabilities.
func (db *DB) Capabilities() Capabilities { return db.caps }

// Database returns the name of the database holding the tables.
func (db *DB) Database() string { return db.opts.Database }

// Conn returns the underlying clickhouse-go connection, for tests and
// advanced use.
func (db *DB) Conn() driver.Conn { return db.conn }

// Close recomputes the case summaries still pending (within 10 s), then
// closes the connection pool. It is safe to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		err := db.summarizer().close()
		if err != nil {
			err = fmt.Errorf("storage: last refresh of case summaries: %w", err)
		}
		db.replicas.mu.Lock()
		others := db.replicas.others
		db.replicas.mu.Unlock()
		db.closeErr = errors.Join(err, closeReplicas(others), db.conn.Close())
	})
	return db.closeErr
}
