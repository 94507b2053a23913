package ingest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/devices"
)

// rejectionsOf reads a rejected record back into rejections.
func rejectionsOf(rec arrow.Record) []Rejection {
	var out []Rejection
	for i := 0; i < int(rec.NumRows()); i++ {
		out = append(out, Rejection{
			TS:      int64(rec.Column(0).(*array.Timestamp).Value(i)),
			Device:  rec.Column(1).(*array.String).Value(i),
			Topic:   rec.Column(2).(*array.String).Value(i),
			Reason:  rec.Column(3).(*array.String).Value(i),
			Detail:  rec.Column(4).(*array.String).Value(i),
			Payload: rec.Column(5).(*array.Binary).Value(i),
		})
	}
	return out
}

// pipelineRig is a pipeline over a small registry whose batchers write to
// recorders.
type pipelineRig struct {
	p          *Pipeline
	readings   *recorder[Reading]
	rejections *recorder[Rejection]
}

// newPipelineRig starts a pipeline whose batchers use a checked allocator;
// close stops them and checks that no Arrow memory leaked.
func newPipelineRig(t *testing.T, telemetryHook func(context.Context, *Batch) error) *pipelineRig {
	t.Helper()
	reg := devices.NewRegistry([]devices.Device{
		{ID: "aq-0001", Type: "air_quality", Grid: "g-0101"},
		{ID: "sl-0007", Type: "streetlight", Grid: "g-0202"},
	})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	r := &pipelineRig{
		readings:   &recorder[Reading]{Read: readingsOf, Hook: telemetryHook},
		rejections: &recorder[Rejection]{Read: rejectionsOf},
	}
	tel := NewTelemetryBatcher(r.readings.write)
	rej := NewRejectedBatcher(r.rejections.write)
	tel.Allocator, rej.Allocator = mem, mem
	tel.MaxRows, tel.MaxPending = 1, 1 // So a blocking hook makes the pipeline overloaded.
	metrics := NewBatcherMetrics(nil)
	tel.Metrics, rej.Metrics = metrics, metrics
	for _, start := range []func(context.Context) error{tel.Start, rej.Start} {
		if err := start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r.p = &Pipeline{
		Lookup:    reg.Lookup,
		Telemetry: tel,
		Rejected:  rej,
		Now:       func() time.Time { return time.UnixMilli(testNow) },
	}
	t.Cleanup(func() {
		tel.Close()
		rej.Close()
		mem.AssertSize(t, 0)
	})
	return r
}

// flush closes the batchers so every row is written.
func (r *pipelineRig) flush(t *testing.T) {
	t.Helper()
	for _, close := range []func() error{r.p.Telemetry.Close, r.p.Rejected.Close} {
		if err := close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPipelineHandleTelemetry(t *testing.T) {
	reading := func(ts int64, device, grid, metric string, v float64) Reading {
		return Reading{TS: ts, Received: testNow, Device: device, Grid: grid, Metric: metric, Value: v}
	}
	for _, tc := range []struct {
		name     string
		device   string
		payload  string
		wantErr  error
		readings []Reading
		reasons  []string
		outcome  string
	}{
		{
			name:     "stored with the device's grid and exact ms",
			device:   "aq-0001",
			payload:  `{"ts": "2024-11-22T00:00:00.123Z", "pm25": 35.2, "pm10": 50}`,
			readings: []Reading{reading(1732233600123, "aq-0001", "g-0101", "pm25", 35.2), reading(1732233600123, "aq-0001", "g-0101", "pm10", 50)},
			outcome:  outcomeStored,
		},
		{
			name:     "SenML boolean",
			device:   "sl-0007",
			payload:  `[{"bn": "sl-0007/", "bt": 1732233600.5, "n": "lamp_on", "vb": true}]`,
			readings: []Reading{reading(1732233600500, "sl-0007", "g-0202", "lamp_on", 1)},
			outcome:  outcomeStored,
		},
		{
			name:     "partly bad: good values are stored",
			device:   "aq-0001",
			payload:  `{"pm25": 35.2, "pm10": "high"}`,
			wantErr:  ErrMalformed,
			readings: []Reading{reading(testNow, "aq-0001", "g-0101", "pm25", 35.2)},
			reasons:  []string{ReasonWrongType},
			outcome:  outcomePartial,
		},
		{
			name:     "out of range and unknown metric beside a good value: the good one is stored",
			device:   "aq-0001",
			payload:  `{"pm25": 35.2, "pm10": 99999, "co2": 400}`,
			wantErr:  ErrMalformed,
			readings: []Reading{reading(testNow, "aq-0001", "g-0101", "pm25", 35.2)},
			reasons:  []string{ReasonOutOfRange, ReasonUnknownMetric},
			outcome:  outcomePartial,
		},
		{
			name:    "not JSON",
			device:  "aq-0001",
			payload: `pm25=35.2`,
			wantErr: ErrMalformed,
			reasons: []string{ReasonMalformedJSON},
			outcome: outcomeRejected,
		},
		{
			name:    "unknown device",
			device:  "ghost-1",
			payload: `{"pm25": 35.2}`,
			wantErr: ErrUnknownDevice,
			reasons: []string{ReasonUnknownDevice},
			outcome: outcomeUnknownDevice,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newPipelineRig(t, nil)
			topic := "devices/" + tc.device + "/telemetry"
			_, err := r.p.HandleTelemetry(context.Background(), tc.device, topic, []byte(tc.payload), false)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("HandleTelemetry = %v, want %v", err, tc.wantErr)
			}
			r.flush(t)
			if got := r.readings.rows(); !reflect.DeepEqual(got, tc.readings) {
				t.Errorf("readings = %+v\nwant %+v", got, tc.readings)
			}
			var reasons []string
			for _, rej := range r.rejections.rows() {
				reasons = append(reasons, rej.Reason)
				if rej.TS != testNow || rej.Device != tc.device || rej.Topic != topic ||
					rej.Detail == "" || string(rej.Payload) != tc.payload {
					t.Errorf("rejection %+v: want ts %d, device %q, topic %q, a detail and the payload", rej, testNow, tc.device, topic)
				}
				if got := testutil.ToFloat64(r.p.Metrics.rejections.WithLabelValues(rej.Reason)); got != 1 {
					t.Errorf("rejections{reason=%q} = %v, want 1", rej.Reason, got)
				}
			}
			if !reflect.DeepEqual(reasons, tc.reasons) {
				t.Errorf("rejection reasons = %v, want %v", reasons, tc.reasons)
			}
			if got := testutil.ToFloat64(r.p.Metrics.messages.WithLabelValues(tc.outcome)); got != 1 {
				t.Errorf("messages{outcome=%q} = %v, want 1", tc.outcome, got)
			}
			if got := testutil.ToFloat64(r.p.Metrics.readings); got != float64(len(tc.readings)) {
				t.Errorf("readings counter = %v, want %d", got, len(tc.readings))
			}
		})
	}
}

// TestPipelineClockSteppedBack steps the receive clock back an hour after
// the first message: a device's correct timestamp, now an hour and a second
// ahead of the receive time, is still stored, while one over an hour ahead
// of the time known to have passed is still rejected.
func TestPipelineClockSteppedBack(t *testing.T) {
	r := newPipelineRig(t, nil)
	var offset atomic.Int64
	r.p.Now = func() time.Time { return time.UnixMilli(testNow + offset.Load()) }
	send := func(ts int64) error {
		payload := fmt.Sprintf(`{"ts": %d, "pm25": 35.2}`, ts)
		_, err := r.p.HandleTelemetry(context.Background(), "aq-0001", "devices/aq-0001/telemetry", []byte(payload), false)
		return err
	}
	if err := send(testNow); err != nil {
		t.Fatal(err)
	}
	hour := time.Hour.Milliseconds()
	offset.Store(-hour)
	if err := send(testNow + 1000); err != nil {
		t.Fatalf("after the clock stepped back: %v", err)
	}
	if err := send(testNow + 2*hour); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two hours ahead: %v, want ErrMalformed", err)
	}
	r.flush(t)
	want := []Reading{
		{TS: testNow, Received: testNow, Device: "aq-0001", Grid: "g-0101", Metric: "pm25", Value: 35.2},
		{TS: testNow + 1000, Received: testNow - hour, Device: "aq-0001", Grid: "g-0101", Metric: "pm25", Value: 35.2},
	}
	if got := r.readings.rows(); !reflect.DeepEqual(got, want) {
		t.Errorf("readings = %+v\nwant %+v", got, want)
	}
}

