package rtsp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/simulators"
)

// ffprobeStream is what ffprobe reports of a video stream.
type ffprobeStream struct {
	Codec     string `json:"codec_name"`
	Width     uint32 `json:"width"`
	Height    uint32 `json:"height"`
	FrameRate string `json:"r_frame_rate"`
}

// ffprobe runs ffprobe on url over TCP.
func ffprobe(t *testing.T, url string) ffprobeStream {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,r_frame_rate", "-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var res struct{ Streams []ffprobeStream }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	return res.Streams[0]
}

func parseRate(t *testing.T, r string) float64 {
	num, den, _ := strings.Cut(r, "/")
	n, err1 := strconv.ParseFloat(num, 64)
	d, err2 := strconv.ParseFloat(den, 64)
	if err1 != nil || err2 != nil || d == 0 {
		t.Fatalf("ffprobe frame rate %q", r)
	}
	return n / d
}

func TestParityWithFFprobe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ffprobe on RTSP streams")
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffprobe is required in CI: apt-get install ffmpeg")
		}
		t.Skip("ffprobe not installed")
	}
	farm, targets := startFarm(t, false,
		simulators.Camera{Path: "small", Resolution: "320x240"},
		simulators.Camera{Path: "large", Resolution: "640x360"},
		simulators.Camera{Path: "slow", Resolution: "320x240", FPS: 10},
	)
	p := testProber("tcp")
	for i, tg := range targets {
		t.Run(tg.Camera, func(t *testing.T) {
			want := ffprobe(t, farm.URL(i))
			rec := p.Check(context.Background(), tg, rtsp.KindSample)
			if !strings.EqualFold(rec.Codec, want.Codec) || rec.Width != want.Width || rec.Height != want.Height {
				t.Errorf("prober %s %dx%d, ffprobe %s %dx%d", rec.Codec, rec.Width, rec.Height, want.Codec, want.Width, want.Height)
			}
			// ffprobe's r_frame_rate follows the timestamps, as the
			// prober's measured rate does; both must match what is served.
			rate := parseRate(t, want.FrameRate)
			if served := farm.Cameras[i].FPS; math.Abs(rate-served) > 0.01 || math.Abs(rec.FPS-rate) > 0.05*rate {
				t.Errorf("prober %.2f fps, ffprobe %s, served %.2f", rec.FPS, want.FrameRate, served)
			}
		})
	}
}

func TestNoGoroutineLeakOver100Sweeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 100 sweeps")
	}
	_, targets := startFarm(t, false,
		simulators.Camera{Path: "a"}, simulators.Camera{Path: "b", Fault: simulators.FaultRefusing},
		simulators.Camera{Path: "c", Fault: simulators.FaultNotFound})
	p := testProber("tcp")
	p.Targets = func() []rtsp.Target { return targets }
	p.Sweep(context.Background(), rtsp.KindLiveness) // warm up the farm's goroutines
	before := runtime.NumGoroutine()
	for range 100 {
		p.Sweep(context.Background(), rtsp.KindLiveness)
	}
	// Two samples too, which start a client reader and a waiter each.
	p.SampleDuration = 100 * time.Millisecond
	p.Sweep(context.Background(), rtsp.KindSample)
	p.Sweep(context.Background(), rtsp.KindSample)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the farm's sessions to close
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after 100 sweeps, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestPasswordNeverLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("probes RTSP cameras")
	}
	farm, targets := startFarm(t, false,
		simulators.Camera{Path: "ok", Fault: simulators.FaultAuth},
		simulators.Camera{Path: "wrong", Fault: simulators.FaultWrongAuth},
		simulators.Camera{Path: "gone", Fault: simulators.FaultOffline})
	// The offline camera gets credentials too, so its timeout error would
	// carry them if anything did.
	targets[2].User, targets[2].Password = farm.User, "wrong-"+farm.Password
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	var recs []rtsp.HealthRecord
	p := testProber("tcp")
	p.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p.Registerer = reg
	p.Targets = func() []rtsp.Target { return targets }
	p.Record = func(ctx context.Context, rec rtsp.HealthRecord) error { return context.Canceled } // logged as dropped
	for _, r := range p.Sweep(context.Background(), rtsp.KindSample) {
		recs = append(recs, r)
	}
	if recs[0].Status != rtsp.StatusOK || recs[1].Status != rtsp.StatusAuthFailed {
		t.Fatalf("statuses %s, %s: want ok, auth_failed", recs[0].Status, recs[1].Status)
	}
	dump, _ := json.Marshal(recs)
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n == 0 {
		t.Fatalf("metrics: %d series, %v", n, err)
	}
	mfs, _ := reg.Gather()
	metrics, _ := json.Marshal(mfs)
	for what, text := range map[string]string{"records": string(dump), "logs": logs.String(), "metrics": string(metrics)} {
		if strings.Contains(text, farm.Password) {
			t.Errorf("the RTSP password appears in the %s: %s", what, text)
		}
	}
	if !strings.Contains(logs.String(), "dropped") {
		t.Errorf("dropped records were not logged: %s", logs.String())
	}
}
