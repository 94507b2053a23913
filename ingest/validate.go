package ingest

import (
	"fmt"
	"math"

	"github.com/gridwatch/gridwatch/devices"
)

// Reasons Validate gives, beside the Decoder's.
const (
	// ReasonUnknownMetric: the device's type has no metric of that name.
	ReasonUnknownMetric = "unknown_metric"
	// ReasonOutOfRange: the value lies outside the metric's physical range
	// in the device catalog (a broken sensor, not an alarm).
	ReasonOutOfRange = "out_of_range"
)

// Validate checks decoded points against the catalog entry of the device's
// type and returns the points that pass, reusing the backing array of pts,
// and a Problem for each that does not: an unknown metric, a value outside
// [Min, Max], or a value that is not finite. A type missing from the catalog
// rejects every point as unknown_metric.
//
// Timestamps are not checked here: the Decoder already rejects (never
// clamps) times before Decoder.MinTime or more than Decoder.MaxFuture ahead
// of the receive time, with reason bad_timestamp, and stores the others as
// the device sent them.
func Validate(typ devices.Type, pts []Point) ([]Point, []Problem) {
	var problems []Problem
	kept := pts[:0]
	for _, p := range pts {
		m, ok := metricOf(typ, p.Metric)
		switch {
		case !ok:
			problems = append(problems, Problem{Reason: ReasonUnknownMetric,
				Detail: fmt.Sprintf("metric %q is not one of %s's", truncate(p.Metric, detailQuoteLen), typ.ID)})
		case math.IsNaN(p.Value) || math.IsInf(p.Value, 0):
			problems = append(problems, Problem{Reason: ReasonBadValue, Detail: fmt.Sprintf("%s: %v is not finite", p.Metric, p.Value)})
		case p.Value < m.Min || p.Value > m.Max:
			problems = append(problems, Problem{Reason: ReasonOutOfRange,
				Detail: fmt.Sprintf("%s: %g outside [%g, %g] %s", p.Metric, p.Value, m.Min, m.Max, m.Unit)})
		default:
			kept = append(kept, p)
		}
	}
	return kept, problems
}

// metricOf finds a metric of typ by name; types have a handful of metrics, so
// a scan beats a map.
func metricOf(typ devices.Type, name string) (devices.Metric, bool) {
	for _, m := range typ.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return devices.Metric{}, false
}
