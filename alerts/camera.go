package alerts

import "github.com/gridwatch/gridwatch/ingest/rtsp"

// Metrics of camera-health observations, read by the camera rules.
const (
	// MetricUp is 1 while the camera answers RTSP, 0 when it is unreachable
	// or refuses; an offline camera's rule inhibits its quality alerts.
	MetricUp = "up"
	// MetricAuthFailed is 1 while the camera rejects its credentials.
	MetricAuthFailed = "auth_failed"
	// MetricStalled is 1 when a stream sample delivered no frames.
	MetricStalled = "stalled"
	// MetricFPS and MetricBitrate are a stream sample's measured frame rate
	// and bitrate in kbit/s.
	MetricFPS     = "fps"
	MetricBitrate = "bitrate_kbps"
)

// Each picture condition of a diagnosed stream sample is a metric of its
// own, named as the condition (signal_loss, frozen, blur, too_dark,
// too_bright, color_cast, noise, occlusion, scene_change): 1 when the
// diagnosis found it, 0 when it did not. Samples without a diagnosis
// report none of them, so an undiagnosed sample never clears a picture
// alert.

// CameraObservations turns one camera-health record into the observations
// the camera rules read. A liveness probe says only whether the camera
// answers and accepts its credentials; stalls, frame rate and bitrate come
// from stream samples alone, so a cheap probe never reads as a 0 fps stream.
func CameraObservations(r rtsp.HealthRecord) []Observation {
	obs := func(metric string, v float64) Observation {
		return Observation{Device: r.Camera, Type: "camera", Grid: r.Grid, Metric: metric, Value: v, TS: r.TS}
	}
	bit := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	down := r.Status == rtsp.StatusUnreachable || r.Status == rtsp.StatusRefused
	out := []Observation{obs(MetricUp, bit(!down))}
	if down {
		return out
	}
	out = append(out, obs(MetricAuthFailed, bit(r.Status == rtsp.StatusAuthFailed)))
	if r.Kind != rtsp.KindSample {
		return out
	}
	switch {
	case r.Status == rtsp.StatusStalled:
		out = append(out, obs(MetricStalled, 1))
	case r.Status.Up():
		out = append(out, obs(MetricStalled, 0), obs(MetricFPS, r.FPS), obs(MetricBitrate, r.BitrateKbps))
	}
	if r.Diagnosed() {
		for _, c := range rtsp.Conditions {
			out = append(out, obs(string(c), bit(r.Has(c))))
		}
	}
	return out
}
