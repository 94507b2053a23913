package storage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// migrationFiles holds the DDL templates. A file named NNNN_name.sql.tmpl is
// migration NNNN; schema_migrations.sql.tmpl is the bookkeeping table that
// records which migrations a database has. Each file renders one statement
// on a single server (the native protocol runs one statement per query); on
// a cluster (SchemaOptions.Cluster) a file that creates or alters a table
// also renders the statements that (re)create its Distributed table.
//
//go:embed migrations/*.sql.tmpl
var migrationFiles embed.FS

// bookkeepingFile is the template of the bookkeeping table.
const bookkeepingFile = "schema_migrations.sql.tmpl"

// dedupWindow is how many recent insert blocks a table remembers to drop a
// retried one (non_replicated_deduplication_window). A batch is retried
// within seconds to minutes, far fewer inserts than this.
const dedupWindow = 1000

// identRE matches the identifiers gridwatch accepts for databases, tables and
// columns.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkIdent returns ErrBadIdentifier unless name is a plain identifier.
func checkIdent(what, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%w: %s %q", ErrBadIdentifier, what, name)
	}
	return nil
}

// SchemaOptions are the settings the DDL depends on besides the server.
type SchemaOptions struct {
	// Database is the database holding the tables. It defaults to "gridwatch".
	Database string
	// RetentionDays is how long telemetry and rejected rows are kept. It
	// defaults to 0: forever. Servers with TTL get a table TTL; older ones
	// rely on DB.DropExpired.
	RetentionDays int
	// Cluster, when set, is the cluster (the server's remote_servers) the
	// schema is created on: every table is a Replicated*MergeTree table
	// named <table>_local on each server, created ON CLUSTER, under a
	// Distributed table of the table's own name that reads and writes are
	// sent to. It defaults to none: plain tables on one server.
	Cluster string
}

// DefaultDatabase is the database used when none is configured.
const DefaultDatabase = "gridwatch"

