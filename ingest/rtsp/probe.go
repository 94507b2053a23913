package rtsp

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"github.com/gridwatch/gridwatch/devices"
)

// Target is one camera to probe.
type Target struct {
	// Camera and Grid identify the camera in records.
	Camera, Grid string
	// URL is the stream URL without credentials.
	URL string
	// User and Password are the RTSP credentials, if any. They go on the
	// wire only, never into records, logs or errors.
	User, Password string
	// Play is set for a camera without an RTSP URL whose stream the
	// Prober's Play opens (a GB/T 28181 channel). Such a camera is only
	// sampled: its liveness is known elsewhere (keepalives).
	Play bool
}

// TargetOf returns the probe target of a camera device.
func TargetOf(d devices.Device) Target {
	return Target{Camera: d.ID, Grid: d.Grid, URL: d.RTSPURL, User: d.RTSPUser, Password: d.RTSPPassword}
}

// Targets returns the targets of the devices of type "camera" with an RTSP
// URL.
func Targets(devs []devices.Device) []Target {
	var out []Target
	for _, d := range devs {
		if d.Type == "camera" && d.RTSPURL != "" {
			out = append(out, TargetOf(d))
		}
	}
	return out
}

// Thresholds of the sample classification.
const (
	// minFPSRatio is the share of the nominal frame rate below which a
	// stream is degraded ("low_fps").
	minFPSRatio = 0.5
	// maxLossPct is the RTP loss above which a stream is degraded ("loss").
	maxLossPct = 2.0
	// frozenShare is the share of identical consecutive frames above which
	// the picture is suspected frozen.
	frozenShare = 0.9
	// minFramesForFrozen is the fewest frames the frozen test judges.
	minFramesForFrozen = 5
	// stallFrames is how many frame intervals (nominal, or the stream's own
	// when longer) without a frame, at the end of a sample, make it stalled.
	stallFrames = 10
)

// probeOnce runs one probe of t without recheck.
func (p *Prober) probeOnce(ctx context.Context, t Target, kind Kind) HealthRecord {
	start := time.Now()
	rec := p.probe(ctx, t, kind, start)
	rec.DurationMs = msSince(start)
	return rec
}

// probe does the work of probeOnce.
func (p *Prober) probe(ctx context.Context, t Target, kind Kind, start time.Time) HealthRecord {
	rec := HealthRecord{TS: start.UnixMilli(), Camera: t.Camera, Grid: t.Grid, Kind: kind}
	if t.Play {
		return p.playSample(ctx, t, rec)
	}
	fail := func(err error) HealthRecord {
		rec.Status = classify(err)
		rec.Error = redact(err.Error(), t)
		return rec
	}

	if devices.IsSealed(t.Password) {
		if p.OpenSecret == nil {
			return fail(fmt.Errorf("%w: the prober has no secrets key", ErrSealedPassword))
		}
		plain, err := p.OpenSecret(t.Camera, t.Password)
		if err != nil {
			return fail(fmt.Errorf("%w: %w", ErrSealedPassword, err))
		}
		t.Password = plain // redact, in fail, now hides the plain one
	}
	u, err := base.ParseURL(t.URL)
	if err != nil {
		return fail(errors.Join(ErrBadURL, err))
	}
	if t.User != "" {
		u.User = url.UserPassword(t.User, t.Password)
	}
	var (
		reqAt, resAt time.Time
		mu           sync.Mutex
	)
	c := &gortsplib.Client{
		Scheme:       u.Scheme,
		Host:         u.Host,
		ReadTimeout:  p.Timeout,
		WriteTimeout: p.Timeout,
		UserAgent:    "gridwatch-prober",
		// The prober never records; RTCP receiver reports are enough.
		DisableRTCPSenderReports: true,
		OnRequest: func(*base.Request) {
			mu.Lock()
			if reqAt.IsZero() {
				reqAt = time.Now()
			}
			mu.Unlock()
		},
		OnResponse: func(*base.Response) {
			mu.Lock()
			if resAt.IsZero() {
				resAt = time.Now()
			}
			mu.Unlock()
		},
		// Losses and decode errors are counted from the client's
		// statistics; its default callbacks would log every one.
		OnPacketsLost:     func(uint64) {},
		OnDecodeError:     func(error) {},
		OnTransportSwitch: func(error) {},
	}
	if kind == KindSample {
		tr := gortsplib.TransportTCP
		rec.Transport = "tcp"
		if p.Transport == "udp" {
			tr = gortsplib.TransportUDP
			rec.Transport = "udp"
		}
		c.Transport = &tr
	}
	if err := c.Start2(); err != nil {
		return fail(err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(u)
	mu.Lock()
	if !resAt.IsZero() {
		rec.LatencyMs = float64(resAt.Sub(reqAt).Microseconds()) / 1000
	}
	mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fail(err)
	}
	medi, forma := videoFormat(desc)
	if medi == nil {
		return fail(ErrNoVideoTrack)
	}
	rec.Codec = forma.Codec()
	vc, ok := codecOf(forma)
	if !ok {
		return fail(ErrUnsupportedCodec)
	}
	m := meter{codec: vc, clockRate: float64(forma.ClockRate()), full: make(chan struct{})}
	m.target = int64(p.SampleDuration.Seconds() * m.clockRate)
	if !p.Diagnosis.Disabled {
		m.keys = &keyframes{n: p.Diagnosis.Pictures, gap: m.target / int64(p.Diagnosis.Pictures),
			params: vc.params, isSPS: vc.isSPS}
	}
	if vc.sps != nil {
		m.parseSPS(vc.sps)
	}
	if kind == KindLiveness {
		m.fill(&rec)
		rec.Status = StatusOK
		return rec
	}

	decode, err := vc.newDecoder()
	if err != nil {
		return fail(err)
	}
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		return fail(err)
	}
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) { m.packet(decode, pkt) })
	m.play = time.Now()
	if _, err := c.Play(nil); err != nil {
		return fail(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.Wait() }()
	// A sample is SampleDuration of video by its RTP time, as ffprobe's
	// -read_intervals is, so that a busy prober or a late burst of packets
	// measures the same frames; a camera that sends less waits out the
	// wall-clock bound of SampleDuration plus Timeout.
	timer := time.NewTimer(p.SampleDuration + p.Timeout)
	defer timer.Stop()
	var sampleErr error
	select {
	case <-m.full:
	case <-timer.C:
	case <-ctx.Done():
		sampleErr = ctx.Err()
	case sampleErr = <-waitErr:
	}
	end := time.Now()
	stats := c.Stats()
	c.Close()
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	m.fill(&rec)
	p.diagnose(&rec, m.sampledKeyframes())
	if stats != nil {
		rec.Packets = stats.Session.RTPPacketsReceived
		rec.PacketsLost = stats.Session.RTPPacketsLost
		if expected := rec.Packets + rec.PacketsLost; expected > 0 {
			rec.LossPct = 100 * float64(rec.PacketsLost) / float64(expected)
		}
		rec.JitterMs = stats.Session.RTPPacketsJitter / float64(forma.ClockRate()) * 1000
	}
	rec.Status, rec.Detail = m.judge(&rec, end)
	if sampleErr != nil && rec.Status == StatusOK {
		rec.Status = StatusStalled
	}
	if sampleErr != nil {
		rec.Error = redact(sampleErr.Error(), t)
	}
	return rec
}

