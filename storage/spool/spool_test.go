package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/storage"
)

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "seq", Type: arrow.PrimitiveTypes.Int64},
	{Name: "device", Type: arrow.BinaryTypes.String},
}, nil)

// record returns a record of the seqs.
func record(t testing.TB, seqs ...int64) arrow.Record {
	b := array.NewRecordBuilder(memory.DefaultAllocator, testSchema)
	defer b.Release()
	for _, s := range seqs {
		b.Field(0).(*array.Int64Builder).Append(s)
		b.Field(1).(*array.StringBuilder).Append("dev-1")
	}
	return b.NewRecord()
}

// fakeStore is a ClickHouse stand-in: a ledger of batch ids and the seqs
// stored, in order. While down, inserts fail transiently; ackLost stores the
// batch but reports failure, like an answer lost on the wire.
type fakeStore struct {
	mu      sync.Mutex
	down    bool
	ackLost bool
	ids     map[string]bool
	seqs    []int64
	// refuse fails every INSERT holding one of its batch ids with its error;
	// tries counts the INSERTs that held each id.
	refuse map[string]error
	tries  map[string]int
	// asked holds the batch ids of every ledger lookup, in order.
	asked []string
	// groups holds the batch ids of every INSERT tried while up; fail,
	// when set, is asked first and fails the INSERT it returns an error for.
	groups [][]string
	fail   func(ids []string) error
}

func (f *fakeStore) insert(_ context.Context, table string, parts []storage.Part) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return &storage.WriteError{Table: table, Err: errors.New("connection refused")}
	}
	var ids []string
	for _, p := range parts {
		ids = append(ids, p.ID)
		if f.tries != nil {
			f.tries[p.ID]++
		}
	}
	f.groups = append(f.groups, ids)
	if f.fail != nil {
		if err := f.fail(ids); err != nil {
			return &storage.WriteError{Table: table, Err: err}
		}
	}
	for _, p := range parts {
		if err := f.refuse[p.ID]; err != nil {
			return &storage.WriteError{Table: table, Err: err}
		}
	}
	for _, p := range parts {
		f.ids[p.ID] = true
		f.seqs = append(f.seqs, p.Record.Column(0).(*array.Int64).Int64Values()...)
	}
	if f.ackLost {
		f.ackLost = false
		return &storage.WriteError{Table: table, Err: errors.New("connection reset")}
	}
	return nil
}

func (f *fakeStore) stored(_ context.Context, _ string, parts []storage.Part) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("connection refused")
	}
	out := map[string]bool{}
	for _, p := range parts {
		out[p.ID] = f.ids[p.ID]
		f.asked = append(f.asked, p.ID)
	}
	return out, nil
}

// lookups returns the batch ids the ledger was asked about.
func (f *fakeStore) lookups() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

func (f *fakeStore) set(down, ackLost bool) {
	f.mu.Lock()
	f.down, f.ackLost = down, ackLost
	f.mu.Unlock()
}

func (f *fakeStore) rows() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.seqs...)
}

func openSpool(t *testing.T, dir string, f *fakeStore, durable bool, maxBytes int64) *Spool {
	t.Helper()
	s := &Spool{Dir: dir, MaxBytes: maxBytes, Durable: durable, Insert: f.insert, Stored: f.stored, RetryBackoff: 5 * time.Millisecond}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSpoolReplaysInOrderOnceAfterOutage(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "durable"}[durable], func(t *testing.T) {
			f := &fakeStore{ids: map[string]bool{}}
			s := openSpool(t, t.TempDir(), f, durable, 1<<20)
			ctx := context.Background()
			write := func(id string, seqs ...int64) {
				rec := record(t, seqs...)
				defer rec.Release()
				if err := s.Write(ctx, "telemetry", id, rec); err != nil {
					t.Fatal(err)
				}
			}
			write("b1", 1, 2)
			f.set(false, true) // Stored, but the answer is lost.
			write("b2", 3)
			f.set(true, false) // ClickHouse down.
			write("b3", 4, 5)
			write("b4", 6)
			if !durable && s.Stats().Segments == 0 {
				t.Fatal("batches written during the outage were not spooled")
			}
			f.set(false, false)
			waitFor(t, "replay", func() bool { return s.Stats().Segments == 0 })
			// The replay rate spans 10 s: it counts every row replayed,
			// the one found stored already included.
			replayed := map[bool]float64{false: 4, true: 6}[durable]
			if got := s.Stats().ReplayRate * 10; math.Abs(got-replayed) > 1e-9 {
				t.Errorf("replay rate × 10 s = %v rows, want %v", got, replayed)
			}
			got := f.rows()
			want := []int64{1, 2, 3, 4, 5, 6}
			if len(got) != len(want) {
				t.Fatalf("stored %v, want %v once each, in order", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("stored %v, want %v once each, in order", got, want)
				}
			}
		})
	}
}

