package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// testNow is the receive time of decoded test messages: 2024-11-22T00:10:00Z.
const testNow int64 = 1732234200000

// decodeCases are the table of TestDecode; their payloads seed FuzzDecode.
var decodeCases = []struct {
	name    string
	payload string
	// maxPoints, maxProblems and maxPayload set Decoder limits when non-zero.
	maxPoints, maxProblems, maxPayload int
	want                               []Point
	reasons                            []string
}{
	{
		name:    "object with ms ts",
		payload: `{"ts": 1732233600123, "pm25": 35.2, "pm10": 50}`,
		want:    []Point{{1732233600123, "pm25", 35.2}, {1732233600123, "pm10", 50}},
	},
	{
		name:    "object without ts takes the receive time",
		payload: `{"noise_db": 61.5}`,
		want:    []Point{{testNow, "noise_db", 61.5}},
	},
	{
		name:    "ts after the metrics",
		payload: `{"noise_db": 61.5, "ts": 1732233600000}`,
		want:    []Point{{1732233600000, "noise_db", 61.5}},
	},
	{
		name:    "RFC 3339 ts keeps ms exactly",
		payload: `{"ts": "2024-11-22T00:00:00.123Z", "noise_db": 61.5}`,
		want:    []Point{{1732233600123, "noise_db", 61.5}},
	},
	{
		name:    "RFC 3339 ts with offset",
		payload: `{"ts": "2024-11-22T08:00:00.5+08:00", "fill_pct": 80}`,
		want:    []Point{{1732233600500, "fill_pct", 80}},
	},
	{
		name:    "booleans become 1 and 0",
		payload: `{"lamp_on": true, "fault": false, "current_a": 0.42}`,
		want:    []Point{{testNow, "lamp_on", 1}, {testNow, "fault", 0}, {testNow, "current_a", 0.42}},
	},
	{
		name:    "escaped key",
		payload: `{"pm\u0032\u0035": 7}`,
		want:    []Point{{testNow, "pm25", 7}},
	},
	{
		name:    "array of objects",
		payload: `[{"ts": 1732233500000, "level_cm": 12}, {"ts": 1732233560000, "level_cm": 13}]`,
		want:    []Point{{1732233500000, "level_cm", 12}, {1732233560000, "level_cm", 13}},
	},
	{
		name:    "bad values beside good ones",
		payload: `{"pm25": "35", "pm10": 50, "no2": null, "x": {"a": 1}, "y": [1], "z": 1.2.3}`,
		want:    []Point{{testNow, "pm10", 50}},
		reasons: []string{ReasonWrongType, ReasonWrongType, ReasonWrongType, ReasonWrongType, ReasonBadValue},
	},
	{
		name:    "non-finite values",
		payload: `{"a": 1e999, "b": NaN, "c": -Inf, "d": 2}`,
		want:    []Point{{testNow, "d", 2}},
		reasons: []string{ReasonBadValue, ReasonBadValue, ReasonBadValue},
	},
	{
		name:    "empty metric name",
		payload: `{"": 1, "a": 2}`,
		want:    []Point{{testNow, "a", 2}},
		reasons: []string{ReasonBadMetric},
	},
	{
		name:    "metric name too long",
		payload: `{"` + strings.Repeat("m", 65) + `": 1}`,
		reasons: []string{ReasonBadMetric},
	},
	{
		name:    "metric name not UTF-8",
		payload: "{\"\xff\": 1}",
		reasons: []string{ReasonBadMetric},
	},
	{
		name:    "unparseable ts drops its record only",
		payload: `[{"ts": "yesterday", "a": 1}, {"a": 2}]`,
		want:    []Point{{testNow, "a", 2}},
		reasons: []string{ReasonBadTimestamp},
	},
	{
		name:    "ts in seconds",
		payload: `{"ts": 1732233600, "a": 1}`,
		reasons: []string{ReasonBadTimestamp},
	},
	{
		name:    "ts too far ahead",
		payload: `{"ts": 1732241400000, "a": 1}`,
		reasons: []string{ReasonBadTimestamp},
	},
	{
		name:    "ts of the wrong type",
		payload: `{"ts": true, "a": 1}`,
		reasons: []string{ReasonBadTimestamp},
	},
	{
		name:    "not JSON",
		payload: `pm25=35`,
		reasons: []string{ReasonMalformedJSON},
	},
	{
		name:    "truncated JSON",
		payload: `{"a": 1`,
		reasons: []string{ReasonMalformedJSON},
	},
	{
		name:    "empty payload",
		payload: ``,
		reasons: []string{ReasonMalformedJSON},
	},
	{
		name:    "top-level number",
		payload: `42`,
		reasons: []string{ReasonWrongType},
	},
	{
		name:    "empty object",
		payload: `{}`,
		reasons: []string{ReasonNoValues},
	},
	{
		name:    "ts only",
		payload: `{"ts": 1732233600123}`,
		reasons: []string{ReasonNoValues},
	},
	{
		name:    "empty array",
		payload: `[]`,
		reasons: []string{ReasonNoValues},
	},
	{
		name:    "array element not an object",
		payload: `[{"a": 1}, 5, [2]]`,
		want:    []Point{{testNow, "a", 1}},
		reasons: []string{ReasonWrongType, ReasonWrongType},
	},
	{
		name: "SenML with base name and base time",
		payload: `[{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1732233600.123, "n": "temp_c", "u": "Cel", "v": 23.1},
			{"n": "humidity", "t": 1.5, "v": 40}]`,
		want: []Point{{1732233600123, "temp_c", 23.1}, {1732233601623, "humidity", 40}},
	},
	{
		name:    "SenML relative times",
		payload: `[{"n": "level_cm", "v": 12, "t": -60}, {"n": "level_cm", "v": 13}]`,
		want:    []Point{{testNow - 60000, "level_cm", 12}, {testNow, "level_cm", 13}},
	},
	{
		name:    "SenML base value, boolean and sum",
		payload: `[{"bn": "dev42/", "bv": 100, "n": "pressure", "v": 1.5}, {"n": "lamp_on", "vb": true}, {"n": "energy", "s": 12.5}]`,
		want:    []Point{{testNow, "pressure", 101.5}, {testNow, "lamp_on", 1}, {testNow, "energy", 12.5}},
	},
	{
		name:    "SenML name with a device prefix",
		payload: `[{"n": "urn:dev:mac:0024befffe804ff1:temp_c", "v": 1}]`,
		want:    []Point{{testNow, "temp_c", 1}},
	},
	{
		name:    "SenML base-only record",
		payload: `[{"bn": "dev/", "bt": 1732233600}, {"n": "a", "v": 1}]`,
		want:    []Point{{1732233600000, "a", 1}},
	},
	{
		name: "SenML bad records beside good ones",
		payload: `[{"bn": "d/", "n": "a", "v": 1}, {"n": "b", "vs": "x"}, {"n": "c"}, {"n": "e", "v": "3"},
			{"n": "f", "v": 2, "x_": 1}, {"n": "g", "v": 3, "t": "soon"}, {"n": "h", "v": 4}, 7, {"n": 5, "v": 1}]`,
		want: []Point{{testNow, "a", 1}, {testNow, "h", 4}},
		reasons: []string{ReasonWrongType, ReasonMissingValue, ReasonWrongType, ReasonUnsupportedField,
			ReasonBadTimestamp, ReasonWrongType, ReasonWrongType},
	},
	{
		name:    "SenML name without a metric",
		payload: `[{"bn": "urn:dev:x:", "v": 1}]`,
		reasons: []string{ReasonBadMetric},
	},
	{
		name:    "SenML time in ms instead of seconds",
		payload: `[{"n": "a", "v": 1, "t": 1732233600123}]`,
		reasons: []string{ReasonBadTimestamp},
	},
	{
		name:      "too many points",
		payload:   `{"a": 1, "b": 2, "c": 3, "d": 4}`,
		maxPoints: 2,
		want:      []Point{{testNow, "a", 1}, {testNow, "b", 2}},
		reasons:   []string{ReasonTooManyPoints},
	},
	{
		name:        "too many problems",
		payload:     `{"a": "x", "b": "x", "c": "x", "d": 1}`,
		maxProblems: 2,
		want:        []Point{{testNow, "d", 1}},
		reasons:     []string{ReasonWrongType, ReasonWrongType, ReasonTooManyProblems},
	},
	{
		name:       "too large",
		payload:    `{"a": 1, "b": 2}`,
		maxPayload: 10,
		reasons:    []string{ReasonTooLarge},
	},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			d := &Decoder{MaxPoints: tc.maxPoints, MaxProblems: tc.maxProblems, MaxPayloadBytes: tc.maxPayload}
			got, problems := d.Decode([]byte(tc.payload), testNow, testNow, nil)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("points = %v, want %v", got, tc.want)
			}
			var reasons []string
			for _, p := range problems {
				reasons = append(reasons, p.Reason)
				if p.Detail == "" {
					t.Errorf("problem %s has no detail", p.Reason)
				}
			}
			if !reflect.DeepEqual(reasons, tc.reasons) {
				t.Errorf("reasons = %v, want %v\nproblems: %+v", reasons, tc.reasons, problems)
			}
		})
	}
}

