package server

import (
	"context"
	"fmt"
	"os"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// GridsConfig are the grids.* keys.
type GridsConfig struct {
	File string `koanf:"file" help:"grids GeoJSON FeatureCollection (properties code, name, level, parent) imported at start, before devices.file"`
}

// ImportGrids reads a grids GeoJSON file and stores the grids it accepts.
// A feature's parent may be in the file or already in the registry. It
// returns the stored grids and the rejected features with their reasons.
func ImportGrids(ctx context.Context, db *storage.DB, path string) ([]devices.Grid, []devices.RowError, error) {
	existing, err := db.LoadGrids(ctx)
	if err != nil {
		return nil, nil, err
	}
	known := make(map[string]devices.Grid, len(existing))
	for _, g := range existing {
		known[g.Code] = g
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	grids, rejected, err := devices.ReadGeoJSON(f, func(c string) (devices.Grid, bool) { g, ok := known[c]; return g, ok })
	if err != nil {
		return nil, nil, err
	}
	return grids, rejected, db.SaveGrids(ctx, grids)
}

// importGridsFile stores grids.file in the registry, if one is configured;
// any rejected feature stops the start, naming the key.
func (s *Server) importGridsFile(ctx context.Context) error {
	path := s.Config.Grids.File
	if path == "" {
		return nil
	}
	grids, rejected, err := ImportGrids(ctx, s.db, path)
	if err != nil {
		return fmt.Errorf("grids.file %s: %w", path, err)
	}
	if len(rejected) > 0 {
		return fmt.Errorf("grids.file %s: %w (%d features rejected)", path, rejected[0], len(rejected))
	}
	s.Logger.Info("grids.file imported", "file", path, "grids", len(grids))
	return nil
}

// ReadDevicesFile reads a devices CSV, placing a device that has
// coordinates and no grid in the registry's grid cell that contains it.
// progress, if not nil, is told the rows read so far now and then.
func ReadDevicesFile(ctx context.Context, db *storage.DB, path string, progress func(rows int)) ([]devices.Device, []devices.RowError, error) {
	grids, err := db.LoadGrids(ctx)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return devices.ParseCSV(f, devices.CSVOptions{Locate: devices.NewGridIndex(grids).Locate, Progress: progress})
}
