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

// testProber probes with short windows.
func testProber(transport string) *rtsp.Prober {
	return &rtsp.Prober{
		SampleDuration: 1500 * time.Millisecond,
		Timeout:        rtsp.MinTimeout,
		RecheckDelay:   -1,
		Transport:      transport,
	}
}

func TestProbeFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("plays RTSP streams for seconds")
	}
	cases := []struct {
		fault      simulators.CameraFault
		kind       rtsp.Kind
		wantStatus rtsp.Status
		wantDetail string
	}{
		{simulators.FaultNone, rtsp.KindSample, rtsp.StatusOK, ""},
		{simulators.FaultNone, rtsp.KindLiveness, rtsp.StatusOK, ""},
		{simulators.FaultOffline, rtsp.KindLiveness, rtsp.StatusUnreachable, ""},
		{simulators.FaultRefusing, rtsp.KindLiveness, rtsp.StatusRefused, ""},
		{simulators.FaultAuth, rtsp.KindSample, rtsp.StatusOK, ""},
		{simulators.FaultWrongAuth, rtsp.KindLiveness, rtsp.StatusAuthFailed, ""},
		{simulators.FaultNotFound, rtsp.KindLiveness, rtsp.StatusNotFound, ""},
		{simulators.FaultStall, rtsp.KindSample, rtsp.StatusStalled, "stopped"},
		{simulators.FaultLowFPS, rtsp.KindSample, rtsp.StatusDegraded, "low_fps"},
		{simulators.FaultLoss, rtsp.KindSample, rtsp.StatusDegraded, "loss"},
		{simulators.FaultFrozen, rtsp.KindSample, rtsp.StatusDegraded, "frozen"},
		{simulators.FaultCodecChange, rtsp.KindLiveness, rtsp.StatusUnsupportedCodec, ""},
		{simulators.FaultNoVideo, rtsp.KindLiveness, rtsp.StatusNoVideoTrack, ""},
	}
	cams := make([]simulators.Camera, len(cases))
	for i, c := range cases {
		cams[i] = simulators.Camera{Path: "cam" + string(rune('a'+i)), Fault: c.fault}
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
			t.Run(transport+"/"+string(c.kind)+"/"+string(c.fault), func(t *testing.T) {
				t.Parallel()
				rec := p.Check(context.Background(), targets[i], c.kind)
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
