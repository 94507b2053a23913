package devices

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
)

// Grid levels, from the largest area to the smallest (区 → 街道 → 网格).
const (
	LevelDistrict = "district"
	LevelStreet   = "street"
	LevelGrid     = "grid"
)

// levelRank orders levels: a parent ranks one below its children.
var levelRank = map[string]int{LevelDistrict: 0, LevelStreet: 1, LevelGrid: 2}

// Grid is one area of the city-management hierarchy.
type Grid struct {
	// Code identifies the area, such as "110105-003-012".
	Code string `json:"code"`
	Name string `json:"name,omitempty"`
	// Level is LevelDistrict, LevelStreet or LevelGrid.
	Level string `json:"level"`
	// Parent is the code of the enclosing area; empty for a district.
	Parent string `json:"parent,omitempty"`
	// Geometry is the area's Polygon or MultiPolygon, lon/lat (WGS 84).
	Geometry orb.Geometry `json:"-"`
}

// ReadGeoJSON reads grids from a GeoJSON FeatureCollection whose features
// carry the properties code, name, level and parent and a Polygon or
// MultiPolygon geometry. It validates every feature and returns the good
// ones and, for the others, a RowError whose Line is the feature's 1-based
// position. A parent must be a feature of the file or a grid known already
// (known may be nil), one level up. Only a file that is not a
// FeatureCollection at all is an error.
func ReadGeoJSON(r io.Reader, known func(code string) (Grid, bool)) ([]Grid, []RowError, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("grids geojson: %w", err)
	}
	var fc geojson.FeatureCollection
	if err := json.Unmarshal(data, &fc); err != nil {
		return nil, nil, fmt.Errorf("grids geojson: not a FeatureCollection: %w", err)
	}
	if fc.Type != "FeatureCollection" {
		return nil, nil, fmt.Errorf("grids geojson: type %q, want FeatureCollection", fc.Type)
	}
	if known == nil {
		known = func(string) (Grid, bool) { return Grid{}, false }
	}
	var rejected []RowError
	levels := make(map[string]string, len(fc.Features))
	first := make(map[string]int, len(fc.Features))
	cands := make([]Grid, 0, len(fc.Features))
	lines := make([]int, 0, len(fc.Features))
	for i, f := range fc.Features {
		g := Grid{Geometry: f.Geometry}
		line := i + 1
		// Properties are read with a type switch: orb's MustString panics
		// on a non-string value (found by FuzzReadGeoJSON).
		reason := ""
		for _, p := range []struct {
			key string
			dst *string
		}{{"code", &g.Code}, {"name", &g.Name}, {"level", &g.Level}, {"parent", &g.Parent}} {
			switch v := f.Properties[p.key].(type) {
			case nil:
			case string:
				*p.dst = strings.TrimSpace(v)
			default:
				reason = fmt.Sprintf("property %q must be a string", p.key)
			}
		}
		if reason == "" {
			reason = g.validate()
		}
		if reason != "" {
			rejected = append(rejected, RowError{Line: line, ID: g.Code, Reason: reason})
			continue
		}
		if prev, dup := first[g.Code]; dup {
			rejected = append(rejected, RowError{Line: line, ID: g.Code, Reason: fmt.Sprintf("grid %q already defined in feature %d", g.Code, prev)})
			continue
		}
		first[g.Code] = line
		levels[g.Code] = g.Level
		cands = append(cands, g)
		lines = append(lines, line)
	}
	out := make([]Grid, 0, len(cands))
	for i, g := range cands {
		if g.Parent != "" {
			plevel, ok := levels[g.Parent]
			if !ok {
				if p, found := known(g.Parent); found {
					plevel, ok = p.Level, true
				}
			}
			if !ok {
				rejected = append(rejected, RowError{Line: lines[i], ID: g.Code, Reason: fmt.Sprintf("parent %q is not a known grid", g.Parent)})
				continue
			}
			if levelRank[plevel] != levelRank[g.Level]-1 {
				rejected = append(rejected, RowError{Line: lines[i], ID: g.Code, Reason: fmt.Sprintf("parent %q is a %s, a %s needs a parent one level up", g.Parent, plevel, g.Level)})
				continue
			}
		}
		out = append(out, g)
	}
	slices.SortFunc(rejected, func(a, b RowError) int { return a.Line - b.Line })
	return out, rejected, nil
}

// validate returns why g cannot be imported, or "".
func (g Grid) validate() string {
	if reason := checkID("code", g.Code); reason != "" {
		return reason
	}
	rank, ok := levelRank[g.Level]
	switch {
	case !ok:
		return fmt.Sprintf("level %q must be district, street or grid", g.Level)
	case rank == 0 && g.Parent != "":
		return "a district has no parent"
	case rank > 0 && g.Parent == "":
		return fmt.Sprintf("a %s needs a parent", g.Level)
	}
	switch geom := g.Geometry.(type) {
	case orb.Polygon:
		if len(geom) == 0 || len(geom[0]) < 4 {
			return "polygon needs an outer ring of at least 4 points"
		}
	case orb.MultiPolygon:
		if len(geom) == 0 || len(geom[0]) == 0 || len(geom[0][0]) < 4 {
			return "multipolygon needs a polygon with an outer ring of at least 4 points"
		}
	case nil:
		return "geometry is missing"
	default:
		return fmt.Sprintf("geometry is a %s, want Polygon or MultiPolygon", geom.GeoJSONType())
	}
	return ""
}

// WriteGeoJSON writes grids as the FeatureCollection ReadGeoJSON reads.
func WriteGeoJSON(w io.Writer, grids []Grid) error {
	fc := geojson.NewFeatureCollection()
	for _, g := range grids {
		f := geojson.NewFeature(g.Geometry)
		f.Properties["code"] = g.Code
		f.Properties["name"] = g.Name
		f.Properties["level"] = g.Level
		f.Properties["parent"] = g.Parent
		fc.Append(f)
	}
	return json.NewEncoder(w).Encode(fc)
}

// GridIndex places points in grid cells.
type GridIndex struct {
	cells []indexedGrid // grid-level areas first, then streets, then districts
}

type indexedGrid struct {
	code  string
	bound orb.Bound
	geom  orb.Geometry
}

// NewGridIndex indexes the areas of grids.
func NewGridIndex(grids []Grid) *GridIndex {
	ix := &GridIndex{cells: make([]indexedGrid, 0, len(grids))}
	sorted := slices.Clone(grids)
	slices.SortStableFunc(sorted, func(a, b Grid) int { return levelRank[b.Level] - levelRank[a.Level] })
	for _, g := range sorted {
		if g.Geometry == nil {
			continue
		}
		ix.cells = append(ix.cells, indexedGrid{code: g.Code, bound: g.Geometry.Bound(), geom: g.Geometry})
	}
	return ix
}

// Locate returns the code of the smallest area containing (lat, lon): a grid
// cell when one contains it, else a street, else a district.
func (ix *GridIndex) Locate(lat, lon float64) (string, bool) {
	p := orb.Point{lon, lat}
	for _, c := range ix.cells {
		if !c.bound.Contains(p) {
			continue
		}
		switch g := c.geom.(type) {
		case orb.Polygon:
			if planar.PolygonContains(g, p) {
				return c.code, true
			}
		case orb.MultiPolygon:
			if planar.MultiPolygonContains(g, p) {
				return c.code, true
			}
		}
	}
	return "", false
}
