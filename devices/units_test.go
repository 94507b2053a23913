package devices

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

var unitsCases = []struct {
	name     string
	file     string
	units    []string // accepted codes
	rejected []RowError
}{
	{
		name:  "city-wide and per district",
		file:  "- code: water\n  categories: [water]\n- code: cg-d01\n  name: 城管 D01\n  categories: [municipal, sanitation]\n  districts: [D01]\n",
		units: []string{"water", "cg-d01"},
	},
	{
		name: "unknown category, missing code, misspelt field",
		file: "- code: x\n  categories: [plumbing]\n- categories: [water]\n- code: y\n  categories: [gas]\n  district: [D01]\n",
		rejected: []RowError{
			{Line: 1, ID: "x", Reason: `category "plumbing" is not one of construction, environment, fire, gas, heating, lighting, municipal, sanitation, video, water`},
			{Line: 3, Reason: "code must be 1-64 characters"},
			{Line: 4, Reason: `unknown field "district": want code, name, categories, districts`},
		},
	},
	{
		name:  "a category claimed twice in one area is ambiguous",
		file:  "- code: a\n  categories: [gas]\n  districts: [D01]\n- code: b\n  categories: [fire, gas]\n  districts: [D02, D01]\n- code: a\n  categories: [fire]\n",
		units: []string{"a"},
		rejected: []RowError{
			{Line: 4, ID: "b", Reason: `unit "a" already handles gas in D01`},
			{Line: 7, ID: "a", Reason: `unit "a" already defined on line 1`},
		},
	},
	{name: "empty file"},
}

func TestReadUnits(t *testing.T) {
	for _, tc := range unitsCases {
		t.Run(tc.name, func(t *testing.T) {
			units, rejected, err := ReadUnits(strings.NewReader(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var codes []string
			for _, u := range units {
				codes = append(codes, u.Code)
			}
			if !reflect.DeepEqual(codes, tc.units) || !reflect.DeepEqual(rejected, tc.rejected) {
				t.Errorf("ReadUnits = %v, %+v\nwant %v, %+v", codes, rejected, tc.units, tc.rejected)
			}
		})
	}
	if _, _, err := ReadUnits(strings.NewReader("code: x\n")); err == nil {
		t.Error("ReadUnits accepted a mapping, want an error: a units file is a list")
	}
}

func FuzzReadUnits(f *testing.F) {
	for _, tc := range unitsCases {
		f.Add(tc.file)
	}
	f.Fuzz(func(t *testing.T, file string) {
		units, _, err := ReadUnits(strings.NewReader(file))
		if err != nil {
			return
		}
		for _, u := range units {
			if u.validate() != "" {
				t.Fatalf("accepted invalid unit %+v", u)
			}
		}
	})
}

func TestUnitFor(t *testing.T) {
	ix := NewUnitIndex([]Unit{
		{Code: "water", Categories: []string{"water"}},
		{Code: "water-d01", Categories: []string{"water"}, Districts: []string{"D01"}},
		{Code: "water-d01-s02", Categories: []string{"water"}, Districts: []string{"D01-S02"}},
		{Code: "cg-d02", Categories: []string{"municipal"}, Districts: []string{"D02"}},
	})
	for _, tc := range []struct {
		category, grid string
		want           string
	}{
		{"water", "D01-S01-G01", "water-d01"},     // the district's unit covers its cells
		{"water", "D01-S02-G01", "water-d01-s02"}, // a street's unit overrides the district's
		{"water", "D03-S01-G01", "water"},         // the city-wide fallback
		{"municipal", "D02-S01-G05", "cg-d02"},
		{"municipal", "D01-S01-G01", ""}, // nobody handles it there
		{"gas", "D02", ""},
	} {
		areas := append([]string{tc.grid}, CodeAncestors(tc.grid)...)
		if got := ix.UnitFor(tc.category, areas); got != tc.want {
			t.Errorf("UnitFor(%s, %s) = %q, want %q", tc.category, tc.grid, got, tc.want)
		}
	}
}

func TestCodeAncestors(t *testing.T) {
	for grid, want := range map[string][]string{
		"D01-S02-G03": {"D01-S02", "D01"},
		"D01":         nil,
		"-x":          nil,
	} {
		if got := CodeAncestors(grid); !reflect.DeepEqual(got, want) {
			t.Errorf("CodeAncestors(%q) = %q, want %q", grid, got, want)
		}
	}
}

// TestShippedUnitsFile checks that deploy/units.yaml loads whole and routes
// every category somewhere.
func TestShippedUnitsFile(t *testing.T) {
	f, err := os.Open("../deploy/units.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	units, rejected, err := ReadUnits(f)
	if err != nil || len(rejected) > 0 {
		t.Fatalf("deploy/units.yaml: %v %+v", err, rejected)
	}
	ix := NewUnitIndex(units)
	for _, c := range Categories() {
		if ix.UnitFor(c, []string{"D09-S01-G01", "D09-S01", "D09"}) == "" {
			t.Errorf("deploy/units.yaml routes no %s alert", c)
		}
	}
	if got := ix.UnitFor("municipal", []string{"D01-S01-G01", "D01-S01", "D01"}); got != "chengguan-d01" {
		t.Errorf("municipal in D01 goes to %q, want chengguan-d01", got)
	}
}
