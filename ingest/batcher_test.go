package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recorder is a fake storage writer: it keeps the rows of every batch it is
// handed, read back with Read, after calling Hook (when set), which may block
// or fail the write.
type recorder[T any] struct {
	Read func(arrow.Record) []T
	Hook func(ctx context.Context, b *Batch) error

	mu      sync.Mutex
	batches [][]T
	ids     map[string]bool
}

func (r *recorder[T]) write(ctx context.Context, b *Batch) error {
	if r.Hook != nil {
		if err := r.Hook(ctx, b); err != nil {
			return err
		}
	}
	rows := r.Read(b.Record)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]bool{}
	}
	if b.ID == "" || r.ids[b.ID] || b.Rows != len(rows) {
		panic(fmt.Sprintf("bad batch %q of table %q: %d rows, record has %d", b.ID, b.Table, b.Rows, len(rows)))
	}
	r.ids[b.ID] = true
	r.batches = append(r.batches, rows)
	return nil
}

// rows returns all rows written so far.
func (r *recorder[T]) rows() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []T
	for _, b := range r.batches {
		all = append(all, b...)
	}
	return all
}

// sizes returns the number of rows of each batch written so far.
func (r *recorder[T]) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n []int
	for _, b := range r.batches {
		n = append(n, len(b))
	}
	return n
}

// readingsOf reads a telemetry record back into readings.
func readingsOf(rec arrow.Record) []Reading {
	var out []Reading
	for i := 0; i < int(rec.NumRows()); i++ {
		out = append(out, Reading{
			TS:       int64(rec.Column(0).(*array.Timestamp).Value(i)),
			Received: int64(rec.Column(1).(*array.Timestamp).Value(i)),
			Device:   rec.Column(2).(*array.String).Value(i),
			Grid:     rec.Column(3).(*array.String).Value(i),
			Metric:   rec.Column(4).(*array.String).Value(i),
			Value:    rec.Column(5).(*array.Float64).Value(i),
		})
	}
	return out
}

// testReading returns the i-th reading of a test; all have the same size.
func testReading(i int) Reading {
	return Reading{TS: 1732233600000 + int64(i), Received: 1732233600000, Device: "aq-0001", Grid: "g-0101", Metric: "pm25", Value: float64(i)}
}

// startBatcher starts a telemetry batcher writing to rec on a checked
// allocator, and closes it and checks that no Arrow memory leaked when the
// test ends.
func startBatcher(t *testing.T, rec *recorder[Reading], set func(b *Batcher[Reading])) *Batcher[Reading] {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	b := NewTelemetryBatcher(rec.write)
	b.Allocator = mem
	b.Metrics = NewBatcherMetrics(nil)
	b.MaxAge = time.Hour
	set(b)
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		cancel()
		mem.AssertSize(t, 0)
	})
	return b
}

// add adds rows first..last-1 one Add at a time and fails the test on error.
func add(t *testing.T, b *Batcher[Reading], first, last int) {
	t.Helper()
	for i := first; i < last; i++ {
		if _, err := b.Add(context.Background(), testReading(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func sealedBy(b *Batcher[Reading], reason string) float64 {
	return testutil.ToFloat64(b.Metrics.batches.WithLabelValues(b.Table, reason))
}

func dropped(b *Batcher[Reading], cause string) float64 {
	return testutil.ToFloat64(b.Metrics.rowsDropped.WithLabelValues(b.Table, cause))
}

func equalInts(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestBatcherSealsOnRowsAndFlushesTailOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder[Reading]{Read: readingsOf}
		b := startBatcher(t, rec, func(b *Batcher[Reading]) { b.MaxRows = 3 })
		add(t, b, 0, 7)
		synctest.Wait()
		if got := rec.sizes(); !equalInts(got, []int{3, 3}) {
			t.Fatalf("batches before Close = %v, want [3 3]", got)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if got := rec.sizes(); !equalInts(got, []int{3, 3, 1}) {
			t.Fatalf("batches after Close = %v, want [3 3 1]", got)
		}
		for i, r := range rec.rows() {
			if r != testReading(i) {
				t.Fatalf("row %d = %+v, want %+v", i, r, testReading(i))
			}
		}
		if sealedBy(b, "rows") != 2 || sealedBy(b, "close") != 1 {
			t.Errorf("sealed by rows %v, by close %v; want 2 and 1", sealedBy(b, "rows"), sealedBy(b, "close"))
		}
		if got := testutil.ToFloat64(b.Metrics.rowsWritten.WithLabelValues(b.Table)); got != 7 {
			t.Errorf("rows written = %v, want 7", got)
		}
	})
}

func TestBatcherSealsOnBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder[Reading]{Read: readingsOf}
		size := ReadingSize(testReading(0))
		b := startBatcher(t, rec, func(b *Batcher[Reading]) { b.MaxBytes = 2*size + size/2 })
		add(t, b, 0, 5)
		synctest.Wait()
		if got := rec.sizes(); !equalInts(got, []int{2, 2}) {
			t.Fatalf("batches = %v, want [2 2]", got)
		}
		if sealedBy(b, "bytes") != 2 {
			t.Errorf("sealed by bytes = %v, want 2", sealedBy(b, "bytes"))
		}
	})
}

func TestBatcherSealsOnAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder[Reading]{Read: readingsOf}
		b := startBatcher(t, rec, func(b *Batcher[Reading]) { b.MaxAge = time.Second })
		add(t, b, 0, 1)
		time.Sleep(999 * time.Millisecond)
		add(t, b, 1, 2)
		synctest.Wait()
		if got := rec.sizes(); got != nil {
			t.Fatalf("batches before MaxAge = %v, want none", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := rec.sizes(); !equalInts(got, []int{2}) {
			t.Fatalf("batches at MaxAge = %v, want [2]", got)
		}
		// The next batch ages from its own first row.
		time.Sleep(10 * time.Second)
		add(t, b, 2, 3)
		time.Sleep(time.Second)
		synctest.Wait()
		if got := rec.sizes(); !equalInts(got, []int{2, 1}) {
			t.Fatalf("batches = %v, want [2 1]", got)
		}
		if sealedBy(b, "age") != 2 {
			t.Errorf("sealed by age = %v, want 2", sealedBy(b, "age"))
		}
	})
}

func TestBatcherBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		rec := &recorder[Reading]{Read: readingsOf, Hook: func(ctx context.Context, _ *Batch) error {
			<-release
			return nil
		}}
		b := startBatcher(t, rec, func(b *Batcher[Reading]) { b.MaxRows, b.MaxPending = 1, 1 })
		// Row 0 is sealed and its write blocks; row 1 fills the current batch.
		add(t, b, 0, 2)

		// A caller that gives up is told so, and its row is counted.
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error)
		go func() {
			_, err := b.Add(ctx, testReading(99))
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, ErrOverloaded) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Add with cancelled ctx = %v, want ErrOverloaded and context.Canceled", err)
		}
		if dropped(b, dropOverloaded) != 1 {
			t.Errorf("rows dropped overloaded = %v, want 1", dropped(b, dropOverloaded))
		}

		// A patient caller blocks until the write finishes.
		done := make(chan Receipt)
		go func() {
			r, err := b.Add(context.Background(), testReading(2))
			if err != nil {
				t.Error(err)
			}
			done <- r
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Add returned while MaxPending batches wait")
		default:
		}
		if got := testutil.ToFloat64(b.Metrics.pending.WithLabelValues(b.Table)); got != 1 {
			t.Errorf("pending = %v, want 1", got)
		}
		// The time it waits is counted: backpressure is visible.
		time.Sleep(5 * time.Second)
		close(release)
		r := <-done
		if got := testutil.ToFloat64(b.Metrics.blocked.WithLabelValues(b.Table)); got != 5 {
			t.Errorf("blocked seconds = %v, want 5", got)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := rec.sizes(); !equalInts(got, []int{1, 1, 1}) {
			t.Fatalf("batches = %v, want [1 1 1]", got)
		}
	})
}

func TestBatcherCloseReleasesBlockedAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		rec := &recorder[Reading]{Read: readingsOf, Hook: func(ctx context.Context, _ *Batch) error {
			<-release
			return nil
		}}
		b := startBatcher(t, rec, func(b *Batcher[Reading]) { b.MaxRows, b.MaxPending = 1, 1 })
		add(t, b, 0, 2)
		errc := make(chan error)
		go func() {
			_, err := b.Add(context.Background(), testReading(2))
			errc <- err
		}()
		synctest.Wait()
		closed := make(chan error)
		go func() { closed <- b.Close() }()
		synctest.Wait()
		close(release)
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Add after Close = %v, want ErrClosed", err)
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		if got := rec.sizes(); !equalInts(got, []int{1, 1}) {
			t.Fatalf("batches = %v, want [1 1]", got)
		}
		if dropped(b, dropClosed) != 1 {
			t.Errorf("rows dropped closed = %v, want 1", dropped(b, dropClosed))
		}
	})
}

func TestBatcherWriteFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errDown := errors.New("clickhouse down")
		var mu sync.Mutex
		failures := 3
		rec := &recorder[Reading]{Read: readingsOf, Hook: func(ctx context.Context, _ *Batch) error {
			mu.Lock()
			defer mu.Unlock()
			if failures > 0 {
				failures--
				return errDown
			}
			return nil
		}}
		var logs bytes.Buffer
		b := startBatcher(t, rec, func(b *Batcher[Reading]) {
			b.MaxRows = 2
			b.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		r, err := b.Add(context.Background(), testReading(0), testReading(1), testReading(2), testReading(3), testReading(4))
		if err != nil {
			t.Fatal(err)
		}
		if r.f == nil || len(r.f.parts) != 3 {
			t.Fatalf("receipt = %+v, want one covering 3 batches", r.f)
		}
		synctest.Wait()
		add(t, b, 5, 7)
		if err := b.Close(); err != nil {
			t.Fatalf("Close = %v, want nil: the last batch was written", err)
		}
		if err := r.Wait(context.Background()); !errors.Is(err, errDown) {
			t.Fatalf("receipt = %v, want the write error", err)
		}
		// Batches [0 1], [2 3] and [4 5] failed; [6], sealed by Close, was written.
		if got := rec.sizes(); !equalInts(got, []int{1}) {
			t.Fatalf("batches written = %v, want [1]", got)
		}
		if dropped(b, dropWriteError) != 6 {
			t.Errorf("rows dropped by write errors = %v, want 6", dropped(b, dropWriteError))
		}
		if got := testutil.ToFloat64(b.Metrics.writeErrors.WithLabelValues(b.Table)); got != 3 {
			t.Errorf("write errors = %v, want 3", got)
		}
		out := logs.String()
		if strings.Count(out, "batch write failed") != 1 || strings.Count(out, "recovered") != 1 ||
			!strings.Contains(out, "dropped_rows=6") {
			t.Errorf("logs = %q, want one failure line and one recovery line counting 6 rows", out)
		}
	})
}

func TestBatcherReceiptWaitsForItsBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder[Reading]{Read: readingsOf}
		b := startBatcher(t, rec, func(b *Batcher[Reading]) {})
		r, err := b.Add(context.Background(), testReading(0))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait before the batch is written = %v, want the ctx error", err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := (Receipt{}).Wait(context.Background()); err != nil {
			t.Fatalf("zero Receipt = %v, want nil", err)
		}
	})
}

func TestBatcherLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder[Reading]{Read: readingsOf}
		b := NewTelemetryBatcher(rec.write)
		if _, err := b.Add(context.Background(), testReading(0)); !errors.Is(err, ErrClosed) {
			t.Errorf("Add before Start = %v, want ErrClosed", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close before Start = %v", err)
		}
		if err := (&Batcher[Reading]{Table: "t"}).Start(context.Background()); err == nil {
			t.Error("Start without Write succeeded")
		}
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := b.Start(context.Background()); err == nil {
			t.Error("second Start succeeded")
		}
		add(t, b, 0, 1)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if _, err := b.Add(context.Background(), testReading(1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Add after Close = %v, want ErrClosed", err)
		}
		if dropped(b, dropClosed) != 1 {
			t.Errorf("rows dropped closed = %v, want 1", dropped(b, dropClosed))
		}
		if got := rec.sizes(); !equalInts(got, []int{1}) {
			t.Errorf("batches = %v, want [1]", got)
		}
		// synctest.Test fails if the batcher's goroutines outlive Close.
	})
}

func TestBatcherCancelledContextDropsWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder[Reading]{Read: readingsOf}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		b := NewTelemetryBatcher(rec.write)
		b.Allocator = mem
		ctx, cancel := context.WithCancel(context.Background())
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		add(t, b, 0, 3)
		cancel()
		if err := b.Close(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Close after cancel = %v, want context.Canceled", err)
		}
		if rec.sizes() != nil || dropped(b, dropWriteError) != 3 {
			t.Errorf("written %v, dropped %v; want nothing written and 3 dropped", rec.sizes(), dropped(b, dropWriteError))
		}
		mem.AssertSize(t, 0)
	})
}

func BenchmarkAdd(b *testing.B) {
	run := func(b *testing.B, parallel bool, rowsPerAdd int) {
		bt := NewTelemetryBatcher(func(context.Context, *Batch) error { return nil })
		if err := bt.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer bt.Close()
		rows := make([]Reading, rowsPerAdd)
		for i := range rows {
			rows[i] = testReading(i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bt.Add(context.Background(), rows...); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for b.Loop() {
				if _, err := bt.Add(context.Background(), rows...); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*rowsPerAdd)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("1row", func(b *testing.B) { run(b, false, 1) })
	b.Run("3rows", func(b *testing.B) { run(b, false, 3) })
	b.Run("3rows-parallel", func(b *testing.B) { run(b, true, 3) })
}

// TestBatcherWritersOverlap checks Writers: with two, a batch is written
// while the one sealed before it is still being written, every row once;
// Close waits for both.
func TestBatcherWritersOverlap(t *testing.T) {
	first := make(chan struct{})
	var writes sync.WaitGroup
	writes.Add(1)
	rec := &recorder[Reading]{Read: readingsOf, Hook: func(_ context.Context, b *Batch) error {
		if b.Record.Column(5).(*array.Float64).Value(0) == 0 {
			<-first // The first batch waits for the second.
		} else {
			writes.Done()
		}
		return nil
	}}
	b := startBatcher(t, rec, func(b *Batcher[Reading]) { b.MaxRows, b.Writers = 2, 2 })
	add(t, b, 0, 4)
	writes.Wait() // The second batch was written while the first waits.
	close(first)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rec.sizes(); !equalInts(got, []int{2, 2}) {
		t.Fatalf("batches of %v rows, want 2 and 2", got)
	}
	seen := map[float64]bool{}
	for _, r := range rec.rows() {
		seen[r.Value] = true
	}
	if len(seen) != 4 {
		t.Fatalf("rows written: %v, want 0..3 once each", rec.rows())
	}
}

// TestBatcherBackpressureUnderManyClients has many clients add at once while
// every batch waits for a slow write: the writer, which frees the slots,
// also takes the batcher's mutex (to seal a due batch), and must not take up
// the Adds handed over to it, which wait for the slot only it frees. Every
// row is written, once.
func TestBatcherBackpressureUnderManyClients(t *testing.T) {
	rec := &recorder[Reading]{Read: readingsOf, Hook: func(context.Context, *Batch) error {
		time.Sleep(50 * time.Microsecond)
		return nil
	}}
	b := startBatcher(t, rec, func(b *Batcher[Reading]) {
		b.MaxRows, b.MaxPending, b.MaxAge = 1, 1, time.Millisecond
	})
	const clients, adds = 32, 100
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range adds {
				if _, err := b.Add(context.Background(), testReading(c*adds+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("Adds still blocked after a minute: the batcher is deadlocked")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[float64]int{}
	for _, r := range rec.rows() {
		seen[r.Value]++
	}
	for i := range clients * adds {
		if seen[float64(i)] != 1 {
			t.Fatalf("row %d written %d times, want once", i, seen[float64(i)])
		}
	}
}