// TestSpoolFullRefusesButKeepsAcceptedBatches checks the full policy: at
// MaxBytes Admit refuses, yet every batch that reaches Write (its messages
// admitted, in the default mode acknowledged) is spooled, even one larger
// than MaxBytes and even after Close, and replayed by the next Open.
func TestSpoolFullRefusesButKeepsAcceptedBatches(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "durable"}[durable], func(t *testing.T) {
			dir := t.TempDir()
			f := &fakeStore{ids: map[string]bool{}}
			f.set(true, false)
			rec := record(t, 1, 2, 3)
			defer rec.Release()
			data, err := encodeSegment("telemetry", "b0", rec)
			if err != nil {
				t.Fatal(err)
			}
			s := openSpool(t, dir, f, durable, int64(2*len(data)))
			ctx := context.Background()
			write := func(s *Spool, id string, rec arrow.Record) {
				t.Helper()
				if err := s.Write(ctx, "telemetry", id, rec); err != nil {
					t.Fatalf("Write %s: %v", id, err)
				}
			}
			write(s, "b0", rec)
			if err := s.Admit(); err != nil {
				t.Fatalf("Admit below MaxBytes = %v, want nil", err)
			}
			write(s, "b1", rec)
			if err := s.Admit(); !errors.Is(err, ErrFull) {
				t.Fatalf("Admit of a full spool = %v, want ErrFull", err)
			}
			big := record(t, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
			defer big.Release()
			write(s, "b2", big) // Over MaxBytes on its own, into a full spool.
			s.Close()
			last := record(t, 16)
			defer last.Release()
			write(s, "b3", last)
			if n := testutil.ToFloat64(s.metrics.dropped.WithLabelValues("telemetry")); n != 0 {
				t.Fatalf("dropped rows counted %v, want 0", n)
			}

			f.set(false, false)
			s2 := openSpool(t, dir, f, durable, int64(2*len(data)))
			waitFor(t, "drain", func() bool { return s2.Stats().Segments == 0 && s2.Admit() == nil })
			want := []int64{1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
			if got := f.rows(); !slices.Equal(got, want) {
				t.Fatalf("stored %v, want every accepted batch once, in order: %v", got, want)
			}
		})
	}
}

func TestSpoolQuarantinesDamagedSegmentsAtOpen(t *testing.T) {
	dir := t.TempDir()
	f := &fakeStore{ids: map[string]bool{}}
	f.set(true, false)
	s := openSpool(t, dir, f, true, 1<<20)
	for i, id := range []string{"b0", "b1", "b2"} {
		rec := record(t, int64(i))
		if err := s.Write(context.Background(), "telemetry", id, rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	s.Close()
	// Truncate one segment, flip a bit in another, leave a partial write.
	if err := os.Truncate(filepath.Join(dir, segmentName(0)), 20); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, segmentName(1))
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(3)+tempSuffix), []byte("GWSP"), 0o640); err != nil {
		t.Fatal(err)
	}

	f.set(false, false)
	s2 := openSpool(t, dir, f, true, 1<<20)
	waitFor(t, "replay", func() bool { return s2.Stats().Segments == 0 })
	if got := f.rows(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("stored %v, want only the sound segment [2]", got)
	}
	if n := testutil.ToFloat64(s2.metrics.quarantined.WithLabelValues("corrupt")); n != 2 {
		t.Fatalf("corrupt segments counted %v, want 2", n)
	}
	if n := testutil.ToFloat64(s2.metrics.quarantined.WithLabelValues("partial")); n != 1 {
		t.Fatalf("partial segments counted %v, want 1", n)
	}
	if n := s2.Quarantined(); n != 3 {
		t.Fatalf("quarantine holds %d segments, want 3", n)
	}
	list, err := ListQuarantine(dir)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, q := range list {
		reasons = append(reasons, q.Reason)
	}
	if want := []string{ReasonCorrupt, ReasonCorrupt, ReasonPartial}; !slices.Equal(reasons, want) {
		t.Fatalf("quarantine reasons %v, want %v", reasons, want)
	}
}

