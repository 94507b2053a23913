package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/storage"
)

// Reasons a segment is quarantined, the reason label of
// gridwatch_spool_segments_quarantined_total.
const (
	// ReasonCorrupt is a segment that failed its checks.
	ReasonCorrupt = "corrupt"
	// ReasonPartial is a write a crash interrupted.
	ReasonPartial = "partial"
	// ReasonRejected is a batch ClickHouse refused with a permanent error
	// (storage.Permanent): a missing or altered table, data it cannot parse.
	ReasonRejected = "rejected"
	// ReasonUnclassified is a batch that failed UnclassifiedAttempts times
	// in a row with an error of neither class (storage.Unclassified).
	ReasonUnclassified = "unclassified"
)

// reasonSuffix ends the name of a quarantined segment's reason file, a JSON
// Quarantined beside it.
const reasonSuffix = ".reason.json"

// Quarantined is a segment set aside in Dir/quarantine, with why. A
// rejected or unclassified one is whole and can be replayed with
// ReplayQuarantined once its cause is fixed.
type Quarantined struct {
	// File is the segment's name in the quarantine directory.
	File string `json:"file"`
	// Table, Batch and Rows describe the batch, when it could be read.
	Table string `json:"table,omitempty"`
	Batch string `json:"batch,omitempty"`
	Rows  int    `json:"rows,omitempty"`
	// Reason is one of the Reason constants; "unknown" for a file without
	// a reason file (quarantined by an older gridwatch).
	Reason string `json:"reason"`
	// Error is the error that set it aside.
	Error string `json:"error,omitempty"`
	// At is when it was set aside.
	At time.Time `json:"at"`
}

// quarantine moves the file name of Dir into Dir/quarantine under a name no
// other quarantined file has, with its reason file written first, and counts
// it. It returns the name in the quarantine directory.
func (s *Spool) quarantine(name string, q Quarantined) string {
	s.metrics.quarantined.WithLabelValues(q.Reason).Inc()
	if q.Rows > 0 {
		s.metrics.quarantinedRows.WithLabelValues(q.Table, q.Reason).Add(float64(q.Rows))
	}
	qdir := filepath.Join(s.Dir, quarantineDir)
	target := name
	if _, err := os.Lstat(filepath.Join(qdir, target)); err == nil {
		// Sequence numbers start again at 0 once the spool is empty.
		seq, ext, _ := strings.Cut(name, ".")
		target = seq + "-" + strconv.FormatInt(time.Now().UnixNano(), 10) + "." + ext
	}
	q.File, q.At = target, time.Now().UTC()
	data, err := json.MarshalIndent(q, "", "  ")
	if err == nil {
		err = writeFileSync(qdir, target+reasonSuffix, append(data, '\n'))
	}
	if err != nil {
		s.Logger.Error("spool: write quarantine reason", "file", target, "err", err)
	}
	if err := os.Rename(filepath.Join(s.Dir, name), filepath.Join(qdir, target)); err != nil {
		s.Logger.Error("spool: quarantine segment", "file", name, "err", err)
	}
	return target
}

// Quarantined returns the number of segment files in the quarantine
// directory, for /readyz: every one is data not stored until it is
// replayed by hand or deleted.
func (s *Spool) Quarantined() int {
	entries, err := os.ReadDir(filepath.Join(s.Dir, quarantineDir))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if isQuarantinedFile(e.Name()) {
			n++
		}
	}
	return n
}

// isQuarantinedFile reports whether name, in the quarantine directory, is a
// set-aside segment or partial write, rather than a reason file or the
// temporary file of one being written.
func isQuarantinedFile(name string) bool {
	return strings.HasSuffix(name, segmentSuffix) || strings.HasSuffix(name, segmentSuffix+tempSuffix)
}

// ListQuarantine returns the segments set aside in the quarantine directory
// of the spool at dir, in the order they were set aside.
func ListQuarantine(dir string) ([]Quarantined, error) {
	qdir := filepath.Join(dir, quarantineDir)
	entries, err := os.ReadDir(qdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: list quarantine: %w", err)
	}
	var out []Quarantined
	for _, e := range entries {
		if e.IsDir() || !isQuarantinedFile(e.Name()) {
			continue
		}
		q := Quarantined{File: e.Name(), Reason: "unknown"}
		if data, err := os.ReadFile(filepath.Join(qdir, e.Name()+reasonSuffix)); err == nil {
			if err := json.Unmarshal(data, &q); err != nil {
				q.Error = fmt.Sprintf("unreadable reason file: %v", err)
			}
			q.File = e.Name()
		} else if info, err := e.Info(); err == nil {
			q.At = info.ModTime().UTC()
		}
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b Quarantined) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return strings.Compare(a.File, b.File)
	})
	return out, nil
}

// ReplayQuarantined stores the quarantined segment file of the spool at dir
// in ClickHouse, as a replay would (skipping it when the ledger shows it
// stored already), then deletes it and its reason file. It is how a batch
// set aside is brought back once its cause is fixed; it needs no running
// spool, and may run beside one. unstored, when set, leaves out the
// readings stored already, as Spool.Unstored does. timeout bounds each
// lookup and the INSERT.
func ReplayQuarantined(ctx context.Context, dir, file string, insert InsertFunc, stored StoredFunc, unstored UnstoredFunc, timeout time.Duration) (rows int, err error) {
	if file != filepath.Base(file) || !isQuarantinedFile(file) {
		return 0, fmt.Errorf("spool: %q is not a quarantined segment name", file)
	}
	path := filepath.Join(dir, quarantineDir, file)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("spool: replay quarantined: %w", err)
	}
	seg, err := decodeSegment(data, memory.DefaultAllocator)
	if err != nil {
		return 0, fmt.Errorf("spool: replay quarantined %s: %w", file, err)
	}
	defer seg.Record.Release()
	parts := []storage.Part{{ID: seg.ID, Record: seg.Record}}
	f, _, err := freshParts(ctx, seg.Table, parts, parts, lookups{stored: stored, unstored: unstored, timeout: timeout})
	if err == nil && len(f.parts) > 0 {
		ictx, cancel := context.WithTimeout(ctx, timeout)
		err = insert(ictx, seg.Table, f.parts)
		cancel()
	}
	defer f.release()
	if err != nil {
		return 0, fmt.Errorf("spool: replay quarantined %s: %w", file, err)
	}
	if err := os.Remove(path); err != nil {
		return 0, fmt.Errorf("spool: replayed %s, but: %w", file, err)
	}
	if err := os.Remove(path + reasonSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("spool: replayed %s, but: %w", file, err)
	}
	rows = 0
	for _, p := range f.parts {
		rows += int(p.Record.NumRows())
	}
	return rows, nil
}
