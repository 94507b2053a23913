package rtsp

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// Condition is a fault of the picture that the diagnosis of a stream
// sample finds (视频质量诊断).
type Condition string

// The picture conditions, each a column of camera_health (frozen is the
// frozen column) and an observation the camera rules read.
const (
	// CondSignalLoss means the pictures are uniform — a black or blue
	// "no signal" screen — or no keyframe of the sample decodes.
	CondSignalLoss Condition = "signal_loss"
	// CondFrozen means the picture does not change: consecutive keyframes,
	// or this sample's and the last one's, are nearly identical, or the
	// frames carry identical bytes.
	CondFrozen Condition = "frozen"
	// CondBlur means the picture lacks sharpness (variance of the
	// Laplacian), as out of focus or behind a fogged dome.
	CondBlur Condition = "blur"
	// CondTooDark and CondTooBright mean the mean luma is out of range.
	CondTooDark   Condition = "too_dark"
	CondTooBright Condition = "too_bright"
	// CondColorCast means the colours sit off grey to one side, as with a
	// failed IR-cut filter or a broken colour channel.
	CondColorCast Condition = "color_cast"
	// CondNoise means snow or heavy noise.
	CondNoise Condition = "noise"
	// CondOcclusion means a large part of the picture turned flat against
	// the camera's reference, or is flat and dark: a lens cap, a hand, a
	// bag, a sign hung in front.
	CondOcclusion Condition = "occlusion"
	// CondSceneChange means the picture no longer matches the camera's
	// reference: the camera was turned or moved.
	CondSceneChange Condition = "scene_change"
)

// Conditions lists every picture condition, in the order records list them.
var Conditions = []Condition{CondSignalLoss, CondFrozen, CondBlur, CondTooDark, CondTooBright,
	CondColorCast, CondNoise, CondOcclusion, CondSceneChange}

// Diagnosis holds the settings of the picture diagnosis: how many
// keyframes a sample decodes and the thresholds of each condition. The
// defaults are fitted to the camera farm's faulty and healthy pictures
// (ingest/rtsp TestDiagnosisGroundTruth) with margins both ways.
type Diagnosis struct {
	// Disabled turns the diagnosis off: samples decode nothing.
	Disabled bool `koanf:"disabled" help:"turn the picture diagnosis of stream samples off"`
	// Pictures is the most keyframes a sample decodes, spread over it. It
	// defaults to 4.
	Pictures int `koanf:"pictures" help:"most keyframes a stream sample decodes for the picture diagnosis, spread over the sample"`
	// MaxWidth is the widest a picture is analysed at; wider ones are
	// scaled down. It defaults to 640.
	MaxWidth int `koanf:"max_width" help:"pictures wider than this are scaled down to it for analysis"`
	// UniformContrast is the luma standard deviation below which a picture
	// is uniform: signal loss. It defaults to 4.
	UniformContrast float64 `koanf:"uniform_contrast" help:"luma standard deviation below which a picture is uniform (signal loss)"`
	// DarkLuma and BrightLuma bound the mean luma (0-255): below DarkLuma
	// is too dark, above BrightLuma too bright. They default to 40 and 220.
	DarkLuma   float64 `koanf:"dark_luma" help:"mean luma (0-255) below which a picture is too dark"`
	BrightLuma float64 `koanf:"bright_luma" help:"mean luma (0-255) above which a picture is too bright"`
	// BlurSharpness is the variance of the Laplacian below which a picture
	// is blurred. It defaults to 50.
	BlurSharpness float64 `koanf:"blur_sharpness" help:"variance of the Laplacian of luma below which a picture is blurred"`
	// NoiseSigma is the estimated noise (luma standard deviation) above
	// which a picture is noisy. It defaults to 2.
	NoiseSigma float64 `koanf:"noise_sigma" help:"estimated luma noise (standard deviation) above which a picture is noisy (snow)"`
	// CastRatio is the chroma's distance from grey over its spread above
	// which a picture has a colour cast. It defaults to 0.6.
	CastRatio float64 `koanf:"cast_ratio" help:"distance of the mean chroma from grey over the chroma's spread above which a picture has a colour cast"`
	// FrozenDiff is the mean absolute luma difference between consecutive
	// pictures below which the picture is frozen. It defaults to 0.6.
	FrozenDiff float64 `koanf:"frozen_diff" help:"mean absolute luma difference between consecutive keyframes below which the picture is frozen"`
	// OcclusionShare is the share of the picture's blocks covered above
	// which it is occluded. It defaults to 0.3.
	OcclusionShare float64 `koanf:"occlusion_share" help:"share of the picture that turned flat (against the reference) or is flat and dark, above which it is occluded"`
	// SceneCorrelation is the correlation with the camera's reference
	// below which the scene changed. It defaults to 0.5.
	SceneCorrelation float64 `koanf:"scene_correlation" help:"correlation of the picture with the camera's reference picture below which the scene changed (camera moved)"`
}

