package rtsp_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/ingest/rtsp/rtsptest"
	"github.com/gridwatch/gridwatch/simulators"
)

// healthy is the ground truth of a camera without a picture fault.
const healthy = rtsptest.Healthy

// resampleStalled samples tg again, up to three times, while rec did not
// deliver video or fell short of two decoded keyframes: a loaded machine
// may hold a camera's frames back (or starve its encoder) long enough for
// a sample to end stalled or at a low frame rate, short of keyframes,
// which says nothing of the diagnosis. It returns the last record and how
// many times it sampled again.
func resampleStalled(t *testing.T, p *rtsp.Prober, tg rtsp.Target, rec rtsp.HealthRecord) (rtsp.HealthRecord, int) {
	t.Helper()
	try := 0
	for ; (!rec.Status.Up() || rec.Pictures < 2) && try < 3; try++ {
		t.Logf("%s: status %s %q, %d pictures decoded, on this loaded machine; sampled again", rec.Camera, rec.Status, rec.Detail, rec.Pictures)
		rec = p.Check(context.Background(), tg, rtsp.KindSample)
	}
	return rec, try
}

// TestDiagnosisGroundTruth attacks the README's promise that the picture
// diagnosis finds each picture fault and nothing on healthy cameras: a farm
// of every picture fault in H.264 and H.265, and healthy cameras of both
// codecs and sizes, probed twice (the first sample is the cameras'
// reference: the moved camera turns away after it). It prints the
// confusion table.
func TestDiagnosisGroundTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("probes RTSP cameras and decodes their pictures")
	}
	var (
		cams  []simulators.Camera
		truth []string
	)
	for _, codec := range []string{simulators.CodecH264, simulators.CodecH265} {
		for _, res := range []string{"320x240", "640x360"} {
			cams = append(cams, simulators.Camera{Path: "healthy-" + res + "-" + codec, Codec: codec, Resolution: res})
			truth = append(truth, healthy)
		}
		for _, f := range slices.Sorted(maps.Keys(simulators.PictureFaults)) {
			cams = append(cams, simulators.Camera{Path: string(f) + "-" + codec, Codec: codec, Fault: f})
			truth = append(truth, simulators.PictureFaults[f])
		}
	}
	_, targets := startFarm(t, false, cams...)
	stills := &rtsp.Stills{Dir: t.TempDir()}
	p := testProber("tcp")
	// 2.2 s holds three keyframes at the farm's one a second.
	p.SampleDuration = 2200 * time.Millisecond
	p.Stills = stills
	p.Targets = func() []rtsp.Target { return targets }
	table := rtsptest.Confusion{}
	// A moved camera whose first sample stalled turned away at the next:
	// its reference is lost, and nothing can be asserted of it.
	lost := map[int]bool{}
	for sweep := 1; sweep <= 2; sweep++ {
		for i, rec := range p.Sweep(context.Background(), rtsp.KindSample) {
			rec, again := resampleStalled(t, p, targets[i], rec)
			if cams[i].Fault == simulators.FaultMoved && sweep == 1 && again > 0 {
				t.Logf("%s: its reference sample stalled and it turned away at the next; not judged", rec.Camera)
				lost[i] = true
			}
			if lost[i] {
				continue
			}
			want := truth[i]
			if cams[i].Fault == simulators.FaultMoved && sweep == 1 {
				want = healthy // the reference, before the camera is turned
			}
			if !table.Add(want, rec.Conditions) {
				t.Errorf("sweep %d, %s: conditions %v, want %s (status %s %q, %d pictures, luma %.0f contrast %.1f sharpness %.0f noise %.2f cast %.2f diff %.2f corr %.2f occluded %.0f%%)",
					sweep, rec.Camera, rec.Conditions, want, rec.Status, rec.Detail, rec.Pictures, rec.Luma, rec.Contrast,
					rec.Sharpness, rec.NoiseSigma, rec.CastRatio, rec.FrameDiff, rec.RefCorrelation, rec.OccludedPct)
			}
			switch {
			case want != healthy && (rec.Status != rtsp.StatusDegraded || !strings.Contains(rec.Detail, want)):
				t.Errorf("sweep %d, %s: status %s %q, want degraded with %s", sweep, rec.Camera, rec.Status, rec.Detail, want)
			case want == healthy && rec.Status != rtsp.StatusOK:
				t.Errorf("sweep %d, %s: status %s %q, want ok", sweep, rec.Camera, rec.Status, rec.Detail)
			}
			if rec.Pictures < 2 {
				t.Errorf("sweep %d, %s: %d pictures decoded, want the sample's keyframes", sweep, rec.Camera, rec.Pictures)
			}
		}
	}
	t.Logf("picture diagnosis of the camera farm, 2 samples per camera:\n%s", table.Table())
	// Only healthy pictures become stills, so the faulty cameras' stay
	// out, and the moved camera keeps the picture it was set up with.
	for i, c := range cams {
		if lost[i] {
			continue
		}
		_, _, err := stills.Still(c.Path)
		if hasStill := err == nil; hasStill != (truth[i] == healthy || c.Fault == simulators.FaultMoved) {
			t.Errorf("%s: still stored %v (%v)", c.Path, hasStill, err)
		}
	}
}