// withDefaults fills the defaults of o and validates it.
func (o SchemaOptions) withDefaults() (SchemaOptions, error) {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if err := checkIdent("database", o.Database); err != nil {
		return o, err
	}
	if o.RetentionDays < 0 {
		return o, fmt.Errorf("storage: retention days must be >= 0, got %d", o.RetentionDays)
	}
	if o.Cluster != "" {
		if err := checkIdent("cluster", o.Cluster); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Migration is one versioned schema change.
type Migration struct {
	// Version orders migrations; the bookkeeping table records it.
	Version int
	// Name says what the migration does, such as "telemetry".
	Name string
	// Statements are what it runs, in order, rendered for the server: one
	// on a single server; on a cluster, a table's DDL and that of its
	// Distributed table.
	Statements []string
}

// Schema is the DDL Migrate runs on a server: the bookkeeping table, then the
// migrations in order.
type Schema struct {
	// Bookkeeping creates the table recording applied migrations.
	Bookkeeping []string
	// Migrations are sorted by Version.
	Migrations []Migration
}

// Latest is the version of the last migration.
func (s Schema) Latest() int {
	if len(s.Migrations) == 0 {
		return 0
	}
	return s.Migrations[len(s.Migrations)-1].Version
}

// String renders the schema as a SQL script, for review and golden tests.
func (s Schema) String() string {
	var b strings.Builder
	b.WriteString("-- bookkeeping\n")
	for _, st := range s.Bookkeeping {
		b.WriteString(st + ";\n")
	}
	for _, m := range s.Migrations {
		fmt.Fprintf(&b, "\n-- migration %04d: %s\n", m.Version, m.Name)
		for _, st := range m.Statements {
			b.WriteString(st + ";\n")
		}
	}
	return b.String()
}

// RenderSchema renders the DDL for a server with capabilities c. It is pure:
// Migrate runs exactly what it returns.
func RenderSchema(c Capabilities, o SchemaOptions) (Schema, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Schema{}, err
	}
	data := ddl{c: c, o: o}
	var s Schema
	files, err := fs.Glob(migrationFiles, "migrations/*.sql.tmpl")
	if err != nil {
		return Schema{}, fmt.Errorf("storage: list migrations: %w", err)
	}
	for _, f := range files {
		sql, err := data.render(f)
		if err != nil {
			return Schema{}, err
		}
		base := strings.TrimSuffix(path.Base(f), ".sql.tmpl")
		if path.Base(f) == bookkeepingFile {
			s.Bookkeeping = sql
			continue
		}
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return Schema{}, fmt.Errorf("storage: migration file %s is not named NNNN_name.sql.tmpl", f)
		}
		s.Migrations = append(s.Migrations, Migration{Version: v, Name: name, Statements: sql})
	}
	slices.SortFunc(s.Migrations, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(s.Migrations); i++ {
		if s.Migrations[i].Version == s.Migrations[i-1].Version {
			return Schema{}, fmt.Errorf("storage: two migrations numbered %d", s.Migrations[i].Version)
		}
	}
	if len(s.Bookkeeping) == 0 {
		return Schema{}, errors.New("storage: bookkeeping template missing")
	}
	return s, nil
}

// ddl is what the templates see: its methods render the parts of a column or
// table definition that depend on the server.
type ddl struct {
	c Capabilities
	o SchemaOptions
}

// statementBreak separates the statements a template renders. No
// statement has a semicolon of its own.
const statementBreak = ";\n"

// render executes one template file and returns its statements.
func (d ddl) render(file string) ([]string, error) {
	t, err := template.ParseFS(migrationFiles, file)
	if err != nil {
		return nil, fmt.Errorf("storage: parse %s: %w", file, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("storage: render %s: %w", file, err)
	}
	var out []string
	for _, st := range strings.Split(b.String(), statementBreak) {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out, nil
}

// Table is the qualified, quoted name of a table the DDL creates or alters:
// on a cluster, its local table, ON CLUSTER.
func (d ddl) Table(name string) string {
	if d.o.Cluster == "" {
		return quoteTable(d.o.Database, name)
	}
	return quoteTable(d.o.Database, localTable(name)) + onCluster(d.o.Cluster)
}

// Engine is the table engine engine, such as "MergeTree" or
// "ReplacingMergeTree(revision)": on a cluster, its Replicated variant,
// whose path in ZooKeeper is /clickhouse/tables/{shard}/<database>/<table>
// and whose replica is the server's {replica} macro.
func (d ddl) Engine(table, engine string) string {
	if d.o.Cluster == "" {
		return engine
	}
	name, args, _ := strings.Cut(strings.TrimSuffix(engine, ")"), "(")
	zk := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", d.o.Database, table)
	if args != "" {
		zk += ", " + args
	}
	return "Replicated" + name + "(" + zk + ")"
}

// Distributed is, on a cluster, the statement that creates the Distributed
// table over table's local tables, following the statement that created
// them; nothing on a single server. The Distributed table has the name
// reads and writes use, and the local table's columns.
func (d ddl) Distributed(table string) (string, error) {
	if d.o.Cluster == "" {
		return "", nil
	}
	create, err := d.createDistributed(table, table)
	return statementBreak + create, err
}

// Redistributed is, on a cluster, the statements that replace table's
// Distributed table after an ALTER of its local tables changed their
// columns; nothing on a single server. 18.16 refuses an ALTER ON CLUSTER of
// a Distributed table over replicated shards, and the Distributed table
// holds no data (inserts are synchronous), so one with the new columns is
// created beside it and swapped in by one RENAME, for which queries on the
// other nodes see no table for an instant only. The first DROP clears what
// a run cut short left.
func (d ddl) Redistributed(table string) (string, error) {
	if d.o.Cluster == "" {
		return "", nil
	}
	db, c := d.o.Database, onCluster(d.o.Cluster)
	fresh, old := table+"__new", table+"__old"
	create, err := d.createDistributed(table, fresh)
	if err != nil {
		return "", err
	}
	return strings.Join([]string{"",
		"DROP TABLE IF EXISTS " + quoteTable(db, old) + c,
		create,
		"RENAME TABLE " + quoteTable(db, table) + " TO " + quoteTable(db, old) + ", " +
			quoteTable(db, fresh) + " TO " + quoteTable(db, table) + c,
		"DROP TABLE IF EXISTS " + quoteTable(db, old) + c,
	}, statementBreak), nil
}

// createDistributed is the statement that creates, ON CLUSTER, the
// Distributed table name over table's local tables.
func (d ddl) createDistributed(table, name string) (string, error) {
	key, ok := shardingKeys[table]
	if !ok {
		return "", fmt.Errorf("storage: no sharding key for table %s", table)
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s AS %s\nENGINE = Distributed(`%s`, `%s`, `%s`, %s)",
		quoteTable(d.o.Database, name), onCluster(d.o.Cluster),
		quoteTable(d.o.Database, localTable(table)), d.o.Cluster, d.o.Database, localTable(table), key), nil
}

// shardingKeys is, per table, the expression the Distributed table spreads
// rows over shards by. It is deterministic, so that a retried batch splits
// into the same blocks, which ReplicatedMergeTree then deduplicates, and
// it keeps every version of a ReplacingMergeTree row on one shard, so that
// FINAL and argMax see them together.
var shardingKeys = map[string]string{
	"schema_migrations": "version",
	"telemetry":         "cityHash64(device)",
	"rejected":          "cityHash64(device)",
	"devices":           "cityHash64(id)",
	"registry":          "cityHash64(kind, key)",
	"device_status":     "cityHash64(device)",
	"alerts":            "cityHash64(id)",
	"alert_events":      "cityHash64(alert_id)",
	"camera_health":     "cityHash64(camera)",
	"silences":          "cityHash64(id)",
	"case_events":       "cityHash64(case_id)",
	"cases":             "cityHash64(id)",
	"case_summaries":    "cityHash64(case_id)",
}

// localTable is the name of the local table under a Distributed one.
func localTable(table string) string { return table + "_local" }

// onCluster is the ON CLUSTER clause of a DDL statement.
func onCluster(cluster string) string { return " ON CLUSTER `" + cluster + "`" }

// Time is the type of a millisecond timestamp column.
func (d ddl) Time() string {
	if d.c.DateTime64 {
		return "DateTime64(3, 'UTC')"
	}
	return "Int64"
}

// LowCardinality wraps typ where the server has LowCardinality.
func (d ddl) LowCardinality(typ string) string {
	if d.c.LowCardinality {
		return "LowCardinality(" + typ + ")"
	}
	return typ
}

// Codec is a CODEC clause where the server has codecs.
func (d ddl) Codec(codecs string) string {
	if d.c.Codecs {
		return " CODEC(" + codecs + ")"
	}
	return ""
}

// DateColumn adds, for Int64 timestamps, the Date column the table is
// partitioned by, computed from the timestamp column ts in UTC. It is
// MATERIALIZED, except on a cluster: a Distributed table of 18.16 computes
// a MATERIALIZED column and then sends it, which the local table refuses
// ("Cannot insert column date"), so there it is DEFAULT. Either way the
// writer never sends it.
func (d ddl) DateColumn(ts string) string {
	if d.c.DateTime64 {
		return ""
	}
	kind := "MATERIALIZED"
	if d.o.Cluster != "" {
		kind = "DEFAULT"
	}
	return fmt.Sprintf(",\n    `%s` Date %s toDate(toDateTime(intDiv(%s, 1000)), 'UTC')", DateColumn, kind, ts)
}

// DateColumn is the column that partitions the tables of servers without
// DateTime64 (see ddl.DateColumn).
const DateColumn = "date"

// Partition is the monthly partition key of a table timed by ts.
func (d ddl) Partition(ts string) string {
	if d.c.DateTime64 {
		return "toYYYYMM(" + ts + ")"
	}
	return "toYYYYMM(date)"
}

// TTL is the retention clause of a table timed by ts, when retention is set
// and the server has TTL.
func (d ddl) TTL(ts string) string {
	if !d.c.TTL || d.o.RetentionDays == 0 {
		return ""
	}
	base := "date"
	if d.c.DateTime64 {
		base = "toDateTime(" + ts + ")"
	}
	return fmt.Sprintf("\nTTL %s + INTERVAL %d DAY", base, d.o.RetentionDays)
}

// DedupSettings turns on insert deduplication for plain MergeTree tables
// where the writer sends insert_deduplication_token, so that a retried
// batch is stored once. Replicated tables deduplicate on every server (by
// the token, or by the block's checksum before 22.2), over a window shared
// through ZooKeeper by the shard's replicas; on a cluster it is widened to
// dedupWindow blocks from the 100 of 18.16.
func (d ddl) DedupSettings() string {
	switch {
	case d.o.Cluster != "":
		return fmt.Sprintf("\nSETTINGS replicated_deduplication_window = %d", dedupWindow)
	case d.c.InsertDeduplicationToken:
		return fmt.Sprintf("\nSETTINGS non_replicated_deduplication_window = %d", dedupWindow)
	}
	return ""
}

// Replicated reports whether the tables are replicated (on a cluster).
// 18.16 refuses some ALTERs of a replicated table that it takes on a plain
// one, such as COMMENT COLUMN ("Unsupported type of ALTER query").
func (d ddl) Replicated() bool { return d.o.Cluster != "" }

// IfNotExists is "IF NOT EXISTS " for ADD COLUMN where the server has it.
// Without it (18.16) Migrate takes the server's refusal of a column that is
// there already for the migration having run (DB.addedBefore).
func (d ddl) IfNotExists() string {
	if !d.c.AddColumnIfNotExists {
		return ""
	}
	return "IF NOT EXISTS "
}

// CaseSummaries is the INSERT that computes the case_summaries row of
// every case from the events stored in case_events (on a cluster, through
// the Distributed tables, which keep a case's events and summary on one
// shard). Run twice (a crash before it is recorded), it stores each row
// twice with the same version, which reading FINAL keeps once.
func (d ddl) CaseSummaries() string {
	return "INSERT INTO " + quoteTable(d.o.Database, "case_summaries") + " (" + strings.Join(caseSummaryColumns, ", ") + ")\n" +
		caseSummarySelect(d.c, d.o.Database, "1")
}

// quoteTable returns `db`.`table`; both must have passed checkIdent.
func quoteTable(db, table string) string {
	return "`" + db + "`.`" + table + "`"
}

// Migrate brings the database to the latest schema: it creates the
// bookkeeping table, then applies, in order, every migration not recorded
// there, recording each after it ran. Migrations are idempotent statements
// (CREATE ... IF NOT EXISTS), so a crash between running and recording one,
// or two nodes migrating at once, is harmless. On a cluster the statements
// run ON CLUSTER, which waits for every server of the cluster: migrate with
// every replica up (an ALTER that adds columns runs on one replica of each
// shard instead; see addOnEachShard). Each statement waits up to ddlTimeout, not the
// server's default of 180 seconds, which a busy replica's DDL worker can
// overrun on a fresh database's first migrations. Then, once per database, it
// seals the RTSP passwords that earlier versions stored in plain text (with
// Options.Secrets; see sealPlainSecretsOnce).
func (db *DB) Migrate(ctx context.Context) error {
	ddlConn := db.conn
	if db.opts.Cluster != "" {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
			"distributed_ddl_task_timeout": int(ddlTimeout / time.Second)}))
		// The server sends nothing while a statement waits for the
		// cluster, so the pool's read timeout (5 minutes by default) would
		// end a wait that ddlTimeout allows.
		o := db.opts
		o.ReadTimeout = max(o.ReadTimeout, ddlTimeout+time.Minute)
		c, err := dial(o, append([]string{o.Addr}, o.Failover...), 1, 1)
		if err != nil {
			return err
		}
		defer c.Close()
		ddlConn = c
	}
	s, err := db.Schema()
	if err != nil {
		return err
	}
	applied, err := db.appliedVersions(ctx)
	if err != nil {
		return err
	}
	// The bookkeeping table is created only when missing: on a cluster its
	// DDL runs ON CLUSTER, which waits for every server's DDL worker, so a
	// node restarted just after ZooKeeper came back (the workers still
	// reconnecting) would wait minutes for a table that is there.
	if applied == nil {
		for _, st := range s.Bookkeeping {
			if err := ddlConn.Exec(ctx, st); err != nil {
				return fmt.Errorf("storage: create bookkeeping table: %w", err)
			}
		}
		applied = map[int]bool{}
	}
	n := 0
	for _, m := range s.Migrations {
		if applied[m.Version] {
			continue
		}
		for _, st := range m.Statements {
			if db.columnsThere(ctx, st) {
				db.logger.Info("migration's columns are there already on every server: not run again",
					"database", db.opts.Database, "version", m.Version, "name", m.Name)
				continue
			}
			run := func() error { return ddlConn.Exec(ctx, st) }
			if _, _, adds := addsOnly(st); adds && db.opts.Cluster != "" {
				run = func() error { return db.addOnEachShard(ctx, st) }
			}
			if err := run(); err != nil {
				if !db.addedBefore(st, err) {
					return fmt.Errorf("storage: migration %04d %s: %w", m.Version, m.Name, err)
				}
				db.logger.Info("migration's columns are there already: it ran before it was recorded",
					"database", db.opts.Database, "version", m.Version, "name", m.Name)
			}
		}
		if err := db.recordMigration(ctx, m.Version, m.Name); err != nil {
			return err
		}
		db.logger.Info("applied migration", "database", db.opts.Database, "version", m.Version, "name", m.Name)
		n++
	}
	db.logger.Info("schema up to date", "database", db.opts.Database, "version", s.Latest(), "applied", n,
		"server", db.caps.Version.String())
	return db.sealPlainSecretsOnce(ctx, applied)
}

