package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/simulators"
)

func cityCmd() *cobra.Command {
	var (
		c   simulators.City
		out string
	)
	cmd := &cobra.Command{
		Use:   "city",
		Short: "Write the devices CSV of a generated city",
		Long: `Write the devices CSV of a generated city: a realistic mix of device types
spread over grid cells grouped into districts and streets. The seed fixes
ids, types, grid cells, coordinates and names; secrets are always fresh
random values, so the file is the only copy: import it into gridwatch and
give it to 'gridsim fleet --devices-file'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			devs, err := c.Generate()
			if err != nil {
				return err
			}
			if out == "-" {
				return devices.WriteCSV(cmd.OutOrStdout(), devs)
			}
			// The file holds the device secrets.
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("write devices: %w", err)
			}
			if err := devices.WriteCSV(f, devs); err != nil {
				f.Close()
				return fmt.Errorf("write devices to %s: %w", out, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write devices to %s: %w", out, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d devices to %s\n", len(devs), out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Devices, "devices", 1000, "number of devices")
	fl.IntVar(&c.Grids, "grids", 0, fmt.Sprintf("number of grid cells (default 0: one per %d devices)", simulators.DefaultDevicesPerGrid))
	fl.Int64Var(&c.Seed, "seed", 1, "layout seed: the same seed gives the same city, secrets excepted")
	fl.Float64Var(&c.CenterLat, "center-lat", simulators.DefaultCenterLat, "latitude of the city centre")
	fl.Float64Var(&c.CenterLon, "center-lon", simulators.DefaultCenterLon, "longitude of the city centre")
	fl.Float64Var(&c.RadiusKm, "radius-km", simulators.DefaultRadiusKm, "half the side of the square the city covers, in km")
	fl.StringVarP(&out, "output", "o", "-", "file to write, created with mode 0600 as it holds secrets (-: standard output)")
	return cmd
}
