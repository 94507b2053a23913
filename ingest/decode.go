package ingest

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Point is one decoded value of a telemetry message.
type Point struct {
	// TS is when the value was measured, in ms since the epoch.
	TS     int64
	Metric string
	Value  float64
}

// Problem is why one value, record or message could not be decoded.
type Problem struct {
	// Reason is one of the Reason constants, for counting and querying.
	Reason string
	// Detail says what was wrong for a human, quoting at most a few dozen
	// bytes of the input.
	Detail string
}

// Reasons a Decoder gives in a Problem. They are stored in the reason column
// of the rejected table and label counters, so they never change meaning.
const (
	// ReasonMalformedJSON: the payload is not JSON; nothing was decoded.
	ReasonMalformedJSON = "malformed_json"
	// ReasonTooLarge: the payload exceeds Decoder.MaxPayloadBytes.
	ReasonTooLarge = "too_large"
	// ReasonWrongType: a value, record or payload has the wrong JSON type,
	// such as a string, null or object where a number is expected.
	ReasonWrongType = "wrong_type"
	// ReasonBadValue: a number that does not parse or is not finite.
	ReasonBadValue = "bad_value"
	// ReasonBadMetric: a metric name that is empty, too long or not UTF-8.
	ReasonBadMetric = "bad_metric"
	// ReasonBadTimestamp: a time that does not parse or lies outside the
	// accepted window; the values it stamps are not stored.
	ReasonBadTimestamp = "bad_timestamp"
	// ReasonMissingValue: a SenML record with a name but no value.
	ReasonMissingValue = "missing_value"
	// ReasonUnsupportedField: a SenML "must understand" field (its name ends
	// in "_") that gridwatch does not understand; RFC 8428 sec 4.4 says the
	// record must then be rejected.
	ReasonUnsupportedField = "unsupported_field"
	// ReasonNoValues: the message is well formed but carries no value.
	ReasonNoValues = "no_values"
	// ReasonTooManyPoints: values beyond Decoder.MaxPoints were dropped.
	ReasonTooManyPoints = "too_many_points"
	// ReasonTooManyProblems: problems beyond Decoder.MaxProblems were
	// counted in one summary Problem instead of being listed.
	ReasonTooManyProblems = "too_many_problems"
)

// Decoder default limits.
const (
	// DefaultMaxPayloadBytes leaves room for MaxPoints SenML records with
	// long base names, while bounding what one message can make us parse.
	DefaultMaxPayloadBytes = 256 << 10
	// DefaultMaxPoints is well above any device's honest message (tens of
	// metrics, or a day of buffered readings) and bounds one message's share
	// of a batch.
	DefaultMaxPoints = 1000
	// DefaultMaxProblems keeps a message full of bad values from flooding
	// the rejected table: each problem becomes one rejected row.
	DefaultMaxProblems = 10
	// DefaultMaxMetricLen is generous for names like "supply_temp_c".
	DefaultMaxMetricLen = 64
	// DefaultMaxFuture tolerates clock drift but catches firmware that sends
	// local time as UTC (Beijing time is 8 hours ahead).
	DefaultMaxFuture = time.Hour
)

// DefaultMinTime is the earliest accepted timestamp: a device whose clock
// reset to 1970 is caught rather than filling old partitions.
var DefaultMinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// detailQuoteLen bounds how many bytes of the input a Problem.Detail quotes.
const detailQuoteLen = 48

// senmlAbsoluteTime is 2^28 seconds: SenML times at or above it are absolute,
// below it relative to now (RFC 8428 sec 4.5.3).
const senmlAbsoluteTime = 1 << 28

