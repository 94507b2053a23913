package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
)

// ErrNotExport means a file is neither Parquet nor an Arrow IPC file, or
// does not say which table its rows belong to.
var ErrNotExport = errors.New("storage: not a gridwatch export")

// ImportSource is what Import reads: a whole file (an *os.File).
type ImportSource interface {
	io.ReaderAt
	io.Seeker
}

// ImportOptions are the settings of one Import.
type ImportOptions struct {
	// Table is the table the rows go to. It defaults to the table the
	// file names (MetaTable); when both are set they must agree.
	Table string
	// BatchRows is how many rows one INSERT holds (Parquet; an Arrow
	// file's record batches are inserted as they are). It defaults to
	// DefaultRowGroupRows.
	BatchRows int
	// Progress, when set, is called after each INSERT with the rows read
	// so far.
	Progress func(rows int64)
}

// ImportResult says what an import did.
type ImportResult struct {
	// Table is where the rows went.
	Table string
	// Rows read from the file; Batches inserted; Skipped batches that
	// the table's ledger showed stored already, by an earlier import of
	// the same file.
	Rows             int64
	Batches, Skipped int
}

// ImportInfo is what a file says about itself.
type ImportInfo struct {
	Format ExportFormat
	// Table, From, To and ExportID are the file's metadata (empty for a
	// file not made by Export).
	Table, From, To, ExportID string
	// Rows is the file's row count, -1 where the format does not say it
	// without reading the file (Arrow).
	Rows int64
}

// Import stores the rows of an export (Parquet or Arrow IPC, told apart by
// their magic bytes) through w, one INSERT per batch, streamed. It is the
// restore path of a backup made with Export, and takes a file exported
// from any server version into any other. Each batch's id is the file's
// export id and the batch's number, so on a table with the batch ledger
// (telemetry) a batch an earlier import of the same file stored is skipped:
// an interrupted restore can be run again. Other tables get the same ids as
// insert_deduplication_token where the server has it (it remembers the last
// 1000 inserts); the replacing tables (alerts, alert_events, cases,
// case_events) keep one row per key anyway; imported case events have their cases'
// summaries recomputed. camera_health, rejected and device_status
// rows imported twice on 18.16 are stored twice.
func Import(ctx context.Context, w *Writer, src ImportSource, o ImportOptions) (ImportResult, error) {
	if o.BatchRows <= 0 {
		o.BatchRows = DefaultRowGroupRows
	}
	res := ImportResult{}
	recs, info, closeFn, err := openImport(ctx, src, o.BatchRows)
	if err != nil {
		return res, err
	}
	defer closeFn()
	res.Table = o.Table
	switch {
	case res.Table == "":
		res.Table = info.Table
	case info.Table != "" && info.Table != res.Table:
		return res, fmt.Errorf("storage: the file holds rows of %s, not %s", info.Table, res.Table)
	}
	if res.Table == "" {
		return res, fmt.Errorf("%w: the file names no table (%s metadata): say which", ErrNotExport, MetaTable)
	}
	if err := checkIdent("table", res.Table); err != nil {
		return res, err
	}
	prefix := "import-" + info.ExportID + "-"
	if info.ExportID == "" {
		id, err := exportID()
		if err != nil {
			return res, err
		}
		prefix = "import-" + id + "-"
	}
	for n := 0; ; n++ {
		rec, err := recs()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("storage: import into %s: read batch %d: %w", res.Table, n, err)
		}
		part := Part{ID: prefix + strconv.Itoa(n), Record: rec}
		stored, err := w.Stored(ctx, res.Table, []Part{part})
		wrote := false
		if err == nil && !stored[part.ID] {
			wrote, err = importBatch(ctx, w, res.Table, part)
		}
		switch {
		case err == nil && wrote:
			res.Batches++
		case err == nil:
			res.Skipped++
		}
		if err == nil && res.Table == "case_events" {
			err = w.db.refreshCaseSummaries(ctx, caseIDs(rec))
		}
		res.Rows += rec.NumRows()
		rec.Release()
		if err != nil {
			return res, fmt.Errorf("storage: import into %s: batch %d: %w", res.Table, n, err)
		}
		if o.Progress != nil {
			o.Progress(res.Rows)
		}
	}
}

