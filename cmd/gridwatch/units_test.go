package main

import (
	"testing"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/server"
	"github.com/gridwatch/gridwatch/simulators"
)

// TestDemoUnitsRouteEveryCategory checks that the units file the demo
// writes loads and gives every category of every demo device a unit.
func TestDemoUnitsRouteEveryCategory(t *testing.T) {
	devs, err := (simulators.City{Devices: 200, Grids: 30, Seed: 1}).Generate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Default()
	cfg.DataDir = t.TempDir()
	if err := demoUnits(&cfg, devs); err != nil {
		t.Fatal(err)
	}
	units, err := server.ReadUnitsFile(cfg.Units.File)
	if err != nil {
		t.Fatal(err)
	}
	ix := devices.NewUnitIndex(units)
	for _, d := range devs {
		for _, c := range devices.Categories() {
			if ix.UnitFor(c, append([]string{d.Grid}, devices.CodeAncestors(d.Grid)...)) == "" {
				t.Fatalf("no demo unit handles %s in %s", c, d.Grid)
			}
		}
	}
}
