package simulators

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gridwatch/gridwatch/devices"
)

// Value is one metric value of a reading.
type Value struct {
	Metric string
	Value  float64
}

// Reading is what one device measured at one instant: one value per metric
// of its type, in catalog order. Values must be finite.
type Reading struct {
	At     time.Time
	Values []Value
}

// Models builds the value model of each simulated device. The zero value is
// ready to use.
type Models struct {
	// Seed makes runs reproducible: the same seed, device id and sequence of
	// timestamps give the same values.
	Seed int64
	// Location is the local time of the diurnal patterns (traffic peaks,
	// streetlights, waste collection). It defaults to UTC+8, China Standard
	// Time.
	Location *time.Location
}

// New returns the healthy value model of d. It fails with ErrUnknownType
// when d's type has no model.
func (ms Models) New(d devices.Device) (*Model, error) {
	h := fnv.New64a()
	h.Write([]byte(d.ID))
	g := gen{rand.New(rand.NewPCG(uint64(ms.Seed), h.Sum64()))}
	metrics, b, ok := newBehaviour(d.Type, g)
	if !ok {
		return nil, fmt.Errorf("device %s: %w %q", d.ID, ErrUnknownType, d.Type)
	}
	loc := ms.Location
	if loc == nil {
		loc = time.FixedZone("CST", 8*3600)
	}
	return &Model{
		metrics: metrics,
		b:       b,
		g:       g,
		loc:     loc,
		vals:    make([]float64, len(metrics)),
		out:     make([]Value, len(metrics)),
	}, nil
}

// Model generates the readings of one healthy device: diurnal patterns,
// gaussian noise and slow drifts, deterministic from the seed and the device
// id. A Model is owned by one goroutine. Fault scenarios wrap a Model as a
// Source and alter what it returns.
type Model struct {
	metrics []metric
	b       behaviour
	g       gen
	loc     *time.Location
	last    time.Time
	vals    []float64
	out     []Value
}

// Next returns the reading at the given time. Its Values are reused by the
// next call. Times should not go backwards; drifts stand still when they do.
func (m *Model) Next(at time.Time) Reading {
	var dtH float64
	if !m.last.IsZero() && at.After(m.last) {
		dtH = at.Sub(m.last).Hours()
	}
	if at.After(m.last) {
		m.last = at
	}
	lt := at.In(m.loc)
	h := float64(lt.Hour()) + float64(lt.Minute())/60 + (float64(lt.Second())+float64(lt.Nanosecond())/1e9)/3600
	m.b.next(m.g, h, dtH, m.vals)
	for i, mt := range m.metrics {
		p := math.Pow10(mt.decimals)
		m.out[i] = Value{Metric: mt.name, Value: math.Round(m.vals[i]*p) / p}
	}
	return Reading{At: at, Values: m.out}
}

// metric names a value and the decimals it is reported with.
type metric struct {
	name     string
	decimals int
}

// behaviour is the per-type part of a model. next writes one value per
// metric into out, at local hour h (0 to 24), dtH hours after the previous
// reading (0 for the first).
type behaviour interface {
	next(g gen, h, dtH float64, out []float64)
}

