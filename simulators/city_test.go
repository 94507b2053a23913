package simulators

import (
	"bytes"
	"errors"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

var (
	idPattern   = regexp.MustCompile(`^([a-z]{2})-\d{6}$`)
	gridPattern = regexp.MustCompile(`^D\d{2}-S\d{2}-G\d{2}$`)
)

func TestCityGenerate(t *testing.T) {
	for _, c := range []struct {
		name      string
		city      City
		wantGrids int
	}{
		{"one device", City{Devices: 1}, 1},
		{"small", City{Devices: 50, Grids: 5, Seed: 3}, 5},
		{"default grids", City{Devices: 1000}, 50},
		{"more grids than devices", City{Devices: 30, Grids: 100}, 30},
		{"elsewhere", City{Devices: 2000, Grids: 120, CenterLat: 39.9042, CenterLon: 116.4074, RadiusKm: 3}, 120},
	} {
		t.Run(c.name, func(t *testing.T) {
			devs, err := c.city.Generate()
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != c.city.Devices {
				t.Fatalf("%d devices, want %d", len(devs), c.city.Devices)
			}
			prefix := make(map[string]string)
			for _, m := range typeMix {
				prefix[m.typ] = m.prefix
			}
			lat, lon, radius := c.city.CenterLat, c.city.CenterLon, c.city.RadiusKm
			if lat == 0 {
				lat, lon = DefaultCenterLat, DefaultCenterLon
			}
			if radius == 0 {
				radius = DefaultRadiusKm
			}
			ids, secrets, grids := map[string]bool{}, map[string]bool{}, map[string]bool{}
			for _, d := range devs {
				m := idPattern.FindStringSubmatch(d.ID)
				if m == nil || m[1] != prefix[d.Type] {
					t.Fatalf("device %q of type %q: want id <%s>-<6 digits>", d.ID, d.Type, prefix[d.Type])
				}
				if !gridPattern.MatchString(d.Grid) {
					t.Fatalf("device %s: grid %q is not a Dnn-Snn-Gnn cell code", d.ID, d.Grid)
				}
				if d.Name == "" || len(d.Secret) < 22 {
					t.Fatalf("device %s: name %q, secret of %d chars; want a name and a secret of 128 bits or more", d.ID, d.Name, len(d.Secret))
				}
				dy, dx := (d.Lat-lat)*111.32, (d.Lon-lon)*111.32*math.Cos(lat*math.Pi/180)
				if math.Abs(dy) > radius+0.01 || math.Abs(dx) > radius+0.01 {
					t.Fatalf("device %s at (%v, %v) is %.1f km N, %.1f km E of the centre, outside the city", d.ID, d.Lat, d.Lon, dy, dx)
				}
				if ids[d.ID] || secrets[d.Secret] {
					t.Fatalf("device %s: id or secret repeated", d.ID)
				}
				ids[d.ID], secrets[d.Secret], grids[d.Grid] = true, true, true
			}
			if len(grids) != c.wantGrids {
				t.Fatalf("devices in %d grid cells, want %d", len(grids), c.wantGrids)
			}
		})
	}
}

func TestCityMix(t *testing.T) {
	devs, err := City{Devices: 1000}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int)
	for _, d := range devs {
		got[d.Type]++
	}
	for _, m := range typeMix {
		if want := m.weight * 10; got[m.typ] != want {
			t.Errorf("%d devices of type %s, want %d", got[m.typ], m.typ, want)
		}
		if _, err := (Models{}).New(devices.Device{ID: "x", Type: m.typ}); err != nil {
			t.Errorf("city type %s has no value model: %v", m.typ, err)
		}
	}
	// A prefix of the list is a fair mix too: fleets take the first N.
	first := make(map[string]int)
	for _, d := range devs[:100] {
		first[d.Type]++
	}
	if first["streetlight"] < 15 || first["streetlight"] > 45 {
		t.Errorf("%d streetlights among the first 100 devices, want about 30", first["streetlight"])
	}
}

