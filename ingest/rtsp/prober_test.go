package rtsp_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/simulators"
)

// TestBusyWorkersDelayProbesNeverSkipThem attacks the README's promise that
// a probe which finds every worker busy waits for one, counted and with its
// lag shown, and is never skipped. Three cameras answer 500 ms late and
// want a probe every second; one worker does two a second, so probes queue.
// Served oldest due first, the cameras take turns: no camera is probed
// twice while another waits. (Before, a probe due while the worker was busy
// was put off by a whole interval, and cameras starved at random.)
func TestBusyWorkersDelayProbesNeverSkipThem(t *testing.T) {
	if testing.Short() {
		t.Skip("probes slow RTSP cameras for seconds")
	}
	cams := make([]simulators.Camera, 3)
	for i := range cams {
		cams[i] = simulators.Camera{Path: fmt.Sprintf("slow%d", i), Fault: simulators.FaultSlow, SlowBy: 500 * time.Millisecond}
	}
	_, targets := startFarm(t, false, cams...)
	reg := prometheus.NewRegistry()
	var (
		mu    sync.Mutex
		order []string
		count = map[string]int{}
		bad   []string
	)
	const rounds = 4
	all := make(chan struct{})
	p := &rtsp.Prober{
		Targets:          func() []rtsp.Target { return targets },
		LivenessInterval: time.Second,
		// Samples are never due during the test.
		SampleInterval: 1000 * time.Hour,
		Jitter:         0.05,
		Timeout:        5 * time.Second,
		RecheckDelay:   -1,
		Concurrency:    1,
		Registerer:     reg,
		Observe: func(rec rtsp.HealthRecord) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, rec.Camera)
			count[rec.Camera]++
			if rec.Status != rtsp.StatusOK {
				bad = append(bad, fmt.Sprintf("%s: %s %s", rec.Camera, rec.Status, rec.Error))
			}
			lo := rounds
			for _, tg := range targets {
				lo = min(lo, count[tg.Camera])
			}
			if lo >= rounds {
				select {
				case <-all:
				default:
					close(all)
				}
			}
		},
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("after 2 minutes, probes %v: want every camera probed %d times", count, rounds)
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("probes failed: %v", bad)
	}
	// Round robin: at every point, the most probed camera is at most one
	// probe ahead of the least probed one.
	seen := map[string]int{}
	for i, cam := range order {
		seen[cam]++
		lo, hi := len(order), 0
		for _, tg := range targets {
			lo, hi = min(lo, seen[tg.Camera]), max(hi, seen[tg.Camera])
		}
		if i >= len(targets)-1 && hi-lo > 1 {
			t.Fatalf("probe %d: counts %v: a camera was probed twice while another waited; order %v", i+1, seen, order)
		}
	}
	if late := gathered(t, reg, "gridwatch_camera_probes_late_total").GetCounter().GetValue(); late == 0 {
		t.Errorf("no probe counted late, though %d probes shared one worker", len(order))
	}
	if n := gathered(t, reg, "gridwatch_camera_probe_lag_seconds").GetHistogram().GetSampleCount(); n < uint64(len(order)) {
		t.Errorf("lag observed for %d probes, %d ran", n, len(order))
	}
}

// gathered returns the one series of the registered metric name.
func gathered(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