// Decoder decodes the payload of devices/{id}/telemetry. It accepts
//
//   - a JSON object {"ts": 1732233600123, "pm25": 35.2}: ts is optional, in
//     ms since the epoch or an RFC 3339 string (the receive time when absent);
//     every other key is a metric, with a number or a boolean (1 or 0) value;
//   - a JSON array of such objects;
//   - SenML JSON (RFC 8428): an array whose first record has an "n" or "bn"
//     field. Names resolve as bn+n; the metric is the resolved name after its
//     last ':' or '/', so "urn:dev:ow:10e2073a:" + "temp" and "dev42/temp"
//     both give "temp" (the topic, not the name, says which device sent it).
//     The value is bv+v, vb as 1 or 0, or else bs+s; string (vs) and data
//     (vd) values are rejected; units are not stored (the device catalog
//     defines them); times are seconds, absolute at or above 2^28 and
//     relative to the receive time below it, rounded to ms.
//
// A bad value, record or timestamp yields a Problem for that part only; the
// good values beside it are kept. A payload that is not JSON yields one
// Problem and no points. A message whose metric happens to be named "n" or
// "bn" in the first object of an array is read as SenML.
//
// Nesting depth is bounded by the parser (300 levels) and by MaxPayloadBytes;
// the accepted forms are at most three levels deep and deeper values are
// rejected without being walked.
//
// The settings must not change after the first Decode. A Decoder is safe for
// concurrent use; its zero value is ready to use.
type Decoder struct {
	// MaxPayloadBytes is the largest payload decoded. It defaults to 256 KiB.
	MaxPayloadBytes int
	// MaxPoints is the most values kept from one message. It defaults to 1,000.
	MaxPoints int
	// MaxProblems is the most problems listed for one message; more are
	// summed up in one more Problem. It defaults to 10.
	MaxProblems int
	// MaxMetricLen is the longest metric name in bytes. It defaults to 64.
	MaxMetricLen int
	// MinTime is the earliest accepted timestamp. It defaults to
	// DefaultMinTime (2000-01-01 UTC).
	MinTime time.Time
	// MaxFuture is how far past the receive time (or the later time Decode
	// is told has passed) a timestamp may lie. It defaults to 1 hour.
	MaxFuture time.Duration

	once    sync.Once
	minMS   int64
	scratch sync.Pool // of *decodeScratch
}

// decodeScratch is what one Decode call borrows: a parser and the metric
// names seen before. A fleet sends a few dozen names millions of times;
// taking the name from here spares an allocation per value, and one map
// per scratch needs no lock.
type decodeScratch struct {
	parser fastjson.Parser
	names  map[string]string
}

// maxInternedNames bounds a scratch's names, so that a device sending
// random metric names cannot grow them: at the bound they are forgotten.
const maxInternedNames = 1024

// intern returns b as a string, the same one each time for the same bytes.
func (sc *decodeScratch) intern(b []byte) string {
	if name, ok := sc.names[string(b)]; ok {
		return name
	}
	if len(sc.names) >= maxInternedNames {
		clear(sc.names)
	}
	name := string(b)
	sc.names[name] = name
	return name
}

