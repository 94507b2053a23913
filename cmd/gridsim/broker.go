package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/simulators"
)

func brokerCmd(logger *slog.Logger) *cobra.Command {
	b := simulators.BareBroker{Logger: logger}
	var quiet bool
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a bare MQTT broker that only counts, the benchmark baseline",
		Long: `Run a bare mochi-mqtt broker that admits every client and message and only
counts them: the baseline to compare gridwatch against. It prints the
received messages per second live on standard error and, on SIGINT/SIGTERM,
one JSON line with the totals on standard output: messages, bytes, readings
(with --readings), undecodable payloads, the active time from the first
message to the last and the rates over it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !quiet {
				b.Progress = os.Stderr
			}
			c, err := b.Run(cmd.Context())
			if err != nil {
				return err
			}
			out := struct {
				simulators.Counts
				ActiveS      float64 `json:"active_s"`
				MessagesPerS float64 `json:"messages_per_s"`
				ReadingsPerS float64 `json:"readings_per_s"`
			}{c, c.Active.Seconds(), c.MessagesPerSecond(), c.ReadingsPerSecond()}
			if err := json.NewEncoder(cmd.OutOrStdout()).Encode(out); err != nil {
				return fmt.Errorf("write counts: %w", err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&b.Listen, "listen", simulators.DefaultBareListen, "TCP address to listen on")
	fl.BoolVar(&b.Readings, "readings", false, "also count readings (JSON keys other than ts), decoding every payload (default false: count messages and bytes only)")
	fl.BoolVar(&quiet, "quiet", false, "no live progress on standard error (default false)")
	return cmd
}
