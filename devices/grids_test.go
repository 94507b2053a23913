package devices

import (
	"bytes"
	"strings"
	"testing"

	"github.com/paulmach/orb"
)

// testGrid is a 1x1 degree grid cell with its south-west corner at lon, lat.
func testGrid(code string, lon, lat float64) Grid {
	ring := orb.Ring{{lon, lat}, {lon + 1, lat}, {lon + 1, lat + 1}, {lon, lat + 1}, {lon, lat}}
	return Grid{Code: code, Level: LevelGrid, Parent: "S1", Geometry: orb.Polygon{ring}}
}

const square = `{"type":"Polygon","coordinates":[[[120,30],[121,30],[121,31],[120,31],[120,30]]]}`

func feature(props, geom string) string {
	return `{"type":"Feature","properties":` + props + `,"geometry":` + geom + `}`
}

// geojsonCases seed FuzzReadGeoJSON; want is the reason of the one rejected
// feature, or "" when all are accepted.
var geojsonCases = []struct{ name, in, want string }{
	{"hierarchy", `{"type":"FeatureCollection","features":[` +
		feature(`{"code":"D1","name":"East","level":"district"}`, square) + `,` +
		feature(`{"code":"S1","level":"street","parent":"D1"}`, square) + `,` +
		feature(`{"code":"G1","level":"grid","parent":"S1"}`, square) + `]}`, ""},
	{"bad level", `{"type":"FeatureCollection","features":[` + feature(`{"code":"X","level":"city"}`, square) + `]}`, "level"},
	{"unknown parent", `{"type":"FeatureCollection","features":[` + feature(`{"code":"G1","level":"grid","parent":"S9"}`, square) + `]}`, `parent "S9" is not a known grid`},
	{"point geometry", `{"type":"FeatureCollection","features":[` + feature(`{"code":"D1","level":"district"}`, `{"type":"Point","coordinates":[1,2]}`) + `]}`, "want Polygon"},
	{"skipped level", `{"type":"FeatureCollection","features":[` +
		feature(`{"code":"D1","level":"district"}`, square) + `,` + feature(`{"code":"G1","level":"grid","parent":"D1"}`, square) + `]}`, "one level up"},
}

func TestReadGeoJSON(t *testing.T) {
	for _, tc := range geojsonCases {
		t.Run(tc.name, func(t *testing.T) {
			grids, rejected, err := ReadGeoJSON(strings.NewReader(tc.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(rejected) != 0 {
					t.Fatalf("rejected %v", rejected)
				}
				var buf bytes.Buffer
				if err := WriteGeoJSON(&buf, grids); err != nil {
					t.Fatal(err)
				}
				again, rej, err := ReadGeoJSON(&buf, nil)
				if err != nil || len(rej) != 0 || len(again) != len(grids) {
					t.Fatalf("round trip: %v %v %v", again, rej, err)
				}
				return
			}
			if len(rejected) != 1 || !strings.Contains(rejected[0].Reason, tc.want) {
				t.Fatalf("rejected %v, want %q", rejected, tc.want)
			}
		})
	}
	if _, _, err := ReadGeoJSON(strings.NewReader(`{"type":"Feature"}`), nil); err == nil {
		t.Error("a lone Feature was accepted as a FeatureCollection")
	}
}

func TestGridIndexPrefersTheSmallestArea(t *testing.T) {
	district := Grid{Code: "D1", Level: LevelDistrict, Geometry: orb.Polygon{{{100, 20}, {140, 20}, {140, 40}, {100, 40}, {100, 20}}}}
	ix := NewGridIndex([]Grid{district, testGrid("G1", 120, 30)})
	for _, tc := range []struct {
		lat, lon float64
		want     string
	}{{30.5, 120.5, "G1"}, {25, 110, "D1"}, {0, 0, ""}} {
		if got, _ := ix.Locate(tc.lat, tc.lon); got != tc.want {
			t.Errorf("Locate(%v, %v) = %q, want %q", tc.lat, tc.lon, got, tc.want)
		}
	}
}

func FuzzReadGeoJSON(f *testing.F) {
	for _, tc := range geojsonCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		grids, _, err := ReadGeoJSON(strings.NewReader(in), nil)
		if err != nil {
			return
		}
		ix := NewGridIndex(grids)
		ix.Locate(30.5, 120.5)
		for _, g := range grids {
			if g.validate() != "" {
				t.Fatalf("accepted invalid grid %+v", g)
			}
		}
	})
}