// setDefaults fills unset settings with their defaults.
func (d *Decoder) setDefaults() {
	if d.MaxPayloadBytes <= 0 {
		d.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if d.MaxPoints <= 0 {
		d.MaxPoints = DefaultMaxPoints
	}
	if d.MaxProblems <= 0 {
		d.MaxProblems = DefaultMaxProblems
	}
	if d.MaxMetricLen <= 0 {
		d.MaxMetricLen = DefaultMaxMetricLen
	}
	if d.MinTime.IsZero() {
		d.MinTime = DefaultMinTime
	}
	if d.MaxFuture <= 0 {
		d.MaxFuture = DefaultMaxFuture
	}
	d.minMS = d.MinTime.UnixMilli()
}

// Decode appends the values of payload to dst and returns it, with the
// problems found. now is the receive time in ms since the epoch: the time of
// values that carry none, and the reference of relative SenML times. latest
// is the latest time known to have passed (a server clock stepped back lags
// it); timestamps may lie up to MaxFuture past the later of now and latest.
// Every message yields at least one point or one problem.
func (d *Decoder) Decode(payload []byte, now, latest int64, dst []Point) ([]Point, []Problem) {
	d.once.Do(d.setDefaults)
	s := decodeState{
		d:      d,
		now:    now,
		maxMS:  max(now, latest) + d.MaxFuture.Milliseconds(),
		points: dst,
		start:  len(dst),
	}
	if len(payload) > d.MaxPayloadBytes {
		s.problem(-1, ReasonTooLarge, fmt.Sprintf("payload is %d bytes, limit %d", len(payload), d.MaxPayloadBytes))
		return s.points, s.problems
	}
	sc, _ := d.scratch.Get().(*decodeScratch)
	if sc == nil {
		sc = &decodeScratch{names: make(map[string]string)}
	}
	defer d.scratch.Put(sc)
	s.scratch = sc
	v, err := sc.parser.ParseBytes(payload)
	if err != nil {
		s.problem(-1, ReasonMalformedJSON, truncate(err.Error(), 160))
		return s.points, s.problems
	}
	switch v.Type() {
	case fastjson.TypeObject:
		s.object(-1, v)
	case fastjson.TypeArray:
		recs, _ := v.Array()
		if len(recs) > 0 && isSenML(recs[0]) {
			s.senml(recs)
			break
		}
		for i, rec := range recs {
			if rec.Type() != fastjson.TypeObject {
				s.problem(i, ReasonWrongType, fmt.Sprintf("is a JSON %s, want an object", rec.Type()))
				continue
			}
			s.object(i, rec)
		}
	default:
		s.problem(-1, ReasonWrongType, fmt.Sprintf("payload is a JSON %s, want an object or array", v.Type()))
	}
	s.finish()
	return s.points, s.problems
}

// decodeState is what one Decode call accumulates.
type decodeState struct {
	d        *Decoder
	now      int64
	maxMS    int64
	points   []Point
	start    int // len(points) on entry: points before it belong to the caller
	problems []Problem
	unlisted int    // problems beyond MaxProblems
	overflow int    // good values beyond MaxPoints
	name     []byte // scratch for resolving SenML names
	scratch  *decodeScratch
}

// problem records a problem of record rec (-1: the whole payload).
func (s *decodeState) problem(rec int, reason, detail string) {
	if len(s.problems) >= s.d.MaxProblems {
		s.unlisted++
		return
	}
	if rec >= 0 {
		detail = "record " + strconv.Itoa(rec) + ": " + detail
	}
	s.problems = append(s.problems, Problem{Reason: reason, Detail: detail})
}

// finish adds the summary problems after the whole payload was walked.
func (s *decodeState) finish() {
	if s.overflow > 0 {
		s.problems = append(s.problems, Problem{Reason: ReasonTooManyPoints,
			Detail: fmt.Sprintf("%d values beyond the limit of %d per message were dropped", s.overflow, s.d.MaxPoints)})
	}
	if s.unlisted > 0 {
		s.problems = append(s.problems, Problem{Reason: ReasonTooManyProblems,
			Detail: fmt.Sprintf("%d more problems were not listed", s.unlisted)})
	}
	if len(s.points) == s.start && len(s.problems) == 0 {
		s.problems = append(s.problems, Problem{Reason: ReasonNoValues, Detail: "message carries no values"})
	}
}

// point checks metric and value and keeps the point when both are good.
func (s *decodeState) point(rec int, ts int64, metric []byte, v float64) {
	switch {
	case len(metric) == 0:
		s.problem(rec, ReasonBadMetric, "empty metric name")
		return
	case len(metric) > s.d.MaxMetricLen:
		s.problem(rec, ReasonBadMetric, fmt.Sprintf("metric name %s is longer than %d bytes", quote(metric), s.d.MaxMetricLen))
		return
	case !utf8.Valid(metric):
		s.problem(rec, ReasonBadMetric, fmt.Sprintf("metric name %s is not UTF-8", quote(metric)))
		return
	case math.IsNaN(v) || math.IsInf(v, 0):
		s.problem(rec, ReasonBadValue, fmt.Sprintf("metric %s: value is not finite", quote(metric)))
		return
	}
	if len(s.points)-s.start >= s.d.MaxPoints {
		s.overflow++
		return
	}
	s.points = append(s.points, Point{TS: ts, Metric: s.scratch.intern(metric), Value: v})
}

// object decodes one object-form record.
func (s *decodeState) object(rec int, v *fastjson.Value) {
	o, _ := v.Object()
	ts := s.now
	if tv := o.Get("ts"); tv != nil {
		var ok bool
		if ts, ok = s.objectTS(rec, tv); !ok {
			return
		}
	}
	o.Visit(func(key []byte, val *fastjson.Value) {
		if string(key) == "ts" {
			return
		}
		switch val.Type() {
		case fastjson.TypeNumber:
			f, err := val.Float64()
			if err != nil {
				s.problem(rec, ReasonBadValue, fmt.Sprintf("metric %s: %s is not a number", quote(key), quote(val.MarshalTo(nil))))
				return
			}
			s.point(rec, ts, key, f)
		case fastjson.TypeTrue:
			s.point(rec, ts, key, 1)
		case fastjson.TypeFalse:
			s.point(rec, ts, key, 0)
		default:
			s.problem(rec, ReasonWrongType, fmt.Sprintf("metric %s is a JSON %s, want a number or boolean", quote(key), val.Type()))
		}
	})
}

// objectTS reads the ts of an object-form record: ms since the epoch or an
// RFC 3339 string.
func (s *decodeState) objectTS(rec int, v *fastjson.Value) (int64, bool) {
	switch v.Type() {
	case fastjson.TypeNumber:
		f, err := v.Float64()
		if err != nil {
			s.problem(rec, ReasonBadTimestamp, fmt.Sprintf("ts %s is not a number; the record's values are not stored", quote(v.MarshalTo(nil))))
			return 0, false
		}
		ms, ok := s.inWindow(f)
		if !ok {
			hint := ""
			if _, secs := s.inWindow(f * 1000); secs {
				hint = " (seconds instead of milliseconds?)"
			}
			s.problem(rec, ReasonBadTimestamp, fmt.Sprintf("ts %s ms is outside the accepted window%s; the record's values are not stored",
				strconv.FormatFloat(f, 'f', -1, 64), hint))
		}
		return ms, ok
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			s.problem(rec, ReasonBadTimestamp, fmt.Sprintf("ts %s is not RFC 3339; the record's values are not stored", quote(b)))
			return 0, false
		}
		ms, ok := s.inWindow(float64(t.UnixMilli()))
		if !ok {
			s.problem(rec, ReasonBadTimestamp, fmt.Sprintf("ts %s is outside the accepted window; the record's values are not stored", quote(b)))
		}
		return ms, ok
	default:
		s.problem(rec, ReasonBadTimestamp, fmt.Sprintf("ts is a JSON %s, want ms since the epoch or an RFC 3339 string", v.Type()))
		return 0, false
	}
}

