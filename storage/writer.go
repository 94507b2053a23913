package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// WriterOptions are the settings of a Writer.
type WriterOptions struct {
	// MaxAttempts is how many times one batch is tried before it is given
	// up. It defaults to 5.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; it doubles, with
	// jitter, up to MaxBackoff. It defaults to 500 milliseconds.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between retries. It defaults to 10 seconds.
	MaxBackoff time.Duration
	// Logger receives failures. It defaults to discarding.
	Logger *slog.Logger
	// Registerer, when set, receives the writer's metrics.
	Registerer prometheus.Registerer
	// SettleTimeout bounds how long an INSERT whose caller gave up on it
	// (its context ended) goes on waiting for the server's answer, and then
	// how long the writer tries to see the server no longer runs it; until
	// then Stored waits for its batch ids (see Writer). It defaults to 5
	// minutes.
	SettleTimeout time.Duration
}

// Defaults of WriterOptions.
const (
	DefaultMaxAttempts    = 5
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultSettleTimeout  = 5 * time.Minute
)

// Writer inserts Arrow records into ClickHouse tables through the native
// protocol, one INSERT per record, appending whole columns. It is safe for
// concurrent use.
//
// Failure policy: transient errors (network, server down or restarting,
// timeouts, too many parts or queries, memory; see Classify) are retried
// with exponential backoff up to MaxAttempts; permanent and unclassified
// ones (unknown table or column, type mismatch, syntax, Arrow types or nulls
// the writer cannot store, a server code on neither list) are not. Either
// way Write then returns a *WriteError and the batch is not stored: the
// caller spools it (storage/spool) or counts its rows as dropped. A retry
// after an ambiguous failure may store a batch twice on servers without
// insert_deduplication_token.
//
// An INSERT's outcome is unknown once its rows were sent and no answer came:
// the caller's context ended (ingest.insert_timeout, while ClickHouse is
// stopped or slow) or the connection failed. The server may store the rows
// later: a stopped server reads them from its socket when it resumes. So an
// attempt is not cut short when its caller gives up: it runs under a query
// id of its own and goes on, for up to SettleTimeout, until the server
// answers; if none comes, the writer waits until system.processes no longer
// shows that query id, asking the server to KILL it. Until then the batch
// ids are in doubt: Stored waits for them, so that a replay that asks the
// ledger first (the spool's, Import) never stores a batch that its first
// INSERT stores too. On a table with BatchColumn, an attempt in doubt is
// not retried by WriteParts: the caller replays the batch through Stored.
// The attempt goroutines belong to the writer and end within about twice
// SettleTimeout.
//
// A replicated table (Options.Cluster) that loses ZooKeeper while it
// commits a part answers "unknown status" (UNKNOWN_STATUS_OF_INSERT): it
// keeps the part, which queries see, until a check finds the commit did
// not go through and drops it. Any other failure after the rows were sent
// may have left some of the INSERT's parts committed (see noteStatus).
// Stored does not trust the ledger for a batch whose last INSERT was so
// answered: it reports it not stored, so that the replay sends the block
// again and the shard's block checksums in ZooKeeper decide (see the
// README, "The ClickHouse cluster").
type Writer struct {
	db      *DB
	o       WriterOptions
	metrics *writerMetrics
	ledger  sync.Map // table name -> bool: the table has BatchColumn

	mu      sync.Mutex
	doubt   map[string]*attempt // batch id -> the INSERT of it in doubt
	unknown map[string]bool     // batch ids whose last INSERT had an unknown status
}

// attempt is one INSERT of some batches; done is closed once the server
// answered it or is seen not to run it.
type attempt struct {
	queryID string
	done    chan struct{}
}

// NewWriter returns a writer into db's database, registering its metrics on
// o.Registerer.
func NewWriter(db *DB, o WriterOptions) (*Writer, error) {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = DefaultSettleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newWriterMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Writer{db: db, o: o, metrics: m, doubt: make(map[string]*attempt), unknown: make(map[string]bool)}, nil
}