// addedBefore reports whether err, from running statement st of a
// migration, says that the columns st adds are there already, on a server
// without ADD COLUMN IF NOT EXISTS (18.16). ClickHouse checks every
// command of an ALTER before it changes anything, so the columns are there
// because st ran before: it was not recorded (a crash between running and
// recording it), or its record has not reached the replica this Migrate
// read the bookkeeping table through.
func (db *DB) addedBefore(st string, err error) bool {
	var ex *clickhouse.Exception
	return !db.caps.AddColumnIfNotExists && strings.Contains(st, "ADD COLUMN") &&
		errors.As(err, &ex) && (ex.Code == codeDuplicateColumn || ex.Code == codeIllegalColumn) &&
		strings.Contains(ex.Message, "already exists")
}

// alterAdd matches a migration's statement that only adds columns to a
// table: ALTER TABLE `db`.`table` [ON CLUSTER c] ADD COLUMN ..., ...;
// addedColumn finds the name of each column it adds.
var (
	alterAdd    = regexp.MustCompile("^\\s*ALTER TABLE `[^`]+`\\.`([^`]+)`(?: ON CLUSTER `[^`]+`)?\\s+ADD COLUMN ")
	addedColumn = regexp.MustCompile("ADD COLUMN (?:IF NOT EXISTS )?`([^`]+)`")
	command     = regexp.MustCompile(",\\s*\\n\\s*[A-Z]")
)