// inWindow rounds ms to whole milliseconds and reports whether it lies
// between MinTime and MaxFuture past now. NaN is never in the window.
func (s *decodeState) inWindow(ms float64) (int64, bool) {
	if !(ms >= float64(s.d.minMS) && ms <= float64(s.maxMS)) {
		return 0, false
	}
	return int64(math.Round(ms)), true
}

// isSenML reports whether the first record of an array marks it as SenML:
// a valid SenML pack names its first record through "n" or "bn".
func isSenML(first *fastjson.Value) bool {
	o, err := first.Object()
	return err == nil && (o.Get("n") != nil || o.Get("bn") != nil)
}

// senmlRecord is one SenML record's own fields; base fields go straight into
// senmlBase because they apply to this record and all later ones.
type senmlRecord struct {
	name        []byte
	hasName     bool
	t, v, sum   float64
	hasV, hasS  bool
	vb, hasVB   bool
	stringValue bool // vs or vd: not a number
	bad         *Problem
}

// senmlBase holds the base fields in force (RFC 8428 sec 4.5.1).
type senmlBase struct {
	name           []byte
	time, val, sum float64
}

// senml decodes a SenML pack.
func (s *decodeState) senml(recs []*fastjson.Value) {
	var base senmlBase
	for i, v := range recs {
		o, err := v.Object()
		if err != nil {
			s.problem(i, ReasonWrongType, fmt.Sprintf("is a JSON %s, want a SenML record", v.Type()))
			continue
		}
		var r senmlRecord
		o.Visit(func(key []byte, val *fastjson.Value) {
			s.senmlField(&base, &r, key, val)
		})
		s.senmlResolve(i, &base, &r)
	}
}