// BatchColumn is the column, on tables that have it (telemetry, from
// migration 0009), where every row records the id of the batch that brought
// it. Rows and ids land in one INSERT, so the ids are a ledger that is
// atomic with the data: Stored tells a batch that was stored although its
// INSERT's answer was lost from one that was not, on servers without insert
// deduplication.
const BatchColumn = "batch"

// Part is one batch of rows for WriteParts.
type Part struct {
	// ID is the batch id, recorded in BatchColumn where the table has it.
	ID string
	// Record holds the rows; every Part of a write has the same schema.
	Record arrow.Record
}

// Write inserts rec into table as one INSERT whose columns are rec's field
// names. batchID identifies the batch across retries: where the server has
// insert_deduplication_token it is sent as that token, so a retried batch
// is stored once. An empty record is a no-op. See Writer for the failure
// policy; errors are *WriteError.
func (w *Writer) Write(ctx context.Context, table, batchID string, rec arrow.Record) error {
	return w.WriteParts(ctx, table, []Part{{ID: batchID, Record: rec}})
}

// WriteParts inserts parts, records of one schema, into table as one INSERT:
// all of them are stored or none. It is how a spool replays many batches at
// once. Each row's BatchColumn, where the table has it, is its part's ID;
// the deduplication token is the ids joined. See Write.
func (w *Writer) WriteParts(ctx context.Context, table string, parts []Part) error {
	rows := 0
	ids := make([]string, len(parts))
	for i, p := range parts {
		rows += int(p.Record.NumRows())
		ids[i] = p.ID
	}
	if rows == 0 {
		return nil
	}
	batchID := strings.Join(ids, ",")
	fail := func(attempts int, class ErrorClass, err error) error {
		w.metrics.failed.WithLabelValues(table, class.String()).Inc()
		w.o.Logger.Error("insert failed, batch not stored", "table", table, "batch", batchID,
			"rows", rows, "attempts", attempts, "kind", class, "err", err)
		return &WriteError{Table: table, BatchID: batchID, Rows: rows, Attempts: attempts, Class: class, Err: err}
	}
	ledger, err := w.hasLedger(ctx, table)
	if err != nil {
		return fail(0, Transient, err)
	}
	query, cols, err := w.prepare(table, parts, ledger)
	if err != nil {
		return fail(0, Classify(err), err)
	}
	if batchID != "" && w.db.caps.InsertDeduplicationToken {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": batchID}))
	}
	var (
		attempts int
		class    = Transient // of the error that ended the attempts
		lastErr  error
	)
	op := func() error {
		attempts++
		start := time.Now()
		doubt, err := w.insert(ctx, query, cols, parts)
		w.metrics.latency.WithLabelValues(table).Observe(time.Since(start).Seconds())
		if err != nil {
			if class = Classify(err); class != Transient {
				return backoff.Permanent(err)
			}
			if doubt && ledger {
				// Another try could store the batch twice: the caller
				// replays it through Stored, which waits for this one.
				return backoff.Permanent(err)
			}
		}
		lastErr = err
		return err
	}
	notify := func(err error, wait time.Duration) {
		w.metrics.retries.WithLabelValues(table).Inc()
		w.o.Logger.Debug("insert failed, retrying", "table", table, "batch", batchID,
			"attempt", attempts, "wait", wait, "err", err)
	}
	policy := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.o.InitialBackoff),
		backoff.WithMaxInterval(w.o.MaxBackoff),
		backoff.WithMaxElapsedTime(0),
	)
	err = backoff.RetryNotify(op, backoff.WithContext(backoff.WithMaxRetries(policy, uint64(w.o.MaxAttempts-1)), ctx), notify)
	if err != nil {
		if class == Transient && lastErr != nil && !errors.Is(err, lastErr) {
			err = fmt.Errorf("%w (last error: %w)", err, lastErr)
		}
		return fail(attempts, class, err)
	}
	w.metrics.rows.WithLabelValues(table).Add(float64(rows))
	w.metrics.batches.WithLabelValues(table).Inc()
	return nil
}

