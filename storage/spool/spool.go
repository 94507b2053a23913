// Package spool keeps batches on disk while ClickHouse cannot take them and
// replays them, in order and once, when it can again. It is what makes
// "acked means stored" hold through a ClickHouse outage, and, in durable
// mode, through a crash or power loss of gridwatch itself.
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/storage"
)

// Sentinel errors of the package.
var (
	// ErrCorrupt means a segment file failed its checks: truncated, a
	// flipped bit, or not one Arrow record. It is quarantined.
	ErrCorrupt = errors.New("spool: corrupt segment")
	// ErrFull means the spool is at MaxBytes: Admit refuses new messages
	// until the replay drains it.
	ErrFull = errors.New("spool: full")
)

// Defaults of Spool.
const (
	DefaultMaxBytes      = 1 << 30
	DefaultInsertTimeout = 10 * time.Second
	DefaultLookupTimeout = 30 * time.Second
	DefaultReplayRows    = 200_000
	DefaultRetryBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff    = 10 * time.Second
	// DefaultUnclassifiedAttempts is UnclassifiedAttempts' default: with the
	// default backoff, about a minute of tries.
	DefaultUnclassifiedAttempts = 10
)

// Segment file names: a zero-padded sequence number, so that names sort in
// spooling order, and the suffix.
const (
	segmentSuffix  = ".seg"
	tempSuffix     = ".tmp"
	quarantineDir  = "quarantine"
	segmentNameLen = 20
)

// InsertFunc inserts parts into table as one INSERT: all of them or none
// (storage.Writer.WriteParts). An error is a *storage.WriteError.
type InsertFunc func(ctx context.Context, table string, parts []storage.Part) error

// StoredFunc returns which of the parts' batch ids are already in table
// (storage.Writer.Stored, which bounds the lookup by the parts' time range).
// It is the ledger that keeps a replay from storing a batch twice whose
// first INSERT succeeded but whose answer was lost.
type StoredFunc func(ctx context.Context, table string, parts []storage.Part) (map[string]bool, error)

// UnstoredFunc returns parts without the rows table holds already, whichever
// batch stored them, and how many it left out (storage.Writer.Unstored); it
// is asked after StoredFunc, about the parts the ledger does not have. A
// kept part with a record not among parts' is new, released by the caller.
type UnstoredFunc func(ctx context.Context, table string, parts []storage.Part) ([]storage.Part, int, error)

// Index is told which batches the spool holds, so that its owner can tell
// whether rows are durable without reading the segments: Add for every sound
// segment recovered at Open and for every batch spooled, before Write
// returns; Remove once the segment is gone, stored in ClickHouse (after its
// INSERT succeeded) or quarantined. Its methods are called from several
// goroutines and must not keep rec.
type Index interface {
	Add(seq uint64, table string, rec arrow.Record)
	Remove(seq uint64)
}

