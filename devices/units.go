package devices

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Unit is a department (城管, 水务, 住建, 公安, 供热…) that handles the alerts
// of some categories in some districts.
type Unit struct {
	// Code identifies the unit, such as "water-d01"; alerts carry it.
	Code string `yaml:"code" json:"code"`
	Name string `yaml:"name" json:"name,omitempty"`
	// Categories are the device-type categories it handles, such as
	// "water" (see Type.Category).
	Categories []string `yaml:"categories" json:"categories"`
	// Districts are the codes of the areas whose whole subtree it covers:
	// usually districts, though a street or a grid cell also works and
	// overrides a unit of the enclosing district. Empty means the whole
	// city, the fallback where no unit covers an area.
	Districts []string `yaml:"districts" json:"districts,omitempty"`
}

// Categories returns the categories of the device catalog, sorted.
func Categories() []string {
	var out []string
	for _, t := range catalog {
		if !slices.Contains(out, t.Category) {
			out = append(out, t.Category)
		}
	}
	sort.Strings(out)
	return out
}

// ReadUnits reads units from a YAML list of Unit entries. It validates
// every entry and returns the good ones and, for the others, a RowError
// whose Line is the entry's line in the file; an entry claiming a category
// in an area an earlier entry already claims is rejected, so routing is
// never ambiguous. Only a file that is not a YAML list is an error.
func ReadUnits(r io.Reader) ([]Unit, []RowError, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("units yaml: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("units yaml: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil, nil
	}
	list := doc.Content[0]
	if list.Kind != yaml.SequenceNode {
		return nil, nil, fmt.Errorf("units yaml: line %d: want a list of units", list.Line)
	}
	var (
		out      []Unit
		rejected []RowError
		codes    = make(map[string]int)
		claims   = make(map[[2]string]string) // {category, area} -> unit code
	)
	for _, n := range list.Content {
		var u Unit
		if field := unknownField(n); field != "" {
			rejected = append(rejected, RowError{Line: n.Line, Reason: fmt.Sprintf("unknown field %q: want code, name, categories, districts", truncate(field))})
			continue
		}
		if err := n.Decode(&u); err != nil {
			rejected = append(rejected, RowError{Line: n.Line, Reason: err.Error()})
			continue
		}
		reason := u.validate()
		if reason == "" {
			if prev, dup := codes[u.Code]; dup {
				reason = fmt.Sprintf("unit %q already defined on line %d", u.Code, prev)
			}
		}
		if reason == "" {
			reason = claim(claims, u)
		}
		if reason != "" {
			rejected = append(rejected, RowError{Line: n.Line, ID: u.Code, Reason: reason})
			continue
		}
		codes[u.Code] = n.Line
		out = append(out, u)
	}
	return out, rejected, nil
}

// unknownField returns the first key of entry n that is no Unit field, so
// that a misspelt "districts" does not make a unit city-wide.
func unknownField(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "code", "name", "categories", "districts":
		default:
			return k
		}
	}
	return ""
}

// claim records u's (category, area) pairs in claims, or returns which
// unit claims one of them already.
func claim(claims map[[2]string]string, u Unit) string {
	areas := u.Districts
	if len(areas) == 0 {
		areas = []string{""}
	}
	for _, c := range u.Categories {
		for _, a := range areas {
			if other, taken := claims[[2]string{c, a}]; taken {
				where := "the whole city"
				if a != "" {
					where = a
				}
				return fmt.Sprintf("unit %q already handles %s in %s", other, c, where)
			}
		}
	}
	for _, c := range u.Categories {
		for _, a := range areas {
			claims[[2]string{c, a}] = u.Code
		}
	}
	return ""
}

// validate returns why u cannot be imported, or "".
func (u *Unit) validate() string {
	u.Code, u.Name = strings.TrimSpace(u.Code), strings.TrimSpace(u.Name)
	if reason := checkID("code", u.Code); reason != "" {
		return reason
	}
	if len(u.Categories) == 0 {
		return "categories must not be empty"
	}
	known := Categories()
	for _, c := range u.Categories {
		if !slices.Contains(known, c) {
			return fmt.Sprintf("category %q is not one of %s", truncate(c), strings.Join(known, ", "))
		}
	}
	for _, d := range u.Districts {
		if reason := checkID("district", d); reason != "" {
			return reason
		}
	}
	return ""
}

// UnitIndex answers which unit handles a category in an area.
type UnitIndex struct {
	byArea map[[2]string]string // {category, area code} -> unit code
	city   map[string]string    // category -> unit code of the whole city
}

// NewUnitIndex indexes units, which ReadUnits has checked: where two claim
// the same category in the same area, the later one wins.
func NewUnitIndex(units []Unit) *UnitIndex {
	ix := &UnitIndex{byArea: map[[2]string]string{}, city: map[string]string{}}
	for _, u := range units {
		for _, c := range u.Categories {
			if len(u.Districts) == 0 {
				ix.city[c] = u.Code
			}
			for _, d := range u.Districts {
				ix.byArea[[2]string{c, d}] = u.Code
			}
		}
	}
	return ix
}

// UnitFor returns the unit handling category in the first of areas (a
// grid cell, then its ancestors, nearest first) that a unit covers, else
// the city-wide unit of the category, else "".
func (ix *UnitIndex) UnitFor(category string, areas []string) string {
	for _, a := range areas {
		if u, ok := ix.byArea[[2]string{category, a}]; ok {
			return u
		}
	}
	return ix.city[category]
}

// CodeAncestors returns the areas above grid as its hierarchical code tells
// them, nearest first: "D01-S02-G03" gives "D01-S02" and "D01". It serves
// where the grid hierarchy is not loaded (generated cities use such codes).
func CodeAncestors(grid string) []string {
	var out []string
	for i := strings.LastIndexByte(grid, '-'); i > 0; i = strings.LastIndexByte(grid, '-') {
		grid = grid[:i]
		out = append(out, grid)
	}
	return out
}