// insert runs one INSERT attempt of parts, whose column values are cols,
// under a query id of its own, in a goroutine that goes on when ctx ends (see
// Writer) and holds a reference to the parts' records (cols are their
// buffers) while it runs; ctx's values, such as its settings, are kept.
// doubt reports that the server may store
// the rows, or have stored them, although err says the attempt failed: ctx
// ended, or the connection failed after the rows were sent.
func (w *Writer) insert(ctx context.Context, query string, cols [][]any, parts []Part) (doubt bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	a := &attempt{queryID: rand.Text(), done: make(chan struct{})}
	w.mu.Lock()
	for _, p := range parts {
		p.Record.Retain()
		w.doubt[p.ID] = a
	}
	w.mu.Unlock()
	type result struct {
		doubt bool
		err   error
	}
	res := make(chan result, 1)
	go func() {
		defer close(a.done)
		qctx, cancel := context.WithTimeout(clickhouse.Context(context.WithoutCancel(ctx), clickhouse.WithQueryID(a.queryID)), w.o.SettleTimeout)
		sent, err := insertChunks(qctx, w.db.conn, query, cols)
		cancel()
		var ex *clickhouse.Exception
		doubt := err != nil && sent && !errors.As(err, &ex) // a server exception is an answer
		if doubt {
			w.settle(a.queryID)
		}
		// The answer, even one that comes after the caller gave up, is
		// noted before the batches leave doubt: Stored, which waits for
		// them, must then see an unknown status.
		w.noteStatus(parts, sent, err)
		w.mu.Lock()
		for _, p := range parts {
			if w.doubt[p.ID] == a {
				delete(w.doubt, p.ID)
			}
			p.Record.Release()
		}
		w.mu.Unlock()
		res <- result{doubt, err}
	}()
	select {
	case r := <-res:
		return r.doubt, r.err
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// noteStatus records that the INSERT of parts, which ended with err, had an
// unknown status (see Writer), and forgets it once one succeeds: the
// replicated table then stored the block, or found it stored. On a
// cluster every failure after the rows were sent is an unknown status: a
// block is a part per partition (and an INSERT may send several blocks),
// committed one after another, so one that failed may have left others
// committed, which the ledger would show as the whole batch; sent again,
// the block checksums store only what is missing.
func (w *Writer) noteStatus(parts []Part, sent bool, err error) {
	var ex *clickhouse.Exception
	unknown := errors.As(err, &ex) && ex.Code == codeUnknownStatus ||
		err != nil && sent && w.db.opts.Cluster != ""
	if err != nil && !unknown {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range parts {
		if unknown {
			w.unknown[p.ID] = true
		} else {
			delete(w.unknown, p.ID)
		}
	}
}

// settle waits, for up to SettleTimeout, until the server does not run the
// query queryID, which it never answered, asking it to KILL the query.
func (w *Writer) settle(queryID string) {
	ctx, cancel := context.WithTimeout(context.Background(), w.o.SettleTimeout)
	defer cancel()
	check := func() error {
		var n uint64
		if err := w.db.conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query_id = ?", queryID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if err := w.db.conn.Exec(ctx, "KILL QUERY WHERE query_id = ? ASYNC", queryID); err != nil {
			return err
		}
		return fmt.Errorf("INSERT %s still running", queryID)
	}
	policy := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	if err := backoff.Retry(check, backoff.WithContext(policy, ctx)); err != nil {
		w.o.Logger.Warn("an unanswered INSERT may still be stored; a replay of its batches may store them twice",
			"query_id", queryID, "err", err)
	}
}

// awaitSettled waits until no INSERT in doubt holds any of ids, or ctx ends.
func (w *Writer) awaitSettled(ctx context.Context, ids []string) error {
	for _, id := range ids {
		w.mu.Lock()
		a := w.doubt[id]
		w.mu.Unlock()
		if a == nil {
			continue
		}
		select {
		case <-a.done:
		case <-ctx.Done():
			return fmt.Errorf("storage: batch %s: its INSERT %s is not answered yet: %w", id, a.queryID, ctx.Err())
		}
	}
	return nil
}

// hasLedger reports whether table has BatchColumn, asking the server once
// per table.
func (w *Writer) hasLedger(ctx context.Context, table string) (bool, error) {
	if v, ok := w.ledger.Load(table); ok {
		return v.(bool), nil
	}
	var n uint64
	err := w.db.conn.QueryRow(ctx,
		"SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?",
		w.db.opts.Database, table, BatchColumn).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up %s.%s column: %w", table, BatchColumn, err)
	}
	w.ledger.Store(table, n > 0)
	return n > 0, nil
}

// Stored returns which of the parts' batch ids have rows in table, reading
// the ledger column. On a table without BatchColumn it returns none (replays
// into it are at least once).
//
// The lookup is bounded by the parts' time range: a batch's rows are stored
// with its own ts values, so only rows within the least and the greatest ts
// of the parts can carry its id. The bound lets ClickHouse skip every other
// monthly partition (by the date column on 18.16's layout, which is what its
// partition index covers) and, within one, the granules whose ts lies
// outside, instead of reading the batch column of all history. Parts without
// a ts column of timestamps are looked up unbounded.
//
// It first waits for the INSERTs of the parts' batches that are in doubt
// (see Writer): until the server answered them, the ledger cannot tell. A
// batch whose last INSERT had an unknown status, and one over several
// partitions (spansPartitions), are reported not stored whatever the
// ledger says (see Writer).
func (w *Writer) Stored(ctx context.Context, table string, parts []Part) (map[string]bool, error) {
	out := make(map[string]bool)
	if len(parts) == 0 {
		return out, nil
	}
	if err := checkIdent("table", table); err != nil {
		return nil, err
	}
	ledger, err := w.hasLedger(ctx, table)
	if err != nil || !ledger {
		return out, err
	}
	ids := make([]string, len(parts))
	for i, p := range parts {
		ids[i] = p.ID
	}
	if err := w.awaitSettled(ctx, ids); err != nil {
		return nil, err
	}
	bound, args := w.tsBound(parts)
	query := "SELECT DISTINCT " + BatchColumn + " FROM " + quoteTable(w.db.opts.Database, table) + " WHERE " +
		bound + "has(?, " + BatchColumn + ")"
	args = append(args, ids)
	rows, err := w.db.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: ledger lookup in %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: ledger lookup in %s: %w", table, err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: ledger lookup in %s: %w", table, err)
	}
	w.mu.Lock()
	for id := range out {
		if w.unknown[id] {
			delete(out, id)
		}
	}
	w.mu.Unlock()
	for _, p := range parts {
		if out[p.ID] && spansPartitions(p) {
			delete(out, p.ID)
		}
	}
	return out, nil
}