// senmlField reads one field of a SenML record.
func (s *decodeState) senmlField(base *senmlBase, r *senmlRecord, key []byte, val *fastjson.Value) {
	fail := func(reason, detail string) {
		if r.bad == nil {
			r.bad = &Problem{Reason: reason, Detail: detail}
		}
	}
	// number reads a numeric field; non-numbers are wrong_type, or
	// bad_timestamp for time fields.
	number := func(dst *float64, isTime bool) bool {
		typeReason, valueReason := ReasonWrongType, ReasonBadValue
		if isTime {
			typeReason, valueReason = ReasonBadTimestamp, ReasonBadTimestamp
		}
		if val.Type() != fastjson.TypeNumber {
			fail(typeReason, fmt.Sprintf("field %s is a JSON %s, want a number", quote(key), val.Type()))
			return false
		}
		f, err := val.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			fail(valueReason, fmt.Sprintf("field %s: %s is not a finite number", quote(key), quote(val.MarshalTo(nil))))
			return false
		}
		*dst = f
		return true
	}
	switch string(key) {
	case "bn":
		b, err := val.StringBytes()
		if err != nil {
			fail(ReasonWrongType, fmt.Sprintf("field \"bn\" is a JSON %s, want a string", val.Type()))
			return
		}
		base.name = b
	case "bt":
		number(&base.time, true)
	case "bv":
		number(&base.val, false)
	case "bs":
		number(&base.sum, false)
	case "n":
		b, err := val.StringBytes()
		if err != nil {
			fail(ReasonWrongType, fmt.Sprintf("field \"n\" is a JSON %s, want a string", val.Type()))
			return
		}
		r.name, r.hasName = b, true
	case "t":
		number(&r.t, true)
	case "v":
		r.hasV = number(&r.v, false)
	case "s":
		r.hasS = number(&r.sum, false)
	case "vb":
		switch val.Type() {
		case fastjson.TypeTrue:
			r.vb, r.hasVB = true, true
		case fastjson.TypeFalse:
			r.vb, r.hasVB = false, true
		default:
			fail(ReasonWrongType, fmt.Sprintf("field \"vb\" is a JSON %s, want a boolean", val.Type()))
		}
	case "vs", "vd":
		r.stringValue = true
	case "u", "bu", "ut", "bver":
		// Units come from the device catalog; update time and version
		// change nothing about how a value is stored.
	default:
		if bytes.HasSuffix(key, []byte("_")) {
			fail(ReasonUnsupportedField, fmt.Sprintf("must-understand field %s is not supported", quote(key)))
		}
		// Other unknown fields are ignored, as RFC 8428 sec 4.4 asks.
	}
}

// senmlResolve turns a read SenML record into a point or a problem.
func (s *decodeState) senmlResolve(i int, base *senmlBase, r *senmlRecord) {
	if r.bad != nil {
		s.problem(i, r.bad.Reason, r.bad.Detail)
		return
	}
	var value float64
	switch {
	case r.hasV:
		value = base.val + r.v
	case r.hasVB:
		if r.vb {
			value = 1
		}
	case r.hasS:
		value = base.sum + r.sum
	case r.stringValue:
		s.problem(i, ReasonWrongType, "string and data values (vs, vd) are not stored; send v or vb")
		return
	case r.hasName:
		s.problem(i, ReasonMissingValue, fmt.Sprintf("name %s has no value", quote(r.name)))
		return
	default:
		return // A record of base fields only.
	}
	s.name = append(append(s.name[:0], base.name...), r.name...)
	metric := s.name
	if cut := bytes.LastIndexAny(metric, ":/"); cut >= 0 {
		metric = metric[cut+1:]
	}
	if len(metric) == 0 && len(s.name) > 0 {
		s.problem(i, ReasonBadMetric, fmt.Sprintf("name %s has no metric after its last ':' or '/'", quote(s.name)))
		return
	}
	secs := base.time + r.t
	ms := secs * 1000
	if secs < senmlAbsoluteTime {
		ms += float64(s.now)
	}
	ts, ok := s.inWindow(ms)
	if !ok {
		s.problem(i, ReasonBadTimestamp, fmt.Sprintf("time %s s is outside the accepted window", strconv.FormatFloat(secs, 'f', -1, 64)))
		return
	}
	s.point(i, ts, metric, value)
}

// quote renders device input for a Problem detail, cut to a few dozen bytes.
func quote(b []byte) string {
	if len(b) > detailQuoteLen {
		return strconv.Quote(string(b[:detailQuoteLen])) + "..."
	}
	return strconv.Quote(string(b))
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
