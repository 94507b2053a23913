package rtsp_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/ingest/rtsp/rtsptest"
	"github.com/gridwatch/gridwatch/internal/freeport"
)

// gstCameras starts testdata/gst-rtsp-cameras.py, GStreamer's RTSP server
// with its own encoders and packetizers, and returns its base URL. Without
// GStreamer it skips, or fails under CI.
func gstCameras(t *testing.T) string {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/gst-rtsp-cameras.py", fmt.Sprint(port))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if ok {
			return fmt.Sprintf("rtsp://127.0.0.1:%d/", port)
		}
	case <-time.After(30 * time.Second):
	}
	msg := fmt.Sprintf("gst-rtsp-server did not start (deploy/install-deps.sh installs python3-gi, gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins): %s", stderr.String())
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestDiagnosisThirdParty attacks the README's promise that the picture
// diagnosis holds on cameras it was not fitted to: GStreamer's
// gst-rtsp-server serving a frozen, a black, a blurred and a healthy
// picture, each in H.264 (x264enc) and H.265 (x265enc). It prints the
// confusion table.
func TestDiagnosisThirdParty(t *testing.T) {
	if testing.Short() {
		t.Skip("runs GStreamer's RTSP server with its encoders")
	}
	base := gstCameras(t)
	truth := map[string]string{"healthy": healthy, "frozen": "frozen", "black": "signal_loss", "blurred": "blur"}
	var targets []rtsp.Target
	for _, picture := range []string{"healthy", "frozen", "black", "blurred"} {
		for _, codec := range []string{"h264", "h265"} {
			id := picture + "-" + codec
			targets = append(targets, rtsp.Target{Camera: id, Grid: "g1", URL: base + id})
		}
	}
	p := testProber("tcp")
	// 2.2 s holds two or three keyframes at GStreamer's one a second.
	p.SampleDuration = 2200 * time.Millisecond
	p.Concurrency = 4 // each camera starts its own encoder
	p.Targets = func() []rtsp.Target { return targets }
	table := rtsptest.Confusion{}
	for i, rec := range p.Sweep(context.Background(), rtsp.KindSample) {
		rec, _ = resampleStalled(t, p, targets[i], rec)
		picture, codec, _ := strings.Cut(rec.Camera, "-")
		want := truth[picture]
		ok := table.Add(want, rec.Conditions)
		t.Logf("| %s | %s | %s | %d | %.0f | %.1f | %.0f | %.2f | %.2f | %.2f |", rec.Camera, rec.Codec, strings.Join(condNames(rec.Conditions), ","),
			rec.Pictures, rec.Luma, rec.Contrast, rec.Sharpness, rec.NoiseSigma, rec.CastRatio, rec.FrameDiff)
		if !ok {
			t.Errorf("%s: conditions %v, want %s (status %s %q %s)", rec.Camera, rec.Conditions, want, rec.Status, rec.Detail, rec.Error)
		}
		if rec.Codec != strings.ToUpper(codec) || rec.Pictures < 2 {
			t.Errorf("%s: codec %s, %d pictures decoded; want %s and the sample's keyframes", rec.Camera, rec.Codec, rec.Pictures, strings.ToUpper(codec))
		}
	}
	t.Logf("picture diagnosis of gst-rtsp-server's cameras:\n%s", table.Table())
}

func condNames(cs []rtsp.Condition) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}