// spansPartitions reports whether p is a batch of readings over more than
// one monthly partition (see ddl.Partition). The server commits an
// INSERT's part of each partition one after another, so an INSERT of p
// that failed, or a process killed during it, may have left some
// committed: the ledger then shows p, which Stored does not trust, and
// the rows found stored are left out of its replay instead (Unstored,
// UnstoredInDoubt). Before, the replay skipped such a batch, and the rows
// of the partitions not committed were lost.
func spansPartitions(p Part) bool {
	if readingColumns(p.Record) == nil {
		return false
	}
	lo, hi, ok := tsRange([]Part{p})
	if !ok {
		return false
	}
	a, b := time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC()
	return a.Year() != b.Year() || a.Month() != b.Month()
}

// tsBound returns the condition, ending in " AND ", and its arguments that
// bound a lookup of parts' rows by their time range (see Stored); none for
// parts without a ts column of timestamps.
func (w *Writer) tsBound(parts []Part) (string, []any) {
	lo, hi, ok := tsRange(parts)
	if !ok {
		return "", nil
	}
	cond := "ts >= " + w.db.fromMsExpr() + " AND ts <= " + w.db.fromMsExpr() + " AND "
	args := []any{lo, hi}
	if !w.db.layout.DateTime64 {
		// The partition key is the materialized date, toDate(ts / 1000)
		// in UTC: the partition index prunes on it, not on ts.
		cond += "date >= toDate(?) AND date <= toDate(?) AND "
		args = append(args, time.UnixMilli(lo).UTC().Format(time.DateOnly), time.UnixMilli(hi).UTC().Format(time.DateOnly))
	}
	return cond, args
}

