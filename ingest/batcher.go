package ingest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/internal/handoff"
)

// Batcher defaults.
const (
	// DefaultMaxRows makes ClickHouse inserts large enough to keep the
	// number of parts low (it wants few inserts per second of 10^4-10^6 rows)
	// while a full telemetry batch stays around 3 MB.
	DefaultMaxRows = 50_000
	// DefaultMaxBytes bounds one batch's memory whatever the row size.
	DefaultMaxBytes = 8 << 20
	// DefaultMaxAge bounds how stale the newest data in ClickHouse is when
	// traffic is light, at one insert per second per table.
	DefaultMaxAge = time.Second
	// DefaultMaxPending rides out a few slow writes before Add pushes back.
	DefaultMaxPending = 4
)

// Batch is a sealed Arrow record of rows for one table.
type Batch struct {
	// ID is unique per batch (128 random bits, base32), so a writer or a
	// disk spool can tell a retried batch from a new one.
	ID    string
	Table string
	// Record holds the rows. The batcher releases it when Write returns; a
	// writer that keeps it longer (a disk spool) must Retain it.
	Record arrow.Record
	Rows   int
	// Bytes is the rows' estimated size, the sum of RowSize.
	Bytes int
}

// WriteFunc stores a batch. It retries internally as it sees fit; an error
// it returns is final and the batch's rows are counted as dropped.
type WriteFunc func(ctx context.Context, b *Batch) error

// Batcher collects rows of one table into Arrow records and hands each
// sealed record to Write, in order, from one writer goroutine (or Writers).
// It follows telegraf's output buffer model: a batch is sealed when it
// reaches MaxRows or MaxBytes, or MaxAge after its first row; at most
// MaxPending sealed batches wait for Write, so memory stays near
// (MaxPending+1)*MaxBytes. When
// they are all waiting, Add blocks, which slows the publisher (the MQTT
// client's read loop) instead of dropping data; rows are dropped only when
// the caller's context ends first, or when a write fails, and each drop is
// counted.
//
// Add returns a Receipt that reports when the batch holding the rows was
// written, or its write error. It is how an "ack only after durable" mode
// for QoS 1 (PUBACK once the batch is written or spooled) and a disk spool of
// Arrow IPC segments behind Write fit in later without changing the batcher.
//
// Set the settings, then Start; Close flushes and stops. Cancelling Start's
// ctx makes waiting and later writes fail at once (their rows are counted as
// dropped), so call Close first for a clean shutdown.
type Batcher[T any] struct {
	// Table names the table, for metrics, logs and Batch.Table. Required.
	Table string
	// Schema is the schema of the records. Required.
	Schema *arrow.Schema
	// AppendRow appends one row's columns; it must copy what it keeps.
	// Required.
	AppendRow func(b *array.RecordBuilder, row T)
	// RowSize estimates a row's bytes in the record, for MaxBytes. Required.
	RowSize func(row T) int
	// Write stores sealed batches. Required.
	Write WriteFunc
	// MaxRows seals a batch at this many rows. It defaults to 50,000.
	MaxRows int
	// MaxBytes seals a batch before it would exceed this many estimated
	// bytes. It defaults to 8 MiB.
	MaxBytes int
	// MaxAge seals a batch this long after its first row. It defaults to
	// 1 second.
	MaxAge time.Duration
	// MaxPending is the most sealed batches not yet written, the one being
	// written included. It defaults to 4.
	MaxPending int
	// Writers is how many batches are written at once, each by its own
	// goroutine, at most MaxPending. It defaults to 1: batches are written
	// in order. With more, a batch may be written before one sealed ahead
	// of it (by Writers-1 at most): for a table whose rows' order does not
	// matter, one INSERT's encoding and the server's work on another then
	// overlap, instead of an INSERT's latency bounding the table's rate.
	Writers int
	// Allocator allocates the records' memory. It defaults to
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Logger logs write failures, once per burst. It defaults to discarding.
	Logger *slog.Logger
	// Metrics counts rows and batches. It defaults to unregistered metrics.
	Metrics *BatcherMetrics

	// mu guards the batch being built; Add hands its rows over to the
	// holder (see handoff). Its Do is addHanded, set by Start.
	mu      handoff.Mutex[*addCall[T]]
	calls   sync.Pool // of *addCall[T]
	state   batcherState
	builder *array.RecordBuilder
	cur     *flush // the batch being built; nil when empty
	rows    int    // rows in cur
	bytes   int    // estimated bytes in cur
	opened  time.Time
	// slots holds one token per sealed batch not yet written; a token is
	// taken before sealing and given back after the write.
	slots  chan struct{}
	queue  chan sealed   // sealed batches, in order, for the writer
	opens  chan struct{} // tells the age timer a batch opened
	stop   chan struct{} // closed by Close to stop the age timer
	wg     sync.WaitGroup
	series batcherSeries

	// failing, burstRows and burstBatches belong to the writers, under
	// accountMu.
	accountMu    sync.Mutex
	failing      bool
	burstRows    int
	burstBatches int
}

