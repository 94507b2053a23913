package alerts

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSeriesMatchesAPass checks the series' O(1) figures against a pass
// over the samples it holds, through out-of-order samples, samples dropped
// by their stamps, by their receive time and by maxSamples, and the arrays
// grown and resliced in between.
func TestSeriesMatchesAPass(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const window = time.Minute
	var s series
	recv := int64(1_000_000)
	for i := range 20_000 {
		recv += rng.Int64N(400) // sometimes many samples a window, sometimes few
		ts := recv
		switch rng.IntN(20) {
		case 0:
			ts -= rng.Int64N(90_000) // late, out of order, perhaps older than the window
		case 1:
			ts -= rng.Int64N(20_000) // late, kept among older ones received earlier
		case 2:
			recv += rng.Int64N(70_000) // a gap: what was received a window ago goes
		}
		v := rng.Float64()*200 - 50
		s.add(min(ts, recv), recv, v, window)
		for _, w := range []time.Duration{window, 10 * time.Second} {
			var got env
			s.fill(&got, w, true)
			want := naiveFill(s.samples, w)
			if got.Samples != want.Samples || !near(got.Avg, want.Avg) || got.Low != want.Low || got.High != want.High ||
				got.Delta != want.Delta || !near(got.Rate, want.Rate) {
				t.Fatalf("sample %d, window %s: got %+v, a pass gives %+v", i, w, got, want)
			}
		}
		if len(s.samples) > maxSamples {
			t.Fatalf("sample %d: %d samples held, more than %d", i, len(s.samples), maxSamples)
		}
		for j := 1; j < len(s.samples); j++ {
			if s.samples[j-1].ts > s.samples[j].ts {
				t.Fatalf("sample %d: samples out of order at %d", i, j)
			}
		}
	}
}

// naiveFill is fill as a pass over the samples.
func naiveFill(samples []sample, window time.Duration) env {
	var en env
	last := samples[len(samples)-1]
	cut := last.ts - window.Milliseconds()
	first, sum := -1, 0.0
	en.Low, en.High = last.v, last.v
	for i, p := range samples {
		if p.ts < cut {
			continue
		}
		if first < 0 {
			first = i
		}
		sum += p.v
		en.Low, en.High = min(en.Low, p.v), max(en.High, p.v)
	}
	en.Samples = len(samples) - first
	en.Avg = sum / float64(en.Samples)
	f := samples[first]
	en.Delta = last.v - f.v
	if span := last.ts - f.ts; span > 0 {
		en.Rate = en.Delta / float64(span) * 60000
	}
	return en
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b)) }

// TestRangedRules checks that a rule whose expressions read low or high
// (or all of the environment) is marked to have them computed, and only
// such a rule.
func TestRangedRules(t *testing.T) {
	for cond, want := range map[string]bool{
		"avg > 75 && samples >= 3": false,
		"rate < -2":                false,
		"m.low > 3":                false, // a metric named low, not the window's
		"low > 3":                  true,
		"value > 1 || high < 2":    true,
		"$env.low > 3":             true,
	} {
		r, errs := compileRule("r", Rule{Metric: "pm25", Condition: cond, Severity: SeverityMinor, Window: time.Minute})
		if len(errs) > 0 {
			t.Fatalf("%s: %v", cond, errs)
		}
		if r.ranged != want {
			t.Errorf("%s: ranged %v, want %v", cond, r.ranged, want)
		}
	}
}