// tsRange returns the least and the greatest value, in epoch milliseconds,
// of the ts columns of parts; ok is false when a part has no ts column of
// millisecond timestamps or no rows at all.
func tsRange(parts []Part) (lo, hi int64, ok bool) {
	lo, hi = math.MaxInt64, math.MinInt64
	for _, p := range parts {
		idx := p.Record.Schema().FieldIndices("ts")
		if len(idx) != 1 {
			return 0, 0, false
		}
		col, isTS := p.Record.Column(idx[0]).(*array.Timestamp)
		if !isTS || col.DataType().(*arrow.TimestampType).Unit != arrow.Millisecond || col.NullN() > 0 {
			return 0, 0, false
		}
		for _, v := range col.TimestampValues() {
			lo, hi = min(lo, int64(v)), max(hi, int64(v))
		}
	}
	return lo, hi, lo <= hi
}

// prepare builds the INSERT statement and the column slices of the parts,
// once for all attempts: cols[i] holds one slice per part for column i.
// With ledger, the last column is BatchColumn.
func (w *Writer) prepare(table string, parts []Part, ledger bool) (string, [][]any, error) {
	if err := checkIdent("table", table); err != nil {
		return "", nil, err
	}
	schema := parts[0].Record.Schema()
	fields := schema.Fields()
	names := make([]string, 0, len(fields)+1)
	cols := make([][]any, 0, len(fields)+1)
	for i, f := range fields {
		if err := checkIdent("column", f.Name); err != nil {
			return "", nil, err
		}
		names = append(names, "`"+f.Name+"`")
		col := make([]any, len(parts))
		for j, p := range parts {
			if !p.Record.Schema().Equal(schema) {
				return "", nil, fmt.Errorf("%w: part %d has another schema", ErrUnsupportedType, j)
			}
			v, err := columnValues(p.Record.Column(i))
			if err != nil {
				return "", nil, fmt.Errorf("column %s: %w", f.Name, err)
			}
			col[j] = v
		}
		cols = append(cols, col)
	}
	if ledger {
		names = append(names, "`"+BatchColumn+"`")
		col := make([]any, len(parts))
		for j, p := range parts {
			col[j] = slices.Repeat([]string{p.ID}, int(p.Record.NumRows()))
		}
		cols = append(cols, col)
	}
	query := "INSERT INTO " + quoteTable(w.db.opts.Database, table) + " (" + strings.Join(names, ", ") + ")"
	return query, cols, nil
}

// insertColumns runs one INSERT of whole columns: query names the table and
// its columns, cols holds one slice per column, in that order. Inline
// VALUES are not an option: 18.16 waits for a data block after any INSERT.
func insertColumns(ctx context.Context, conn driver.Conn, query string, cols []any) error {
	chunks := make([][]any, len(cols))
	for i, c := range cols {
		chunks[i] = []any{c}
	}
	_, err := insertChunks(ctx, conn, query, chunks)
	return err
}

