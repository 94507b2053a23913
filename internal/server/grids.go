package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// GridsConfig are the grids.* keys.
type GridsConfig struct {
	File string `koanf:"file" help:"grids GeoJSON FeatureCollection (properties code, name, level, parent) imported at start, before devices.file"`
	// BasemapFile is a picture of the city the console's maps lay under
	// the grid polygons, georeferenced by BasemapBounds; the maps need no
	// tile server either way.
	BasemapFile   string `koanf:"basemap_file" help:"PNG or JPEG of the city (at most 32 MiB) the console's maps show under the grid polygons; empty shows none"`
	BasemapBounds string `koanf:"basemap_bounds" help:"the box basemap_file covers: south,west,north,east in decimal degrees (WGS 84)"`
}

// maxBasemapBytes bounds grids.basemap_file, which the server holds in
// memory.
const maxBasemapBytes = 32 << 20

// basemap reads grids.basemap_file and its bounds; nil without one. Its
// errors name the key.
func (g GridsConfig) basemap() (*api.Basemap, error) {
	if g.BasemapFile == "" {
		if g.BasemapBounds != "" {
			return nil, errors.New("'grids.basemap_bounds' is set without grids.basemap_file")
		}
		return nil, nil
	}
	var v [4]float64
	parts := strings.Split(g.BasemapBounds, ",")
	if len(parts) != 4 {
		return nil, fmt.Errorf("'grids.basemap_bounds' must be south,west,north,east in degrees, not %q", g.BasemapBounds)
	}
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("'grids.basemap_bounds' must be south,west,north,east in degrees, not %q", g.BasemapBounds)
		}
		v[i] = f
	}
	s, w, n, e := v[0], v[1], v[2], v[3]
	if s < -90 || n > 90 || w < -180 || e > 180 || s >= n || w >= e {
		return nil, fmt.Errorf("'grids.basemap_bounds' %q must have -90 <= south < north <= 90 and -180 <= west < east <= 180", g.BasemapBounds)
	}
	f, err := os.Open(g.BasemapFile)
	if err != nil {
		return nil, fmt.Errorf("'grids.basemap_file' cannot be read: %w", err)
	}
	defer f.Close()
	img, err := io.ReadAll(io.LimitReader(f, maxBasemapBytes+1))
	if err != nil {
		return nil, fmt.Errorf("'grids.basemap_file' cannot be read: %w", err)
	}
	if len(img) > maxBasemapBytes {
		return nil, fmt.Errorf("'grids.basemap_file' is larger than %d MiB", maxBasemapBytes>>20)
	}
	typ := http.DetectContentType(img)
	if typ != "image/png" && typ != "image/jpeg" {
		return nil, fmt.Errorf("'grids.basemap_file' must be a PNG or a JPEG, not %s", typ)
	}
	return &api.Basemap{Image: img, Type: typ, South: s, West: w, North: n, East: e}, nil
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