func TestPipelineKeepsThePayloadHead(t *testing.T) {
	r := newPipelineRig(t, nil)
	payload := `{"pm25": "` + strings.Repeat("x", 1000) + `"}`
	_, err := r.p.HandleTelemetry(context.Background(), "aq-0001", "devices/aq-0001/telemetry", []byte(payload), false)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("HandleTelemetry = %v, want ErrMalformed", err)
	}
	r.flush(t)
	rows := r.rejections.rows()
	if len(rows) != 1 || string(rows[0].Payload) != payload[:DefaultRejectedPayloadBytes] {
		t.Fatalf("rejections = %+v, want one holding the first %d payload bytes", rows, DefaultRejectedPayloadBytes)
	}
}

func TestPipelineOverloaded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newPipelineRig(t, func(context.Context, *Batch) error {
			<-release
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		// The first reading is being written, the second fills the batcher.
		if _, err := r.p.HandleTelemetry(ctx, "aq-0001", "devices/aq-0001/telemetry", []byte(`{"pm25": 1, "pm10": 2}`), false); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error)
		go func() {
			_, err := r.p.HandleTelemetry(ctx, "aq-0001", "devices/aq-0001/telemetry", []byte(`{"pm25": 3}`), false)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, ErrOverloaded) {
			t.Fatalf("HandleTelemetry while full = %v, want ErrOverloaded", err)
		}
		if got := testutil.ToFloat64(r.p.Metrics.messages.WithLabelValues(outcomeDropped)); got != 1 {
			t.Errorf("messages{outcome=dropped} = %v, want 1", got)
		}
		close(release)
	})
}