// importBatch writes part, which the ledger does not show, without the
// rows stored already of a batch over several partitions, which an
// earlier import may have stored in part (see UnstoredInDoubt); wrote is
// false when every row was.
func importBatch(ctx context.Context, w *Writer, table string, part Part) (wrote bool, err error) {
	kept, _, err := w.UnstoredInDoubt(ctx, table, []Part{part})
	if err != nil {
		return false, err
	}
	for _, k := range kept {
		if k.Record != part.Record {
			defer k.Record.Release()
		}
		if err := w.Write(ctx, table, k.ID, k.Record); err != nil {
			return false, err
		}
	}
	return len(kept) > 0, nil
}

// InspectImport reads what an export file says about itself.
func InspectImport(ctx context.Context, src ImportSource) (ImportInfo, error) {
	_, info, closeFn, err := openImport(ctx, src, 1)
	if err != nil {
		return info, err
	}
	closeFn()
	return info, nil
}

// Magic bytes at the start of each format.
var (
	parquetMagic = []byte("PAR1")
	arrowMagic   = []byte("ARROW1")
)

// openImport opens src as Parquet or Arrow: next returns its records one
// at a time (the caller releases each) and io.EOF after the last.
func openImport(ctx context.Context, src ImportSource, batchRows int) (next func() (arrow.Record, error), info ImportInfo, closeFn func(), err error) {
	head := make([]byte, len(arrowMagic))
	if _, err := src.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, info, nil, fmt.Errorf("storage: read the file: %w", err)
	}
	size, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, info, nil, fmt.Errorf("storage: size of the file: %w", err)
	}
	// The readers close a source that is an io.Closer: a section of it
	// is not, so the caller's file stays open.
	section := io.NewSectionReader(src, 0, size)
	switch {
	case bytes.HasPrefix(head, parquetMagic):
		info.Format = FormatParquet
		pf, err := file.NewParquetReader(section)
		if err != nil {
			return nil, info, nil, fmt.Errorf("storage: open Parquet file: %w", err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(batchRows)}, memory.DefaultAllocator)
		if err != nil {
			pf.Close()
			return nil, info, nil, fmt.Errorf("storage: open Parquet file: %w", err)
		}
		schema, err := fr.Schema()
		if err != nil {
			pf.Close()
			return nil, info, nil, fmt.Errorf("storage: Parquet file schema: %w", err)
		}
		info.readMetadata(schema.Metadata())
		info.Rows = pf.NumRows()
		rr, err := fr.GetRecordReader(ctx, nil, nil)
		if err != nil {
			pf.Close()
			return nil, info, nil, fmt.Errorf("storage: read Parquet file: %w", err)
		}
		next = func() (arrow.Record, error) {
			rec, err := rr.Read()
			if rec != nil {
				rec.Retain()
				return rec, nil
			}
			if err == nil {
				err = io.EOF
			}
			return nil, err
		}
		return next, info, func() { rr.Release(); pf.Close() }, nil
	case bytes.Equal(head, arrowMagic):
		info.Format, info.Rows = FormatArrow, -1
		fr, err := ipc.NewFileReader(section)
		if err != nil {
			return nil, info, nil, fmt.Errorf("storage: open Arrow file: %w", err)
		}
		info.readMetadata(fr.Schema().Metadata())
		i := 0
		next = func() (arrow.Record, error) {
			if i == fr.NumRecords() {
				return nil, io.EOF
			}
			rec, err := fr.RecordAt(i)
			i++
			return rec, err
		}
		return next, info, func() { fr.Close() }, nil
	}
	return nil, info, nil, fmt.Errorf("%w: neither Parquet nor an Arrow IPC file", ErrNotExport)
}

// readMetadata takes the export's keys from md.
func (i *ImportInfo) readMetadata(md arrow.Metadata) {
	get := func(k string) string {
		if n := md.FindKey(k); n >= 0 {
			return md.Values()[n]
		}
		return ""
	}
	i.Table, i.From, i.To, i.ExportID = get(MetaTable), get(MetaFrom), get(MetaTo), get(MetaExportID)
}

// caseIDs are the values of rec's case_id column (none without one), each
// with the zero time: their other events may be stamped any time.
func caseIDs(rec arrow.Record) map[string]time.Time {
	ids := map[string]time.Time{}
	for i, f := range rec.Schema().Fields() {
		if col, ok := rec.Column(i).(*array.String); ok && f.Name == "case_id" {
			for j := range col.Len() {
				ids[col.Value(j)] = time.Time{}
			}
		}
	}
	return ids
}