// Spool is a directory of segment files, one batch each, checksummed and
// fsynced, bounded by MaxBytes, replayed oldest first by one goroutine.
//
// Write policy: in the default mode a batch goes straight to ClickHouse
// while nothing is spooled; if that fails (down, refusing, or slower than
// InsertTimeout) or older batches are still spooled, it is spooled instead,
// so that batches reach ClickHouse in order. In Durable mode every batch is
// spooled (fsynced) before Write returns and only the replayer inserts.
//
// Full policy: MaxBytes bounds admission, not Write. While the spool holds
// MaxBytes or more, Admit fails, so the broker refuses new QoS 1 messages
// (no PUBACK: the device retries) and drops, counting them, QoS 0 ones. A
// batch that reaches Write holds messages admitted (in the default mode,
// acknowledged) already, so it is always spooled, never dropped for want of
// room: the spool may exceed MaxBytes by the batches that were in memory
// when it filled, at most (max pending + 1) batches per table. Only a disk
// error loses a batch (counted as dropped).
//
// Replay: the oldest segments of one table, up to ReplayRows rows, are
// inserted as one INSERT after asking Stored which of their batch ids are
// already in ClickHouse; those are skipped. Segments are deleted only once
// stored. Failures are told apart by storage.Classify:
//   - a transient one (ClickHouse down, slow, overloaded, refusing the
//     credentials) is retried with backoff, forever, until Close;
//   - a permanent one (a missing or altered table, data the server cannot
//     parse) cannot pass: the segments of the INSERT are retried one at a
//     time, and a segment that fails alone is quarantined (moved to
//     Dir/quarantine with a reason file, counted, logged) and replay goes on
//     with the next; ReplayQuarantined stores it once the cause is fixed;
//   - an unclassified one (a server code on neither list) is retried like a
//     transient one, but a segment that fails alone UnclassifiedAttempts
//     times in a row is quarantined like a permanent one, so that no
//     unknown error holds the queue, and so all ingestion, for ever.
//
// Set the settings, Open, then Write from any goroutine; Close stops the
// replayer and cuts direct inserts short, and leaves what is spooled for the
// next Open. Writes after Close go to disk.
type Spool struct {
	// Dir holds the segments; corrupt ones are moved to Dir/quarantine.
	// Required.
	Dir string
	// MaxBytes bounds the segment files' total size. It defaults to 1 GiB.
	MaxBytes int64
	// Durable spools every batch before Write returns. It defaults to false.
	Durable bool
	// Insert stores parts in ClickHouse. Required.
	Insert InsertFunc
	// Stored is the ledger lookup. Required.
	Stored StoredFunc
	// Unstored, when set, leaves out of a replay the readings stored
	// already (storage.Writer.Unstored): where several nodes store one
	// fleet's data, a resend another node stored under its own batch id.
	// It defaults to none.
	Unstored UnstoredFunc
	// Exclusive, when set, runs each replay's lookups and INSERT (fn) one
	// node at a time over the nodes that store one fleet (cluster.Mutex):
	// two nodes replaying copies of a reading at the same moment could
	// otherwise both find it missing, and both store it. fn's context
	// ends when the exclusion is lost. It defaults to none.
	Exclusive func(ctx context.Context, fn func(context.Context) error) error
	// InsertTimeout bounds one INSERT, direct or replayed, so that a hung
	// ClickHouse (SIGSTOP, a network black hole) sends batches to disk
	// instead of holding them. It defaults to 10 seconds.
	InsertTimeout time.Duration
	// LookupTimeout bounds the ledger lookup before a replay INSERT, apart
	// from the INSERT: on a table of months it reads more than an INSERT
	// writes. It defaults to 30 seconds.
	LookupTimeout time.Duration
	// ReplayRows bounds the rows of one replay INSERT. It defaults to
	// 200,000.
	ReplayRows int
	// Replicated replays so that a retried INSERT sends the very block its
	// failed INSERT sent, which a replicated table drops when it holds
	// that block's checksum already (an INSERT answered "unknown status",
	// or in doubt, that was stored after all): a segment whose direct
	// INSERT failed is replayed alone, as it was sent, and the block of a
	// replay whose INSERT failed — its parts as sent, after the ledger and
	// Unstored — is sent again as it is, unless the ledger then shows all
	// of it stored. Other segments are grouped up to ReplayRows. What a
	// restart recovers is grouped anew (the process that sent it is gone,
	// and with it what it knew of its INSERTs). It defaults to false.
	Replicated bool
	// MinInsertInterval is the pause after a replay INSERT that was not
	// full (ReplayRows) and left nothing spooled, so that durable mode,
	// which spools many small batches, still inserts about once per
	// interval; a backlog is replayed without pauses. It defaults to 0.
	MinInsertInterval time.Duration
	// RetryBackoff is the first pause after a failed replay; it doubles up to
	// 10 seconds. It defaults to 500 milliseconds.
	RetryBackoff time.Duration
	// UnclassifiedAttempts is how many replays in a row of one segment may
	// fail with an unclassified error before it is quarantined. It defaults
	// to 10.
	UnclassifiedAttempts int
	// Allocator allocates the replayed records. It defaults to
	// memory.DefaultAllocator.
	Allocator memory.Allocator
	// Logger receives outages, recoveries and quarantined segments. It
	// defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the spool's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Index, when set, follows the segments the spool holds. It defaults to
	// none.
	Index Index

	mu      sync.Mutex
	segs    []segInfo // oldest first
	bytes   int64
	nextSeq uint64
	wake    chan struct{} // tells the replayer a segment arrived
	// closing ends at Close; it cuts direct inserts short.
	closing context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	metrics *metrics
	// failing, isolateBelow, strikeSeq, strikes and resend belong to the
	// replayer goroutine. Segments numbered below isolateBelow are replayed one at a
	// time (a group of them was refused); strikes counts the unclassified
	// failures in a row of segment strikeSeq.
	failing      bool
	isolateBelow uint64
	strikeSeq    uint64
	strikes      int
	// resend is the block of the replay whose INSERT failed (Replicated):
	// the next replay sends it again as it is.
	resend *sentBlock
	// directFailing is set by Write when a direct insert fails.
	directFailing bool
	// replays are the replays of the last replayRateWindow, for Stats.
	replays []replayMark
}

