package alerts

import (
	"fmt"
	"testing"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
)

// diagnosed gives r the outcome of a picture diagnosis.
func diagnosed(r rtsp.HealthRecord, pictures uint32, conds ...rtsp.Condition) rtsp.HealthRecord {
	r.Pictures, r.Conditions = pictures, conds
	return r
}

func TestCameraObservations(t *testing.T) {
	rec := func(kind rtsp.Kind, st rtsp.Status) rtsp.HealthRecord {
		return rtsp.HealthRecord{TS: 1000, Camera: "cam-1", Grid: "G1", Kind: kind, Status: st, FPS: 24.5, BitrateKbps: 512}
	}
	cases := []struct {
		rec  rtsp.HealthRecord
		want string
	}{
		{rec(rtsp.KindLiveness, rtsp.StatusUnreachable), "up=0"},
		{rec(rtsp.KindSample, rtsp.StatusRefused), "up=0"},
		{rec(rtsp.KindLiveness, rtsp.StatusOK), "up=1 auth_failed=0"},
		{rec(rtsp.KindLiveness, rtsp.StatusAuthFailed), "up=1 auth_failed=1"},
		{rec(rtsp.KindSample, rtsp.StatusOK), "up=1 auth_failed=0 stalled=0 fps=24.5 bitrate_kbps=512"},
		{rec(rtsp.KindSample, rtsp.StatusDegraded), "up=1 auth_failed=0 stalled=0 fps=24.5 bitrate_kbps=512"},
		{rec(rtsp.KindSample, rtsp.StatusStalled), "up=1 auth_failed=0 stalled=1"},
		{rec(rtsp.KindSample, rtsp.StatusNotFound), "up=1 auth_failed=0"},
		// A diagnosed sample reports every picture condition, found or not.
		{diagnosed(rec(rtsp.KindSample, rtsp.StatusDegraded), 3, rtsp.CondBlur, rtsp.CondNoise),
			"up=1 auth_failed=0 stalled=0 fps=24.5 bitrate_kbps=512 signal_loss=0 frozen=0 blur=1 too_dark=0 too_bright=0 color_cast=0 noise=1 occlusion=0 scene_change=0"},
		{diagnosed(rec(rtsp.KindSample, rtsp.StatusOK), 3),
			"up=1 auth_failed=0 stalled=0 fps=24.5 bitrate_kbps=512 signal_loss=0 frozen=0 blur=0 too_dark=0 too_bright=0 color_cast=0 noise=0 occlusion=0 scene_change=0"},
		// Keyframes that do not decode are signal loss, with no picture.
		{diagnosed(rec(rtsp.KindSample, rtsp.StatusDegraded), 0, rtsp.CondSignalLoss),
			"up=1 auth_failed=0 stalled=0 fps=24.5 bitrate_kbps=512 signal_loss=1 frozen=0 blur=0 too_dark=0 too_bright=0 color_cast=0 noise=0 occlusion=0 scene_change=0"},
	}
	for _, tc := range cases {
		got := ""
		for i, o := range CameraObservations(tc.rec) {
			if o.Device != "cam-1" || o.Type != "camera" || o.Grid != "G1" || o.TS != 1000 {
				t.Errorf("%v/%v: observation %+v lost the camera's identity", tc.rec.Kind, tc.rec.Status, o)
			}
			if i > 0 {
				got += " "
			}
			got += fmt.Sprintf("%s=%v", o.Metric, o.Value)
		}
		if got != tc.want {
			t.Errorf("%v/%v: %s, want %s", tc.rec.Kind, tc.rec.Status, got, tc.want)
		}
	}
}
