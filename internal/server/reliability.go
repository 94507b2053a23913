package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/spool"
)

// spoolWriterAttempts is how often a direct INSERT is tried before its batch
// goes to the spool: once. A failed INSERT may have been stored all the same
// (its answer lost, or a hung server finishing it later), and where the
// server has no insert deduplication only the spool's replay, which asks the
// batch-id ledger first, may try it again without storing it twice.
const spoolWriterAttempts = 1

// durableGCPercent is the Go GC's target percentage (GOGC) of a durable
// node without ingest.memory_limit; see openSpool.
const durableGCPercent = 50

// SpoolDir is the disk spool's directory, data_dir/spool; its quarantine
// is what `gridwatch spool` lists and replays.
func (c *Config) SpoolDir() string { return filepath.Join(c.DataDir, "spool") }

// openSpool opens the disk spool under data_dir/spool in front of a
// ClickHouse writer and returns the batchers' WriteFunc. In durable mode the
// telemetry batch age becomes ingest.durable_commit_interval: a batch is the
// group commit of the messages waiting for their PUBACK.
func (s *Server) openSpool(ctx context.Context) (ingest.WriteFunc, error) {
	cfg := &s.Config.Ingest
	if cfg.MemoryLimit > 0 {
		// The Go runtime's soft limit is per process; gridwatch is the
		// process, so its config sets it. Ingest's own bound is
		// max_pending * batch_bytes per table, where publishers block.
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
	} else if cfg.DurableAck && os.Getenv("GOGC") == "" {
		// Without a limit, the GC lets the heap grow to twice what is
		// live. A durable node's rate is bound by its group commits'
		// fsyncs, not by CPU (at 100,000 rows/s it used about half a
		// core), so it can collect twice as often: peak RSS 158-176 MiB
		// instead of 213 at the same rate, for about 10 % more CPU per
		// row (README, Performance). GOGC, when set, is the operator's.
		debug.SetGCPercent(durableGCPercent)
	}
	writer, err := storage.NewWriter(s.db, storage.WriterOptions{
		MaxAttempts: spoolWriterAttempts,
		Logger:      s.Logger,
		Registerer:  s.metrics,
	})
	if err != nil {
		return nil, err
	}
	s.spool = &spool.Spool{
		Dir:           s.Config.SpoolDir(),
		MaxBytes:      int64(cfg.SpoolMaxBytes),
		Durable:       cfg.DurableAck,
		Insert:        writer.WriteParts,
		Stored:        writer.Stored,
		InsertTimeout: cfg.InsertTimeout,
		Logger:        s.Logger,
		Registerer:    s.metrics,
	}
	// A retried INSERT sends the block its first one sent: the replicated
	// tables drop it if that INSERT was stored after all, whichever
	// replica the ledger lookup read (README, "The ClickHouse cluster").
	s.spool.Replicated = s.Config.ClickHouse.Cluster != ""
	s.spool.Unstored = unstoredFunc(&s.Config, writer)
	if s.coord.coord != nil {
		// The second look and its INSERT, one node at a time: two nodes
		// replaying copies of one reading at once would both store it.
		m, err := s.coord.coord.Mutex("replay")
		if err != nil {
			return nil, fmt.Errorf("cluster.zookeeper: %w", err)
		}
		s.spool.Exclusive = m.Do
	}
	if cfg.DurableAck {
		if s.spool.ReplayRows == 0 {
			// Every row goes through the replay here: an INSERT of
			// batch_rows, as in the default mode, not the spool's 200,000
			// for draining an outage's backlog. Its column buffers (the
			// driver's copies of the rows, and their encoding) are most
			// of a durable node's heap.
			s.spool.ReplayRows = cfg.BatchRows
		}
		s.spool.MinInsertInterval = cfg.BatchAge
		s.durable = &ingest.DurableIndex{}
		s.spool.Index = s.durable
	}
	if err := s.spool.Open(ctx); err != nil {
		return nil, fmt.Errorf("ingest spool: %w", err)
	}
	return func(ctx context.Context, b *ingest.Batch) error {
		return s.spool.Write(ctx, b.Table, b.ID, b.Record)
	}, nil
}

// readingsStored is the pipeline's Stored in durable mode: it tells which
// readings of a redelivered message, all of one device, are durable already,
// in a spool segment (recovered at start or written since) or in ClickHouse.
// A message whose PUBACK a crash lost after its group commit is then not
// stored twice. The index is asked first: a segment leaves it only once its
// replay stored it in ClickHouse, so a segment replayed and deleted between
// the two lookups is found in the second.
func (s *Server) readingsStored(ctx context.Context, readings []ingest.Reading, stored []bool) error {
	s.durable.Contains(readings, stored)
	var ts []int64
	for i, r := range readings {
		if !stored[i] {
			ts = append(ts, r.TS)
		}
	}
	if len(ts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.Config.Ingest.InsertTimeout)
	defer cancel()
	inDB, err := s.db.StoredReadings(ctx, readings[0].Device, ts)
	if err != nil {
		return err
	}
	for i, r := range readings {
		if inDB[storage.ReadingKey{TS: r.TS, Metric: r.Metric}] {
			stored[i] = true
		}
	}
	return nil
}