func TestDecodeAppendsToDst(t *testing.T) {
	d := &Decoder{MaxPoints: 1}
	dst := []Point{{1, "earlier", 1}}
	got, problems := d.Decode([]byte(`{"a": 2}`), testNow, testNow, dst)
	want := []Point{{1, "earlier", 1}, {testNow, "a", 2}}
	if !reflect.DeepEqual(got, want) || problems != nil {
		t.Errorf("got %v, %v; want %v and no problems", got, problems, want)
	}
}

// TestDecodeFutureWindow checks that timestamps may lie MaxFuture past the
// later of the receive time and the latest time known to have passed, so a
// server clock stepped back an hour rejects no device's correct timestamp.
func TestDecodeFutureWindow(t *testing.T) {
	hour := time.Hour.Milliseconds()
	for _, tc := range []struct {
		name        string
		now, latest int64
		ts          int64
		ok          bool
	}{
		{"at the limit", testNow, testNow, testNow + hour, true},
		{"past the limit", testNow, testNow, testNow + hour + 1, false},
		{"clock stepped back an hour", testNow - hour, testNow, testNow + 5000, true},
		{"clock stepped back, past the latest limit", testNow - hour, testNow, testNow + hour + 1, false},
		{"latest before now", testNow, testNow - hour, testNow + hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := fmt.Sprintf(`{"ts": %d, "a": 1}`, tc.ts)
			points, problems := new(Decoder).Decode([]byte(payload), tc.now, tc.latest, nil)
			if ok := len(points) == 1 && len(problems) == 0; ok != tc.ok {
				t.Errorf("points %v, problems %+v; want accepted %v", points, problems, tc.ok)
			}
			if !tc.ok && (len(problems) != 1 || problems[0].Reason != ReasonBadTimestamp) {
				t.Errorf("problems = %+v, want one %s", problems, ReasonBadTimestamp)
			}
		})
	}
}

