package storage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// migrationFiles holds the DDL templates. A file named NNNN_name.sql.tmpl is
// migration NNNN; schema_migrations.sql.tmpl is the bookkeeping table that
// records which migrations a database has. Each file is one statement: the
// native protocol runs one statement per query.
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
	return o, nil
}

// Migration is one versioned schema change.
type Migration struct {
	// Version orders migrations; the bookkeeping table records it.
	Version int
	// Name says what the migration does, such as "telemetry".
	Name string
	// SQL is the statement, rendered for the server.
	SQL string
}

// Schema is the DDL Migrate runs on a server: the bookkeeping table, then the
// migrations in order.
type Schema struct {
	// Bookkeeping creates the table recording applied migrations.
	Bookkeeping string
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
	b.WriteString(s.Bookkeeping)
	b.WriteString(";\n")
	for _, m := range s.Migrations {
		fmt.Fprintf(&b, "\n-- migration %04d: %s\n%s;\n", m.Version, m.Name, m.SQL)
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
		s.Migrations = append(s.Migrations, Migration{Version: v, Name: name, SQL: sql})
	}
	slices.SortFunc(s.Migrations, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(s.Migrations); i++ {
		if s.Migrations[i].Version == s.Migrations[i-1].Version {
			return Schema{}, fmt.Errorf("storage: two migrations numbered %d", s.Migrations[i].Version)
		}
	}
	if s.Bookkeeping == "" {
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

// render executes one template file.
func (d ddl) render(file string) (string, error) {
	t, err := template.ParseFS(migrationFiles, file)
	if err != nil {
		return "", fmt.Errorf("storage: parse %s: %w", file, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("storage: render %s: %w", file, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// Table is the qualified, quoted name of a table.
func (d ddl) Table(name string) string { return quoteTable(d.o.Database, name) }

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
// partitioned by, computed from the timestamp column ts in UTC.
func (d ddl) DateColumn(ts string) string {
	if d.c.DateTime64 {
		return ""
	}
	return fmt.Sprintf(",\n    `date` Date MATERIALIZED toDate(toDateTime(intDiv(%s, 1000)), 'UTC')", ts)
}

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
// batch is stored once.
func (d ddl) DedupSettings() string {
	if !d.c.InsertDeduplicationToken {
		return ""
	}
	return fmt.Sprintf("\nSETTINGS non_replicated_deduplication_window = %d", dedupWindow)
}

// IfNotExists is "IF NOT EXISTS " for ADD COLUMN where the server has it.
// Without it (18.16) an ADD COLUMN migration is not idempotent: a crash
// between running and recording it needs the column dropped by hand.
func (d ddl) IfNotExists() string {
	if !d.c.AddColumnIfNotExists {
		return ""
	}
	return "IF NOT EXISTS "
}

// quoteTable returns `db`.`table`; both must have passed checkIdent.
func quoteTable(db, table string) string {
	return "`" + db + "`.`" + table + "`"
}

// Migrate brings the database to the latest schema: it creates the
// bookkeeping table, then applies, in order, every migration not recorded
// there, recording each after it ran. Migrations are idempotent statements
// (CREATE ... IF NOT EXISTS), so a crash between running and recording one,
// or two nodes migrating at once, is harmless. Then, once per database, it
// seals the RTSP passwords that earlier versions stored in plain text (with
// Options.Secrets; see sealPlainSecretsOnce).
func (db *DB) Migrate(ctx context.Context) error {
	s, err := db.Schema()
	if err != nil {
		return err
	}
	if err := db.conn.Exec(ctx, s.Bookkeeping); err != nil {
		return fmt.Errorf("storage: create bookkeeping table: %w", err)
	}
	applied, err := db.appliedVersions(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, m := range s.Migrations {
		if applied[m.Version] {
			continue
		}
		if err := db.conn.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("storage: migration %04d %s: %w", m.Version, m.Name, err)
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
	return RenderSchema(db.layout, SchemaOptions{Database: db.opts.Database, RetentionDays: db.opts.RetentionDays})
}

// appliedVersions reads the migration versions recorded in the database. A
// missing bookkeeping table means none.
func (db *DB) appliedVersions(ctx context.Context) (map[int]bool, error) {
	rows, err := db.conn.Query(ctx, "SELECT DISTINCT version FROM "+quoteTable(db.opts.Database, "schema_migrations"))
	if isMissing(err) {
		return map[int]bool{}, nil
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