// batcherState is where a batcher is in its life.
type batcherState int

const (
	stateNew batcherState = iota
	stateRunning
	stateClosed
)

// batcherSeries are the batcher's metric series, curried once by table.
type batcherSeries struct {
	rowsAdded, rowsWritten, writeErrors     prometheus.Counter
	dropWrite, dropOverloaded, dropClosed   prometheus.Counter
	sealRows, sealBytes, sealAge, sealClose prometheus.Counter
	pending                                 prometheus.Gauge
	blocked                                 prometheus.Counter
	writeSeconds                            prometheus.Observer
}

// flush is the fate of one batch, shared by the receipts of its rows, or
// of the several batches (parts) that one Add's rows went into.
type flush struct {
	done  chan struct{}
	err   error    // set before done is closed
	parts []*flush // when set, the batches; done and err are unused
}

// sealed is a batch on its way to Write.
type sealed struct {
	batch *Batch
	flush *flush
}

// Receipt reports when the rows handed to one Add are written. The zero
// Receipt is already done. It is one pointer, so that handing it on as an
// interface (the broker's Stored) allocates nothing per message.
type Receipt struct {
	f *flush
}

// Wait blocks until every batch holding the rows was written or failed, or
// ctx ends. It returns the write errors, or ctx's error.
func (r Receipt) Wait(ctx context.Context) error {
	if r.f == nil {
		return nil
	}
	parts := r.f.parts
	if parts == nil {
		parts = []*flush{r.f}
	}
	var errs []error
	for _, f := range parts {
		select {
		case <-f.done:
			if f.err != nil {
				errs = append(errs, f.err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// receiptOf returns the receipt of rows that went into the batches of
// flushes, in order, without repeats. It keeps a copy of flushes.
func receiptOf(flushes []*flush) Receipt {
	switch len(flushes) {
	case 0:
		return Receipt{}
	case 1:
		return Receipt{f: flushes[0]}
	}
	return Receipt{f: &flush{parts: slices.Clone(flushes)}}
}

// Start checks the settings, fills in defaults and starts the writer and the
// age timer. ctx is passed to Write.
func (b *Batcher[T]) Start(ctx context.Context) error {
	switch {
	case b.Table == "":
		return errors.New("batcher: Table is required")
	case b.Schema == nil || b.AppendRow == nil || b.RowSize == nil || b.Write == nil:
		return fmt.Errorf("batcher %s: Schema, AppendRow, RowSize and Write are required", b.Table)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != stateNew {
		return fmt.Errorf("batcher %s: started twice", b.Table)
	}
	b.mu.Do = b.addHanded
	if b.MaxRows <= 0 {
		b.MaxRows = DefaultMaxRows
	}
	if b.MaxBytes <= 0 {
		b.MaxBytes = DefaultMaxBytes
	}
	if b.MaxAge <= 0 {
		b.MaxAge = DefaultMaxAge
	}
	if b.MaxPending <= 0 {
		b.MaxPending = DefaultMaxPending
	}
	b.Writers = min(max(b.Writers, 1), b.MaxPending)
	if b.Allocator == nil {
		b.Allocator = memory.DefaultAllocator
	}
	if b.Logger == nil {
		b.Logger = slog.New(slog.DiscardHandler)
	}
	if b.Metrics == nil {
		b.Metrics = NewBatcherMetrics(nil)
	}
	b.series = b.Metrics.curry(b.Table)
	b.builder = array.NewRecordBuilder(b.Allocator, b.Schema)
	b.slots = make(chan struct{}, b.MaxPending)
	b.queue = make(chan sealed, b.MaxPending)
	b.opens = make(chan struct{}, 1)
	b.stop = make(chan struct{})
	b.state = stateRunning
	b.wg.Add(1 + b.Writers)
	for range b.Writers {
		go b.runWriter(ctx)
	}
	go b.runTimer(ctx)
	return nil
}

// curry returns the series of one table.
func (m *BatcherMetrics) curry(table string) batcherSeries {
	return batcherSeries{
		rowsAdded:      m.rowsAdded.WithLabelValues(table),
		rowsWritten:    m.rowsWritten.WithLabelValues(table),
		writeErrors:    m.writeErrors.WithLabelValues(table),
		dropWrite:      m.rowsDropped.WithLabelValues(table, dropWriteError),
		dropOverloaded: m.rowsDropped.WithLabelValues(table, dropOverloaded),
		dropClosed:     m.rowsDropped.WithLabelValues(table, dropClosed),
		sealRows:       m.batches.WithLabelValues(table, "rows"),
		sealBytes:      m.batches.WithLabelValues(table, "bytes"),
		sealAge:        m.batches.WithLabelValues(table, "age"),
		sealClose:      m.batches.WithLabelValues(table, "close"),
		pending:        m.pending.WithLabelValues(table),
		blocked:        m.blocked.WithLabelValues(table),
		writeSeconds:   m.writeSeconds.WithLabelValues(table),
	}
}

// Add appends rows to the current batch, sealing it whenever it is full.
// While MaxPending sealed batches wait for Write it blocks until one is
// written or ctx ends; then the rows not yet appended are dropped, counted,
// and the error wraps ErrOverloaded. After Close the rows are dropped and the
// error wraps ErrClosed. The Receipt covers the rows that were appended.
func (b *Batcher[T]) Add(ctx context.Context, rows ...T) (Receipt, error) {
	c, _ := b.calls.Get().(*addCall[T])
	if c == nil {
		c = new(addCall[T])
	}
	c.ctx, c.rows = ctx, rows
	b.mu.Hand(c)
	receipt, err, done := receiptOf(c.flushes), c.err, c.done
	*c = addCall[T]{}
	b.calls.Put(c)
	if !done { // handed over before Start
		return Receipt{}, fmt.Errorf("%s: %w", b.Table, ErrClosed)
	}
	return receipt, err
}

// addCall is one Add, handed over to the holder of mu (see handoff).
type addCall[T any] struct {
	ctx  context.Context
	rows []T
	// flushes are the batches the rows went into: one, unless a batch was
	// sealed between them; one keeps the common case in the call.
	flushes []*flush
	one     [1]*flush
	err     error
	done    bool
}

// addHanded, the mutex's Do, adds the rows of each Add handed over.
func (b *Batcher[T]) addHanded(calls []*addCall[T]) {
	for _, c := range calls {
		c.flushes, c.err = b.addLocked(c.ctx, c.rows, c.one[:0])
		c.done = true
	}
}

// addLocked appends rows, as Add says, and returns the batches they went
// into, appended to flushes. Called with mu held.
func (b *Batcher[T]) addLocked(ctx context.Context, rows []T, flushes []*flush) ([]*flush, error) {
	if b.state == stateNew {
		return flushes, fmt.Errorf("%s: %w", b.Table, ErrClosed)
	}
	for i, row := range rows {
		size := b.RowSize(row)
		if err := b.makeRoomLocked(ctx, size); err != nil {
			b.series.rowsAdded.Add(float64(i))
			dropped := len(rows) - i
			if errors.Is(err, ErrClosed) {
				b.series.dropClosed.Add(float64(dropped))
			} else {
				b.series.dropOverloaded.Add(float64(dropped))
			}
			return flushes, fmt.Errorf("%s: %d of %d rows dropped: %w", b.Table, dropped, len(rows), err)
		}
		if b.cur == nil {
			b.cur = &flush{done: make(chan struct{})}
			b.opened = time.Now()
			select {
			case b.opens <- struct{}{}:
			default: // The timer has a wake-up pending already.
			}
		}
		if n := len(flushes); n == 0 || flushes[n-1] != b.cur {
			flushes = append(flushes, b.cur)
		}
		b.AppendRow(b.builder, row)
		b.rows++
		b.bytes += size
	}
	b.series.rowsAdded.Add(float64(len(rows)))
	// Seal a full batch now rather than at the next Add, if there is room.
	switch {
	case b.rows >= b.MaxRows:
		b.trySealLocked(b.series.sealRows)
	case b.bytes >= b.MaxBytes:
		b.trySealLocked(b.series.sealBytes)
	}
	return flushes, nil
}

// makeRoomLocked makes sure a row of size bytes fits in the current batch,
// sealing it first when it is full, and waiting for a free slot (with b.mu
// released) when MaxPending batches are sealed already.
func (b *Batcher[T]) makeRoomLocked(ctx context.Context, size int) error {
	for {
		if b.state != stateRunning {
			return ErrClosed
		}
		reason := b.fullLocked(size)
		if reason == nil || b.trySealLocked(reason) {
			return nil
		}
		b.mu.Mutex.Unlock() // inside Do: the rows handed over wait
		waited := time.Now()
		select {
		case b.slots <- struct{}{}:
		case <-ctx.Done():
			b.series.blocked.Add(time.Since(waited).Seconds())
			b.mu.Lock()
			return fmt.Errorf("%w: %w", ErrOverloaded, ctx.Err())
		}
		b.series.blocked.Add(time.Since(waited).Seconds())
		b.mu.Lock()
		// The batch may have been sealed or the batcher closed meanwhile.
		if b.state == stateRunning && b.fullLocked(size) != nil {
			b.sealLocked(reason)
			return nil
		}
		<-b.slots
	}
}

// fullLocked returns the seal-reason counter when a row of size bytes does
// not fit in the current batch, nil when it fits.
func (b *Batcher[T]) fullLocked(size int) prometheus.Counter {
	switch {
	case b.rows == 0:
		return nil
	case b.rows >= b.MaxRows:
		return b.series.sealRows
	case b.bytes+size > b.MaxBytes:
		return b.series.sealBytes
	}
	return nil
}

// trySealLocked seals the current batch if a slot is free.
func (b *Batcher[T]) trySealLocked(reason prometheus.Counter) bool {
	select {
	case b.slots <- struct{}{}:
		b.sealLocked(reason)
		return true
	default:
		return false
	}
}

// sealLocked turns the current batch into a record and queues it. The
// caller holds a slot, so the queue has room.
func (b *Batcher[T]) sealLocked(reason prometheus.Counter) {
	rec := b.builder.NewRecord()
	b.reserveLike(rec)
	b.queue <- sealed{
		batch: &Batch{
			ID:     rand.Text(),
			Table:  b.Table,
			Record: rec,
			Rows:   b.rows,
			Bytes:  b.bytes,
		},
		flush: b.cur,
	}
	b.cur, b.rows, b.bytes = nil, 0, 0
	reason.Inc()
	b.series.pending.Inc()
}

// reserveLike sizes the emptied builder's buffers for a batch like rec, the
// one just sealed: the next batch then fills buffers allocated once instead
// of growing them by doubling, which took a third of the batcher's time
// (a fleet's batches are alike). The memory is what one batch takes.
func (b *Batcher[T]) reserveLike(rec arrow.Record) {
	b.builder.Reserve(int(rec.NumRows()))
	for i, col := range rec.Columns() {
		data, isVar := col.(interface{ ValueBytes() []byte })
		fb, reservable := b.builder.Field(i).(interface{ ReserveData(int) })
		if isVar && reservable {
			fb.ReserveData(len(data.ValueBytes()))
		}
	}
}

// sealIfDue seals the current batch if it is MaxAge old and a slot is free.
// It returns how long until the current batch is due, or 0 when none is.
//
// It is the timer's and the writers' and lets go without taking up the
// Adds handed over meanwhile (handoff's Release): an Add may wait for the
// room that only a writer frees.
func (b *Batcher[T]) sealIfDue() time.Duration {
	b.mu.Lock()
	defer b.mu.Release()
	if b.cur == nil {
		return 0
	}
	if left := time.Until(b.opened.Add(b.MaxAge)); left > 0 {
		return left
	}
	// Without a free slot the writer seals it after the next write.
	b.trySealLocked(b.series.sealAge)
	return 0
}

// runTimer seals batches MaxAge after their first row.
func (b *Batcher[T]) runTimer(ctx context.Context) {
	defer b.wg.Done()
	timer := time.NewTimer(b.MaxAge)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.stop:
			return
		case <-b.opens:
		case <-timer.C:
		}
		if left := b.sealIfDue(); left > 0 {
			timer.Reset(left)
		}
	}
}

// runWriter writes sealed batches in the order they were sealed (one writer
// of Writers) until Close closes the queue.
func (b *Batcher[T]) runWriter(ctx context.Context) {
	defer b.wg.Done()
	for s := range b.queue {
		err := ctx.Err()
		if err == nil {
			start := time.Now()
			err = b.Write(ctx, s.batch)
			b.series.writeSeconds.Observe(time.Since(start).Seconds())
		}
		if err != nil {
			err = fmt.Errorf("write batch %s of %d rows to %s: %w", s.batch.ID, s.batch.Rows, b.Table, err)
		}
		s.batch.Record.Release()
		b.account(s.batch, err)
		s.flush.err = err
		close(s.flush.done)
		<-b.slots
		b.series.pending.Dec()
		b.sealIfDue()
	}
}

// account counts a finished write and logs failures once per burst: the
// first failure, then one line when writes succeed again.
func (b *Batcher[T]) account(batch *Batch, err error) {
	b.accountMu.Lock()
	defer b.accountMu.Unlock()
	if err == nil {
		b.series.rowsWritten.Add(float64(batch.Rows))
		if b.failing {
			b.Logger.Warn("batch writes recovered", "table", b.Table,
				"dropped_batches", b.burstBatches, "dropped_rows", b.burstRows)
			b.failing, b.burstBatches, b.burstRows = false, 0, 0
		}
		return
	}
	b.series.writeErrors.Inc()
	b.series.dropWrite.Add(float64(batch.Rows))
	b.burstBatches++
	b.burstRows += batch.Rows
	if !b.failing {
		b.failing = true
		b.Logger.Error("batch write failed; rows are dropped until writes succeed again", "table", b.Table, "err", err)
	}
}

// Close seals the rows still buffered, waits until every sealed batch was
// written and stops the batcher. It returns the error of the last batch's
// write. Calling it again waits for the first call; before Start it does
// nothing.
func (b *Batcher[T]) Close() error {
	b.mu.Lock()
	if b.state != stateRunning {
		b.mu.Unlock()
		b.wg.Wait() // A concurrent first Close may still be flushing.
		return nil
	}
	b.state = stateClosed
	tail := b.cur
	for b.cur != nil && !b.trySealLocked(b.series.sealClose) {
		b.mu.Mutex.Unlock()   // the rows handed over wait for the last Unlock
		b.slots <- struct{}{} // The writer frees one: it never stops early.
		b.mu.Lock()
		if b.cur == nil { // The timer or the writer sealed it meanwhile.
			<-b.slots
			break
		}
		b.sealLocked(b.series.sealClose)
	}
	close(b.stop)
	close(b.queue)
	b.mu.Unlock()
	b.wg.Wait()
	b.builder.Release()
	if tail != nil {
		return tail.err
	}
	return nil
}