// replayRateWindow is the span over which Stats measures the replay rate.
const replayRateWindow = 10 * time.Second

// replayMark is one successful replay: when, and the rows it drained.
type replayMark struct {
	at   time.Time
	rows int
}

// segInfo describes one segment file.
type segInfo struct {
	seq     uint64
	id      string
	size    int64
	table   string
	rows    int
	created time.Time
	// unsent is set while no INSERT of the batch was tried (spooled in
	// durable mode, or behind older segments): it cannot be in ClickHouse,
	// so its replay asks the ledger nothing. A segment recovered at Open
	// may have been sent by the process before.
	unsent bool
	// direct is set when the batch was spooled after its direct INSERT
	// failed: Replicated replays it alone.
	direct bool
}

// Stats is a snapshot of the spool.
type Stats struct {
	// Segments is the number of segment files.
	Segments int
	// Bytes is their total size.
	Bytes int64
	// MaxBytes is the bound.
	MaxBytes int64
	// Rows is the rows they hold.
	Rows int
	// OldestAge is the age of the oldest segment, 0 when there is none.
	OldestAge time.Duration
	// ReplayRate is the rows per second replayed (stored or found stored
	// already) over the last 10 seconds.
	ReplayRate float64
}

// Open checks the settings, creates Dir, verifies every segment in it
// (quarantining the damaged ones and partial writes of a crash) and starts
// the replayer.
func (s *Spool) Open(ctx context.Context) error {
	if s.Dir == "" || s.Insert == nil || s.Stored == nil {
		return errors.New("spool: Dir, Insert and Stored are required")
	}
	if s.MaxBytes <= 0 {
		s.MaxBytes = DefaultMaxBytes
	}
	if s.InsertTimeout <= 0 {
		s.InsertTimeout = DefaultInsertTimeout
	}
	if s.LookupTimeout <= 0 {
		s.LookupTimeout = DefaultLookupTimeout
	}
	if s.ReplayRows <= 0 {
		s.ReplayRows = DefaultReplayRows
	}
	if s.RetryBackoff <= 0 {
		s.RetryBackoff = DefaultRetryBackoff
	}
	if s.UnclassifiedAttempts <= 0 {
		s.UnclassifiedAttempts = DefaultUnclassifiedAttempts
	}
	if s.Allocator == nil {
		s.Allocator = memory.DefaultAllocator
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.wake = make(chan struct{}, 1)
	m, err := newMetrics(s.Registerer, s)
	if err != nil {
		return err
	}
	s.metrics = m
	if err := os.MkdirAll(filepath.Join(s.Dir, quarantineDir), 0o750); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := s.recover(); err != nil {
		return err
	}
	if len(s.segs) > 0 {
		st := s.Stats()
		s.Logger.Warn("spool holds batches from before; replaying them", "dir", s.Dir,
			"segments", st.Segments, "rows", st.Rows, "bytes", st.Bytes)
	}
	s.closing, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go s.runReplay(s.closing)
	return nil
}

// recover scans Dir: it keeps the sound segments, in order, and quarantines
// the rest.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		if strings.HasSuffix(name, tempSuffix) {
			// A write a crash interrupted: never acknowledged, never complete.
			s.quarantine(name, Quarantined{Reason: ReasonPartial, Error: "a write a crash interrupted"})
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if !strings.HasSuffix(name, segmentSuffix) || err != nil {
			continue // Not ours.
		}
		path := filepath.Join(s.Dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		seg, err := decodeSegment(data, s.Allocator)
		if err != nil {
			s.Logger.Error("spool segment is corrupt; quarantined", "file", path, "err", err)
			s.quarantine(name, Quarantined{Reason: ReasonCorrupt, Error: err.Error()})
			continue
		}
		info, _ := e.Info()
		created := time.Now()
		if info != nil {
			created = info.ModTime()
		}
		s.segs = append(s.segs, segInfo{seq: seq, id: seg.ID, size: int64(len(data)), table: seg.Table, rows: int(seg.Record.NumRows()), created: created})
		s.bytes += int64(len(data))
		s.nextSeq = max(s.nextSeq, seq+1)
		if s.Index != nil {
			s.Index.Add(seq, seg.Table, seg.Record)
		}
		seg.Record.Release()
	}
	slices.SortFunc(s.segs, func(a, b segInfo) int { return cmpSeq(a.seq, b.seq) })
	return nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// segmentName is the file name of segment seq.
func segmentName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", segmentNameLen, seq, segmentSuffix)
}