// addsOnly returns the table st alters and the columns it adds, when st
// only adds columns (no command of another kind).
func addsOnly(st string) (table string, columns []string, ok bool) {
	m := alterAdd.FindStringSubmatch(st)
	if m == nil {
		return "", nil, false
	}
	adds := addedColumn.FindAllStringSubmatch(st, -1)
	if len(command.FindAllString(st, -1))+1 != len(adds) {
		return "", nil, false
	}
	for _, a := range adds {
		columns = append(columns, a[1])
	}
	return m[1], columns, true
}

// columnsThere reports whether st only adds columns, and every server of
// the cluster (the one connected on a single server) has them all: its
// migration ran before it was recorded, or its record has not reached
// the replica the bookkeeping was read through. Such a statement is not
// run again. On a cluster an ALTER that finds its columns there fails on
// every replica, and 18.16 then sometimes left the DDL task unfinished on
// one host past distributed_ddl_task_timeout (TestClusterSchema, run 311:
// migration 0013 run again waited 300 s). Any doubt (a server that does
// not answer, a command other than ADD COLUMN) runs it.
func (db *DB) columnsThere(ctx context.Context, st string) bool {
	table, columns, ok := addsOnly(st)
	if !ok {
		return false
	}
	conns := []driver.Conn{db.conn}
	if db.opts.Cluster != "" {
		others, err := db.otherReplicas(ctx)
		if err != nil {
			return false
		}
		for _, r := range others {
			conns = append(conns, r.conn)
		}
	}
	for _, conn := range conns {
		have := map[string]bool{}
		rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ?", db.opts.Database, table)
		if err != nil {
			return false
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return false
			}
			have[name] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return false
		}
		for _, c := range columns {
			if !have[c] {
				return false
			}
		}
	}
	return true
}

