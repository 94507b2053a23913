package server

import (
	"context"
	"fmt"
	"os"

	"github.com/gridwatch/gridwatch/devices"
)

// UnitsConfig are the units.* keys.
type UnitsConfig struct {
	File string `koanf:"file" help:"units YAML file (a list of {code, name, categories, districts}) imported at start; alerts of a category in a district go to its unit"`
}

// validate checks the units file, naming its first rejected entry.
func (c *UnitsConfig) validate(bad func(key, format string, args ...any)) {
	if c.File == "" {
		return
	}
	if _, err := ReadUnitsFile(c.File); err != nil {
		bad("units.file", "is invalid: %v", err)
	}
}

// unitSet is one loaded set of units and its index.
type unitSet struct {
	units []devices.Unit
	index *devices.UnitIndex
}

// ReadUnitsFile reads a units file that must be right as a whole.
func ReadUnitsFile(path string) ([]devices.Unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	units, rejected, err := devices.ReadUnits(f)
	if err != nil {
		return nil, err
	}
	if len(rejected) > 0 {
		return nil, fmt.Errorf("%s: %w (%d entries rejected)", path, rejected[0], len(rejected))
	}
	return units, nil
}

// importUnitsFile stores units.file in the registry, if one is configured.
func (s *Server) importUnitsFile(ctx context.Context) error {
	if s.Config.Units.File == "" {
		return nil
	}
	units, err := ReadUnitsFile(s.Config.Units.File)
	if err != nil {
		return fmt.Errorf("units.file: %w", err)
	}
	if err := s.db.SaveUnits(ctx, units); err != nil {
		return fmt.Errorf("units.file %s: %w", s.Config.Units.File, err)
	}
	s.Logger.Info("units.file imported", "file", s.Config.Units.File, "units", len(units))
	return nil
}

// loadUnits reads the units from the registry into the server.
func (s *Server) loadUnits(ctx context.Context) error {
	units, err := s.db.LoadUnits(ctx)
	if err != nil {
		return err
	}
	s.reg.units.Store(&unitSet{units: units, index: devices.NewUnitIndex(units)})
	return nil
}

// Units returns the loaded units, ordered by code.
func (s *Server) Units() []devices.Unit {
	if u := s.reg.units.Load(); u != nil {
		return u.units
	}
	return nil
}

// UnitFor returns the unit that handles category in grid: the unit of the
// nearest area covering it, walking from the grid cell up through its
// street to its district (a unit bound to a district covers its whole
// subtree), else the city-wide unit of the category, else "". The loaded
// grid hierarchy gives the ancestors; for a grid it does not hold, the
// hierarchical code does (D01-S02-G03 lies in D01-S02 and D01). It is the
// alert engine's router.
func (s *Server) UnitFor(category, grid string) string {
	set := s.reg.units.Load()
	if set == nil {
		return ""
	}
	up := s.gridAncestors(grid)
	if len(up) == 0 {
		up = devices.CodeAncestors(grid)
	}
	return set.index.UnitFor(category, append([]string{grid}, up...))
}