// newBehaviour returns the metrics of typ and a behaviour with per-device
// parameters drawn from g.
func newBehaviour(typ string, g gen) ([]metric, behaviour, bool) {
	switch typ {
	case "manhole_cover":
		return []metric{{"tilt_deg", 2}, {"water_level_cm", 1}, {"battery_pct", 1}},
			&manhole{tilt: g.unif(0, 1.5), water: g.unif(0, 8), battery: g.unif(55, 100)}, true
	case "water_level":
		usual := g.unif(0.5, 2)
		return []metric{{"level_cm", 1}}, &waterLevel{level: drift{x: usual, mean: usual, theta: 0.5, sigma: 0.6}}, true
	case "air_quality":
		return []metric{{"pm25", 1}, {"pm10", 1}, {"no2", 1}},
			&airQuality{base: g.unif(15, 45), coarse: g.unif(1.3, 1.8), weather: drift{x: 1, mean: 1, theta: 0.1, sigma: 0.1}}, true
	case "noise":
		return []metric{{"noise_db", 1}}, &noise{base: g.unif(42, 55)}, true
	case "streetlight":
		return []metric{{"current_a", 3}, {"voltage_v", 1}, {"lamp_on", 0}},
			&streetlight{on: g.norm(18.2, 0.15), off: g.norm(6.1, 0.15), rated: g.unif(0.40, 0.50)}, true
	case "waste_bin":
		return []metric{{"fill_pct", 1}, {"temp_c", 1}},
			&wasteBin{daily: g.unif(50, 110), collect: g.unif(5, 7), fill: -1}, true
	case "heating_pipe":
		return []metric{{"supply_temp_c", 1}, {"return_temp_c", 1}, {"pressure_mpa", 3}},
			&heatingPipe{supply: g.unif(68, 78), drop: g.unif(18, 25), pressure: g.unif(0.45, 0.75)}, true
	case "bridge":
		return []metric{{"tilt_deg", 3}, {"vibration_mm_s", 2}},
			&bridge{tilt: g.unif(0, 0.3), load: g.unif(0.7, 1.3)}, true
	case "gas":
		usual := g.unif(1.9, 3)
		return []metric{{"ch4_ppm", 2}}, &gas{background: drift{x: usual, mean: usual, theta: 0.5, sigma: 0.3}}, true
	case "hydrant":
		return []metric{{"pressure_mpa", 3}}, &hydrant{pressure: g.unif(0.28, 0.45)}, true
	}
	return nil, nil, false
}

// manhole reports the cover's tilt, the water in the well and a battery
// that drains with time and with every transmission.
type manhole struct{ tilt, water, battery float64 }

func (m *manhole) next(g gen, _, dtH float64, out []float64) {
	m.battery = math.Max(0, m.battery-0.002*dtH-0.0005)
	out[0] = clamp(g.norm(m.tilt, 0.2), 0, 90)
	out[1] = clamp(g.norm(m.water, 0.5), 0, 300)
	out[2] = m.battery
}

// waterLevel is an underpass gauge: a few centimetres of puddle that drift
// slowly around their usual depth.
type waterLevel struct{ level drift }

func (w *waterLevel) next(g gen, _, dtH float64, out []float64) {
	out[0] = clamp(g.norm(w.level.step(g, dtH), 0.3), 0, 500)
}

// airQuality follows road traffic, scaled by a slowly drifting weather
// factor; pm10 carries the coarse fraction on top of pm25.
type airQuality struct {
	base, coarse float64
	weather      drift
}

func (a *airQuality) next(g gen, h, dtH float64, out []float64) {
	w := clamp(a.weather.step(g, dtH), 0.3, 3)
	t := traffic(h)
	pm25 := clamp(a.base*w*(0.6+0.8*t)+g.norm(0, 2), 1, 500)
	out[0] = pm25
	out[1] = clamp(pm25*a.coarse+g.norm(0, 3), pm25, 600)
	out[2] = clamp(15+45*t*w+g.norm(0, 3), 2, 400)
}

// noise is a street's background level plus up to 25 dB of traffic.
type noise struct{ base float64 }

func (n *noise) next(g gen, h, _ float64, out []float64) {
	out[0] = clamp(n.base+25*traffic(h)+g.norm(0, 1.5), 25, 120)
}

// streetlight switches on at dusk and off at dawn (per-device times within a
// few minutes of 18:12 and 06:06); a lit 100 W LED draws its rated current,
// a dark one a standby trickle.
type streetlight struct{ on, off, rated float64 }

func (s *streetlight) next(g gen, h, _ float64, out []float64) {
	lit := h >= s.on || h < s.off
	if lit {
		out[0] = clamp(g.norm(s.rated, 0.01), 0.3, 0.6)
		out[2] = 1
	} else {
		out[0] = clamp(g.norm(0.015, 0.002), 0, 0.03)
		out[2] = 0
	}
	out[1] = clamp(g.norm(224, 2.5), 200, 245)
}

// wasteBin fills with street activity, daily percent in a day, and is
// emptied at its collection hour.
type wasteBin struct {
	daily, collect float64
	// fill is the current fill level in percent; negative before the first reading.
	fill float64
}