// addOnEachShard runs st, a migration's ALTER ON CLUSTER that only adds
// columns to a replicated local table, without ON CLUSTER on one replica of
// each shard of the cluster, whose replicated table hands the ALTER on to
// the shard's other replicas through ZooKeeper; then it waits until every
// server has the columns. ON CLUSTER, 18.16's DDL worker has every replica
// of a shard race for the shard's lock to run such an ALTER, and under
// load one replica ran it after another had and then stopped its DDL worker
// on "Node exists: .../executed", leaving that and every later DDL task
// unfinished on it (a fresh-clone run of TestClusterReplicaStoppedUnderLoad:
// migration 0016 waited past distributed_ddl_task_timeout, code 159).
func (db *DB) addOnEachShard(ctx context.Context, st string) error {
	local := strings.Replace(st, onCluster(db.opts.Cluster), "", 1)
	rows, err := db.conn.Query(ctx, "SELECT shard_num, host_name, toUInt16(port) FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", db.opts.Cluster)
	if err != nil {
		return fmt.Errorf("storage: list the shards of cluster %s: %w", db.opts.Cluster, err)
	}
	shards := map[uint32][]string{}
	var order []uint32
	for rows.Next() {
		var (
			shard uint32
			host  string
			port  uint16
		)
		if err := rows.Scan(&shard, &host, &port); err != nil {
			rows.Close()
			return fmt.Errorf("storage: list the shards of cluster %s: %w", db.opts.Cluster, err)
		}
		if shards[shard] == nil {
			order = append(order, shard)
		}
		shards[shard] = append(shards[shard], net.JoinHostPort(host, strconv.Itoa(int(port))))
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return fmt.Errorf("storage: list the shards of cluster %s: %w", db.opts.Cluster, err)
	}
	for _, shard := range order {
		if err := db.execOnOne(ctx, shards[shard], local); err != nil && !db.addedBefore(local, err) {
			return fmt.Errorf("storage: shard %d: %w", shard, err)
		}
	}
	wait, cancel := context.WithTimeout(ctx, ddlTimeout)
	defer cancel()
	tick := time.NewTicker(ddlPoll)
	defer tick.Stop()
	for !db.columnsThere(wait, st) {
		select {
		case <-wait.Done():
			return fmt.Errorf("storage: the columns added on each shard's first replica did not reach every replica within %s: %w", ddlTimeout, wait.Err())
		case <-tick.C:
		}
	}
	return nil
}

