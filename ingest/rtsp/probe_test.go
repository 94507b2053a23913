package rtsp_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/simulators"
)

// startFarm serves cams and returns the farm and one target per camera,
// with credentials split out of the URL as the registry import does.
func startFarm(t testing.TB, udp bool, cams ...simulators.Camera) (*simulators.CameraFarm, []rtsp.Target) {
	t.Helper()
	farm := &simulators.CameraFarm{Cameras: cams, UDP: udp}
	if err := farm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Close() })
	targets := make([]rtsp.Target, len(cams))
	for i, c := range cams {
		targets[i] = target(t, c.Path, farm.URL(i))
	}
	return farm, targets
}

func target(t testing.TB, id, raw string) rtsp.Target {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	tg := rtsp.Target{Camera: id, Grid: "g1"}
	if u.User != nil {
		tg.User = u.User.Username()
		tg.Password, _ = u.User.Password()
		u.User = nil
	}
	tg.URL = u.String()
	return tg
}

// testProber probes with short windows. Its timeout is long: a loaded
// machine may hold a healthy camera's packets for seconds, and a stalled
// camera is told by its last frame, not by the timeout.
func testProber(transport string) *rtsp.Prober {
	return &rtsp.Prober{
		SampleDuration: 1500 * time.Millisecond,
		Timeout:        10 * time.Second,
		RecheckDelay:   -1,
		Transport:      transport,
	}
}

// TestProbeFaults attacks the README's promise that every fault of an H.264
// or H.265 camera maps onto its status, over TCP and UDP.
func TestProbeFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("plays RTSP streams for seconds")
	}
	cases := []struct {
		fault      simulators.CameraFault
		kind       rtsp.Kind
		wantStatus rtsp.Status
		wantDetail string
		codec      string
	}{
		{simulators.FaultNone, rtsp.KindSample, rtsp.StatusOK, "", simulators.CodecH264},
		{simulators.FaultNone, rtsp.KindLiveness, rtsp.StatusOK, "", simulators.CodecH264},
		{simulators.FaultOffline, rtsp.KindLiveness, rtsp.StatusUnreachable, "", simulators.CodecH264},
		{simulators.FaultRefusing, rtsp.KindLiveness, rtsp.StatusRefused, "", simulators.CodecH264},
		{simulators.FaultAuth, rtsp.KindSample, rtsp.StatusOK, "", simulators.CodecH264},
		{simulators.FaultWrongAuth, rtsp.KindLiveness, rtsp.StatusAuthFailed, "", simulators.CodecH264},
		{simulators.FaultNotFound, rtsp.KindLiveness, rtsp.StatusNotFound, "", simulators.CodecH264},
		{simulators.FaultStall, rtsp.KindSample, rtsp.StatusStalled, "stopped", simulators.CodecH264},
		{simulators.FaultLowFPS, rtsp.KindSample, rtsp.StatusDegraded, "low_fps", simulators.CodecH264},
		{simulators.FaultLoss, rtsp.KindSample, rtsp.StatusDegraded, "loss", simulators.CodecH264},
		{simulators.FaultFrozen, rtsp.KindSample, rtsp.StatusDegraded, "frozen", simulators.CodecH264},
		{simulators.FaultCodecChange, rtsp.KindLiveness, rtsp.StatusUnsupportedCodec, "", simulators.CodecH264},
		{simulators.FaultNoVideo, rtsp.KindLiveness, rtsp.StatusNoVideoTrack, "", simulators.CodecH264},
		{simulators.FaultNone, rtsp.KindSample, rtsp.StatusOK, "", simulators.CodecH265},
		{simulators.FaultNone, rtsp.KindLiveness, rtsp.StatusOK, "", simulators.CodecH265},
		{simulators.FaultStall, rtsp.KindSample, rtsp.StatusStalled, "stopped", simulators.CodecH265},
		{simulators.FaultLowFPS, rtsp.KindSample, rtsp.StatusDegraded, "low_fps", simulators.CodecH265},
		{simulators.FaultLoss, rtsp.KindSample, rtsp.StatusDegraded, "loss", simulators.CodecH265},
		{simulators.FaultFrozen, rtsp.KindSample, rtsp.StatusDegraded, "frozen", simulators.CodecH265},
	}
	cams := make([]simulators.Camera, len(cases))
	for i, c := range cases {
		cams[i] = simulators.Camera{Path: "cam" + string(rune('a'+i)), Fault: c.fault, Codec: c.codec}
	}
	_, targets := startFarm(t, true, cams...)
	for _, transport := range []string{"tcp", "udp"} {
		p, long := testProber(transport), testProber(transport)
		// gortsplib's UDP reorder buffer holds packets after a gap until 64
		// more arrive, about 2s of the small test clip: losses need a longer
		// sample to show.
		long.SampleDuration = 4 * time.Second
		for i, c := range cases {
			p := p
			if transport == "udp" && c.fault == simulators.FaultLoss {
				p = long
			}
			t.Run(transport+"/"+c.codec+"/"+string(c.kind)+"/"+string(c.fault), func(t *testing.T) {
				t.Parallel()
				rec := p.Check(context.Background(), targets[i], c.kind)
				// A loaded machine can stall a healthy stream past the
				// prober's 400 ms: a sample is taken again, up to three
				// times, before its status fails.
				for try := 0; try < 3 && (rec.Status != c.wantStatus || !hasReason(rec.Detail, c.wantDetail)); try++ {
					t.Logf("status %s (%s), want %s (%s), on this loaded machine; sampled again", rec.Status, rec.Detail, c.wantStatus, c.wantDetail)
					rec = p.Check(context.Background(), targets[i], c.kind)
				}
				if rec.Status != c.wantStatus || !hasReason(rec.Detail, c.wantDetail) {
					t.Fatalf("status %s (%s), want %s (%s); record %+v", rec.Status, rec.Detail, c.wantStatus, c.wantDetail, rec)
				}
			})
		}
	}
}

// hasReason reports whether the comma-separated detail names want, or both
// are empty.
func hasReason(detail, want string) bool {
	if want == "" {
		return detail == ""
	}
	return slices.Contains(strings.Split(detail, ","), want)
}

// TestH265Measured attacks the README's promise that H.265 cameras are
// first-class: a liveness probe reads the codec, profile, size and nominal
// rate from the session description, as for H.264, and does not call the
// camera unsupported_codec.
func TestH265Measured(t *testing.T) {
	if testing.Short() {
		t.Skip("probes RTSP cameras")
	}
	_, targets := startFarm(t, false,
		simulators.Camera{Path: "hevc", Codec: simulators.CodecH265, Resolution: "640x360"},
		simulators.Camera{Path: "avc", Codec: simulators.CodecH264, Resolution: "640x360"})
	p := testProber("tcp")
	for _, tc := range []struct {
		target         rtsp.Target
		codec, profile string
	}{{targets[0], "H265", "main"}, {targets[1], "H264", "baseline"}} {
		rec := p.Check(context.Background(), tc.target, rtsp.KindLiveness)
		if rec.Status != rtsp.StatusOK || rec.Codec != tc.codec || rec.Profile != tc.profile ||
			rec.Width != 640 || rec.Height != 360 || rec.NominalFPS != 25 {
			t.Errorf("%s: %s %s %s %dx%d %.2f fps (%s), want ok %s %s 640x360 25 fps",
				tc.target.Camera, rec.Status, rec.Codec, rec.Profile, rec.Width, rec.Height, rec.NominalFPS, rec.Error, tc.codec, tc.profile)
		}
	}
}