func TestDecodeSecondsHint(t *testing.T) {
	_, problems := new(Decoder).Decode([]byte(`{"ts": 1732233600, "a": 1}`), testNow, testNow, nil)
	if len(problems) != 1 || !strings.Contains(problems[0].Detail, "seconds instead of milliseconds") {
		t.Errorf("problems = %+v, want a hint about seconds", problems)
	}
}

func TestDecodeProblemDetailQuotesLittle(t *testing.T) {
	long := strings.Repeat("x", 1000)
	_, problems := new(Decoder).Decode([]byte(`{"`+long+`": 1}`), testNow, testNow, nil)
	if len(problems) != 1 || len(problems[0].Detail) > 200 {
		t.Errorf("problems = %+v, want one with a short detail", problems)
	}
}

func TestDecodeTestdata(t *testing.T) {
	for file, want := range map[string]int{"air_quality.json": 3, "buffered.json": 10, "senml.json": 4} {
		payload, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		points, problems := new(Decoder).Decode(payload, testNow, testNow, nil)
		if len(points) != want || problems != nil {
			t.Errorf("%s: %d points, problems %+v; want %d points and no problems", file, len(points), problems, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.payload))
	}
	d := new(Decoder)
	f.Fuzz(func(t *testing.T, payload []byte) {
		points, problems := d.Decode(payload, testNow, testNow, nil)
		if len(points) == 0 && len(problems) == 0 {
			t.Fatal("message yielded neither points nor problems")
		}
		if len(points) > d.MaxPoints || len(problems) > d.MaxProblems+2 {
			t.Fatalf("%d points, %d problems: over the limits", len(points), len(problems))
		}
		minMS := d.MinTime.UnixMilli()
		for _, p := range points {
			if p.Metric == "" || len(p.Metric) > d.MaxMetricLen || !utf8.ValidString(p.Metric) {
				t.Errorf("bad metric %q", p.Metric)
			}
			if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
				t.Errorf("metric %q: value %v not finite", p.Metric, p.Value)
			}
			if p.TS < minMS || p.TS > testNow+d.MaxFuture.Milliseconds() {
				t.Errorf("metric %q: ts %d outside the window", p.Metric, p.TS)
			}
		}
		for _, p := range problems {
			if p.Reason == "" || p.Detail == "" {
				t.Errorf("incomplete problem %+v", p)
			}
		}
	})
}