// Write stores rec, rows of table in batch id, in ClickHouse or in the
// spool; see Spool for the policy. A nil error means the rows are in
// ClickHouse or fsynced on disk. A batch ClickHouse refuses permanently
// (the data or the table is wrong, storage.Permanent) is spooled too: its
// replay sets it aside in the quarantine with the server's reason, to be
// replayed by hand once the cause is fixed, rather than dropped.
func (s *Spool) Write(ctx context.Context, table, id string, rec arrow.Record) error {
	if rec.NumRows() == 0 {
		return nil
	}
	tried := false
	if !s.Durable && s.closing.Err() == nil && s.empty() {
		tried = true
		ictx, cancel := context.WithTimeout(ctx, s.InsertTimeout)
		stop := context.AfterFunc(s.closing, cancel)
		err := s.Insert(ictx, table, []storage.Part{{ID: id, Record: rec}})
		stop()
		cancel()
		if err == nil {
			s.setDirectFailing(false, nil)
			return nil
		}
		s.setDirectFailing(true, err)
	}
	if err := s.append(table, id, rec, tried); err != nil {
		s.metrics.dropped.WithLabelValues(table).Add(float64(rec.NumRows()))
		return err
	}
	s.metrics.spooled.WithLabelValues(table).Add(float64(rec.NumRows()))
	return nil
}

// setDirectFailing logs the start and the end of a burst of failed direct
// inserts.
func (s *Spool) setDirectFailing(failing bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failing == s.directFailing {
		return
	}
	s.directFailing = failing
	if failing {
		s.Logger.Warn("ClickHouse insert failed; spooling batches to disk", "dir", s.Dir, "err", err)
	}
}

// empty reports whether no segment waits for replay.
func (s *Spool) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.segs) == 0
}

// Full reports whether the spool is at MaxBytes: new data should be
// refused until it drains.
func (s *Spool) Full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes >= s.MaxBytes
}

