package ingest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// telemetryRecord builds a record of TelemetrySchema holding rs.
func telemetryRecord(t *testing.T, rs ...Reading) arrow.Record {
	t.Helper()
	b := array.NewRecordBuilder(memory.DefaultAllocator, TelemetrySchema)
	defer b.Release()
	for _, r := range rs {
		AppendReading(b, r)
	}
	rec := b.NewRecord()
	t.Cleanup(rec.Release)
	return rec
}

func TestDurableIndex(t *testing.T) {
	a := Reading{TS: 1000, Device: "aq-0001", Metric: "pm25"}
	b := Reading{TS: 1000, Device: "aq-0001", Metric: "pm10"}
	c := Reading{TS: 2000, Device: "aq-0001", Metric: "pm25"}
	other := Reading{TS: 1000, Device: "aq-0002", Metric: "pm25"}
	contains := func(x *DurableIndex) []bool {
		held := make([]bool, 4)
		x.Contains([]Reading{a, b, c, other}, held)
		return held
	}
	for _, tc := range []struct {
		name string
		ops  func(x *DurableIndex)
		want []bool
	}{
		{"empty", func(*DurableIndex) {}, []bool{false, false, false, false}},
		{"one segment, by device, ts and metric", func(x *DurableIndex) {
			x.Add(1, TelemetryTable, telemetryRecord(t, a, c))
		}, []bool{true, false, true, false}},
		{"removed segment", func(x *DurableIndex) {
			x.Add(1, TelemetryTable, telemetryRecord(t, a, c))
			x.Remove(1)
		}, []bool{false, false, false, false}},
		{"a key in two segments stays until both are removed", func(x *DurableIndex) {
			x.Add(1, TelemetryTable, telemetryRecord(t, a))
			x.Add(2, TelemetryTable, telemetryRecord(t, a, b))
			x.Remove(2)
		}, []bool{true, false, false, false}},
		{"other tables are ignored", func(x *DurableIndex) {
			x.Add(1, RejectedTable, telemetryRecord(t, a))
		}, []bool{false, false, false, false}},
		{"a segment beyond MaxKeys is not indexed", func(x *DurableIndex) {
			x.MaxKeys = 2
			x.Add(1, TelemetryTable, telemetryRecord(t, a))
			x.Add(2, TelemetryTable, telemetryRecord(t, b, c))
			x.Remove(2) // Never indexed: a no-op.
		}, []bool{true, false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := &DurableIndex{}
			tc.ops(x)
			if got := contains(x); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Contains = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDurableIndexShrinks checks that the index's map is rebuilt smaller once
// a backlog it held is removed, and that the rebuilt index still knows every
// reading left, with its count of segments.
func TestDurableIndexShrinks(t *testing.T) {
	a := Reading{TS: 1000, Device: "aq-0001", Metric: "pm25"}
	b := Reading{TS: 1000, Device: "aq-0001", Metric: "pm10"}
	backlog := make([]Reading, durableIndexShrinkKeys)
	for i := range backlog {
		backlog[i] = Reading{TS: int64(10_000 + i), Device: "aq-0002", Metric: "pm25"}
	}
	x := &DurableIndex{}
	x.Add(1, TelemetryTable, telemetryRecord(t, append(backlog, a)...))
	x.Add(2, TelemetryTable, telemetryRecord(t, a, b))
	x.Add(3, TelemetryTable, telemetryRecord(t, b))
	if x.peak != len(backlog)+2 {
		t.Fatalf("peak = %d, want %d", x.peak, len(backlog)+2)
	}
	x.Remove(1)
	if x.peak != 2 {
		t.Errorf("peak = %d after the backlog was removed, want 2 (the map rebuilt for a and b)", x.peak)
	}
	held := make([]bool, 3)
	x.Contains([]Reading{a, b, backlog[0]}, held)
	if want := []bool{true, true, false}; !reflect.DeepEqual(held, want) {
		t.Errorf("Contains after the rebuild = %v, want %v", held, want)
	}
	// b is in two segments: the rebuilt map kept its count.
	x.Remove(3)
	clear(held)
	x.Contains([]Reading{a, b, backlog[0]}, held)
	if want := []bool{true, true, false}; !reflect.DeepEqual(held, want) {
		t.Errorf("Contains after segment 3 went = %v, want %v", held, want)
	}
	x.Remove(2)
	clear(held)
	x.Contains([]Reading{a, b, backlog[0]}, held)
	if want := []bool{false, false, false}; !reflect.DeepEqual(held, want) {
		t.Errorf("Contains with no segment left = %v, want %v", held, want)
	}
}

// TestPipelineRedelivery checks that a redelivered message (MQTT DUP) stores
// only the readings Stored does not know, and that a first delivery is not
// checked at all.
func TestPipelineRedelivery(t *testing.T) {
	const payload = `{"ts": 1732233600123, "pm25": 35.2, "pm10": 50}`
	pm25 := Reading{TS: 1732233600123, Received: testNow, Device: "aq-0001", Grid: "g-0101", Metric: "pm25", Value: 35.2}
	pm10 := pm25
	pm10.Metric, pm10.Value = "pm10", 50
	for _, tc := range []struct {
		name       string
		dup        bool
		stored     map[string]bool // by metric
		storedErr  error
		readings   []Reading
		duplicates float64
		checks     map[string]float64
		outcome    string
	}{
		{name: "first delivery is not checked", stored: map[string]bool{"pm25": true, "pm10": true},
			readings: []Reading{pm25, pm10}, checks: map[string]float64{}, outcome: outcomeStored},
		{name: "redelivery of a stored message is acknowledged, not stored", dup: true, stored: map[string]bool{"pm25": true, "pm10": true},
			duplicates: 2, checks: map[string]float64{checkDone: 1}, outcome: outcomeDuplicate},
		{name: "redelivery of an unstored message is stored", dup: true,
			readings: []Reading{pm25, pm10}, checks: map[string]float64{checkDone: 1}, outcome: outcomeStored},
		{name: "partly stored: the rest is stored", dup: true, stored: map[string]bool{"pm10": true},
			readings: []Reading{pm25}, duplicates: 1, checks: map[string]float64{checkDone: 1}, outcome: outcomeStored},
		{name: "check failed: stored again rather than lost", dup: true, stored: map[string]bool{"pm25": true, "pm10": true},
			storedErr: errors.New("clickhouse down"), readings: []Reading{pm25, pm10}, checks: map[string]float64{checkFailed: 1}, outcome: outcomeStored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newPipelineRig(t, nil)
			r.p.Stored = func(_ context.Context, rs []Reading, stored []bool) error {
				for i, rd := range rs {
					stored[i] = tc.stored[rd.Metric]
				}
				return tc.storedErr
			}
			if _, err := r.p.HandleTelemetry(context.Background(), "aq-0001", "devices/aq-0001/telemetry", []byte(payload), tc.dup); err != nil {
				t.Fatalf("HandleTelemetry = %v", err)
			}
			r.flush(t)
			if got := r.readings.rows(); !reflect.DeepEqual(got, tc.readings) {
				t.Errorf("readings = %+v\nwant %+v", got, tc.readings)
			}
			if got := testutil.ToFloat64(r.p.Metrics.duplicates); got != tc.duplicates {
				t.Errorf("duplicates dropped = %v, want %v", got, tc.duplicates)
			}
			for _, result := range []string{checkDone, checkFailed} {
				if got := testutil.ToFloat64(r.p.Metrics.duplicateChecks.WithLabelValues(result)); got != tc.checks[result] {
					t.Errorf("redelivery checks{result=%q} = %v, want %v", result, got, tc.checks[result])
				}
			}
			if got := testutil.ToFloat64(r.p.Metrics.messages.WithLabelValues(tc.outcome)); got != 1 {
				t.Errorf("messages{outcome=%q} = %v, want 1", tc.outcome, got)
			}
		})
	}
}

func TestReadingsOfInvertsAppendReading(t *testing.T) {
	want := []Reading{
		{TS: 1000, Received: 1001, Device: "aq-0001", Grid: "D01-S01-G01", Metric: "pm25", Value: 35.5},
		{TS: 2000, Received: 2002, Device: "aq-0002", Grid: "D01-S01-G02", Metric: "pm10", Value: -1},
	}
	prefix := Reading{Device: "kept"}
	got := ReadingsOf(telemetryRecord(t, want...), []Reading{prefix})
	if !reflect.DeepEqual(got, append([]Reading{prefix}, want...)) {
		t.Errorf("ReadingsOf = %+v, want %+v after the reading already in dst", got, want)
	}
}
