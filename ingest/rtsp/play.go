package rtsp

import (
	"context"
	"time"
)

// Frame is one access unit of a stream that a PlayFunc opened.
type Frame struct {
	// Codec is "H264" or "H265".
	Codec string
	// AU is the access unit's NAL units.
	AU [][]byte
	// TS is its 90 kHz presentation time, as an RTP timestamp.
	TS uint32
	// Bytes is what the frame took on the wire.
	Bytes int
}

// PlayStats is what a PlayFunc counted of a stream.
type PlayStats struct {
	// Transport is the stream's transport ("udp", "tcp").
	Transport string
	// LatencyMs is the time the camera took to accept the request.
	LatencyMs float64
	// Packets and PacketsLost count the RTP packets received and missing.
	Packets, PacketsLost uint64
	// JitterMs is the RTP interarrival jitter.
	JitterMs float64
}

// PlayFunc opens the stream of a target without an RTSP URL (Target.Play:
// a GB/T 28181 channel, invited over SIP), hands its frames to frame, in
// order, until ctx ends, then closes the stream. It returns what it
// counted and, unless ctx ended a healthy stream, why the stream failed;
// a *StreamError says what that means for the camera.
type PlayFunc func(ctx context.Context, t Target, frame func(Frame)) (PlayStats, error)

// StreamError is the failure of a stream opened by a PlayFunc with the
// status it means for the camera.
type StreamError struct {
	Status Status
	Err    error
}

func (e *StreamError) Error() string { return e.Err.Error() }

func (e *StreamError) Unwrap() error { return e.Err }

// playSample samples the stream of a Play target through p.Play: the same
// measurements, picture diagnosis and judgement as an RTSP sample, over
// SampleDuration of the stream's time. The wall-clock bound is
// SampleDuration plus two Timeouts: one for the stream to be set up, one
// for the silence a sample tolerates.
func (p *Prober) playSample(ctx context.Context, t Target, rec HealthRecord) HealthRecord {
	rec.Kind = KindSample // the liveness of a played camera is known elsewhere
	if p.Play == nil {
		rec.Status, rec.Error = StatusError, ErrNoPlay.Error()
		return rec
	}
	m := &meter{clockRate: 90000, full: make(chan struct{})}
	m.target = int64(p.SampleDuration.Seconds() * m.clockRate)
	if !p.Diagnosis.Disabled {
		m.keys = &keyframes{n: p.Diagnosis.Pictures, gap: m.target / int64(p.Diagnosis.Pictures)}
	}
	sctx, cancel := context.WithTimeout(ctx, p.SampleDuration+2*p.Timeout)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-m.full:
			cancel()
		case <-done:
		}
	}()
	m.play = time.Now()
	stats, err := p.Play(sctx, t, m.frame)
	end := time.Now()
	if ctx.Err() != nil {
		rec.Status, rec.Error = classify(ctx.Err()), ctx.Err().Error()
		return rec
	}
	rec.Transport, rec.LatencyMs = stats.Transport, stats.LatencyMs
	rec.Packets, rec.PacketsLost, rec.JitterMs = stats.Packets, stats.PacketsLost, stats.JitterMs
	if expected := rec.Packets + rec.PacketsLost; expected > 0 {
		rec.LossPct = 100 * float64(rec.PacketsLost) / float64(expected)
	}
	m.mu.Lock()
	unsupported := m.unsupported
	rec.Codec = m.codecName
	m.mu.Unlock()
	switch {
	case unsupported:
		rec.Status, rec.Error = StatusUnsupportedCodec, ErrUnsupportedCodec.Error()
		return rec
	case rec.Codec == "" && err != nil:
		rec.Status, rec.Error = classify(err), err.Error()
		return rec
	}
	m.fill(&rec)
	p.diagnose(&rec, m.sampledKeyframes())
	rec.Status, rec.Detail = m.judge(&rec, end)
	if err != nil {
		if rec.Status == StatusOK {
			rec.Status = StatusStalled
		}
		rec.Error = err.Error()
	}
	return rec
}

// frame accounts one access unit of a played stream; the first names
// the stream's codec.
func (m *meter) frame(f Frame) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.filled || m.unsupported {
		return
	}
	if m.codecName == "" {
		vc, ok := codecNamed(f.Codec)
		if !ok {
			m.unsupported = true
			return
		}
		m.codec, m.codecName = vc, f.Codec
		if m.keys != nil {
			m.keys.isSPS = vc.isSPS
		}
	}
	if f.Codec != m.codecName || len(f.AU) == 0 {
		return // a codec change mid-sample is not measured
	}
	m.auBytes += uint64(f.Bytes)
	m.accessUnit(f.AU, f.TS, time.Now())
}
