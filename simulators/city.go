package simulators

import (
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"

	"github.com/paulmach/orb"

	"github.com/gridwatch/gridwatch/devices"
)

// City defaults.
const (
	// DefaultCenterLat and DefaultCenterLon are central Hangzhou, by West Lake.
	DefaultCenterLat = 30.2741
	DefaultCenterLon = 120.1551
	// DefaultRadiusKm is half the side of the square the city covers.
	DefaultRadiusKm = 8.0
	// DefaultDevicesPerGrid sets the number of grid cells when Grids is 0.
	DefaultDevicesPerGrid = 20
)

// Limits of the fixed-width codes: ids are "<prefix>-<6 digits>" numbered
// per type, grid codes "Dnn-Snn-Gnn".
const (
	maxPerType = 999_999
	maxPerTier = 99
)

// City generates the device registry of a plausible city. Everything except
// the secrets follows from Seed: the same settings give the same ids, types,
// grid cells, coordinates and names. Secrets always come from crypto/rand, so
// that publishing a seed never reveals credentials; keep the generated file to
// run a fleet against a server that imported it.
type City struct {
	// Devices is how many devices to generate; it must be positive.
	Devices int
	// Grids is the number of grid cells, grouped into districts and streets
	// ("D01", "D01-S02", "D01-S02-G03"); devices are spread evenly over the
	// cells. It defaults to one cell per DefaultDevicesPerGrid devices.
	Grids int
	// Seed determines the layout; zero is a seed like any other.
	Seed int64
	// CenterLat and CenterLon are the city centre. They default to
	// DefaultCenterLat and DefaultCenterLon when both are zero.
	CenterLat, CenterLon float64
	// RadiusKm is half the side of the square the city covers. It defaults
	// to DefaultRadiusKm.
	RadiusKm float64
}

// mixEntry is one device type of the city with its share of the devices.
type mixEntry struct {
	typ, prefix, label string
	weight             int
}

// typeMix is the make-up of a city, in percent: many streetlights, bins and
// manholes, few bridges and gas detectors.
var typeMix = []mixEntry{
	{"streetlight", "sl", "Streetlight", 30},
	{"waste_bin", "wb", "Waste bin", 20},
	{"manhole_cover", "mh", "Manhole cover", 18},
	{"hydrant", "hy", "Hydrant", 8},
	{"heating_pipe", "hp", "Heating pipe", 6},
	{"noise", "ns", "Noise station", 5},
	{"air_quality", "aq", "Air quality station", 5},
	{"water_level", "wl", "Underpass water gauge", 4},
	{"gas", "gs", "Gas detector", 2},
	{"bridge", "br", "Bridge monitor", 2},
}

// roads name the streets; when a city has more streets, names repeat with
// a number ("Jiefang Rd 2").
var roads = []string{
	"Jiefang Rd", "Yan'an Rd", "Zhongshan Rd", "Fengqi Rd", "Qingchun Rd",
	"Tiyuchang Rd", "Wensan Rd", "Huaxing Rd", "Moganshan Rd", "Hushu Rd",
	"Jianguo Rd", "Qiutao Rd", "Wulin Rd", "Huancheng Rd", "Xueyuan Rd",
	"Wener Rd", "Gudun Rd", "Shuguang Rd", "Beishan Rd", "Nanshan Rd",
	"Hefang St", "Qingtai St", "Kaixuan Rd", "Desheng Rd",
}