// ddlPoll is how often addOnEachShard looks whether every replica has the
// columns added.
const ddlPoll = 200 * time.Millisecond

// execOnOne runs st on the first of addrs (a shard's replicas) that takes
// it: a replica that cannot be reached, or fails with a transient error,
// leaves it to the next.
func (db *DB) execOnOne(ctx context.Context, addrs []string, st string) error {
	o := db.opts
	o.ReadTimeout = max(o.ReadTimeout, ddlTimeout+time.Minute)
	var err error
	for _, addr := range addrs {
		var conn driver.Conn
		if conn, err = dial(o, []string{addr}, 1, 1); err != nil {
			return err // the options, not the server: dialing is lazy
		}
		err = conn.Exec(ctx, st)
		conn.Close()
		if err == nil || Classify(err) != Transient {
			return err
		}
	}
	return err
}

// ddlTimeout is how long a migration's statement on a cluster waits for
// every server to run it (distributed_ddl_task_timeout). A statement that
// timed out is still queued; the next Migrate runs it again, harmlessly.
const ddlTimeout = 10 * time.Minute

// recordMigration records in the bookkeeping table that version ran.
func (db *DB) recordMigration(ctx context.Context, version int, name string) error {
	record := "INSERT INTO " + quoteTable(db.opts.Database, "schema_migrations") + " (version, name)"
	if err := insertColumns(ctx, db.conn, record, []any{[]uint32{uint32(version)}, []string{name}}); err != nil {
		return fmt.Errorf("storage: record migration %04d %s: %w", version, name, err)
	}
	return nil
}

