package rtsp

import "math"

// picture is a decoded picture in planar YUV 4:2:0, with the levels the
// camera sent, scaled down for analysis.
type picture struct {
	w, h    int
	y, u, v []byte // w*h luma, (w/2)*(h/2) of each chroma
}

// frameMetrics are the measurements of one picture.
type frameMetrics struct {
	// luma and contrast are the mean and standard deviation of luma.
	luma, contrast float64
	// sharpness is the variance of the Laplacian of luma.
	sharpness float64
	// noise is the estimated standard deviation of noise in luma.
	noise float64
	// cast is the chroma's offset from grey over its spread.
	cast float64
}

// measure computes a picture's metrics.
func measure(p *picture) frameMetrics {
	var m frameMetrics
	m.luma, m.contrast = meanStd(p.y)
	m.sharpness = laplacianVariance(p)
	m.noise = noiseSigma(p)
	m.cast = colorCast(p)
	return m
}

// meanStd returns the mean and standard deviation of b.
func meanStd(b []byte) (mean, std float64) {
	if len(b) == 0 {
		return 0, 0
	}
	var sum, sq uint64
	for _, v := range b {
		sum += uint64(v)
		sq += uint64(v) * uint64(v)
	}
	n := float64(len(b))
	mean = float64(sum) / n
	return mean, math.Sqrt(max(float64(sq)/n-mean*mean, 0))
}

// laplacianVariance is the variance of the 4-neighbour Laplacian of luma: a
// sharp picture has strong second derivatives at its edges, a blurred one
// has none.
func laplacianVariance(p *picture) float64 {
	w, h, y := p.w, p.h, p.y
	if w < 3 || h < 3 {
		return 0
	}
	var sum, sq int64
	for row := 1; row < h-1; row++ {
		for i := row*w + 1; i < row*w+w-1; i++ {
			l := int64(y[i-1]) + int64(y[i+1]) + int64(y[i-w]) + int64(y[i+w]) - 4*int64(y[i])
			sum += l
			sq += l * l
		}
	}
	n := float64((w - 2) * (h - 2))
	mean := float64(sum) / n
	return float64(sq)/n - mean*mean
}

// noiseEdgeShare is the share of the pixels with the strongest gradients
// that the noise estimate leaves out as edges.
const noiseEdgeShare = 0.2

// noiseSigma estimates the noise of luma as Immerkær does ("Fast noise
// variance estimation", 1996) — the mean absolute response to a mask that
// cancels smooth content — over the pixels away from edges only (Tai and
// Yang, 2008), so that a sharp, busy scene does not read as noise.
func noiseSigma(p *picture) float64 {
	w, h, y := p.w, p.h, p.y
	if w < 3 || h < 3 {
		return 0
	}
	n := (w - 2) * (h - 2)
	resp := make([]int32, 0, n)
	grad := make([]int32, 0, n)
	var hist [2041]int // |Sobel x| + |Sobel y| of 8-bit luma is at most 2040
	for row := 1; row < h-1; row++ {
		for i := row*w + 1; i < row*w+w-1; i++ {
			a, b, c := int32(y[i-w-1]), int32(y[i-w]), int32(y[i-w+1])
			d, e, f := int32(y[i-1]), int32(y[i]), int32(y[i+1])
			g, hh, k := int32(y[i+w-1]), int32(y[i+w]), int32(y[i+w+1])
			r := a - 2*b + c - 2*d + 4*e - 2*f + g - 2*hh + k
			gx := (c + 2*f + k) - (a + 2*d + g)
			gy := (g + 2*hh + k) - (a + 2*b + c)
			gr := abs32(gx) + abs32(gy)
			resp = append(resp, abs32(r))
			grad = append(grad, gr)
			hist[gr]++
		}
	}
	// The gradient below which 1-noiseEdgeShare of the pixels lie.
	limit, seen := int32(0), 0
	for g, c := range hist {
		seen += c
		if float64(seen) >= (1-noiseEdgeShare)*float64(n) {
			limit = int32(g)
			break
		}
	}
	var sum, cnt int64
	for i, r := range resp {
		if grad[i] <= limit {
			sum += int64(r)
			cnt++
		}
	}
	if cnt == 0 {
		return 0
	}
	return math.Sqrt(math.Pi/2) / 6 * float64(sum) / float64(cnt)
}

func abs32(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}

// colorCast is the distance of the mean chroma from grey over the spread of
// the chroma (the "equivalent circle" test of cast detection): a natural
// picture's colours spread around grey, a tinted one's sit off to one side.
func colorCast(p *picture) float64 {
	mu, su := meanStd(p.u)
	mv, sv := meanStd(p.v)
	d := math.Hypot(mu-128, mv-128)
	spread := math.Max(math.Hypot(su, sv), 1)
	return d / spread
}

