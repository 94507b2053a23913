package rtsp_test

import (
	"context"
	"math"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
)

// relay is an RTSP server that takes one stream published with ANNOUNCE and
// RECORD and serves it, packets untouched, to readers: the prober and
// ffprobe then read ffmpeg's own session description and RTP packetization,
// not the camera farm's.
type relay struct {
	server    *gortsplib.Server
	mu        sync.Mutex
	stream    *gortsplib.ServerStream
	publisher *gortsplib.ServerSession
	packets   int
}

func (r *relay) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil && ctx.Session == r.publisher {
		r.stream.Close()
		r.stream = nil
	}
}

func (r *relay) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, r.stream, nil
}

func (r *relay) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, nil
	}
	r.stream = &gortsplib.ServerStream{Server: r.server, Desc: ctx.Description}
	if err := r.stream.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	r.publisher = ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *relay) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	return r.OnDescribe(nil)
}

func (r *relay) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *relay) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	ctx.Session.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		r.mu.Lock()
		st := r.stream
		r.packets++
		r.mu.Unlock()
		if st != nil {
			_ = st.WritePacketRTP(medi, pkt)
		}
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// received returns how many packets the publisher sent.
func (r *relay) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packets
}

// publish starts a relay and an ffmpeg encoding a live test pattern with
// encoder and publishing it to the relay, and returns the stream's URL
// once packets flow.
func publish(t *testing.T, encoder string, params ...string) string {
	t.Helper()
	r := &relay{}
	var ln net.Listener
	r.server = &gortsplib.Server{Handler: r, RTSPAddress: "127.0.0.1:0",
		Listen: func(network, address string) (net.Listener, error) {
			var err error
			ln, err = net.Listen(network, address)
			return ln, err
		}}
	if err := r.server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.server.Close)
	url := "rtsp://" + ln.Addr().String() + "/live"
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-pix_fmt", "yuv420p", "-c:v", encoder}, params...)
	cmd := exec.CommandContext(ctx, "ffmpeg", append(args, "-f", "rtsp", "-rtsp_transport", "tcp", url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for r.received() < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("ffmpeg %s published %d packets in 30s: %s", encoder, r.received(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url
}

// TestParityWithFFmpegPublisher attacks the README's promise that H.264 and
// H.265 are measured like ffprobe measures them, on streams that another
// implementation encoded and packetized: ffmpeg's libx264 and libx265,
// B-frames included, published through a relay. The prober and ffprobe read
// the same live stream at the same time.
func TestParityWithFFmpegPublisher(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes live video with ffmpeg")
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	if err != nil || !strings.Contains(string(out), "libx265") || !strings.Contains(string(out), "libx264") {
		if os.Getenv("CI") != "" {
			t.Fatalf("ffmpeg with libx264 and libx265 is required in CI (apt-get install ffmpeg): %v", err)
		}
		t.Skip("ffmpeg with libx264 and libx265 not installed")
	}
	for _, tc := range []struct {
		encoder, codec string
		params         []string
	}{
		{"libx264", "H264", []string{"-preset", "veryfast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "2"}},
		{"libx265", "H265", []string{"-preset", "ultrafast", "-x265-params", "log-level=error:keyint=25:min-keyint=25:scenecut=0:bframes=2"}},
	} {
		t.Run(tc.encoder, func(t *testing.T) {
			url := publish(t, tc.encoder, tc.params...)
			// 2.98 s is 75 frames, three whole groups of pictures, so
			// both hold three keyframes wherever in the live stream they
			// start.
			const seconds = 2.98
			p := testProber("tcp")
			p.SampleDuration = time.Duration(seconds * float64(time.Second))
			// ffmpeg encodes in real time; on a loaded machine it can
			// pause longer than a stall (ten frame intervals) and the
			// prober rightly says so. Measurements are compared on a
			// sample the publisher kept up with: up to three tries.
			var (
				rec  rtsp.HealthRecord
				want ffprobeStream
			)
			for try := 1; ; try++ {
				var wg sync.WaitGroup
				wg.Go(func() { rec = p.Check(context.Background(), target(t, "live", url), rtsp.KindSample) })
				want = ffprobe(t, url, seconds)
				wg.Wait()
				if rec.Status != rtsp.StatusStalled || rec.Detail != "stopped" || try == 3 {
					break
				}
				t.Logf("try %d: the publisher paused (stalled, stopped); sampling again", try)
			}
			rate := parseRate(t, want.FrameRate)
			t.Logf("| ffmpeg %s | prober %s %s %dx%d %.2f fps %.0f kbit/s GOP %.2f s | ffprobe %s %dx%d %.2f fps %.0f kbit/s GOP %.2f s |",
				tc.encoder, rec.Codec, rec.Profile, rec.Width, rec.Height, rec.FPS, rec.BitrateKbps, rec.KeyframeIntervalS,
				want.Codec, want.Width, want.Height, rate, want.BitrateKbps, want.KeyframeIntervalS)
			if rec.Status != rtsp.StatusOK {
				t.Fatalf("status %s (%s %s), want ok", rec.Status, rec.Detail, rec.Error)
			}
			if rec.Codec != tc.codec || ffprobeCodec[rec.Codec] != want.Codec || rec.Width != want.Width || rec.Height != want.Height {
				t.Errorf("prober %s %dx%d, ffprobe %s %dx%d", rec.Codec, rec.Width, rec.Height, want.Codec, want.Width, want.Height)
			}
			if math.Abs(rec.FPS-rate) > 0.05*rate {
				t.Errorf("prober %.2f fps, ffprobe %s", rec.FPS, want.FrameRate)
			}
			// The two read the same live stream from slightly different
			// starts, and ffprobe's window ends in decode order (it may
			// hold a P-frame without its B-frames).
			if math.Abs(rec.BitrateKbps-want.BitrateKbps) > 0.25*want.BitrateKbps {
				t.Errorf("prober %.1f kbit/s, ffprobe %.1f kbit/s", rec.BitrateKbps, want.BitrateKbps)
			}
			if math.Abs(rec.KeyframeIntervalS-want.KeyframeIntervalS) > 0.1*want.KeyframeIntervalS {
				t.Errorf("prober keyframe interval %.2f s, ffprobe %.2f s", rec.KeyframeIntervalS, want.KeyframeIntervalS)
			}
		})
	}
}
