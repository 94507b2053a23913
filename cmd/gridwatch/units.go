package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/server"
)

// unitsCommand is `gridwatch units import`.
func unitsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "units", Short: "Manage the units (departments) that alerts are routed to"}
	imp := &cobra.Command{
		Use:   "import FILE.yaml",
		Short: "Import units from YAML: a list of {code, name, categories, districts}",
		Long: "Import units; every entry is validated and rejected ones are listed with their line and reason.\n" +
			"Re-importing a code updates that unit; running servers pick changes up within devices.reload_interval.\n" +
			"An alert of a category in a grid goes to the unit of the nearest enclosing area that handles the\n" +
			"category, else to the unit with no districts (the whole city).\n" + configHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			units, rejected, err := devices.ReadUnits(f)
			if err != nil {
				return err
			}
			db, closeDB, err := openStore(cmd, cmd)
			if err != nil {
				return err
			}
			defer closeDB()
			if err := db.SaveUnits(cmd.Context(), units); err != nil {
				return err
			}
			return report(cmd.OutOrStdout(), fmt.Sprintf("%d units imported", len(units)), "line", rejected)
		},
	}
	server.AddFlags(imp.Flags())
	cmd.AddCommand(imp)
	return cmd
}

// demoUnits points units.file, when unset, at a generated file routing the
// demo city's alerts: 城管 (municipal, sanitation, lighting) per district of
// devs, and one city-wide unit for each other category.
func demoUnits(cfg *server.Config, devs []devices.Device) error {
	if cfg.Units.File != "" {
		return nil
	}
	var districts []string
	for _, d := range devs {
		if dist, _, _ := strings.Cut(d.Grid, "-"); !slices.Contains(districts, dist) {
			districts = append(districts, dist)
		}
	}
	slices.Sort(districts)
	perDistrict := []string{"municipal", "sanitation", "lighting"}
	var units []devices.Unit
	for _, dist := range districts {
		units = append(units, devices.Unit{Code: "chengguan-" + strings.ToLower(dist), Name: "城管 " + dist,
			Categories: perDistrict, Districts: []string{dist}})
	}
	for _, c := range devices.Categories() {
		if !slices.Contains(perDistrict, c) {
			units = append(units, devices.Unit{Code: c, Name: demoUnitNames[c], Categories: []string{c}})
		}
	}
	b, err := yaml.Marshal(units)
	if err != nil {
		return err
	}
	cfg.Units.File = filepath.Join(cfg.DataDir, "demo-units.yaml")
	return os.WriteFile(cfg.Units.File, b, 0o644)
}

// demoUnitNames names the demo's city-wide units.
var demoUnitNames = map[string]string{
	"water": "水务局", "environment": "生态环境局", "heating": "供热办", "construction": "住建委",
	"gas": "燃气集团", "fire": "消防救援支队", "video": "公安局 (雪亮工程)",
}
