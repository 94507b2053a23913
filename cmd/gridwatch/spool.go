package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/internal/server"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/spool"
)

// spoolCommand is `gridwatch spool list|replay`: the batches the spool set
// aside in data_dir/spool/quarantine.
func spoolCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "spool", Short: "List and replay the batches the disk spool set aside (quarantined)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the quarantined spool segments with their reason",
		Long: "List data_dir/spool/quarantine: the batches ClickHouse refused permanently (rejected), or\n" +
			"with an unknown error too often (unclassified), and damaged segments (corrupt, partial).\n" + configHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.Load(cmd.Flags())
			if err != nil {
				return err
			}
			list, err := spool.ListQuarantine(cfg.SpoolDir())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FILE\tTABLE\tBATCH\tROWS\tREASON\tAT\tERROR")
			for _, q := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", q.File, q.Table, q.Batch, q.Rows, q.Reason,
					q.At.Format(time.RFC3339), q.Error)
			}
			return w.Flush()
		},
	}
	var all bool
	replay := &cobra.Command{
		Use:   "replay [FILE...] | --all",
		Short: "Store quarantined segments in ClickHouse once their cause is fixed",
		Long: "Insert quarantined segments (names from `gridwatch spool list`) into ClickHouse, skipping\n" +
			"batches the ledger shows stored already, and delete each one stored. A segment that still\n" +
			"fails stays, and the error says why. It opens ClickHouse as the admin commands do: with the\n" +
			"managed one (clickhouse.addr empty), stop gridwatch first; with clickhouse.addr set it may\n" +
			"run beside the server.\n" + configHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return errors.New("name the quarantined files to replay, or give --all")
			}
			cfg, logger, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if all {
				list, err := spool.ListQuarantine(cfg.SpoolDir())
				if err != nil {
					return err
				}
				for _, q := range list {
					args = append(args, q.File)
				}
			}
			if len(args) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "the quarantine is empty")
				return nil
			}
			db, closeDB, err := server.OpenStore(cmd.Context(), cfg, logger)
			if err != nil {
				return err
			}
			defer closeDB()
			w, err := storage.NewWriter(db, storage.WriterOptions{MaxAttempts: 1})
			if err != nil {
				return err
			}
			var failed []error
			for _, file := range args {
				rows, err := spool.ReplayQuarantined(cmd.Context(), cfg.SpoolDir(), file, w.WriteParts, w.Stored,
					max(cfg.Ingest.InsertTimeout, spool.DefaultLookupTimeout))
				if err != nil {
					failed = append(failed, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rows stored\n", file, rows)
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d segments not replayed:\n%w", len(failed), len(args), errors.Join(failed...))
			}
			return nil
		},
	}
	replay.Flags().BoolVar(&all, "all", false, "replay every quarantined segment")
	server.AddFlags(list.Flags())
	server.AddFlags(replay.Flags())
	cmd.AddCommand(list, replay)
	return cmd
}