// Generate returns the city's devices in a shuffled order, so that any
// prefix of the list is itself a fair mix of types and grid cells.
func (c City) Generate() ([]devices.Device, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	types := allocate(c.Devices)
	if per := types[0].count; per > maxPerType {
		return nil, fmt.Errorf("generate city of %d devices (%d %s, at most %d per type): %w", c.Devices, per, types[0].typ, maxPerType, ErrCityTooLarge)
	}

	rng := mrand.New(mrand.NewPCG(uint64(c.Seed), 0x6369747921))
	order := make([]int, 0, c.Devices) // indexes into typeMix, one per device
	for i, t := range types {
		for range t.count {
			order = append(order, i)
		}
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	l := newLayout(c)
	seq := make([]int, len(typeMix))
	out := make([]devices.Device, len(order))
	for i, t := range order {
		seq[t]++
		m := typeMix[t]
		cell := i % c.Grids
		lat, lon := l.place(cell, rng.Float64(), rng.Float64())
		out[i] = devices.Device{
			ID:     fmt.Sprintf("%s-%06d", m.prefix, seq[t]),
			Type:   m.typ,
			Grid:   l.code(cell),
			Lat:    lat,
			Lon:    lon,
			Name:   fmt.Sprintf("%s %d, %s", m.label, seq[t], l.street(cell)),
			Secret: rand.Text(),
		}
	}
	return out, nil
}

// withDefaults fills in the defaults of the settings and checks them.
func (c City) withDefaults() (City, error) {
	if c.Devices <= 0 {
		return c, fmt.Errorf("generate city of %d devices: %w", c.Devices, ErrNoDevices)
	}
	if c.Grids <= 0 {
		c.Grids = (c.Devices + DefaultDevicesPerGrid - 1) / DefaultDevicesPerGrid
	}
	if c.CenterLat == 0 && c.CenterLon == 0 {
		c.CenterLat, c.CenterLon = DefaultCenterLat, DefaultCenterLon
	}
	if c.RadiusKm <= 0 {
		c.RadiusKm = DefaultRadiusKm
	}
	if c.Grids > maxPerTier*maxPerTier*maxPerTier {
		return c, fmt.Errorf("generate city of %d grid cells (at most %d): %w", c.Grids, maxPerTier*maxPerTier*maxPerTier, ErrCityTooLarge)
	}
	return c, nil
}

// Areas returns the city's grid hierarchy with its geometry, for `gridwatch
// grids import`: every cell Generate places devices in as a square Polygon,
// and the streets and districts above them as MultiPolygons of their cells.
// The same settings give the same areas.
func (c City) Areas() ([]devices.Grid, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	l := newLayout(c)
	var cells []devices.Grid
	parents := map[string]*devices.Grid{}
	var order []string
	up := func(code, name, level, parent string, square orb.Polygon) {
		g, ok := parents[code]
		if !ok {
			g = &devices.Grid{Code: code, Name: name, Level: level, Parent: parent, Geometry: orb.MultiPolygon{}}
			parents[code] = g
			order = append(order, code)
		}
		g.Geometry = append(g.Geometry.(orb.MultiPolygon), square)
	}
	for i := range c.Grids {
		north, west := l.place(i, 0, 0)
		south, east := l.place(i, 1, 1)
		square := orb.Polygon{orb.Ring{{west, north}, {west, south}, {east, south}, {east, north}, {west, north}}}
		d, s, g := l.tiers(i)
		district := fmt.Sprintf("D%02d", d)
		street := fmt.Sprintf("%s-S%02d", district, s)
		up(district, fmt.Sprintf("District %d", d), devices.LevelDistrict, "", square)
		up(street, l.street(i), devices.LevelStreet, district, square)
		cells = append(cells, devices.Grid{Code: l.code(i), Name: fmt.Sprintf("%s, cell %d", l.street(i), g), Level: devices.LevelGrid, Parent: street, Geometry: square})
	}
	out := make([]devices.Grid, 0, len(order)+len(cells))
	for _, code := range order {
		out = append(out, *parents[code])
	}
	return append(out, cells...), nil
}

// typeCount is how many devices of a type a city gets.
type typeCount struct {
	typ   string
	count int
}

// allocate splits n devices over typeMix by largest remainder, so the mix is
// exact for any n. The result is in typeMix order, largest share first.
func allocate(n int) []typeCount {
	total := 0
	for _, m := range typeMix {
		total += m.weight
	}
	out := make([]typeCount, len(typeMix))
	rem := make([]int, len(typeMix))
	left := n
	for i, m := range typeMix {
		out[i] = typeCount{typ: m.typ, count: n * m.weight / total}
		rem[i] = n * m.weight % total
		left -= out[i].count
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best].count++
		rem[best] = -1
	}
	return out
}

// layout places grid cells: the hierarchy splits the cell index into
// district, street and cell numbers, and the map lays the cells out row by
// row, snaking, so that consecutive cells - one street, one district - are
// neighbours.
type layout struct {
	streets, cells int // streets per district, cells per street
	cols, rows     int
	north, west    float64 // the city's north-west corner
	cellLat        float64 // cell height in degrees
	cellLon        float64 // cell width in degrees
}

func newLayout(c City) layout {
	districts := 1
	for districts*districts*districts < c.Grids {
		districts++
	}
	streets := 1
	for districts*streets*streets < c.Grids {
		streets++
	}
	cells := (c.Grids + districts*streets - 1) / (districts * streets)
	cols := int(math.Ceil(math.Sqrt(float64(c.Grids))))
	rows := (c.Grids + cols - 1) / cols
	const kmPerDegree = 111.32
	latSpan := 2 * c.RadiusKm / kmPerDegree
	lonSpan := latSpan / math.Cos(c.CenterLat*math.Pi/180)
	return layout{
		streets: streets,
		cells:   cells,
		cols:    cols,
		rows:    rows,
		north:   c.CenterLat + latSpan/2,
		west:    c.CenterLon - lonSpan/2,
		cellLat: latSpan / float64(rows),
		cellLon: lonSpan / float64(cols),
	}
}

// tiers returns the 1-based district, street and cell numbers of cell i.
func (l layout) tiers(i int) (district, street, cell int) {
	return i/(l.streets*l.cells) + 1, i/l.cells%l.streets + 1, i%l.cells + 1
}

// code returns the grid code of cell i, such as "D01-S02-G03".
func (l layout) code(i int) string {
	d, s, g := l.tiers(i)
	return fmt.Sprintf("D%02d-S%02d-G%02d", d, s, g)
}

// street returns the name of the street cell i lies on.
func (l layout) street(i int) string {
	d, s, _ := l.tiers(i)
	n := (d-1)*l.streets + s - 1
	if n < len(roads) {
		return roads[n]
	}
	return fmt.Sprintf("%s %d", roads[n%len(roads)], n/len(roads)+1)
}

// place returns the coordinates of the point at fractions u (west to east)
// and v (north to south) of cell i, rounded to 6 decimals (about 0.1 m).
func (l layout) place(i int, u, v float64) (lat, lon float64) {
	row, col := i/l.cols, i%l.cols
	if row%2 == 1 {
		col = l.cols - 1 - col
	}
	lat = l.north - (float64(row)+v)*l.cellLat
	lon = l.west + (float64(col)+u)*l.cellLon
	return math.Round(lat*1e6) / 1e6, math.Round(lon*1e6) / 1e6
}
