package simulators

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
)

// catalog is the contract of DESIGN.md: each device type and its metrics,
// with the physical range every simulated value must stay in.
var catalog = []struct {
	typ     string
	metrics []string
	ranges  [][2]float64
}{
	{"manhole_cover", []string{"tilt_deg", "water_level_cm", "battery_pct"}, [][2]float64{{0, 90}, {0, 300}, {0, 100}}},
	{"water_level", []string{"level_cm"}, [][2]float64{{0, 500}}},
	{"air_quality", []string{"pm25", "pm10", "no2"}, [][2]float64{{0, 1000}, {0, 1000}, {0, 1000}}},
	{"noise", []string{"noise_db"}, [][2]float64{{20, 130}}},
	{"streetlight", []string{"current_a", "voltage_v", "lamp_on"}, [][2]float64{{0, 2}, {190, 250}, {0, 1}}},
	{"waste_bin", []string{"fill_pct", "temp_c"}, [][2]float64{{0, 100}, {-40, 70}}},
	{"heating_pipe", []string{"supply_temp_c", "return_temp_c", "pressure_mpa"}, [][2]float64{{40, 130}, {20, 110}, {0, 2.5}}},
	{"bridge", []string{"tilt_deg", "vibration_mm_s"}, [][2]float64{{0, 5}, {0, 50}}},
	{"gas", []string{"ch4_ppm"}, [][2]float64{{0, 50000}}},
	{"hydrant", []string{"pressure_mpa"}, [][2]float64{{0, 1.6}}},
}

// day0 is a local midnight in the models' default zone.
var day0 = time.Date(2024, 11, 22, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))

// series returns the readings of a device every step for the given span,
// starting at day0.
func series(t *testing.T, d devices.Device, seed int64, span, step time.Duration) []Reading {
	t.Helper()
	m, err := Models{Seed: seed}.New(d)
	if err != nil {
		t.Fatal(err)
	}
	var out []Reading
	for at := day0; at.Before(day0.Add(span)); at = at.Add(step) {
		r := m.Next(at)
		out = append(out, Reading{At: r.At, Values: slices.Clone(r.Values)})
	}
	return out
}

// at returns the value of metric i at local hour h of the given day.
func at(rs []Reading, step time.Duration, day int, h float64, i int) float64 {
	k := int((time.Duration(day)*24*time.Hour + time.Duration(h*float64(time.Hour))) / step)
	return rs[k].Values[i].Value
}

func TestModelsFollowCatalogAndRanges(t *testing.T) {
	for _, c := range catalog {
		t.Run(c.typ, func(t *testing.T) {
			for n := range 30 {
				d := devices.Device{ID: fmt.Sprintf("x-%06d", n), Type: c.typ}
				for _, r := range series(t, d, 7, 48*time.Hour, 5*time.Minute) {
					if len(r.Values) != len(c.metrics) {
						t.Fatalf("%s: %d values, want %v", d.ID, len(r.Values), c.metrics)
					}
					for i, v := range r.Values {
						if v.Metric != c.metrics[i] {
							t.Fatalf("%s: metric %d is %q, want %q", d.ID, i, v.Metric, c.metrics[i])
						}
						lo, hi := c.ranges[i][0], c.ranges[i][1]
						if math.IsNaN(v.Value) || v.Value < lo || v.Value > hi {
							t.Fatalf("%s at %s: %s = %v, outside [%v, %v]", d.ID, r.At, v.Metric, v.Value, lo, hi)
						}
					}
				}
			}
		})
	}
}

func TestModelsUnknownType(t *testing.T) {
	_, err := Models{}.New(devices.Device{ID: "x-1", Type: "toaster"})
	if !errors.Is(err, ErrUnknownType) {
		t.Fatalf("err = %v, want ErrUnknownType", err)
	}
}

func TestModelsAreReproducible(t *testing.T) {
	d := devices.Device{ID: "aq-000001", Type: "air_quality"}
	a := series(t, d, 1, 6*time.Hour, time.Minute)
	if b := series(t, d, 1, 6*time.Hour, time.Minute); !slices.EqualFunc(a, b, sameReading) {
		t.Fatal("same seed and device gave different readings")
	}
	if b := series(t, d, 2, 6*time.Hour, time.Minute); slices.EqualFunc(a, b, sameReading) {
		t.Fatal("another seed gave the same readings")
	}
	d.ID = "aq-000002"
	if b := series(t, d, 1, 6*time.Hour, time.Minute); slices.EqualFunc(a, b, sameReading) {
		t.Fatal("another device gave the same readings")
	}
}