// baselineDecode does the Decoder's work on the good payloads of the
// benchmark with encoding/json, as one would write it without fastjson:
// the payload into map[string]any and []any, then the same walk of the
// object, array and SenML forms with the same checks (ts as ms or RFC 3339
// within the window, SenML base name and time, metric names, finite
// values), making the same points. Problems it only counts: the benchmark's
// payloads have none. TestBaselineDecodesLikeDecoder holds it to that.
func baselineDecode(payload []byte, now int64, dst []Point) ([]Point, int) {
	minMS, maxMS := float64(DefaultMinTime.UnixMilli()), float64(now+DefaultMaxFuture.Milliseconds())
	problems := 0
	inWindow := func(ms float64) (int64, bool) {
		if !(ms >= minMS && ms <= maxMS) {
			problems++
			return 0, false
		}
		return int64(math.Round(ms)), true
	}
	point := func(ts int64, metric string, v float64) {
		if metric == "" || len(metric) > DefaultMaxMetricLen || !utf8.ValidString(metric) || math.IsNaN(v) || math.IsInf(v, 0) ||
			len(dst) >= DefaultMaxPoints {
			problems++
			return
		}
		dst = append(dst, Point{TS: ts, Metric: metric, Value: v})
	}
	object := func(o map[string]any) {
		ts := now
		switch t := o["ts"].(type) {
		case nil:
		case float64:
			var ok bool
			if ts, ok = inWindow(t); !ok {
				return
			}
		case string:
			tt, err := time.Parse(time.RFC3339Nano, t)
			if err != nil {
				problems++
				return
			}
			var ok bool
			if ts, ok = inWindow(float64(tt.UnixMilli())); !ok {
				return
			}
		default:
			problems++
			return
		}
		for k, v := range o {
			switch v := v.(type) {
			case nil, string, map[string]any, []any:
				if k != "ts" {
					problems++
				}
			case float64:
				if k != "ts" {
					point(ts, k, v)
				}
			case bool:
				point(ts, k, map[bool]float64{true: 1}[v])
			}
		}
	}
	senml := func(recs []any) {
		var baseName string
		var baseTime float64
		for _, rec := range recs {
			r, ok := rec.(map[string]any)
			if !ok {
				problems++
				continue
			}
			if bn, ok := r["bn"].(string); ok {
				baseName = bn
			}
			if bt, ok := r["bt"].(float64); ok {
				baseTime = bt
			}
			var value float64
			switch v := r["v"].(type) {
			case float64:
				value = v
			default:
				vb, ok := r["vb"].(bool)
				if !ok {
					problems++
					continue
				}
				value = map[bool]float64{true: 1}[vb]
			}
			n, _ := r["n"].(string)
			name := baseName + n
			metric := name[strings.LastIndexAny(name, ":/")+1:]
			t, _ := r["t"].(float64)
			ms := (baseTime + t) * 1000
			if baseTime+t < senmlAbsoluteTime {
				ms += float64(now)
			}
			if ts, ok := inWindow(ms); ok {
				point(ts, metric, value)
			}
		}
	}
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return dst, 1
	}
	switch v := v.(type) {
	case map[string]any:
		object(v)
	case []any:
		if first, ok := v[0].(map[string]any); ok && (first["n"] != nil || first["bn"] != nil) {
			senml(v)
			break
		}
		for _, rec := range v {
			if o, ok := rec.(map[string]any); ok {
				object(o)
			} else {
				problems++
			}
		}
	default:
		problems++
	}
	return dst, problems
}