// Defaults of the diagnosis settings.
const (
	DefaultPictures         = 4
	DefaultMaxWidth         = 640
	DefaultUniformContrast  = 4
	DefaultDarkLuma         = 40
	DefaultBrightLuma       = 220
	DefaultBlurSharpness    = 50
	DefaultNoiseSigma       = 2
	DefaultCastRatio        = 0.6
	DefaultFrozenDiff       = 0.6
	DefaultOcclusionShare   = 0.3
	DefaultSceneCorrelation = 0.5
)

// DefaultDiagnosis returns the diagnosis defaults.
func DefaultDiagnosis() Diagnosis {
	return Diagnosis{Pictures: DefaultPictures, MaxWidth: DefaultMaxWidth, UniformContrast: DefaultUniformContrast,
		DarkLuma: DefaultDarkLuma, BrightLuma: DefaultBrightLuma, BlurSharpness: DefaultBlurSharpness,
		NoiseSigma: DefaultNoiseSigma, CastRatio: DefaultCastRatio, FrozenDiff: DefaultFrozenDiff,
		OcclusionShare: DefaultOcclusionShare, SceneCorrelation: DefaultSceneCorrelation}
}

// withDefaults fills in the settings left zero.
func (d Diagnosis) withDefaults() Diagnosis {
	def := DefaultDiagnosis()
	set := func(v *float64, dv float64) {
		if *v <= 0 {
			*v = dv
		}
	}
	if d.Pictures <= 0 {
		d.Pictures = def.Pictures
	}
	if d.MaxWidth < 16 {
		d.MaxWidth = def.MaxWidth
	}
	set(&d.UniformContrast, def.UniformContrast)
	set(&d.DarkLuma, def.DarkLuma)
	set(&d.BrightLuma, def.BrightLuma)
	set(&d.BlurSharpness, def.BlurSharpness)
	set(&d.NoiseSigma, def.NoiseSigma)
	set(&d.CastRatio, def.CastRatio)
	set(&d.FrozenDiff, def.FrozenDiff)
	set(&d.OcclusionShare, def.OcclusionShare)
	set(&d.SceneCorrelation, def.SceneCorrelation)
	return d
}

// Validate reports settings out of range through bad, with the key names
// under prefix (such as "cameras.diagnosis.").
func (d Diagnosis) Validate(prefix string, bad func(key, format string, args ...any)) {
	if d.Pictures < 1 {
		bad(prefix+"pictures", "must be >= 1")
	}
	if d.MaxWidth < 16 {
		bad(prefix+"max_width", "must be >= 16")
	}
	for key, v := range map[string]float64{"uniform_contrast": d.UniformContrast, "dark_luma": d.DarkLuma,
		"blur_sharpness": d.BlurSharpness, "noise_sigma": d.NoiseSigma, "cast_ratio": d.CastRatio,
		"frozen_diff": d.FrozenDiff} {
		if v <= 0 {
			bad(prefix+key, "must be > 0")
		}
	}
	if d.BrightLuma <= d.DarkLuma || d.BrightLuma > 255 {
		bad(prefix+"bright_luma", "must be above dark_luma and at most 255")
	}
	if d.OcclusionShare <= 0 || d.OcclusionShare > 1 {
		bad(prefix+"occlusion_share", "must be in (0, 1]")
	}
	if d.SceneCorrelation <= -1 || d.SceneCorrelation > 1 {
		bad(prefix+"scene_correlation", "must be in (-1, 1]")
	}
}

// keyframes collects the keyframes of a sample to decode after it: at most
// n, each at least gap RTP ticks after the last kept, as Annex-B with the
// session description's parameter sets in front where the keyframe lacks
// them.
type keyframes struct {
	n      int
	gap    int64
	params [][]byte
	isSPS  func([]byte) bool
	last   int64
	aus    [][]byte
}

// offer keeps au, a keyframe at RTP time rel, if it is due.
func (k *keyframes) offer(au [][]byte, rel int64) {
	if len(k.aus) >= k.n || (len(k.aus) > 0 && rel-k.last < k.gap) {
		return
	}
	nalus := au
	if !slices.ContainsFunc(au, func(n []byte) bool { return len(n) > 0 && k.isSPS(n) }) && len(k.params) > 0 {
		nalus = append(slices.Clip(k.params), au...)
	}
	b, err := h264.AnnexB(nalus).Marshal() // H.265 is framed the same way
	if err != nil {
		return
	}
	k.aus = append(k.aus, b)
	k.last = rel
}