// TestPipelineRefusedNotObserved attacks the promise that a resend counts
// once (issue 10 item 14): the readings of a message the pipeline refuses
// with ErrNotStored, because the spool is full (Admit) or the batcher is
// overloaded, are not handed to the alert engine, since the device sends
// the message again; those of a message taken are.
func TestPipelineRefusedNotObserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := newPipelineRig(t, func(context.Context, *Batch) error {
			<-release
			return nil
		})
		var observed []float64
		r.p.Observe = func(rs []Reading) {
			for _, rd := range rs {
				observed = append(observed, rd.Value)
			}
		}
		var admitErr error
		r.p.Admit = func() error { return admitErr }
		ctx, cancel := context.WithCancel(context.Background())
		// The first message is taken: one reading is being written, the
		// other fills the batcher.
		if _, err := r.p.HandleTelemetry(ctx, "aq-0001", "devices/aq-0001/telemetry", []byte(`{"pm25": 1, "pm10": 2}`), false); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error)
		go func() {
			_, err := r.p.HandleTelemetry(ctx, "aq-0001", "devices/aq-0001/telemetry", []byte(`{"pm25": 3}`), false)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, ErrNotStored) {
			t.Fatalf("HandleTelemetry while overloaded = %v, want ErrNotStored", err)
		}
		admitErr = errors.New("spool full")
		if _, err := r.p.HandleTelemetry(context.Background(), "aq-0001", "devices/aq-0001/telemetry", []byte(`{"pm25": 4}`), false); !errors.Is(err, ErrNotStored) {
			t.Fatalf("HandleTelemetry refused by Admit = %v, want ErrNotStored", err)
		}
		if want := []float64{1, 2}; !reflect.DeepEqual(observed, want) {
			t.Errorf("observed %v, want %v: only the message taken is evaluated", observed, want)
		}
		close(release)
	})
}

func TestPipelineRequiresItsParts(t *testing.T) {
	_, err := (&Pipeline{}).HandleTelemetry(context.Background(), "aq-0001", "devices/aq-0001/telemetry", []byte(`{}`), false)
	if err == nil {
		t.Fatal("HandleTelemetry without Lookup and batchers succeeded")
	}
}

func TestSchemaColumnNames(t *testing.T) {
	for _, tc := range []struct {
		schema *arrow.Schema
		want   string
	}{
		{TelemetrySchema, "ts,received,device,grid,metric,value"},
		{RejectedSchema, "ts,device,topic,reason,detail,payload"},
	} {
		var names []string
		for _, f := range tc.schema.Fields() {
			names = append(names, f.Name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("columns = %s, want %s", got, tc.want)
		}
	}
}

// BenchmarkHandleTelemetry measures a message's way from the broker hook into
// the telemetry batcher, from parallel clients, with writes that do nothing.
func BenchmarkHandleTelemetry(b *testing.B) {
	payload := []byte(`{"ts": 1732233600123, "pm25": 35.2, "pm10": 50, "no2": 41.7}`)
	reg := devices.NewRegistry([]devices.Device{{ID: "aq-0001", Type: "air_quality", Grid: "g-0101"}})
	discard := func(context.Context, *Batch) error { return nil }
	p := &Pipeline{Lookup: reg.Lookup, Telemetry: NewTelemetryBatcher(discard), Rejected: NewRejectedBatcher(discard)}
	for _, start := range []func(context.Context) error{p.Telemetry.Start, p.Rejected.Start} {
		if err := start(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	defer p.Rejected.Close()
	defer p.Telemetry.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.HandleTelemetry(context.Background(), "aq-0001", "devices/aq-0001/telemetry", payload, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