// videoFormat returns the first video media of desc and its first format.
func videoFormat(desc *description.Session) (*description.Media, format.Format) {
	for _, m := range desc.Medias {
		if m.Type == description.MediaTypeVideo && len(m.Formats) > 0 {
			return m, m.Formats[0]
		}
	}
	return nil, nil
}

// meter measures an H.264 or H.265 stream from its RTP packets. The client
// calls packet from its reader goroutine while the probe reads the results
// after Close; mu orders the two.
type meter struct {
	codec videoCodec
	// codecName names codec for a played stream, whose first frame tells
	// it; unsupported is set when that is neither H.264 nor H.265.
	codecName   string
	unsupported bool
	play        time.Time // when PLAY was sent
	clockRate   float64   // of RTP timestamps
	// target is the sample's length in RTP ticks; full is closed once the
	// frames span it.
	target int64
	full   chan struct{}

	mu                    sync.Mutex
	spsSeen               bool
	profile               string
	width, height         uint32
	nominalFPS            float64
	frames, keyframes     uint64
	bytes                 uint64
	firstFrame, lastFrame time.Time
	firstKey              time.Time
	lastTS                uint32 // RTP timestamp of the last frame
	// relTS is the last frame's RTP time since the first frame's, unwrapped;
	// minTS and maxTS bound it over the sample. Presentation timestamps of
	// streams with B-frames go back and forth in decode order, so the span
	// is max - min, not last - first.
	relTS, minTS, maxTS int64
	filled              bool   // full is closed
	auBytes             uint64 // payload of the access unit being received
	prevHash            uint64
	identical           uint64
	// keyTS is the RTP time (as relTS) of the last keyframe; keyTicks sums
	// the RTP ticks between keyframes, keyIntervals counts them.
	keyTS, keyTicks int64
	keyIntervals    uint64
	// keys collects keyframes for the picture diagnosis; nil without one.
	keys *keyframes
}

// sampledKeyframes returns the keyframes collected for the diagnosis.
func (m *meter) sampledKeyframes() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		return nil
	}
	return m.keys.aus
}

// parseSPS takes the picture size, profile and nominal rate from an SPS.
func (m *meter) parseSPS(nalu []byte) {
	sp, err := m.codec.parseSPS(nalu)
	if err != nil {
		return
	}
	m.spsSeen = true
	m.profile, m.width, m.height, m.nominalFPS = sp.profile, sp.width, sp.height, sp.nominalFPS
}