// append writes a segment file and fsyncs it and its directory; tried
// tells that its direct INSERT was tried. It does not wait for room: see
// Spool for the full policy.
func (s *Spool) append(table, id string, rec arrow.Record, tried bool) error {
	data, err := encodeSegment(table, id, rec)
	if err != nil {
		return fmt.Errorf("spool batch %s: %w", id, err)
	}
	size := int64(len(data))
	s.mu.Lock()
	seq := s.nextSeq
	s.nextSeq++
	s.bytes += size // Reserved while the file is written.
	s.mu.Unlock()

	if err := writeFileSync(s.Dir, segmentName(seq), data); err != nil {
		s.mu.Lock()
		s.bytes -= size
		s.mu.Unlock()
		return fmt.Errorf("spool batch %s: %w", id, err)
	}
	if s.Index != nil {
		// Before the replayer can see, store and Remove it.
		s.Index.Add(seq, table, rec)
	}
	s.mu.Lock()
	info := segInfo{seq: seq, id: id, size: size, table: table, rows: int(rec.NumRows()), created: time.Now(), unsent: !tried, direct: tried}
	i, _ := slices.BinarySearchFunc(s.segs, seq, func(a segInfo, seq uint64) int { return cmpSeq(a.seq, seq) })
	s.segs = slices.Insert(s.segs, i, info)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // A wake-up is pending already.
	}
	return nil
}

// writeFileSync writes data to dir/name through a temporary file, fsyncing
// the file and then the directory, so that after it returns the segment
// survives a crash or power loss, whole or not at all.
func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+tempSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Stats returns a snapshot of the spool.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Segments: len(s.segs), Bytes: s.bytes, MaxBytes: s.MaxBytes}
	for _, g := range s.segs {
		st.Rows += g.rows
	}
	if len(s.segs) > 0 {
		st.OldestAge = time.Since(s.segs[0].created)
	}
	s.pruneReplaysLocked()
	for _, m := range s.replays {
		st.ReplayRate += float64(m.rows)
	}
	st.ReplayRate /= replayRateWindow.Seconds()
	return st
}

// noteReplay records a successful replay of rows, for the replay rate.
func (s *Spool) noteReplay(rows int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneReplaysLocked()
	s.replays = append(s.replays, replayMark{time.Now(), rows})
}

// pruneReplaysLocked forgets the replays older than replayRateWindow.
func (s *Spool) pruneReplaysLocked() {
	i := 0
	for i < len(s.replays) && time.Since(s.replays[i].at) > replayRateWindow {
		i++
	}
	s.replays = s.replays[i:]
}

// Ready is the /readyz check: it fails while the spool is full, that is
// while QoS 1 telemetry is being refused.
func (s *Spool) Ready(context.Context) error { return s.Admit() }

// Admit returns an error wrapping ErrFull, with the spool's figures, while
// the spool is Full, and nil otherwise. The pipeline asks it before taking a
// message.
func (s *Spool) Admit() error {
	if !s.Full() {
		return nil
	}
	st := s.Stats()
	return fmt.Errorf("%w: %d of %d bytes in %d segments (%d rows), oldest %s old; QoS 1 telemetry is refused until it drains",
		ErrFull, st.Bytes, st.MaxBytes, st.Segments, st.Rows, st.OldestAge.Round(time.Second))
}