// benchPayloads are the payloads of BenchmarkDecode, in testdata.
var benchPayloads = []string{"air_quality.json", "buffered.json", "senml.json"}

// TestBaselineDecodesLikeDecoder checks that the benchmark's baseline does
// the Decoder's work: the same points from each benchmark payload (in any
// order: Go maps have none).
func TestBaselineDecodesLikeDecoder(t *testing.T) {
	for _, file := range benchPayloads {
		payload, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		want, problems := new(Decoder).Decode(payload, testNow, testNow, nil)
		got, n := baselineDecode(payload, testNow, nil)
		sortPoints := func(p []Point) {
			sort.Slice(p, func(i, j int) bool { return fmt.Sprint(p[i]) < fmt.Sprint(p[j]) })
		}
		sortPoints(want)
		sortPoints(got)
		if len(problems) != 0 || n != 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: baseline %v (%d problems), Decoder %v %v", file, got, n, want, problems)
		}
	}
}

// TestDecoderInternBound checks that the metric names a decoder keeps to
// spare allocations stay bounded whatever names devices send, and that a
// name it hands out is the name sent.
func TestDecoderInternBound(t *testing.T) {
	sc := &decodeScratch{names: make(map[string]string)}
	for i := range 3 * maxInternedNames {
		name := "m" + strconv.Itoa(i)
		if got := sc.intern([]byte(name)); got != name {
			t.Fatalf("intern(%q) = %q", name, got)
		}
		if len(sc.names) > maxInternedNames {
			t.Fatalf("after %d names the scratch holds %d, bound %d", i+1, len(sc.names), maxInternedNames)
		}
	}
	if got := sc.intern([]byte("pm25")); got != "pm25" || sc.intern([]byte("pm25")) != got {
		t.Fatalf("intern(pm25) = %q", got)
	}
}

// BenchmarkDecode measures the decoder on sample payloads, each beside a
// baseline doing the same work with encoding/json (baselineDecode), in the
// same run. Compare msgs/s of a payload's two sub-benchmarks for the ratio.
func BenchmarkDecode(b *testing.B) {
	for _, file := range benchPayloads {
		payload, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			b.Fatal(err)
		}
		name := strings.TrimSuffix(file, ".json")
		b.Run("baseline-encoding_json-"+name, func(b *testing.B) {
			var dst []Point
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = baselineDecode(payload, testNow, dst[:0])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(name, func(b *testing.B) {
			d := new(Decoder)
			var dst []Point
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = d.Decode(payload, testNow, testNow, dst[:0])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