func sameReading(a, b Reading) bool { return a.At.Equal(b.At) && slices.Equal(a.Values, b.Values) }

func TestModelsDiurnal(t *testing.T) {
	const step = 5 * time.Minute
	mean := func(typ string, metric int, check func(rs []Reading)) (night, rush float64) {
		const n = 40
		for k := range n {
			rs := series(t, devices.Device{ID: fmt.Sprintf("d-%06d", k), Type: typ}, 3, 48*time.Hour, step)
			if check != nil {
				check(rs)
			}
			night += at(rs, step, 1, 3, metric) / n
			rush += at(rs, step, 1, 8, metric) / n
		}
		return night, rush
	}

	t.Run("noise peaks with traffic", func(t *testing.T) {
		night, rush := mean("noise", 0, nil)
		if rush < night+10 {
			t.Fatalf("noise_db at 08:00 %.1f, at 03:00 %.1f: want the rush hour 10 dB louder", rush, night)
		}
	})
	t.Run("pm25 peaks with traffic", func(t *testing.T) {
		night, rush := mean("air_quality", 0, nil)
		if rush < night*1.3 {
			t.Fatalf("pm25 at 08:00 %.1f, at 03:00 %.1f: want the rush hour dirtier", rush, night)
		}
	})
	t.Run("streetlights burn at night", func(t *testing.T) {
		mean("streetlight", 0, func(rs []Reading) {
			for _, c := range []struct {
				h       float64
				lit     float64
				current [2]float64
			}{{2, 1, [2]float64{0.3, 0.6}}, {12, 0, [2]float64{0, 0.05}}, {21, 1, [2]float64{0.3, 0.6}}} {
				if lit, cur := at(rs, step, 1, c.h, 2), at(rs, step, 1, c.h, 0); lit != c.lit || cur < c.current[0] || cur > c.current[1] {
					t.Fatalf("at %02.0f:00 lamp_on = %v, current_a = %v; want %v, current in %v", c.h, lit, cur, c.lit, c.current)
				}
			}
		})
	})
	t.Run("heating supply hotter when colder", func(t *testing.T) {
		mean("heating_pipe", 0, func(rs []Reading) {
			for _, r := range rs {
				if r.Values[1].Value >= r.Values[0].Value {
					t.Fatalf("at %s return %v >= supply %v", r.At, r.Values[1].Value, r.Values[0].Value)
				}
			}
			if dawn, afternoon := at(rs, step, 1, 4, 0), at(rs, step, 1, 15, 0); dawn <= afternoon {
				t.Fatalf("supply at 04:00 %v, at 15:00 %v: want hotter at dawn", dawn, afternoon)
			}
		})
	})
	t.Run("waste bins fill by day and are emptied", func(t *testing.T) {
		mean("waste_bin", 0, func(rs []Reading) {
			before, after, evening := at(rs, step, 1, 4.5, 0), at(rs, step, 1, 7.5, 0), at(rs, step, 1, 20, 0)
			if before < after+20 || evening < after+15 {
				t.Fatalf("fill_pct 04:30 %v, 07:30 %v, 20:00 %v: want emptied between 05:00 and 07:00 and filling by day", before, after, evening)
			}
		})
	})
	t.Run("manhole batteries drain", func(t *testing.T) {
		mean("manhole_cover", 2, func(rs []Reading) {
			for i := 1; i < len(rs); i++ {
				if rs[i].Values[2].Value > rs[i-1].Values[2].Value {
					t.Fatalf("battery rose from %v to %v", rs[i-1].Values[2].Value, rs[i].Values[2].Value)
				}
			}
			if first, last := rs[0].Values[2].Value, rs[len(rs)-1].Values[2].Value; last >= first {
				t.Fatalf("battery %v after two days, %v at start: want it drained", last, first)
			}
		})
	})
}
