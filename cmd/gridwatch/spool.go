package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
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
	var (
		all bool
		c   *apiClient // set below: apiFlags needs the command
	)
	replay := &cobra.Command{
		Use:   "replay [FILE...] | --all",
		Short: "Store quarantined segments in ClickHouse once their cause is fixed",
		Long: "Insert quarantined segments (names from `gridwatch spool list`) into ClickHouse, skipping\n" +
			"batches the ledger shows stored already, and delete each one stored. A segment that still\n" +
			"fails stays, and the error says why. With clickhouse.addr set it opens ClickHouse itself.\n" +
			"With the managed one (clickhouse.addr empty) held by a running gridwatch, it asks that\n" +
			"server to replay each segment over its API: at --server (default: the config's\n" +
			"http.listen), with an admin token (--token, GRIDWATCH_TOKEN, or the config's\n" +
			"api.admin_token); when gridwatch is stopped, it starts the managed ClickHouse itself.\n" + configHelp,
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
			// The names are checked before ClickHouse is started or a
			// server asked: the quarantine is in data_dir either way.
			var unknown []error
			for _, file := range args {
				if err := server.CheckQuarantined(&cfg, file); err != nil {
					unknown = append(unknown, err)
				}
			}
			if len(unknown) > 0 {
				return errors.Join(unknown...)
			}
			if len(args) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "the quarantine is empty")
				return nil
			}
			var replayFile func(file string) (int, error)
			db, closeDB, err := server.OpenStore(cmd.Context(), cfg, logger)
			switch {
			case errors.Is(err, storage.ErrDirInUse):
				// A running gridwatch holds the managed ClickHouse.
				replayFile = viaServer(cmd, c, &cfg)
			case err != nil:
				return err
			default:
				defer closeDB()
				replayFile = func(file string) (int, error) { return server.ReplayQuarantined(cmd.Context(), &cfg, db, file) }
			}
			var failed []error
			for _, file := range args {
				rows, err := replayFile(file)
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
	c = apiFlags(replay)
	replay.Flags().BoolVar(&all, "all", false, "replay every quarantined segment")
	server.AddFlags(list.Flags())
	server.AddFlags(replay.Flags())
	cmd.AddCommand(list, replay)
	return cmd
}

// viaServer returns the replay of a quarantined segment by the running
// gridwatch that holds cfg's managed ClickHouse: POST
// /api/v1/spool/quarantine/{file}/replay, at --server or else the config's
// http.listen, with --token, GRIDWATCH_TOKEN or else the config's
// api.admin_token. Its errors say what to do.
func viaServer(cmd *cobra.Command, c *apiClient, cfg *server.Config) func(file string) (int, error) {
	if !cmd.Flags().Changed("server") && os.Getenv("GRIDWATCH_SERVER") == "" {
		c.server = "http://" + loopbackURLHost(cfg.HTTP.Listen)
	}
	if c.token == "" && os.Getenv("GRIDWATCH_TOKEN") == "" {
		c.token = cfg.API.AdminToken
	}
	c.http.Timeout = cfg.ReplayTimeout()
	held := fmt.Sprintf("a running gridwatch holds the managed ClickHouse of %s", cfg.DataDir)
	return func(file string) (int, error) {
		var answer struct {
			Rows int `json:"rows"`
		}
		_, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/spool/quarantine/"+url.PathEscape(file)+"/replay", nil, nil, &answer)
		var refused *apiError
		switch {
		case errors.As(err, &refused) && (refused.status == http.StatusUnauthorized || refused.status == http.StatusForbidden):
			return 0, fmt.Errorf("%s: %w; %s, which replays it for an admin token only: give one with --token or GRIDWATCH_TOKEN", file, err, held)
		case errors.As(err, &refused):
			return 0, fmt.Errorf("%s: %w", file, err)
		case err != nil:
			return 0, fmt.Errorf("%s: %s, and its API at %s did not answer (%w): name its URL with --server and an admin token with --token, or stop gridwatch and run this again",
				file, held, c.server, err)
		}
		return answer.Rows, nil
	}
}

// loopbackURLHost is the host:port of a URL to reach a server listening on
// listen from this host: a listener on every address (":8080",
// "0.0.0.0:8080", "[::]:8080") is reached on 127.0.0.1.
func loopbackURLHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