// cameraMemory is what the diagnosis remembers of a camera between
// samples.
type cameraMemory struct {
	// thumb is the last picture of the previous sample, for a frozen
	// picture over samples of one keyframe.
	thumb *thumbnail
	// ref is the camera's reference: its last picture without a condition.
	ref *signature
}

// verdict is what diagnose finds in a sample's pictures.
type verdict struct {
	conditions []Condition
	pictures   int
	// Means of the pictures' metrics.
	luma, contrast, sharpness, noise, cast float64
	// frameDiff is the largest difference between consecutive pictures,
	// -1 when no two could be compared.
	frameDiff float64
	// refCorrelation is the last picture's correlation with the
	// reference, when referenced.
	refCorrelation float64
	referenced     bool
	occludedPct    float64
	// last is the last picture, signature and thumb its summaries.
	last      *picture
	signature *signature
	thumb     *thumbnail
}

// judgePictures classifies a sample's pictures, in stream order, against
// the camera's memory (which may be empty).
func (d Diagnosis) judgePictures(pics []*picture, mem cameraMemory) verdict {
	v := verdict{pictures: len(pics), frameDiff: -1}
	if len(pics) == 0 {
		return v
	}
	uniform := true
	thumbs := make([]*thumbnail, len(pics))
	for i, p := range pics {
		m := measure(p)
		v.luma += m.luma
		v.contrast += m.contrast
		v.sharpness += m.sharpness
		v.noise += m.noise
		v.cast += m.cast
		uniform = uniform && m.contrast < d.UniformContrast
		thumbs[i] = thumbnailOf(p)
	}
	// A sample of one keyframe is compared with the previous sample's last.
	pairs := [][2]*thumbnail{{mem.thumb, thumbs[0]}}
	if len(thumbs) > 1 {
		pairs = pairs[:0]
		for i := 1; i < len(thumbs); i++ {
			pairs = append(pairs, [2]*thumbnail{thumbs[i-1], thumbs[i]})
		}
	}
	for _, pair := range pairs {
		if diff, ok := meanAbsDiff(pair[0], pair[1]); ok {
			v.frameDiff = max(v.frameDiff, diff)
		}
	}
	v.thumb = thumbs[len(thumbs)-1]
	n := float64(len(pics))
	v.luma, v.contrast, v.sharpness, v.noise, v.cast = v.luma/n, v.contrast/n, v.sharpness/n, v.noise/n, v.cast/n
	v.last = pics[len(pics)-1]
	v.signature = signatureOf(v.last)
	share, restLuma, restCorr := occlusion(v.signature, mem.ref, d.DarkLuma)
	v.occludedPct = 100 * share
	if mem.ref != nil {
		v.referenced = true
		v.refCorrelation = correlation(v.signature, mem.ref, nil)
	}

	if uniform {
		v.conditions = []Condition{CondSignalLoss}
		return v
	}
	add := func(c Condition, ok bool) {
		if ok {
			v.conditions = append(v.conditions, c)
		}
	}
	dark, bright := v.luma < d.DarkLuma, v.luma > d.BrightLuma
	// Out of range exposure explains a flat, dull or discoloured picture;
	// an occlusion explains a changed scene and a loss of sharpness.
	exposed := !dark && !bright
	occluded := exposed && share >= d.OcclusionShare && restLuma >= d.DarkLuma &&
		(!v.referenced || restCorr >= d.SceneCorrelation)
	add(CondFrozen, v.frameDiff >= 0 && v.frameDiff < d.FrozenDiff)
	add(CondBlur, exposed && !occluded && v.sharpness < d.BlurSharpness)
	add(CondTooDark, dark)
	add(CondTooBright, bright)
	add(CondColorCast, exposed && v.cast > d.CastRatio)
	add(CondNoise, v.noise > d.NoiseSigma)
	add(CondOcclusion, occluded)
	add(CondSceneChange, exposed && !occluded && v.referenced && v.refCorrelation < d.SceneCorrelation)
	return v
}

// decodePictures decodes a sample's keyframes of codec.
func (d Diagnosis) decodePictures(codec string, keys [][]byte) ([]*picture, error) {
	dec, err := newPictureDecoder(codec, d.MaxWidth)
	if err != nil {
		return nil, err
	}
	defer dec.close()
	var pics []*picture
	var lastErr error
	for _, k := range keys {
		p, err := dec.decode(k)
		if err != nil {
			lastErr = err
			continue
		}
		if p != nil {
			pics = append(pics, p)
		}
	}
	// A decoder that reorders pictures holds the last ones back.
	for {
		p, err := dec.drain()
		if err != nil || p == nil {
			break
		}
		pics = append(pics, p)
	}
	if len(pics) == 0 && lastErr != nil {
		return nil, fmt.Errorf("decode %d keyframes: %w", len(keys), lastErr)
	}
	return pics, nil
}

