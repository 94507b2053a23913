package rtsp

import (
	"testing"
	"time"
)

// TestSlowStreamIsNotStalled: a camera sending 10 fps where its SPS
// announces 25 whose last frame came 500 ms before the sample's end is
// slow, not stalled (ten of its own intervals are 1 s); the same gap in a
// stream keeping 25 fps is ten intervals and more: stalled, stopped.
func TestSlowStreamIsNotStalled(t *testing.T) {
	end := time.Now()
	for _, c := range []struct {
		fps     float64
		stalled bool
	}{{10, false}, {25, true}} {
		m := &meter{nominalFPS: 25, frames: 30, lastFrame: end.Add(-500 * time.Millisecond), firstKey: end.Add(-3 * time.Second)}
		rec := HealthRecord{FPS: c.fps}
		status, detail := m.judge(&rec, end)
		if got := status == StatusStalled && detail == "stopped"; got != c.stalled {
			t.Errorf("%v fps measured, 25 announced, 500 ms since the last frame: %s (%s), want stalled %v", c.fps, status, detail, c.stalled)
		}
	}
}