// severalNodes reports whether nodes beside this one may store the same
// fleet (clickhouse.cluster, cluster.zookeeper): a device that got no PUBACK
// from a node that died resends to another, while the first copy waits in
// the dead node's spool, so a replay leaves out the readings stored already
// (README, "A cluster today").
func (c *Config) severalNodes() bool {
	return c.ClickHouse.Cluster != "" || c.Cluster.ZooKeeper != ""
}

// ReplayQuarantined stores the quarantined segment file of cfg's spool in
// ClickHouse through db, skipping it when the ledger shows it stored, and
// deletes it: `gridwatch spool replay`, on its own or through a running
// server's API (api.Spool). A name the quarantine does not list is refused
// with an error wrapping api.ErrNotQuarantined, so no path leads out of it.
func ReplayQuarantined(ctx context.Context, cfg *Config, db *storage.DB, file string) (rows int, err error) {
	if err := CheckQuarantined(cfg, file); err != nil {
		return 0, err
	}
	w, err := storage.NewWriter(db, storage.WriterOptions{MaxAttempts: 1})
	if err != nil {
		return 0, err
	}
	return spool.ReplayQuarantined(ctx, cfg.SpoolDir(), file, w.WriteParts, w.Stored, unstoredFunc(cfg, w), cfg.replayStepTimeout())
}

// unstoredFunc is a replay's second look after the ledger: where several
// nodes store one fleet, at every reading replayed (a resend another node
// stored under its own batch id); on a lone node, at the batches over
// several partitions only, which the ledger cannot vouch for.
func unstoredFunc(cfg *Config, w *storage.Writer) spool.UnstoredFunc {
	if cfg.severalNodes() {
		return w.Unstored
	}
	return w.UnstoredInDoubt
}

// CheckQuarantined reports, as an api.ErrNotQuarantined error, a file that
// is not in cfg's spool quarantine.
func CheckQuarantined(cfg *Config, file string) error {
	list, err := spool.ListQuarantine(cfg.SpoolDir())
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list, func(q spool.Quarantined) bool { return q.File == file }) {
		return fmt.Errorf("%w: %q is not in %s (gridwatch spool list names them)", api.ErrNotQuarantined, file, filepath.Join(cfg.SpoolDir(), "quarantine"))
	}
	return nil
}

// replayStepTimeout bounds each step of a quarantine replay, the ledger
// lookup and the INSERT: the longer of their bounds.
func (c *Config) replayStepTimeout() time.Duration {
	return max(c.Ingest.InsertTimeout, spool.DefaultLookupTimeout)
}

// ReplayTimeout bounds a whole quarantine replay (ReplayQuarantined): a
// client waiting for one through the API waits this long.
func (c *Config) ReplayTimeout() time.Duration { return 2*c.replayStepTimeout() + 10*time.Second }

// ReplayQuarantined is the server's api.Spool: ReplayQuarantined on its
// own ClickHouse, one segment at a time, so that two requests for one
// segment cannot both find it unstored and store it twice.
func (s *Server) ReplayQuarantined(ctx context.Context, file string) (int, error) {
	s.replaying.Lock()
	defer s.replaying.Unlock()
	return ReplayQuarantined(ctx, &s.Config, s.db, file)
}

// observeStored is the telemetry batcher's write in durable mode: it hands a
// batch's readings to the alert engine once write stored them (the group
// commit fsynced them in the spool), never before. A batch the spool could
// not write gets no PUBACK and its devices send it again: evaluated when
// taken, as in the default mode, its readings would count twice in windowed
// rules. The batcher calls write from one goroutine, which owns readings.
func (s *Server) observeStored(write ingest.WriteFunc) ingest.WriteFunc {
	var readings []ingest.Reading
	return func(ctx context.Context, b *ingest.Batch) error {
		if err := write(ctx, b); err != nil {
			return err
		}
		readings = ingest.ReadingsOf(b.Record, readings[:0])
		s.observe(readings)
		clear(readings) // Holds no device's strings until the next batch.
		return nil
	}
}

// telemetryBatchAge is the telemetry batcher's MaxAge: the commit interval
// in durable mode, where PUBACKs wait for it, else ingest.batch_age.
func telemetryBatchAge(cfg *Config) time.Duration {
	if cfg.Ingest.DurableAck {
		return cfg.Ingest.DurableCommitInterval
	}
	return cfg.Ingest.BatchAge
}

// closeIngest flushes the batchers through the spool, then closes it. The
// flush is bounded by ingest.shutdown_timeout: then the spool is closed
// under the batchers, which cuts the INSERT in progress short, and the
// batches still in memory go to disk for the next start instead of
// ClickHouse. No accepted batch is dropped (only a disk error loses one).
func (s *Server) closeIngest(closeBatchers func() error) error {
	if s.spool == nil {
		return closeBatchers()
	}
	deadline := time.AfterFunc(s.Config.Ingest.ShutdownTimeout, func() {
		s.Logger.Error("ingest flush exceeded ingest.shutdown_timeout; closing the spool", "timeout", s.Config.Ingest.ShutdownTimeout)
		_ = s.spool.Close()
	})
	defer deadline.Stop()
	err := closeBatchers()
	if st := s.spool.Stats(); st.Segments > 0 {
		s.Logger.Warn("spool keeps batches for the next start", "segments", st.Segments, "rows", st.Rows, "bytes", st.Bytes)
	}
	return errors.Join(err, s.spool.Close())
}
