package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/internal/server"
	"github.com/gridwatch/gridwatch/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "gridwatch",
		Short:         "Ingest a city's IoT and video networks and turn them into work for the city-management grid",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), demoCommand(), migrateCommand(), versionCommand())
	root.AddCommand(devicesCommand(), gridsCommand(), unitsCommand())
	root.AddCommand(alertsCommand(), casesCommand(), tokenCommand(), spoolCommand())
	root.AddCommand(exportCommand(), importCommand())
	return root
}

// configHelp ends the help of every command that takes the config flags.
const configHelp = `
Every key can be set in the YAML file given by --config (nested by its
dotted path), by an environment variable (GRIDWATCH_ + the path upper-cased,
dots as underscores: clickhouse.addr -> GRIDWATCH_CLICKHOUSE_ADDR) or by its
flag; flags beat the environment, which beats the file.`

func serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server: MQTT broker, ingest pipeline, ClickHouse writer and HTTP API",
		Long:  "Run the gridwatch server.\n" + configHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			srv := &server.Server{Config: cfg, Logger: logger}
			return srv.Run(cmd.Context())
		},
	}
	server.AddFlags(cmd.Flags())
	return cmd
}

func migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the ClickHouse schema migrations and exit",
		Long:  "Apply the schema migrations for the ClickHouse server's version (serve also does this at start).\n" + configHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return server.Migrate(cmd.Context(), cfg, logger)
		},
	}
	server.AddFlags(cmd.Flags())
	return cmd
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "gridwatch", buildVersion())
		},
	}
}

// buildVersion returns the version set at build time, or the module's.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// loadConfig loads the configuration for cmd and builds the logger it names.
func loadConfig(cmd *cobra.Command) (server.Config, *slog.Logger, error) {
	cfg, err := server.Load(cmd.Flags())
	if err != nil {
		return cfg, nil, err
	}
	opts := &slog.HandlerOptions{Level: map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
	}[cfg.Log.Level]}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	logger := slog.New(h)
	// sipgo writes some notices through its package logger, not the
	// registrar's: they go to this one too, at debug level.
	sip.SetDefaultLogger(gb28181.LibraryLogger(h))
	if unknown := server.UnknownEnv(os.Environ()); len(unknown) > 0 {
		logger.Warn("ignoring environment variables that name no config key", "vars", strings.Join(unknown, ","))
	}
	return cfg, logger, nil
}

// openStore loads the configuration from the flags of flags (usually cmd
// itself) and opens the ClickHouse it names, starting the managed one when
// clickhouse.addr is empty; the admin commands work on it directly.
func openStore(cmd, flags *cobra.Command) (*storage.DB, func() error, error) {
	cfg, logger, err := loadConfig(flags)
	if err != nil {
		return nil, nil, err
	}
	return server.OpenStore(cmd.Context(), cfg, logger)
}