// insertChunks is insertColumns with each column given in chunks, appended
// one after the other into the same block. sent reports that the rows went
// to the server: from then on a failure may leave them stored.
func insertChunks(ctx context.Context, conn driver.Conn, query string, cols [][]any) (sent bool, err error) {
	batch, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil && !batch.IsSent() {
			_ = batch.Abort()
		}
	}()
	for i, chunks := range cols {
		for _, c := range chunks {
			if err := batch.Column(i).Append(c); err != nil {
				return false, err
			}
		}
	}
	return true, batch.Send()
}

// columnValues returns arr's values as the slice clickhouse-go appends to a
// column in one call. Fixed-width values are Arrow's own buffers, not
// copies; strings and booleans have to be converted.
func columnValues(arr arrow.Array) (any, error) {
	if n := arr.NullN(); n > 0 {
		return nil, fmt.Errorf("%w: %d of %d values are null", ErrNulls, n, arr.Len())
	}
	switch a := arr.(type) {
	case *array.Timestamp:
		if unit := a.DataType().(*arrow.TimestampType).Unit; unit != arrow.Millisecond {
			return nil, fmt.Errorf("%w: timestamp[%s], want timestamp[ms]", ErrUnsupportedType, unit)
		}
		// Epoch milliseconds: an Int64 column on old servers, and what
		// clickhouse-go takes for DateTime64 from an []int64.
		return arrow.Int64Traits.CastFromBytes(arrow.TimestampTraits.CastToBytes(a.TimestampValues())), nil
	case *array.Int64:
		return a.Int64Values(), nil
	case *array.Uint64:
		return a.Uint64Values(), nil
	case *array.Uint32:
		return a.Uint32Values(), nil
	case *array.Uint16:
		return a.Uint16Values(), nil
	case *array.Uint8:
		return a.Uint8Values(), nil
	case *array.Float64:
		return a.Float64Values(), nil
	case *array.Float32:
		return a.Float32Values(), nil
	case *array.String:
		out := make([]string, a.Len())
		for i := range out {
			out[i] = a.Value(i)
		}
		return out, nil
	case *array.Binary:
		out := make([]string, a.Len())
		for i := range out {
			out[i] = a.ValueString(i)
		}
		return out, nil
	case *array.List:
		// Array(String) columns: alerts.members, case_events.evidence.
		values, ok := a.ListValues().(*array.String)
		if !ok {
			break
		}
		out := make([][]string, a.Len())
		for i := range out {
			start, end := a.ValueOffsets(i)
			row := make([]string, end-start)
			for j := range row {
				row[j] = values.Value(int(start) + j)
			}
			out[i] = row
		}
		return out, nil
	case *array.Boolean:
		out := make([]uint8, a.Len())
		for i := range out {
			if a.Value(i) {
				out[i] = 1
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedType, arr.DataType())
}

// writerMetrics are the writer's Prometheus metrics.
type writerMetrics struct {
	rows, batches, retries *prometheus.CounterVec
	failed                 *prometheus.CounterVec
	latency                *prometheus.HistogramVec
}

// newWriterMetrics creates the metrics and registers them on reg when set.
func newWriterMetrics(reg prometheus.Registerer) (*writerMetrics, error) {
	m := &writerMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_storage_rows_written_total",
			Help: "Rows stored in ClickHouse, by table.",
		}, []string{"table"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_storage_batches_written_total",
			Help: "Batches stored in ClickHouse, by table.",
		}, []string{"table"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_storage_batches_failed_total",
			Help: "Batches given up, by table and kind (the error's class: permanent or unclassified, refused at once; transient, attempts exhausted).",
		}, []string{"table", "kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_storage_insert_retries_total",
			Help: "INSERT attempts retried after a transient error, by table.",
		}, []string{"table"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gridwatch_storage_insert_duration_seconds",
			Help:    "Duration of INSERT attempts, by table.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"table"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rows, m.batches, m.failed, m.retries, m.latency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("storage: register writer metrics: %w", err)
			}
		}
	}
	return m, nil
}
