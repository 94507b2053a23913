package rtsp

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// scene is a synthetic 320x240 picture: a textured pattern that shift
// moves and flip turns around, mid-grey chroma.
func scene(shift int, flip bool) *picture {
	p := &picture{w: 320, h: 240, y: make([]byte, 320*240), u: make([]byte, 160*120), v: make([]byte, 160*120)}
	for y := range p.h {
		for x := range p.w {
			sx, sy := x+shift, y
			if flip {
				sx, sy = p.h-1-y, (x+shift)%p.h
			}
			v := 40 + (sx*3+sy)%120
			if (sx/20+sy/20)%2 == 0 {
				v += 80
			}
			p.y[y*p.w+x] = byte(v)
		}
	}
	for i := range p.u {
		p.u[i], p.v[i] = 128, 128
	}
	return p
}

// cover paints the upper rows of p flat at luma v.
func cover(p *picture, rows int, v byte) *picture {
	c := *p
	c.y = slices.Clone(p.y)
	for i := range rows * p.w {
		c.y[i] = v
	}
	return &c
}

func conds(v verdict) string {
	var s []string
	for _, c := range v.conditions {
		s = append(s, string(c))
	}
	return strings.Join(s, ",")
}

// TestJudgeAgainstMemory checks the conditions that need the camera's
// memory, which the farm's first samples lack: an occlusion of any
// brightness against the reference, a scene change, a camera that turned
// and was covered, and a frozen picture over samples of one keyframe.
func TestJudgeAgainstMemory(t *testing.T) {
	d := DefaultDiagnosis()
	ref := signatureOf(scene(0, false))
	prev := thumbnailOf(scene(0, false))
	for _, c := range []struct {
		name string
		pics []*picture
		mem  cameraMemory
		want string
	}{
		{"healthy, moving", []*picture{scene(0, false), scene(7, false)}, cameraMemory{ref: ref}, ""},
		{"bright cover against the reference", []*picture{cover(scene(0, false), 140, 230), cover(scene(7, false), 140, 230)}, cameraMemory{ref: ref}, "occlusion"},
		{"bright cover without a reference", []*picture{cover(scene(0, false), 140, 230), cover(scene(7, false), 140, 230)}, cameraMemory{}, ""},
		{"turned", []*picture{scene(0, true), scene(5, true)}, cameraMemory{ref: ref}, "scene_change"},
		{"turned and covered", []*picture{cover(scene(0, true), 140, 20), cover(scene(5, true), 140, 20)}, cameraMemory{ref: ref}, "scene_change"},
		{"one keyframe, as the last sample's", []*picture{scene(0, false)}, cameraMemory{ref: ref, thumb: prev}, "frozen"},
		{"one keyframe, moved on", []*picture{scene(3, false)}, cameraMemory{ref: ref, thumb: prev}, ""},
		{"one keyframe, nothing to compare", []*picture{scene(0, false)}, cameraMemory{}, ""},
	} {
		v := d.judgePictures(c.pics, c.mem)
		if got := conds(v); got != c.want {
			t.Errorf("%s: %q, want %q (diff %.2f corr %.2f occluded %.0f%%)", c.name, got, c.want, v.frameDiff, v.refCorrelation, v.occludedPct)
		}
	}
}

// clipKeyframes returns the keyframes of an Annex-B clip of the camera
// farm, each as Annex-B with the parameter sets before it.
func clipKeyframes(t testing.TB, name string) [][]byte {
	buf, err := os.ReadFile("../../simulators/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(buf); err != nil {
		t.Fatal(err)
	}
	h265 := strings.HasSuffix(name, ".h265")
	var keys [][]byte
	var pending [][]byte
	for _, n := range nalus {
		pending = append(pending, n)
		var vcl, key bool
		if h265 {
			typ := (n[0] >> 1) & 0x3f
			vcl, key = typ < 32, typ >= 16 && typ <= 21
		} else {
			typ := n[0] & 0x1f
			vcl, key = typ == 1 || typ == 5, typ == 5
		}
		if !vcl {
			continue
		}
		if key {
			b, err := h264.AnnexB(pending).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, b)
		}
		pending = nil
	}
	return keys
}

// BenchmarkDecodeKeyframe measures what the diagnosis of one sample costs
// to decode: a keyframe of the farm's clips in-process through libavcodec
// (cgo), beside the other well-trodden way, an ffmpeg subprocess fed the
// same keyframe that writes the raw picture. One op is one keyframe; the
// ratio of the two is why the prober links libavcodec.
func BenchmarkDecodeKeyframe(b *testing.B) {
	for _, clip := range []string{"cam-640x360.h264", "cam-640x360.h265"} {
		keys := clipKeyframes(b, clip)
		codec := "H264"
		if strings.HasSuffix(clip, ".h265") {
			codec = "H265"
		}
		b.Run("cgo/"+clip, func(b *testing.B) {
			d := DefaultDiagnosis()
			for i := 0; b.Loop(); i++ {
				pics, err := d.decodePictures(codec, keys[i%len(keys):i%len(keys)+1])
				if err != nil || len(pics) != 1 {
					b.Fatalf("%d pictures: %v", len(pics), err)
				}
			}
		})
		b.Run("ffmpeg/"+clip, func(b *testing.B) {
			if _, err := exec.LookPath("ffmpeg"); err != nil {
				b.Skip("ffmpeg not installed")
			}
			format := map[string]string{"H264": "h264", "H265": "hevc"}[codec]
			for i := 0; b.Loop(); i++ {
				cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", format, "-i", "pipe:0",
					"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1")
				cmd.Stdin = bytes.NewReader(keys[i%len(keys)])
				out, err := cmd.Output()
				if err != nil || len(out) != 640*360*3/2 {
					b.Fatalf("ffmpeg: %d bytes, %v", len(out), err)
				}
			}
		})
	}
}
