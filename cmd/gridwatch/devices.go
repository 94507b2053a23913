package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/server"
)

// devicesCommand is `gridwatch devices import|provision|export`.
func devicesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "Manage the device registry in ClickHouse (running servers pick changes up within devices.reload_interval)"}
	cmd.AddCommand(devicesImportCommand(), devicesProvisionCommand(), devicesExportCommand())
	return cmd
}

// gridsCommand is `gridwatch grids import`.
func gridsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "grids", Short: "Manage the grid hierarchy (district, street, grid cell)"}
	imp := &cobra.Command{
		Use:   "import FILE.geojson",
		Short: "Import grids from a GeoJSON FeatureCollection (properties code, name, level, parent)",
		Long:  "Import grids; every feature is validated and rejected ones are listed with their position and reason.\n" + configHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, closeDB, err := openStore(cmd, cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			grids, rejected, err := server.ImportGrids(cmd.Context(), db, args[0])
			if err != nil {
				return err
			}
			return report(cmd.OutOrStdout(), fmt.Sprintf("%d grids imported", len(grids)), "feature", rejected)
		},
	}
	server.AddFlags(imp.Flags())
	cmd.AddCommand(imp)
	return cmd
}

func devicesImportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Import devices and cameras from CSV (id,type,grid[,lat,lon,name,install_date,secret,rtsp_url,rtsp_sub_url,sip_password])",
		Long: "Import devices; every row is validated and rejected rows are listed with their line and reason.\n" +
			"Re-importing updates devices and never duplicates them; a row without a secret keeps the stored one.\n" +
			"A device with coordinates and an empty grid is placed in the grid cell containing it.\n" + configHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, closeDB, err := openStore(cmd, cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			start := time.Now()
			errw := cmd.ErrOrStderr()
			devs, rejected, err := server.ReadDevicesFile(cmd.Context(), db, args[0], func(n int) {
				fmt.Fprintf(errw, "read %d rows (%s)\n", n, time.Since(start).Round(time.Millisecond))
			})
			if err != nil {
				return err
			}
			st, err := server.ImportDevices(cmd.Context(), db, devs)
			if err != nil {
				return err
			}
			return report(cmd.OutOrStdout(), fmt.Sprintf("%d devices accepted (%d added, %d updated, %d unchanged) in %s",
				len(devs), st.Added, st.Updated, st.Unchanged, time.Since(start).Round(time.Millisecond)), "line", rejected)
		},
	}
	server.AddFlags(cmd.Flags())
	return cmd
}

// report prints the outcome of an import and the rejected rows; it fails
// when rows were rejected, so scripts notice.
func report(w io.Writer, summary, unit string, rejected []devices.RowError) error {
	fmt.Fprintln(w, summary)
	for _, r := range rejected {
		fmt.Fprintf(w, "rejected %s %d %s: %s\n", unit, r.Line, r.ID, r.Reason)
	}
	if len(rejected) > 0 {
		return fmt.Errorf("%d rows rejected", len(rejected))
	}
	return nil
}

func devicesProvisionCommand() *cobra.Command {
	var grace time.Duration
	// The config loader refuses flags that name no config key, so the
	// config flags live on their own command and --grace beside them.
	cfgCmd := &cobra.Command{}
	server.AddFlags(cfgCmd.Flags())
	cmd := &cobra.Command{
		Use:   "provision ID...",
		Short: "Generate new secrets for devices and print them once (id,secret CSV)",
		Long:  "Generate a new random secret per device; only its hash is stored. The old secret stays valid for --grace.\n" + configHelp,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, closeDB, err := openStore(cmd, cfgCmd)
			if err != nil {
				return err
			}
			defer closeDB()
			secrets, err := server.ProvisionDevices(cmd.Context(), db, args, grace)
			if err != nil {
				return err
			}
			ids := make([]string, 0, len(secrets))
			for id := range secrets {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			fmt.Fprintln(cmd.OutOrStdout(), "id,secret")
			for _, id := range ids {
				fmt.Fprintf(cmd.OutOrStdout(), "%s,%s\n", id, secrets[id])
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 24*time.Hour, "how long the previous secret stays valid")
	cmd.Flags().AddFlagSet(cfgCmd.Flags())
	return cmd
}

func devicesExportCommand() *cobra.Command {
	var format string
	cfgCmd := &cobra.Command{}
	server.AddFlags(cfgCmd.Flags())
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the registry to stdout: devices as CSV, grids as GeoJSON (--format geojson), or HAProxy's map from client id to grid cell (--format haproxy-map); never secrets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, closeDB, err := openStore(cmd, cfgCmd)
			if err != nil {
				return err
			}
			defer closeDB()
			switch strings.ToLower(format) {
			case "csv", "haproxy-map":
				devs, err := db.LoadDevices(cmd.Context())
				if err != nil {
					return err
				}
				if strings.EqualFold(format, "haproxy-map") {
					return devices.WriteHAProxyMap(cmd.OutOrStdout(), devs)
				}
				for i := range devs {
					devs[i].RTSPUser, devs[i].RTSPPassword, devs[i].SIPPassword = "", "", "" // loaded devices hold secret hashes only
				}
				return devices.WriteCSV(cmd.OutOrStdout(), devs)
			case "geojson":
				grids, err := db.LoadGrids(cmd.Context())
				if err != nil {
					return err
				}
				return devices.WriteGeoJSON(cmd.OutOrStdout(), grids)
			default:
				return fmt.Errorf("--format must be csv, geojson or haproxy-map, not %q", format)
			}
		},
	}
	cmd.Flags().StringVar(&format, "format", "csv", "csv (devices), geojson (grids) or haproxy-map (client id to grid cell, for deploy/haproxy/cells.map)")
	cmd.Flags().AddFlagSet(cfgCmd.Flags())
	return cmd
}
