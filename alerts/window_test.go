package alerts_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// TestFutureReadingDoesNotPoisonWindow attacks the README's timestamp
// policy ("a ts ... more than 1 h past the receive time is rejected; others
// are stored as the device sent them") from the alert side: one reading
// stamped 59 minutes ahead, which ingest accepts, must not evict a windowed
// rule's recent readings, so pm25_high (avg over 15 minutes, at least 3
// samples) still fires within three high readings a minute apart (the
// future one counts as a reading of its receive time).
func TestFutureReadingDoesNotPoisonWindow(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "aq-1", Type: "air_quality", Grid: "G1"}}
	e := newEngine(t, alerts.DefaultRules(), devs, nil, c)
	sub := e.Subscribe(64)
	read := func(ts time.Time, v float64) {
		e.ObserveReadings([]ingest.Reading{{Device: "aq-1", Grid: "G1", Metric: "pm25", Value: v, TS: ts.UnixMilli()}})
	}
	read(c.Now().Add(59*time.Minute), 20) // a glitching clock, once
	for i := range 3 {
		c.Add(time.Minute)
		read(c.Now(), 150)
		e.RunTimers()
		if got := fires(sub); len(got) > 0 {
			if got[0].Alert.Rule != "pm25_high" {
				t.Fatalf("after %d high readings: %s fired (%s)", i+1, got[0].Alert.Rule, got[0].Alert.Summary)
			}
			return
		}
	}
	t.Fatal("pm25_high did not fire after three high readings: the future-stamped reading evicted them from the window")
}

// TestClockJumpBackDoesNotFreezeWindow attacks the same policy from the
// other side: a device without a real-time clock reboots into 2000-01-01
// (accepted: not before 2000) while pm25_high fires. Its readings stamped
// before the reboot must not stay the window's newest for good, freezing
// avg at the old level: once they are a window old by the engine's clock,
// the new low readings count and the alert clears.
func TestClockJumpBackDoesNotFreezeWindow(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "aq-1", Type: "air_quality", Grid: "G1"}}
	e := newEngine(t, alerts.DefaultRules(), devs, nil, c)
	sub := e.Subscribe(256)
	read := func(ts time.Time, v float64) {
		e.ObserveReadings([]ingest.Reading{{Device: "aq-1", Grid: "G1", Metric: "pm25", Value: v, TS: ts.UnixMilli()}})
	}
	for range 5 {
		c.Add(time.Minute)
		read(c.Now(), 150)
		e.RunTimers()
	}
	if got := fires(sub); len(got) != 1 {
		t.Fatalf("pm25_high fired %d times on high readings, want once", len(got))
	}
	reboot := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 60 {
		c.Add(time.Minute)
		read(reboot.Add(time.Duration(i)*time.Minute), 10)
		e.RunTimers()
		for {
			select {
			case tr := <-sub.C:
				if tr.Event.Kind == alerts.EventClear {
					return
				}
				continue
			default:
			}
			break
		}
	}
	t.Fatal("pm25_high did not clear in an hour of low readings after the clock jumped back: the window froze on the readings stamped before")
}

// BenchmarkObserveReadings evaluates the default rules for air-quality
// devices publishing far faster than their interval, as the load generator
// of make bench does: pm25_high's window holds its 512 samples at most, so
// the cost of adding a sample and of the window's avg is what it measures.
func BenchmarkObserveReadings(b *testing.B) {
	c := &clock{t: t0}
	devs := make([]devices.Device, 200)
	for i := range devs {
		devs[i] = devices.Device{ID: fmt.Sprintf("aq-%d", i), Type: "air_quality", Grid: "G1"}
	}
	e := newEngine(b, alerts.DefaultRules(), devs, nil, c)
	msg := make([]ingest.Reading, 2)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d := devs[i%len(devs)]
		ts := t0.UnixMilli() + int64(i/len(devs))
		msg[0] = ingest.Reading{Device: d.ID, Grid: d.Grid, Metric: "pm25", Value: float64(i % 50), TS: ts}
		msg[1] = ingest.Reading{Device: d.ID, Grid: d.Grid, Metric: "pm10", Value: float64(i % 80), TS: ts}
		e.ObserveReadings(msg)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/reading")
}