// Signature grid: a picture's luma is summarised as the mean and the
// spread of each of sigCols x sigRows blocks, the camera's reference for
// occlusion and scene changes.
const (
	sigCols = 16
	sigRows = 12
)

// signature is the block summary of a picture.
type signature struct {
	mean, std [sigCols * sigRows]float64
}

// signatureOf summarises p's luma.
func signatureOf(p *picture) *signature {
	s := &signature{}
	bw, bh := p.w/sigCols, p.h/sigRows
	if bw == 0 || bh == 0 {
		return s
	}
	block := make([]byte, 0, bw*bh)
	for r := range sigRows {
		for c := range sigCols {
			block = block[:0]
			for y := r * bh; y < (r+1)*bh; y++ {
				block = append(block, p.y[y*p.w+c*bw:y*p.w+(c+1)*bw]...)
			}
			s.mean[r*sigCols+c], s.std[r*sigCols+c] = meanStd(block)
		}
	}
	return s
}

// correlation is the Pearson correlation of the block means of a and b
// over the blocks where use is nil or true: 1 for the same scene, whatever
// its brightness; near 0 for another scene. Flat means correlate with
// nothing (0).
func correlation(a, b *signature, use []bool) float64 {
	var n, sa, sb float64
	for i := range a.mean {
		if use == nil || use[i] {
			n++
			sa += a.mean[i]
			sb += b.mean[i]
		}
	}
	if n < 2 {
		return 0
	}
	ma, mb := sa/n, sb/n
	var cov, va, vb float64
	for i := range a.mean {
		if use == nil || use[i] {
			da, db := a.mean[i]-ma, b.mean[i]-mb
			cov += da * db
			va += da * da
			vb += db * db
		}
	}
	if va == 0 || vb == 0 {
		return 0
	}
	return cov / math.Sqrt(va*vb)
}

// Occlusion blocks: a block is covered when its luma turned flat, having
// had texture or another brightness in the reference; without a reference,
// when it is flat and dark, as a lens cap, a hand or a bag is.
const (
	// flatStd is the luma spread below which a block is flat.
	flatStd = 3.0
	// changedLuma is the change of a block's mean luma from the reference
	// that, with flatness, marks it covered.
	changedLuma = 25.0
)

// occlusion finds the blocks of s that are covered, judged against ref
// when there is one. It returns their share, the mean luma of the other
// blocks and, with ref, how the other blocks correlate with it: an
// occlusion leaves the rest of the scene as it was, where a turned camera
// changes it all.
func occlusion(s, ref *signature, darkLuma float64) (share, restLuma, restCorr float64) {
	covered := 0
	var rest float64
	uncovered := make([]bool, len(s.mean))
	for i := range s.mean {
		flat := s.std[i] < flatStd
		var hit bool
		if ref != nil {
			hit = flat && (ref.std[i] >= 2*flatStd || math.Abs(s.mean[i]-ref.mean[i]) >= changedLuma)
		} else {
			hit = flat && s.mean[i] < darkLuma
		}
		if hit {
			covered++
		} else {
			uncovered[i] = true
			rest += s.mean[i]
		}
	}
	n := len(s.mean)
	if covered < n {
		restLuma = rest / float64(n-covered)
	}
	if ref != nil {
		restCorr = correlation(s, ref, uncovered)
	}
	return float64(covered) / float64(n), restLuma, restCorr
}

// thumbWidth is the widest thumbnail frozen pictures are compared on.
const thumbWidth = 160

// thumbnail is a picture's luma averaged down to at most thumbWidth wide.
type thumbnail struct {
	w, h int
	y    []byte
}

// thumbnailOf averages p's luma over f x f blocks, f the smallest factor
// that makes it at most thumbWidth wide.
func thumbnailOf(p *picture) *thumbnail {
	f := (p.w + thumbWidth - 1) / thumbWidth
	t := &thumbnail{w: p.w / f, h: p.h / f}
	t.y = make([]byte, t.w*t.h)
	for ty := range t.h {
		for tx := range t.w {
			sum := 0
			for y := ty * f; y < (ty+1)*f; y++ {
				for x := tx * f; x < (tx+1)*f; x++ {
					sum += int(p.y[y*p.w+x])
				}
			}
			t.y[ty*t.w+tx] = byte((sum + f*f/2) / (f * f))
		}
	}
	return t
}

// meanAbsDiff is the mean absolute luma difference of two thumbnails, and
// false when they are of different sizes.
func meanAbsDiff(a, b *thumbnail) (float64, bool) {
	if a == nil || b == nil || a.w != b.w || a.h != b.h || len(a.y) == 0 {
		return 0, false
	}
	var sum int
	for i := range a.y {
		d := int(a.y[i]) - int(b.y[i])
		if d < 0 {
			d = -d
		}
		sum += d
	}
	return float64(sum) / float64(len(a.y)), true
}
