package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gridwatch/gridwatch/internal/server"
	"github.com/gridwatch/gridwatch/storage"
)

// exportCommand is `gridwatch export`: a table's rows over a time range as
// Parquet or Arrow, read from ClickHouse directly.
func exportCommand() *cobra.Command {
	var (
		table, from, to, format, output string
		rowGroupRows                    int
	)
	cmd := &cobra.Command{
		Use:   "export --table TABLE --from TIME [--to TIME] [--format parquet|arrow] -o FILE",
		Short: "Export a table's rows over a time range as Parquet or Arrow IPC",
		Long: "Export the rows of one table (" + strings.Join(storage.ExportTables(), ", ") + ")\n" +
			"whose time lies in [--from, --to) as Parquet or as an Arrow IPC file, streamed: it holds one\n" +
			"row group in memory whatever the range. Times are RFC 3339, YYYY-MM-DD (midnight UTC) or ms\n" +
			"since the epoch; --to defaults to now. The file is written beside FILE and renamed into place\n" +
			"once complete; -o - writes to standard output. `gridwatch import` reads it back.\n" + configHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := storage.ExportQuery{Table: table, Format: storage.ExportFormat(format), RowGroupRows: rowGroupRows}
			var err error
			if q.From, err = parseCLITime("--from", from, time.Time{}); err != nil {
				return err
			}
			if q.To, err = parseCLITime("--to", to, time.Now()); err != nil {
				return err
			}
			if output == "" {
				return errors.New("-o FILE is required (-o - for standard output)")
			}
			if err := q.Validate(); err != nil {
				return err
			}
			db, closeDB, err := openStore(cmd, cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			total, err := db.ExportCount(cmd.Context(), q)
			if err != nil {
				return err
			}
			bar := newProgressBar(int64(total), "export "+table)
			q.Progress = func(rows int64) { _ = bar.Set64(rows) }
			var res storage.ExportResult
			err = writeAtomically(output, func(w io.Writer) error {
				res, err = db.Export(cmd.Context(), q, w)
				return err
			})
			_ = bar.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d rows of %s (%d row groups, %d bytes) to %s\n",
				res.Rows, table, res.RowGroups, res.Bytes, output)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&table, "table", "", "table to export: "+strings.Join(storage.ExportTables(), ", "))
	f.StringVar(&from, "from", "", "start of the range (inclusive): RFC 3339, YYYY-MM-DD or ms since the epoch")
	f.StringVar(&to, "to", "", "end of the range (exclusive); default now")
	f.StringVar(&format, "format", string(storage.FormatParquet), "file format: parquet or arrow")
	f.StringVarP(&output, "output", "o", "", "file to write; - for standard output")
	f.IntVar(&rowGroupRows, "row-group-rows", storage.DefaultRowGroupRows, "rows per Parquet row group or Arrow record batch")
	server.AddFlags(f)
	return cmd
}

// importCommand is `gridwatch import`: the restore path of an export.
func importCommand() *cobra.Command {
	var table string
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Store the rows of Parquet or Arrow files made by gridwatch export",
		Long: "Insert the rows of export files (Parquet or Arrow IPC) into the table each names, or --table.\n" +
			"It restores a backup into a fresh database (run gridwatch migrate first) or moves data between\n" +
			"servers of any version. Running it again on the same file skips the telemetry batches already\n" +
			"stored; see the README's backup section for the other tables.\n" + configHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, closeDB, err := openStore(cmd, cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			w, err := storage.NewWriter(db, storage.WriterOptions{})
			if err != nil {
				return err
			}
			for _, path := range args {
				if err := importFile(cmd, w, path, table); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&table, "table", "", "table the rows go to; default the one the file names")
	server.AddFlags(cmd.Flags())
	return cmd
}

// importFile imports one file with a progress bar.
func importFile(cmd *cobra.Command, w *storage.Writer, path, table string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := storage.InspectImport(cmd.Context(), f)
	if err != nil {
		return err
	}
	bar := newProgressBar(info.Rows, "import "+filepath.Base(path))
	res, err := storage.Import(cmd.Context(), w, f, storage.ImportOptions{Table: table, Progress: func(rows int64) { _ = bar.Set64(rows) }})
	_ = bar.Finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d rows into %s (%d batches inserted, %d already stored)\n",
		path, res.Rows, res.Table, res.Batches, res.Skipped)
	return nil
}

// newProgressBar returns a bar of total rows (-1: unknown) on standard
// error, hidden when that is not a terminal (a log file gets the summary
// line only).
func newProgressBar(total int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetVisibility(term.IsTerminal(int(os.Stderr.Fd()))),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// parseCLITime parses a time flag: RFC 3339, a date (midnight UTC) or ms
// since the epoch; empty gives def, or an error when def is zero.
func parseCLITime(flag, v string, def time.Time) (time.Time, error) {
	if v == "" {
		if def.IsZero() {
			return def, fmt.Errorf("%s is required", flag)
		}
		return def, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q: want RFC 3339 (2024-11-30T12:00:00Z), a date (2024-11-30) or ms since the epoch", flag, v)
}

// writeAtomically runs write on a buffered temporary file beside path and
// renames it to path once write succeeded and the file is synced, so that
// path never holds a partial export; "-" writes to standard output.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	if path == "-" {
		bw := bufio.NewWriterSize(os.Stdout, 1<<20)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