// packet accounts one RTP packet and, when it completes an access unit,
// one frame.
func (m *meter) packet(decode func(*rtp.Packet) ([][]byte, error), pkt *rtp.Packet) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.filled {
		return
	}
	m.auBytes += uint64(len(pkt.Payload))
	au, err := decode(pkt)
	if err != nil {
		return // more packets needed, or a fragment lost with its frame
	}
	m.accessUnit(au, pkt.Timestamp, now)
}

// accessUnit accounts one frame at RTP time ts that arrived at now, its
// bytes in auBytes. m.mu is held.
func (m *meter) accessUnit(au [][]byte, ts uint32, now time.Time) {
	if m.firstFrame.IsZero() {
		m.firstFrame = now
	} else {
		rel := m.relTS + int64(int32(ts-m.lastTS)) // wraps at 2^32
		// The frame that reaches SampleDuration ends the sample and is
		// not counted, so that the sample holds whole groups of pictures
		// as ffprobe's -read_intervals does, and, with B-frames, no
		// picture is missing before the latest one counted.
		if max(m.maxTS, rel)-min(m.minTS, rel) >= m.target {
			m.filled = true
			close(m.full)
			return
		}
		m.relTS = rel
		m.minTS, m.maxTS = min(m.minTS, rel), max(m.maxTS, rel)
	}
	m.frames++
	m.bytes += m.auBytes
	m.auBytes = 0
	m.lastFrame, m.lastTS = now, ts
	h := fnv.New64a()
	for _, nalu := range au {
		if len(nalu) > 0 && !m.spsSeen && m.codec.isSPS(nalu) {
			m.parseSPS(nalu)
		}
		_, _ = h.Write(nalu)
	}
	if sum := h.Sum64(); m.frames > 1 && sum == m.prevHash {
		m.identical++
	} else {
		m.prevHash = sum
	}
	if m.codec.isRandomAccess(au) {
		m.keyframes++
		if m.firstKey.IsZero() {
			m.firstKey = now
		} else {
			m.keyTicks += m.relTS - m.keyTS
			m.keyIntervals++
		}
		m.keyTS = m.relTS
		if m.keys != nil {
			m.keys.offer(au, m.relTS)
		}
	}
}

// fill copies the measurements into rec.
func (m *meter) fill(rec *HealthRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec.Profile, rec.Width, rec.Height, rec.NominalFPS = m.profile, m.width, m.height, m.nominalFPS
	rec.Frames = m.frames
	rec.Frozen = m.frames >= minFramesForFrozen && float64(m.identical) >= frozenShare*float64(m.frames-1)
	if !m.firstFrame.IsZero() {
		rec.FirstFrameMs = msBetween(m.play, m.firstFrame)
	}
	if !m.firstKey.IsZero() {
		rec.FirstKeyframeMs = msBetween(m.play, m.firstKey)
	}
	// The frame rate, bitrate and keyframe interval come from RTP time,
	// which a UDP reorder buffer, a burst of late packets or a busy prober
	// does not distort.
	if span := float64(m.maxTS-m.minTS) / m.clockRate; m.frames > 1 && span > 0 {
		rec.FPS = float64(m.frames-1) / span
		rec.BitrateKbps = float64(m.bytes) * 8 / 1000 / span
	}
	if m.keyIntervals > 0 {
		rec.KeyframeIntervalS = float64(m.keyTicks) / float64(m.keyIntervals) / m.clockRate
	}
}

// judge classifies a finished sample that ended at end.
func (m *meter) judge(rec *HealthRecord, end time.Time) (Status, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frames == 0 {
		return StatusStalled, "no_frames"
	}
	// A frame interval is the nominal one, or the one the stream keeps
	// when it is longer (a camera at 10 fps that announces 25 is slow, not
	// stalled, after 400 ms without a frame).
	interval := time.Second
	if m.nominalFPS > 0 {
		interval = time.Duration(float64(time.Second) / m.nominalFPS)
	}
	if rec.FPS > 0 { // measured by fill
		interval = max(interval, time.Duration(float64(time.Second)/rec.FPS))
	}
	// Heavy loss over UDP looks like a stall at the end of a sample:
	// the client holds packets after a gap until its reorder buffer
	// fills. Frames that did arrive prove the stream alive, so loss wins.
	if end.Sub(m.lastFrame) > stallFrames*interval && rec.LossPct <= maxLossPct {
		return StatusStalled, "stopped"
	}
	var why []string
	if m.firstKey.IsZero() {
		why = append(why, "no_keyframe")
	}
	if m.nominalFPS > 0 && rec.FPS < minFPSRatio*m.nominalFPS {
		why = append(why, "low_fps")
	}
	if rec.LossPct > maxLossPct {
		why = append(why, "loss")
	}
	if rec.Frozen && !rec.Has(CondFrozen) {
		why = append(why, "frozen") // the bytes repeat; no picture was diagnosed
	}
	for _, c := range rec.Conditions {
		why = append(why, string(c))
	}
	if len(why) > 0 {
		return StatusDegraded, strings.Join(why, ",")
	}
	return StatusOK, ""
}

func msSince(t time.Time) float64 { return msBetween(t, time.Now()) }

func msBetween(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }
