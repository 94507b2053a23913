package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// gridsGeoJSON is a district, a street and one grid cell, a square from
// 30.10 to 30.20 N and 120.10 to 120.20 E.
const gridsGeoJSON = `{"type": "FeatureCollection", "features": [
 {"type": "Feature", "properties": {"code": "D07", "name": "Harbour", "level": "district"},
  "geometry": {"type": "Polygon", "coordinates": [[[120.0, 30.0], [120.3, 30.0], [120.3, 30.3], [120.0, 30.3], [120.0, 30.0]]]}},
 {"type": "Feature", "properties": {"code": "D07-S01", "name": "Pier Rd", "level": "street", "parent": "D07"},
  "geometry": {"type": "Polygon", "coordinates": [[[120.05, 30.05], [120.25, 30.05], [120.25, 30.25], [120.05, 30.25], [120.05, 30.05]]]}},
 {"type": "Feature", "properties": {"code": "D07-S01-G01", "name": "Pier cell", "level": "grid", "parent": "D07-S01"},
  "geometry": {"type": "Polygon", "coordinates": [[[120.1, 30.1], [120.2, 30.1], [120.2, 30.2], [120.1, 30.2], [120.1, 30.1]]]}}]}`

// TestGridsFilePlacesDevicesAtStart starts a server with grids.file and a
// devices.file row that has coordinates but no grid: the grids are in the
// registry, and the device stands in the cell that contains it.
func TestGridsFilePlacesDevicesAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; skipped under -short")
	}
	addr, database := storagetest.Database(t)
	gridsFile := filepath.Join(t.TempDir(), "grids.geojson")
	if err := os.WriteFile(gridsFile, []byte(gridsGeoJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	placed := devices.Device{ID: "pier-gauge", Type: "water_level", Lat: 30.15, Lon: 120.15, Secret: "pier-gauge-secret-0001"}
	srv := startServer(t, addr, database, []devices.Device{placed}, func(c *Config) { c.Grids.File = gridsFile })

	if got := len(srv.Grids()); got != 3 {
		t.Errorf("registry holds %d grids, want 3", got)
	}
	d, ok := srv.registry.Lookup("pier-gauge")
	if !ok || d.Grid != "D07-S01-G01" {
		t.Errorf("pier-gauge = %+v (found %v), want grid D07-S01-G01", d, ok)
	}
}
