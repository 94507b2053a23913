package rtsp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/simulators"
)

// ffprobeStream is what ffprobe reports of a video stream, and what it
// measures over the packets it read.
type ffprobeStream struct {
	Codec     string `json:"codec_name"`
	Width     uint32 `json:"width"`
	Height    uint32 `json:"height"`
	FrameRate string `json:"r_frame_rate"`
	// BitrateKbps and KeyframeIntervalS are computed from the packets.
	BitrateKbps, KeyframeIntervalS float64
}

// ffprobe runs ffprobe on url over TCP, reading seconds of packets.
func ffprobe(t *testing.T, url string, seconds float64) ffprobeStream {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v:0",
		"-read_intervals", fmt.Sprintf("%%+%g", seconds),
		"-show_entries", "stream=codec_name,width,height,r_frame_rate:packet=pts_time,size,flags",
		"-of", "json", url).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", url, err)
	}
	var res struct {
		Streams []ffprobeStream
		Packets []struct {
			PTS   string `json:"pts_time"`
			Size  string `json:"size"`
			Flags string `json:"flags"`
		}
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 || len(res.Packets) < 2 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	st := res.Streams[0]
	// ffprobe stamps no time on the very first packet of an RTSP stream
	// (RTP time has no reference yet). In a stream without B-frames it is
	// one frame interval before the next packet, as far as the one after;
	// in one with B-frames it cannot be placed and is left out.
	pkts := res.Packets
	pts := make([]float64, len(pkts))
	for i := len(pkts) - 1; i >= 0; i-- {
		var err error
		if pts[i], err = strconv.ParseFloat(pkts[i].PTS, 64); err != nil && i == 0 && len(pts) > 2 {
			pts[0], err = 2*pts[1]-pts[2], nil
			if !slices.IsSorted(pts[1:]) {
				pkts, pts = pkts[1:], pts[1:]
			}
		}
		if err != nil {
			t.Fatalf("ffprobe packet %+v: %v", pkts[i], err)
		}
	}
	var (
		bytes, firstKey, lastKey float64
		keyframes                int
	)
	for i, pkt := range pkts {
		size, err := strconv.ParseFloat(pkt.Size, 64)
		if err != nil {
			t.Fatalf("ffprobe packet %+v: %v", pkt, err)
		}
		bytes += size
		if strings.Contains(pkt.Flags, "K") {
			if keyframes == 0 {
				firstKey = pts[i]
			}
			keyframes++
			lastKey = pts[i]
		}
	}
	if keyframes > 1 {
		st.KeyframeIntervalS = (lastKey - firstKey) / float64(keyframes-1)
	}
	// Packets come in decode order: with B-frames the last is not the latest.
	st.BitrateKbps = bytes * 8 / 1000 / (slices.Max(pts) - slices.Min(pts))
	return st
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

// ffprobeCodec is ffprobe's name of a session description's codec.
var ffprobeCodec = map[string]string{"H264": "h264", "H265": "hevc"}

// TestParityWithFFprobe attacks the README's promise that H.264 and H.265
// cameras are both measured — codec, picture size, frame rate, bitrate and
// keyframe interval — as ffprobe measures the same stream.
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
	var cams []simulators.Camera
	for _, codec := range []string{simulators.CodecH264, simulators.CodecH265} {
		name := strings.ToLower(codec)
		cams = append(cams,
			simulators.Camera{Path: name + "-small", Codec: codec, Resolution: "320x240"},
			simulators.Camera{Path: name + "-large", Codec: codec, Resolution: "640x360"},
			simulators.Camera{Path: name + "-slow", Codec: codec, Resolution: "320x240", FPS: 10},
		)
	}
	farm, targets := startFarm(t, false, cams...)
	// Both read the same 3.3 s from PLAY, so that they see the same
	// keyframes (a sample's bitrate depends on how many it holds); no
	// keyframe is due at its end at 25 or 10 fps.
	const seconds = 3.3
	p := testProber("tcp")
	p.SampleDuration = time.Duration(seconds * float64(time.Second))
	t.Run("cameras", func(t *testing.T) {
		for i, tg := range targets {
			t.Run(tg.Camera, func(t *testing.T) {
				t.Parallel()
				// A sample disturbed by a loaded machine (a stall, a keyframe
				// late past the end of either window) is taken again, by
				// both, up to three times; the last one's differences fail.
				var diffs []string
				for try := 0; try < 3; try++ {
					want := ffprobe(t, farm.URL(i), seconds)
					rec := p.Check(context.Background(), tg, rtsp.KindSample)
					rate := parseRate(t, want.FrameRate)
					t.Logf("| %s | prober %s %dx%d %.2f fps %.0f kbit/s GOP %.2f s | ffprobe %s %dx%d %.2f fps %.0f kbit/s GOP %.2f s |",
						tg.Camera, rec.Codec, rec.Width, rec.Height, rec.FPS, rec.BitrateKbps, rec.KeyframeIntervalS,
						want.Codec, want.Width, want.Height, rate, want.BitrateKbps, want.KeyframeIntervalS)
					if diffs = parity(rec, want, rate, farm.Cameras[i].FPS); len(diffs) == 0 {
						return
					}
					t.Logf("%s: %s on this loaded machine; sampled again", tg.Camera, strings.Join(diffs, "; "))
				}
				for _, d := range diffs {
					t.Error(d)
				}
			})
		}
	})
}

// parity returns how the prober's sample rec differs from ffprobe's want
// (whose frame rate is rate) of a camera serving served fps, beyond what
// the two count apart.
func parity(rec rtsp.HealthRecord, want ffprobeStream, rate, served float64) []string {
	var diffs []string
	// The slow cameras send 10 fps where the SPS announces 25: degraded
	// (low_fps), but measured all the same.
	if !rec.Status.Up() {
		return []string{fmt.Sprintf("status %s (%s %s), want ok or degraded", rec.Status, rec.Detail, rec.Error)}
	}
	if ffprobeCodec[rec.Codec] != want.Codec || rec.Width != want.Width || rec.Height != want.Height {
		diffs = append(diffs, fmt.Sprintf("prober %s %dx%d, ffprobe %s %dx%d", rec.Codec, rec.Width, rec.Height, want.Codec, want.Width, want.Height))
	}
	// ffprobe's r_frame_rate follows the timestamps, as the prober's
	// measured rate does; both must match what is served.
	if math.Abs(rate-served) > 0.01 || math.Abs(rec.FPS-rate) > 0.05*rate {
		diffs = append(diffs, fmt.Sprintf("prober %.2f fps, ffprobe %s, served %.2f", rec.FPS, want.FrameRate, served))
	}
	// The prober counts RTP payload (with its packetization headers),
	// ffprobe the access units: a few percent apart.
	if math.Abs(rec.BitrateKbps-want.BitrateKbps) > 0.15*want.BitrateKbps {
		diffs = append(diffs, fmt.Sprintf("prober %.1f kbit/s, ffprobe %.1f kbit/s", rec.BitrateKbps, want.BitrateKbps))
	}
	if math.Abs(rec.KeyframeIntervalS-want.KeyframeIntervalS) > 0.1*want.KeyframeIntervalS {
		diffs = append(diffs, fmt.Sprintf("prober keyframe interval %.2f s, ffprobe %.2f s", rec.KeyframeIntervalS, want.KeyframeIntervalS))
	}
	return diffs
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
	deadline := time.Now().Add(30 * time.Second)
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
	recs[0], _ = resampleStalled(t, p, targets[0], recs[0])
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