func TestCityHierarchy(t *testing.T) {
	devs, err := City{Devices: 5000, Grids: 500}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Cells of one street lie next to each other: no street spans more
	// than a few cell widths.
	type box struct{ minLat, maxLat, minLon, maxLon float64 }
	streets := make(map[string]*box)
	names := make(map[string]string)
	for _, d := range devs {
		street := d.Grid[:len("D01-S02")]
		b, ok := streets[street]
		if !ok {
			b = &box{d.Lat, d.Lat, d.Lon, d.Lon}
			streets[street] = b
		}
		b.minLat, b.maxLat = min(b.minLat, d.Lat), max(b.maxLat, d.Lat)
		b.minLon, b.maxLon = min(b.minLon, d.Lon), max(b.maxLon, d.Lon)
		road := d.Name[strings.Index(d.Name, ", ")+2:]
		if prev, ok := names[street]; ok && prev != road {
			t.Fatalf("street %s named both %q and %q", street, prev, road)
		}
		names[street] = road
	}
	cell := 2 * DefaultRadiusKm / math.Sqrt(500) / 111.32 // one cell's side in degrees of latitude
	for code, b := range streets {
		if b.maxLat-b.minLat > 3*cell {
			t.Errorf("street %s spans %.4f° of latitude, more than 3 cells", code, b.maxLat-b.minLat)
		}
	}
	seen := make(map[string]string)
	for street, road := range names {
		if other, ok := seen[road]; ok {
			t.Fatalf("streets %s and %s share the name %q", street, other, road)
		}
		seen[road] = street
	}
}

func TestCityReproducible(t *testing.T) {
	layout := func(devs []devices.Device) []devices.Device {
		out := slices.Clone(devs)
		for i := range out {
			out[i].Secret = ""
		}
		return out
	}
	a, _ := City{Devices: 200, Seed: 42}.Generate()
	b, _ := City{Devices: 200, Seed: 42}.Generate()
	c, _ := City{Devices: 200, Seed: 43}.Generate()
	if !slices.Equal(layout(a), layout(b)) {
		t.Fatal("same seed gave another layout")
	}
	if slices.Equal(layout(a), layout(c)) {
		t.Fatal("another seed gave the same layout")
	}
	for i := range a {
		if a[i].Secret == b[i].Secret {
			t.Fatalf("device %s got the same secret twice: secrets must not follow from the seed", a[i].ID)
		}
	}
}

func TestCityCSVRoundTrip(t *testing.T) {
	devs, err := City{Devices: 300, Seed: 9}.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := devices.WriteCSV(&buf, devs); err != nil {
		t.Fatal(err)
	}
	back, err := devices.ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(devs, back) {
		t.Fatal("devices changed through the CSV file")
	}
}

func TestCityErrors(t *testing.T) {
	for _, c := range []struct {
		city City
		want error
	}{
		{City{}, ErrNoDevices},
		{City{Devices: -1}, ErrNoDevices},
		{City{Devices: 10, Grids: 100 * 100 * 100}, ErrCityTooLarge},
		{City{Devices: 4_000_000}, ErrCityTooLarge},
	} {
		if _, err := c.city.Generate(); !errors.Is(err, c.want) {
			t.Errorf("%+v: err = %v, want %v", c.city, err, c.want)
		}
	}
}

// TestCityAreas checks that the areas of a city import as they are and
// hold its devices: every device lies in the cell it is registered in.
func TestCityAreas(t *testing.T) {
	city := City{Devices: 400, Grids: 30, Seed: 5}
	areas, err := city.Areas()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := devices.WriteGeoJSON(&buf, areas); err != nil {
		t.Fatal(err)
	}
	grids, rejected, err := devices.ReadGeoJSON(&buf, nil)
	if err != nil || len(rejected) > 0 {
		t.Fatalf("import of the areas: %v, rejected %v", err, rejected)
	}
	levels := map[string]int{}
	for _, g := range grids {
		levels[g.Level]++
	}
	if levels[devices.LevelGrid] != 30 || levels[devices.LevelStreet] == 0 || levels[devices.LevelDistrict] == 0 {
		t.Errorf("levels %v, want 30 cells under streets under districts", levels)
	}
	devs, err := city.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ix := devices.NewGridIndex(grids)
	for _, d := range devs {
		if got, ok := ix.Locate(d.Lat, d.Lon); !ok || got != d.Grid {
			t.Errorf("%s at %f,%f lies in %q (%v), registered in %s", d.ID, d.Lat, d.Lon, got, ok, d.Grid)
		}
	}
}