// sealPassVersion and sealPassName record in the bookkeeping table that
// sealPlainSecrets ran on the database. Version 0 is one no migration file
// can have, and Ready does not look for it.
const (
	sealPassVersion = 0
	sealPassName    = "seal_rtsp_passwords"
)

// sealPlainSecretsOnce runs sealPlainSecrets on a database where no
// earlier Migrate did, and records that it ran, so that it scans the
// registry once per database rather than at every start and admin command.
// Without Options.Secrets it does nothing and records nothing: the next
// Migrate with a key (every serve has one) runs it.
func (db *DB) sealPlainSecretsOnce(ctx context.Context, applied map[int]bool) error {
	if db.opts.Secrets == nil || applied[sealPassVersion] {
		return nil
	}
	sealed, err := db.sealPlainSecrets(ctx)
	if sealed > 0 {
		db.logger.Info("sealed RTSP passwords stored in plain text by an earlier version", "devices", sealed)
	}
	if err != nil {
		return err
	}
	return db.recordMigration(ctx, sealPassVersion, sealPassName)
}

// Schema returns the DDL Migrate runs on this server.
func (db *DB) Schema() (Schema, error) {
	return RenderSchema(db.layout, SchemaOptions{Database: db.opts.Database, RetentionDays: db.opts.RetentionDays, Cluster: db.opts.Cluster})
}

// appliedVersions reads the migration versions recorded in the database. A
// missing bookkeeping table means none: the map is nil.
func (db *DB) appliedVersions(ctx context.Context) (map[int]bool, error) {
	rows, err := db.conn.Query(ctx, "SELECT DISTINCT version FROM "+quoteTable(db.opts.Database, "schema_migrations"))
	if isMissing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read applied migrations: %w", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("storage: read applied migrations: %w", err)
		}
		applied[int(v)] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: read applied migrations: %w", err)
	}
	return applied, nil
}

// Ready reports whether the server answers and the schema is at the latest
// version; the error says which is wrong. It backs /readyz.
func (db *DB) Ready(ctx context.Context) error {
	if err := db.conn.Ping(ctx); err != nil {
		return fmt.Errorf("storage: ping %s: %w", db.opts.Addr, err)
	}
	s, err := db.Schema()
	if err != nil {
		return err
	}
	applied, err := db.appliedVersions(ctx)
	if err != nil {
		return err
	}
	var missing []string
	for _, m := range s.Migrations {
		if !applied[m.Version] {
			missing = append(missing, fmt.Sprintf("%04d_%s", m.Version, m.Name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: database %s lacks migrations %s (run gridwatch migrate)",
			ErrSchemaOutdated, db.opts.Database, strings.Join(missing, ", "))
	}
	return nil
}

// isMissing reports whether err is ClickHouse saying a table or database
// does not exist.
func isMissing(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && (ex.Code == codeUnknownTable || ex.Code == codeUnknownDatabase)
}
