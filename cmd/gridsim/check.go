package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage"
)

// errCheckFailed is returned when an acknowledged message is missing or a
// reading is duplicated: the summary line says which.
var errCheckFailed = errors.New("acknowledged is not stored exactly once")

// ackFile is an AckLog writing to a file.
type ackFile struct {
	*simulators.AckLog
	f *os.File
}

// createAckFile creates path (truncating it) and logs acks to it.
func createAckFile(path string) (*ackFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("acks file: %w", err)
	}
	return &ackFile{simulators.NewAckLog(f), f}, nil
}

// Close flushes the log and closes the file.
func (a *ackFile) Close() error {
	err := a.Flush()
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("acks file %s: %w", a.f.Name(), err)
	}
	return nil
}

func checkCmd() *cobra.Command {
	var (
		acks   string
		opts   = storage.Options{Password: os.Getenv("CLICKHOUSE_PASSWORD")}
		wait   time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that every acknowledged message of a fleet is in ClickHouse exactly once",
		Long: `Check that every message a 'gridsim fleet --acks FILE' run had acknowledged
is in gridwatch's telemetry table with all its readings, and that no reading is
stored twice: the set check of gridwatch's fault tests, for a deployment of your
own (stop ClickHouse, kill gridwatch, fill its spool, then check).

It waits up to --wait for missing messages to arrive (a spool replaying after a
fault), prints one summary line and exits non-zero when anything is missing or
duplicated. Messages stored but not acknowledged (a PUBACK lost in a crash) are
neither. The ClickHouse password is read from $CLICKHOUSE_PASSWORD.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fh, err := os.Open(acks)
			if err != nil {
				return fmt.Errorf("acks file: %w", err)
			}
			list, err := simulators.ReadAcks(fh)
			fh.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", acks, err)
			}
			db, err := storage.Open(cmd.Context(), opts, nil)
			if err != nil {
				return err
			}
			defer db.Close()
			c, err := simulators.CheckStored(cmd.Context(), db, list, wait)
			if err != nil {
				return err
			}
			if asJSON {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(c); err != nil {
					return fmt.Errorf("write result: %w", err)
				}
			}
			fmt.Fprintln(cmd.ErrOrStderr(), c)
			if !c.OK() {
				return errCheckFailed
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&acks, "acks", "", "acks file written by 'gridsim fleet --acks' (required)")
	fl.StringVar(&opts.Addr, "clickhouse", "127.0.0.1:9000", "ClickHouse native-protocol address")
	fl.StringVar(&opts.Database, "database", "gridwatch", "database holding gridwatch's telemetry table")
	fl.StringVar(&opts.User, "user", storage.DefaultUser, "ClickHouse user")
	fl.DurationVar(&wait, "wait", time.Minute, "how long to wait for missing messages to arrive")
	fl.BoolVar(&asJSON, "json", false, "print the result as JSON on standard output (default false)")
	_ = cmd.MarkFlagRequired("acks")
	return cmd
}