// diagnose decodes the keyframes of a sample of rec's camera, classifies
// the pictures into rec, and remembers what the next sample is judged
// against; a picture without a condition becomes the camera's reference
// and still.
func (p *Prober) diagnose(rec *HealthRecord, keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	p.decoding <- struct{}{}
	pics, err := p.Diagnosis.decodePictures(rec.Codec, keys)
	<-p.decoding
	if err != nil {
		// The decoder is missing or out of memory: nothing is known of
		// the pictures, which is no finding about the camera. A build
		// without a decoder says so once.
		p.metrics.diagnosisFailed.WithLabelValues("decoder").Inc()
		if !errors.Is(err, ErrNoDecoder) {
			p.Logger.Warn("picture diagnosis failed", "camera", rec.Camera, "err", err)
		} else {
			p.noDecoder.Do(func() { p.Logger.Warn("no picture diagnosis: gridwatch was built without cgo (CGO_ENABLED=0)") })
		}
		return
	}
	p.metrics.pictures.Add(float64(len(pics)))
	mem := p.memoryOf(rec.Camera)
	v := p.Diagnosis.judgePictures(pics, mem)
	if v.pictures == 0 {
		// Keyframes came but none decodes: no video.
		v.conditions = []Condition{CondSignalLoss}
	}
	rec.Pictures = uint32(v.pictures)
	rec.Luma, rec.Contrast, rec.Sharpness, rec.NoiseSigma, rec.CastRatio = v.luma, v.contrast, v.sharpness, v.noise, v.cast
	rec.FrameDiff, rec.Referenced, rec.RefCorrelation, rec.OccludedPct = v.frameDiff, v.referenced, v.refCorrelation, v.occludedPct
	rec.Conditions = v.conditions
	// Frames of identical bytes are frozen whatever the pictures show,
	// unless they show no signal.
	if rec.Frozen && !rec.Has(CondFrozen) && !rec.Has(CondSignalLoss) {
		rec.Conditions = append(rec.Conditions, CondFrozen)
		slices.SortFunc(rec.Conditions, func(a, b Condition) int {
			return slices.Index(Conditions, a) - slices.Index(Conditions, b)
		})
	}
	rec.Frozen = rec.Has(CondFrozen)
	for _, c := range rec.Conditions {
		p.metrics.conditions.WithLabelValues(string(c)).Inc()
	}

	good := v.last != nil && len(rec.Conditions) == 0
	p.memMu.Lock()
	if m := p.memory[rec.Camera]; m != nil && v.thumb != nil {
		m.thumb = v.thumb
		if good {
			m.ref = v.signature
		}
	}
	p.memMu.Unlock()
	if good && p.Stills != nil {
		removed, err := p.Stills.put(rec.Camera, v.last, time.UnixMilli(rec.TS))
		p.metrics.stillsRemoved.Add(float64(removed))
		if err != nil {
			p.metrics.diagnosisFailed.WithLabelValues("still").Inc()
			p.Logger.Warn("camera still not stored", "camera", rec.Camera, "err", err)
		}
	}
}

// memoryOf returns a copy of what the diagnosis remembers of camera; a
// camera seen first since the start takes its still as its reference.
func (p *Prober) memoryOf(camera string) cameraMemory {
	p.memMu.Lock()
	m := p.memory[camera]
	p.memMu.Unlock()
	if m != nil {
		p.memMu.Lock()
		defer p.memMu.Unlock()
		return *m
	}
	m = &cameraMemory{}
	if p.Stills != nil {
		m.ref = p.Stills.reference(camera)
	}
	p.memMu.Lock()
	defer p.memMu.Unlock()
	if have := p.memory[camera]; have != nil {
		return *have
	}
	p.memory[camera] = m
	return *m
}

// forget drops what the diagnosis remembers of cameras not in keep, and
// their stills.
func (p *Prober) forget(keep map[string]bool) {
	p.memMu.Lock()
	for id := range p.memory {
		if !keep[id] {
			delete(p.memory, id)
		}
	}
	p.memMu.Unlock()
	if p.Stills != nil {
		if err := p.Stills.forget(func(id string) bool { return keep[id] }); err != nil {
			p.Logger.Warn("stills of removed cameras not deleted", "err", err)
		}
	}
}
