package cases

import (
	"math"
	"strings"
)

// index finds the cases held by what intake and registration look them up
// by, so that neither reads every case held for each new one (a flood of
// alerts opening 10,000 cases would read 50 million): a sensor case by its
// device (the alerts that join it), any case by its place, a cell of about
// DuplicateRadius of its category, and by its address (the possible
// duplicates). It is guarded by Service.mu.
type index struct {
	// cell is the side of a place's cell in degrees of latitude.
	cell    float64
	devices map[string]set
	places  map[place]set
	addrs   map[address]set
}

// set is a set of case ids.
type set map[string]struct{}

// place is a cell of a category's cases with a location.
type place struct {
	category string
	lat, lon int64
}

// address is the normalized address of a category's cases.
type address struct{ category, addr string }

// newIndex returns an index for possible duplicates within radius metres.
func newIndex(radius float64) *index {
	return &index{cell: radius / metresPerDegree, devices: map[string]set{}, places: map[place]set{}, addrs: map[address]set{}}
}

// metresPerDegree is the length of a degree of latitude, in metres, a
// little short of the shortest so that a cell is never narrower than the
// radius it is made for.
const metresPerDegree = 110_500.0

// placeOf is the cell of a point: latitude in cells of x.cell degrees,
// longitude in cells of the same degrees, which are narrower in metres away
// from the equator (near asks for more of them).
func (x *index) placeOf(category string, p *Point) place {
	return place{category, int64(math.Floor(p.Lat / x.cell)), int64(math.Floor(p.Lon / x.cell))}
}

// normAddress is the address as duplicates compares it.
func normAddress(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// add indexes c.
func (x *index) add(c *Case) {
	if c.Device != "" {
		put(x.devices, c.Device, c.ID)
	}
	if c.Location != nil {
		put(x.places, x.placeOf(c.Category, c.Location), c.ID)
	}
	if a := normAddress(c.Address); a != "" {
		put(x.addrs, address{c.Category, a}, c.ID)
	}
}

// remove forgets c as it was indexed.
func (x *index) remove(c *Case) {
	if c.Device != "" {
		drop(x.devices, c.Device, c.ID)
	}
	if c.Location != nil {
		drop(x.places, x.placeOf(c.Category, c.Location), c.ID)
	}
	if a := normAddress(c.Address); a != "" {
		drop(x.addrs, address{c.Category, a}, c.ID)
	}
}

// update re-indexes a case that changed from old to c.
func (x *index) update(old, c *Case) {
	if old.Category == c.Category && old.Address == c.Address && old.Device == c.Device &&
		(old.Location == nil) == (c.Location == nil) && (old.Location == nil || *old.Location == *c.Location) {
		return
	}
	x.remove(old)
	x.add(c)
}

// ofDevice returns the ids of the cases of a device.
func (x *index) ofDevice(device string) set { return x.devices[device] }

// near returns the ids of the cases that may be duplicates of c: of its
// category, in the cells within the radius of its location, or at its
// address. duplicates decides.
func (x *index) near(c *Case) set {
	ids := set{}
	if c.Location != nil {
		p := x.placeOf(c.Category, c.Location)
		// A cell is x.cell degrees of longitude wide: cos(lat) of its
		// height in metres.
		lon := int64(math.Ceil(1 / math.Max(math.Cos(c.Location.Lat*math.Pi/180), 0.01)))
		for dlat := int64(-1); dlat <= 1; dlat++ {
			for dlon := -lon; dlon <= lon; dlon++ {
				for id := range x.places[place{c.Category, p.lat + dlat, p.lon + dlon}] {
					ids[id] = struct{}{}
				}
			}
		}
	}
	if a := normAddress(c.Address); a != "" {
		for id := range x.addrs[address{c.Category, a}] {
			ids[id] = struct{}{}
		}
	}
	return ids
}

func put[K comparable](m map[K]set, k K, id string) {
	s := m[k]
	if s == nil {
		s = set{}
		m[k] = s
	}
	s[id] = struct{}{}
}

func drop[K comparable](m map[K]set, k K, id string) {
	if s := m[k]; s != nil {
		delete(s, id)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}