// indexRecorder is an Index that keeps the first column of each segment and
// checks that a segment leaves it only once it is in the store.
type indexRecorder struct {
	t     *testing.T
	store *fakeStore
	mu    sync.Mutex
	segs  map[uint64][]int64
}

func (x *indexRecorder) Add(seq uint64, _ string, rec arrow.Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.segs[seq] = slices.Clone(rec.Column(0).(*array.Int64).Int64Values())
}

func (x *indexRecorder) Remove(seq uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	stored := x.store.rows()
	for _, v := range x.segs[seq] {
		if !slices.Contains(stored, v) {
			x.t.Errorf("segment %d left the index before its row %d was stored", seq, v)
		}
	}
	delete(x.segs, seq)
}

// held returns the rows of the indexed segments, sorted.
func (x *indexRecorder) held() []int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []int64
	for _, v := range x.segs {
		out = append(out, v...)
	}
	slices.Sort(out)
	return out
}

func TestSpoolIndexFollowsSegments(t *testing.T) {
	f := &fakeStore{ids: map[string]bool{}, down: true}
	dir := t.TempDir()
	open := func() (*Spool, *indexRecorder) {
		x := &indexRecorder{t: t, store: f, segs: map[uint64][]int64{}}
		s := &Spool{Dir: dir, Durable: true, Insert: f.insert, Stored: f.stored, RetryBackoff: 5 * time.Millisecond, Index: x}
		if err := s.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, x
	}
	s, x := open()
	for id, seqs := range map[string][]int64{"b1": {1, 2}, "b2": {3}} {
		rec := record(t, seqs...)
		err := s.Write(context.Background(), "telemetry", id, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := x.held(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("index after Write = %v, want [1 2 3]", got)
	}
	s.Close()

	// A restart recovers the segments into the new index; the replay
	// removes them once stored.
	_, x = open()
	if got := x.held(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("index after Open = %v, want [1 2 3]", got)
	}
	f.set(false, false)
	waitFor(t, "the replay to empty the index", func() bool { return len(x.held()) == 0 })
}

// writeBatches writes one record per id, seqs 0, 1, ... in order.
func writeBatches(t *testing.T, s *Spool, ids ...string) {
	t.Helper()
	for i, id := range ids {
		rec := record(t, int64(i))
		if err := s.Write(context.Background(), "telemetry", id, rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
}

// TestSpoolSetsAsideRefusedBatches attacks the promise that one bad batch
// does not stop ingestion (issue 10 item 5): a batch ClickHouse refuses
// permanently, spooled first in one replay INSERT with good ones, is
// quarantined with its reason and counted, and the batches after it are
// stored. Before the fix replay retried the group for ever and stored
// nothing.
func TestSpoolSetsAsideRefusedBatches(t *testing.T) {
	dir := t.TempDir()
	refused := &clickhouse.Exception{Code: 16, Name: "DB::Exception", Message: "No such column bogus in table gridwatch.telemetry"}
	f := &fakeStore{ids: map[string]bool{}, refuse: map[string]error{"bad": refused}, tries: map[string]int{}}
	f.set(true, false)
	s := openSpool(t, dir, f, true, 1<<20)
	writeBatches(t, s, "bad", "good1", "good2")
	f.set(false, false)
	waitFor(t, "the good batches stored and the bad one set aside", func() bool { return s.Stats().Segments == 0 })
	if got := f.rows(); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("stored %v, want the good batches [1 2]", got)
	}
	if n := testutil.ToFloat64(s.metrics.quarantined.WithLabelValues(ReasonRejected)); n != 1 {
		t.Fatalf("rejected segments counted %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.metrics.quarantinedRows.WithLabelValues("telemetry", ReasonRejected)); n != 1 {
		t.Fatalf("rejected rows counted %v, want 1", n)
	}
	list, err := ListQuarantine(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Reason != ReasonRejected || list[0].Batch != "bad" || list[0].Table != "telemetry" ||
		!strings.Contains(list[0].Error, "No such column bogus") {
		t.Fatalf("quarantine = %+v, want batch bad, rejected, with the server's message", list)
	}

	// A name from outside the quarantine directory is refused.
	for _, bad := range []string{"../" + list[0].File, list[0].File + reasonSuffix} {
		if _, err := ReplayQuarantined(context.Background(), dir, bad, f.insert, f.stored, nil, time.Minute); err == nil {
			t.Fatalf("ReplayQuarantined(%q) succeeded", bad)
		}
	}
	// Fixed, it is replayed by hand, once.
	f.mu.Lock()
	delete(f.refuse, "bad")
	f.mu.Unlock()
	rows, err := ReplayQuarantined(context.Background(), dir, list[0].File, f.insert, f.stored, nil, time.Minute)
	if err != nil || rows != 1 {
		t.Fatalf("ReplayQuarantined = %d, %v; want 1 row", rows, err)
	}
	if got := f.rows(); !slices.Equal(got, []int64{1, 2, 0}) {
		t.Fatalf("stored %v after the replay, want [1 2 0]", got)
	}
	if n := s.Quarantined(); n != 0 {
		t.Fatalf("quarantine holds %d segments after the replay, want 0", n)
	}
	if _, err := ReplayQuarantined(context.Background(), dir, list[0].File, f.insert, f.stored, nil, time.Minute); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second ReplayQuarantined = %v, want not found", err)
	}
}

// TestSpoolSetsAsideBatchRefusedOnDirectInsert attacks the promise that an
// accepted batch is never dropped: a batch ClickHouse refuses permanently on
// its direct INSERT (the default mode, nothing spooled) is spooled and then
// set aside in the quarantine with the server's reason, replayable by hand,
// while the batches after it are stored. Before, Write returned the error
// and the batcher dropped the rows.
func TestSpoolSetsAsideBatchRefusedOnDirectInsert(t *testing.T) {
	dir := t.TempDir()
	refused := &clickhouse.Exception{Code: 53, Name: "DB::Exception", Message: "Type mismatch in column seq"}
	f := &fakeStore{ids: map[string]bool{}, refuse: map[string]error{"bad": refused}, tries: map[string]int{}}
	s := openSpool(t, dir, f, false, 1<<20)
	writeBatches(t, s, "good0", "bad", "good2")
	waitFor(t, "the good batches stored and the bad one set aside", func() bool { return s.Stats().Segments == 0 && s.Quarantined() == 1 })
	if got := f.rows(); !slices.Equal(got, []int64{0, 2}) {
		t.Fatalf("stored %v, want the good batches [0 2]", got)
	}
	list, err := ListQuarantine(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Reason != ReasonRejected || list[0].Batch != "bad" || list[0].Rows != 1 ||
		!strings.Contains(list[0].Error, "Type mismatch") {
		t.Fatalf("quarantine = %+v, want batch bad, rejected, with the server's message", list)
	}
	if n := testutil.ToFloat64(s.metrics.dropped.WithLabelValues("telemetry")); n != 0 {
		t.Fatalf("rows dropped %v, want 0", n)
	}
}

// TestSpoolNeverSetsAsideTransientFailures attacks the other side of the
// promise: an outage or an overloaded server (TOO_MANY_PARTS, a memory
// limit) is retried for as long as it lasts, far past UnclassifiedAttempts,
// and never costs a batch.
func TestSpoolNeverSetsAsideTransientFailures(t *testing.T) {
	dir := t.TempDir()
	f := &fakeStore{ids: map[string]bool{}, tries: map[string]int{}, refuse: map[string]error{
		"b0": &clickhouse.Exception{Code: 252, Message: "Too many parts"},
		"b1": &clickhouse.Exception{Code: 241, Message: "Memory limit exceeded"},
	}}
	s := &Spool{Dir: dir, MaxBytes: 1 << 20, Durable: true, Insert: f.insert, Stored: f.stored,
		RetryBackoff: time.Millisecond, UnclassifiedAttempts: 2}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeBatches(t, s, "b0", "b1")
	waitFor(t, "many transient failures", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.tries["b0"] >= 10
	})
	f.mu.Lock()
	f.refuse = nil
	f.mu.Unlock()
	waitFor(t, "replay", func() bool { return s.Stats().Segments == 0 })
	if got := f.rows(); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("stored %v, want [0 1]", got)
	}
	if n := s.Quarantined(); n != 0 {
		t.Fatalf("quarantine holds %d segments, want none", n)
	}
}

// TestSpoolSetsAsideUnclassifiedAfterAttempts: an error of neither class
// is retried UnclassifiedAttempts times, then set aside, so that an unknown
// error cannot hold the queue for ever either.
func TestSpoolSetsAsideUnclassifiedAfterAttempts(t *testing.T) {
	dir := t.TempDir()
	f := &fakeStore{ids: map[string]bool{}, tries: map[string]int{}, refuse: map[string]error{
		"odd": &clickhouse.Exception{Code: 49, Message: "Logical error"},
	}}
	f.set(true, false)
	s := &Spool{Dir: dir, MaxBytes: 1 << 20, Durable: true, Insert: f.insert, Stored: f.stored,
		RetryBackoff: time.Millisecond, UnclassifiedAttempts: 3}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeBatches(t, s, "odd", "next")
	f.set(false, false)
	waitFor(t, "replay", func() bool { return s.Stats().Segments == 0 })
	if got := f.rows(); !slices.Equal(got, []int64{1}) {
		t.Fatalf("stored %v, want [1]", got)
	}
	f.mu.Lock()
	tries := f.tries["odd"]
	f.mu.Unlock()
	// One try in the group of both, then three alone.
	if tries != 4 {
		t.Fatalf("odd batch tried %d times, want 4", tries)
	}
	if n := testutil.ToFloat64(s.metrics.quarantined.WithLabelValues(ReasonUnclassified)); n != 1 {
		t.Fatalf("unclassified segments counted %v, want 1", n)
	}
}

// TestQuarantineKeepsEarlierSegmentOfSameName: sequence numbers start again
// at 0 once the spool is empty, so a second refused batch gets the name of
// one quarantined in an earlier run; it must not overwrite it.
func TestQuarantineKeepsEarlierSegmentOfSameName(t *testing.T) {
	dir := t.TempDir()
	refused := &clickhouse.Exception{Code: 60, Message: "Table doesn't exist"}
	for _, id := range []string{"first", "second"} {
		f := &fakeStore{ids: map[string]bool{}, refuse: map[string]error{id: refused}}
		s := openSpool(t, dir, f, true, 1<<20)
		writeBatches(t, s, id)
		waitFor(t, id+" quarantined", func() bool { return s.Stats().Segments == 0 })
		s.Close()
	}
	list, err := ListQuarantine(dir)
	if err != nil {
		t.Fatal(err)
	}
	var batches []string
	for _, q := range list {
		batches = append(batches, q.Batch)
	}
	if !slices.Equal(batches, []string{"first", "second"}) {
		t.Fatalf("quarantined batches %v, want [first second]", batches)
	}
}

// TestSpoolReplaysBacklogWithoutPauses checks MinInsertInterval's scope: it
// spaces the INSERTs of a trickle, not those of a backlog. Four batches of
// two rows spooled during an outage, one per replay INSERT (ReplayRows 3:
// none is full), are all stored soon after ClickHouse is back, though the
// interval is an hour.
func TestSpoolReplaysBacklogWithoutPauses(t *testing.T) {
	f := &fakeStore{ids: map[string]bool{}}
	f.set(true, false) // ClickHouse down: the spool keeps the batches.
	s := &Spool{Dir: t.TempDir(), Durable: true, Insert: f.insert, Stored: f.stored,
		RetryBackoff: 5 * time.Millisecond, ReplayRows: 3, MinInsertInterval: time.Hour}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range int64(4) {
		rec := record(t, 2*i, 2*i+1)
		if err := s.Write(context.Background(), "telemetry", fmt.Sprint("b", i), rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	f.set(false, false)
	waitFor(t, "the backlog to be replayed", func() bool { return len(f.rows()) == 8 })
	if got := f.rows(); !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("stored %v, want 0..7 once each, in order", got)
	}
}

// TestSpoolAsksLedgerOnlyForBatchesSent checks when a replay looks up the
// ledger: never for a batch no INSERT was tried of (durable mode spools
// every batch first, so its replays ask nothing), always for one whose
// INSERT may have been stored (an answer lost: stored once, not twice) and
// for the segments a restart finds, whose history is unknown.
func TestSpoolAsksLedgerOnlyForBatchesSent(t *testing.T) {
	f := &fakeStore{ids: map[string]bool{}}
	dir := t.TempDir()
	s := openSpool(t, dir, f, true, 1<<20)
	writeBatches(t, s, "b1", "b2")
	waitFor(t, "the replay", func() bool { return s.Stats().Segments == 0 })
	if got := f.lookups(); len(got) > 0 {
		t.Fatalf("the ledger was asked about %v, batches never sent", got)
	}
	f.set(false, true) // The next INSERT is stored but its answer lost.
	writeBatches(t, s, "b3")
	waitFor(t, "the replay", func() bool { return s.Stats().Segments == 0 })
	if got := f.lookups(); !slices.Equal(got, []string{"b3"}) {
		t.Fatalf("the ledger was asked about %v, want b3 after its lost answer", got)
	}
	if got := f.rows(); !slices.Equal(got, []int64{0, 1, 0}) {
		t.Fatalf("stored %v, want b1, b2, b3 once each", got)
	}
	s.Close()

	f.set(true, false) // Down: the batch stays spooled across a restart.
	s = openSpool(t, dir, f, true, 1<<20)
	writeBatches(t, s, "b4")
	s.Close()
	f.set(false, false)
	s = openSpool(t, dir, f, true, 1<<20)
	waitFor(t, "the replay after a restart", func() bool { return s.Stats().Segments == 0 })
	if got := f.lookups(); !slices.Equal(got, []string{"b3", "b4"}) {
		t.Fatalf("the ledger was asked about %v, want b3, then b4 found at Open", got)
	}
}

// TestSpoolReplicatedRetriesTheBlockItSent checks Replicated, the cluster's
// replay: a replicated table drops a block whose checksum it holds, so an
// INSERT in doubt that was stored after all is dropped when retried, but
// only if the retry sends the same block. A batch whose direct INSERT
// failed is replayed alone, as it was sent; batches never sent are
// grouped; the block of a replay whose INSERT failed — here without a
// batch that Unstored found stored elsewhere — is sent again as it was,
// though another batch was spooled behind it meanwhile and Unstored would
// answer otherwise now. (Before, every
// batch was replayed alone in cluster mode: one INSERT, and one ZooKeeper
// transaction, per durable group commit, which drained 8,524 segments in
// 13 minutes at load ~30.)
func TestSpoolReplicatedRetriesTheBlockItSent(t *testing.T) {
	f := &fakeStore{ids: map[string]bool{}}
	unstoredCalls := 0
	unstored := func(_ context.Context, _ string, parts []storage.Part) ([]storage.Part, int, error) {
		unstoredCalls++
		if unstoredCalls > 2 { // Later answers would differ: b2 back.
			return parts, 0, nil
		}
		kept := slices.DeleteFunc(slices.Clone(parts), func(p storage.Part) bool { return p.ID == "b2" })
		return kept, len(parts) - len(kept), nil
	}
	s := &Spool{Dir: t.TempDir(), Insert: f.insert, Stored: f.stored, Unstored: unstored, RetryBackoff: 5 * time.Millisecond, Replicated: true}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.set(true, false)
	// b0's direct INSERT fails; b1 and b2 queue behind it, unsent.
	writeBatches(t, s, "b0", "b1", "b2")
	b3 := record(t, 3)
	defer b3.Release()
	failed := false
	var lateErr error
	f.mu.Lock()
	f.fail = func(ids []string) error {
		if !failed && slices.Contains(ids, "b1") {
			failed = true
			// b3 arrives while the group of b1 and b2 is in doubt.
			lateErr = s.Write(context.Background(), "telemetry", "b3", b3)
			return errors.New("connection reset")
		}
		return nil
	}
	f.groups = nil
	f.mu.Unlock()
	f.set(false, false)
	waitFor(t, "the replay", func() bool { return s.Stats().Segments == 0 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if lateErr != nil {
		t.Fatal(lateErr)
	}
	want := [][]string{{"b0"}, {"b1"}, {"b1"}, {"b3"}}
	if !slices.EqualFunc(f.groups, want, slices.Equal) {
		t.Fatalf("INSERTs %v, want %v", f.groups, want)
	}
	if got := testutil.ToFloat64(s.metrics.readingsDeduplicated.WithLabelValues("telemetry")); got != 1 {
		t.Errorf("readings left out = %v, want b2's 1, counted once", got)
	}
}
