// Command gridsim makes traffic for gridwatch demos and load tests: it
// generates a city's device registry, runs a fleet of simulated devices
// against a broker, and runs a bare broker as the benchmark baseline.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gridsim:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "gridsim",
		Short:         "Simulate a city's devices for gridwatch demos and load tests",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	root.AddCommand(cityCmd(), fleetCmd(logger), loadCmd(), checkCmd(), brokerCmd(logger))
	root.AddCommand(camerasCmd(logger), probeCmd(logger), gb28181Cmd(logger))
	return root
}