// runReplay inserts spooled segments, oldest first, until ctx ends.
func (s *Spool) runReplay(ctx context.Context) {
	defer s.wg.Done()
	delays := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.RetryBackoff),
		backoff.WithMaxInterval(DefaultMaxBackoff),
		backoff.WithMaxElapsedTime(0),
	)
	defer func() { s.resend.release() }()
	for ctx.Err() == nil {
		next, more := s.nextReplay()
		if len(next) == 0 {
			select {
			case <-ctx.Done():
			case <-s.wake:
			}
			continue
		}
		rows, err := s.replay(ctx, next)
		if err != nil && ctx.Err() == nil && s.setAside(next, err) {
			// The server refused the block: it stored none of it.
			s.resend.release()
			s.resend = nil
			continue // Go on with the next segments at once.
		}
		pause := time.Duration(0)
		switch {
		case err != nil:
			if !s.failing {
				s.failing = true
				s.Logger.Warn("spool replay failed; retrying", "err", err)
			}
			pause = delays.NextBackOff()
		case rows < s.ReplayRows && !more:
			if s.failing {
				s.failing = false
				s.Logger.Info("spool replay recovered", "left", s.Stats().Segments)
			}
			delays.Reset()
			pause = s.MinInsertInterval
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// setAside handles a replay of segs that failed with err: for a group of
// segments refused with an error that is not transient, it has them replayed
// one at a time; a single segment refused permanently, or unclassified for
// the UnclassifiedAttempts-th time in a row, it quarantines. It reports
// whether it did either, and so whether replay goes on without a pause.
func (s *Spool) setAside(segs []segInfo, err error) bool {
	class := storage.Classify(err)
	if class == storage.Transient {
		return false
	}
	if len(segs) > 1 {
		s.isolateBelow = segs[len(segs)-1].seq + 1
		s.Logger.Warn("spool replay refused; replaying its batches one by one to set the bad ones aside",
			"table", segs[0].table, "segments", len(segs), "class", class.String(), "err", err)
		return true
	}
	g := segs[0]
	reason := ReasonRejected
	if class == storage.Unclassified {
		if s.strikeSeq != g.seq {
			s.strikeSeq, s.strikes = g.seq, 0
		}
		s.strikes++
		if s.strikes < s.UnclassifiedAttempts {
			return false
		}
		reason = ReasonUnclassified
	}
	file := s.quarantine(segmentName(g.seq), Quarantined{Table: g.table, Batch: g.id, Rows: g.rows, Reason: reason, Error: err.Error()})
	s.forget([]segInfo{g})
	s.Logger.Error("spool batch refused by ClickHouse; quarantined, replay goes on (gridwatch spool list, gridwatch spool replay)",
		"file", filepath.Join(s.Dir, quarantineDir, file), "table", g.table, "batch", g.id, "rows", g.rows,
		"reason", reason, "err", err)
	return true
}

// nextReplay returns the oldest segments of one table, up to ReplayRows
// rows (at least one segment; exactly one while isolating; see Replicated
// for its groups). more reports that segments are left after them: the
// next replay follows at once, not MinInsertInterval later.
func (s *Spool) nextReplay() (out []segInfo, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resend != nil {
		return s.resend.segs, len(s.segs) > len(s.resend.segs)
	}
	rows := 0
	for _, g := range s.segs {
		if len(out) > 0 && (g.table != out[0].table || rows+g.rows > s.ReplayRows || out[0].seq < s.isolateBelow ||
			s.Replicated && (out[0].direct || g.direct)) {
			return out, true
		}
		out = append(out, g)
		rows += g.rows
	}
	return out, false
}

// sentBlock is the block of a replay INSERT that failed: its segments, and
// the parts it sent (records retained), with what the lookups before it
// left out.
type sentBlock struct {
	segs  []segInfo
	parts []storage.Part
	res   stepResult
}

// release releases the block's records; b may be nil.
func (b *sentBlock) release() {
	if b == nil {
		return
	}
	for _, p := range b.parts {
		p.Record.Release()
	}
}

// replay inserts the segments as one INSERT, leaving out those the ledger
// has, and deletes them. It returns the rows of the segments. With a block
// to send again (Replicated), segs are its segments.
func (s *Spool) replay(ctx context.Context, segs []segInfo) (int, error) {
	if s.resend != nil {
		return s.replayResend(ctx)
	}
	table := segs[0].table
	var (
		parts []storage.Part
		ask   []storage.Part // those an earlier INSERT may have stored
		done  []segInfo      // segments to delete once the INSERT succeeded
		rows  int
	)
	defer func() {
		for _, p := range parts {
			p.Record.Release()
		}
	}()
	for _, g := range segs {
		name := segmentName(g.seq)
		data, err := os.ReadFile(filepath.Join(s.Dir, name))
		var seg segment
		if err == nil {
			seg, err = decodeSegment(data, s.Allocator)
		}
		if err != nil {
			// Damaged after it was written and checked (disk trouble).
			s.Logger.Error("spool segment unreadable; quarantined", "file", name, "err", err)
			s.quarantine(name, Quarantined{Table: g.table, Batch: g.id, Rows: g.rows, Reason: ReasonCorrupt, Error: err.Error()})
			s.forget([]segInfo{g})
			continue
		}
		part := storage.Part{ID: seg.ID, Record: seg.Record}
		parts = append(parts, part)
		if !g.unsent {
			ask = append(ask, part)
		}
		done = append(done, g)
		rows += g.rows
	}
	if len(parts) == 0 {
		return 0, nil
	}
	// From here on the batches may reach ClickHouse, whatever this
	// replay's outcome: the next one asks the ledger about them.
	s.markSent(done)
	var (
		fresh  fresh
		res    stepResult
		looked bool
	)
	err := s.exclusive(ctx, func(ctx context.Context) error {
		var err error
		if fresh, res, err = freshParts(ctx, table, parts, ask, s.lookups()); err != nil {
			return err
		}
		looked = true
		return s.insert(ctx, table, fresh.parts)
	})
	if !looked {
		return rows, err
	}
	if err != nil {
		if s.Replicated {
			for _, p := range fresh.parts {
				if !fresh.made(p) {
					p.Record.Retain()
				}
			}
			s.resend = &sentBlock{segs: done, parts: fresh.parts, res: res}
		} else {
			fresh.release()
		}
		return rows, err
	}
	fresh.release()
	s.replayed(table, done, rows, res, fresh.parts)
	return rows, nil
}

// replayResend sends the block of the replay whose INSERT failed again as
// it is (Replicated), unless the ledger shows every batch of it stored.
func (s *Spool) replayResend(ctx context.Context) (int, error) {
	b := s.resend
	table := b.segs[0].table
	rows := 0
	for _, g := range b.segs {
		rows += g.rows
	}
	sent := b.parts
	// Under Exclusive too: another node's second look must not run
	// between this lookup and this INSERT.
	err := s.exclusive(ctx, func(ctx context.Context) error {
		if len(sent) > 0 {
			lctx, cancel := context.WithTimeout(ctx, s.LookupTimeout)
			have, err := s.Stored(lctx, table, sent)
			cancel()
			if err != nil {
				return fmt.Errorf("ledger lookup of %d batches in %s: %w", len(sent), table, err)
			}
			if !slices.ContainsFunc(sent, func(p storage.Part) bool { return !have[p.ID] }) {
				b.res.batches = 0
				sent = nil
			}
		}
		return s.insert(ctx, table, sent)
	})
	if err != nil {
		return rows, err
	}
	s.resend = nil
	s.replayed(table, b.segs, rows, b.res, sent)
	b.release()
	return rows, nil
}

// exclusive runs fn under Exclusive, if set.
func (s *Spool) exclusive(ctx context.Context, fn func(context.Context) error) error {
	if s.Exclusive == nil {
		return fn(ctx)
	}
	return s.Exclusive(ctx, fn)
}

// insert sends parts as one INSERT, bounded by InsertTimeout; none is a
// no-op.
func (s *Spool) insert(ctx context.Context, table string, parts []storage.Part) error {
	if len(parts) == 0 {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, s.InsertTimeout)
	defer cancel()
	return s.Insert(ictx, table, parts)
}

// replayed counts a replay that stored parts, the rest of done's batches
// found stored (res), and deletes done's segments, which held rows.
func (s *Spool) replayed(table string, done []segInfo, rows int, res stepResult, stored []storage.Part) {
	if n := len(done) - res.batches; n > 0 {
		s.metrics.deduplicated.WithLabelValues(table).Add(float64(n))
	}
	if res.readingsLeftOut > 0 {
		s.metrics.readingsDeduplicated.WithLabelValues(table).Add(float64(res.readingsLeftOut))
	}
	for _, p := range stored {
		s.metrics.replayed.WithLabelValues(table).Add(float64(p.Record.NumRows()))
	}
	for _, g := range done {
		if err := os.Remove(filepath.Join(s.Dir, segmentName(g.seq))); err != nil {
			s.Logger.Error("spool: remove replayed segment", "seq", g.seq, "err", err)
		}
	}
	// Counted before the segments leave the list, so that a reader of
	// Stats who sees them gone sees their rows in the replay rate.
	s.noteReplay(rows)
	s.forget(done)
}

// lookups are the spool's questions before a replay INSERT.
func (s *Spool) lookups() lookups {
	return lookups{stored: s.Stored, unstored: s.Unstored, timeout: s.LookupTimeout}
}

// lookups are what a replay asks before its INSERT: the ledger (stored),
// then, when set, which readings are stored already (unstored); timeout
// bounds each.
type lookups struct {
	stored   StoredFunc
	unstored UnstoredFunc
	timeout  time.Duration
}

// stepResult is what the lookups before a replay INSERT found: the batches
// the ledger did not have, and the readings Unstored left out as stored.
type stepResult struct {
	batches, readingsLeftOut int
}

// fresh are the parts a replay sends, some of them of records Unstored
// made.
type fresh struct {
	parts    []storage.Part
	original []storage.Part // the parts asked about
}

// made reports whether p's record was made by Unstored (not one of the
// parts asked about).
func (f fresh) made(p storage.Part) bool {
	return !slices.ContainsFunc(f.original, func(o storage.Part) bool { return o.Record == p.Record })
}

// release releases the records Unstored made.
func (f fresh) release() {
	for _, p := range f.parts {
		if f.made(p) {
			p.Record.Release()
		}
	}
}

// freshParts returns the parts the ledger does not have, without the
// readings stored already when q.unstored is set; the ledger is asked about
// those of ask only (a batch never sent cannot be stored), about none when
// ask is empty. The caller releases the records made (fresh.release).
func freshParts(ctx context.Context, table string, parts, ask []storage.Part, q lookups) (fresh, stepResult, error) {
	var have map[string]bool
	if len(ask) > 0 {
		lctx, cancel := context.WithTimeout(ctx, q.timeout)
		var err error
		have, err = q.stored(lctx, table, ask)
		cancel()
		if err != nil {
			return fresh{}, stepResult{}, fmt.Errorf("ledger lookup of %d batches in %s: %w", len(ask), table, err)
		}
	}
	f := fresh{}
	for _, p := range parts {
		if !have[p.ID] {
			f.parts = append(f.parts, p)
		}
	}
	f.original = f.parts
	res := stepResult{batches: len(f.parts)}
	if q.unstored != nil && len(f.parts) > 0 {
		lctx, cancel := context.WithTimeout(ctx, q.timeout)
		kept, n, err := q.unstored(lctx, table, f.parts)
		cancel()
		if err != nil {
			return fresh{}, stepResult{}, fmt.Errorf("stored readings lookup of %d batches in %s: %w", len(f.parts), table, err)
		}
		f.parts, res.readingsLeftOut = kept, n
	}
	return f, res, nil
}

// markSent clears the segments' unsent flags.
func (s *Spool) markSent(segs []segInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range segs {
		if i, ok := slices.BinarySearchFunc(s.segs, g.seq, func(a segInfo, seq uint64) int { return cmpSeq(a.seq, seq) }); ok {
			s.segs[i].unsent = false
		}
	}
}

// forget drops segments from the list, frees their space and tells Index.
func (s *Spool) forget(gone []segInfo) {
	s.mu.Lock()
	s.segs = slices.DeleteFunc(s.segs, func(g segInfo) bool {
		return slices.ContainsFunc(gone, func(x segInfo) bool { return x.seq == g.seq })
	})
	for _, g := range gone {
		s.bytes -= g.size
	}
	s.mu.Unlock()
	if s.Index != nil {
		for _, g := range gone {
			s.Index.Remove(g.seq)
		}
	}
}

// Close stops the replayer and cuts short the direct inserts in progress,
// whose batches are spooled instead. What is spooled stays for the next
// Open. It is safe to call twice, and concurrently with Write.
func (s *Spool) Close() error {
	s.once.Do(func() {
		if s.cancel == nil {
			return
		}
		s.cancel()
		s.wg.Wait()
	})
	return nil
}