func (w *wasteBin) next(g gen, h, dtH float64, out []float64) {
	since := math.Mod(h-w.collect+24, 24) // hours since the last collection
	switch {
	case w.fill < 0:
		w.fill = w.daily * since / 24
	case dtH >= 24 || since < dtH:
		w.fill = g.unif(0, 3) + w.daily*since/24
	default:
		w.fill += w.daily / 24 * dtH * (0.4 + 1.2*traffic(h))
	}
	out[0] = clamp(g.norm(w.fill, 0.8), 0, 100)
	out[1] = ambient(h) + 1.5 + g.norm(0, 0.4)
}

// heatingPipe is a district-heating pipe in heating season: the supply runs
// hotter when it is colder outside and the return is some 20 °C cooler.
type heatingPipe struct{ supply, drop, pressure float64 }

func (p *heatingPipe) next(g gen, h, _ float64, out []float64) {
	supply := p.supply + 1.2*(13-ambient(h)) + g.norm(0, 0.6)
	out[0] = supply
	out[1] = supply - g.norm(p.drop, 0.5)
	out[2] = clamp(g.norm(p.pressure, 0.008), 0, 2.5)
}

// bridge reports a small constant tilt with a thermal sway, and vibration
// that follows traffic load.
type bridge struct{ tilt, load float64 }

func (b *bridge) next(g gen, h, _ float64, out []float64) {
	out[0] = math.Abs(b.tilt + 0.02*math.Sin(2*math.Pi*(h-9)/24) + g.norm(0, 0.005))
	out[1] = clamp(0.2+2.5*traffic(h)*b.load+g.norm(0, 0.25), 0, 50)
}

// gas is a methane detector at background level, about 2 ppm.
type gas struct{ background drift }

func (s *gas) next(g gen, _, dtH float64, out []float64) {
	out[0] = clamp(s.background.step(g, dtH)+math.Abs(g.norm(0, 0.1)), 0, 10000)
}

// hydrant pressure dips when the city draws water, morning and evening.
type hydrant struct{ pressure float64 }

func (y *hydrant) next(g gen, h, _ float64, out []float64) {
	demand := bump(h, 7.5, 1.5) + 0.8*bump(h, 19.5, 2)
	out[0] = clamp(y.pressure-0.06*demand+g.norm(0, 0.004), 0, 1.6)
}

// drift is a mean-reverting random walk (Ornstein-Uhlenbeck): theta is the
// pull towards mean per hour, sigma the spread per square-root hour.
type drift struct{ x, mean, theta, sigma float64 }

// step advances the walk by dtH hours and returns its value.
func (d *drift) step(g gen, dtH float64) float64 {
	d.x += d.theta*(d.mean-d.x)*dtH + d.sigma*math.Sqrt(dtH)*g.r.NormFloat64()
	return d.x
}

// traffic is the relative road traffic at local hour h, 0 to 1: quiet at
// night, busy by day, with rush-hour peaks at 08:00 and 18:00.
func traffic(h float64) float64 {
	var day float64
	if h > 5 && h < 23 {
		day = math.Sin(math.Pi * (h - 5) / 18)
	}
	return math.Min(1, 0.08+0.45*day+0.5*(bump(h, 8, 1.2)+bump(h, 18, 1.5)))
}

// ambient is the outdoor temperature in °C at local hour h in the simulated
// season, early winter: 3 °C before dawn, 13 °C mid-afternoon.
func ambient(h float64) float64 {
	return 8 + 5*math.Sin(2*math.Pi*(h-9)/24)
}

// bump is a bell curve of height 1 centred on mu.
func bump(h, mu, sd float64) float64 {
	z := (h - mu) / sd
	return math.Exp(-0.5 * z * z)
}

func clamp(v, lo, hi float64) float64 { return math.Min(hi, math.Max(lo, v)) }

// gen draws the random parts of a model.
type gen struct{ r *rand.Rand }

func (g gen) norm(mean, sd float64) float64 { return mean + sd*g.r.NormFloat64() }
func (g gen) unif(lo, hi float64) float64   { return lo + (hi-lo)*g.r.Float64() }
