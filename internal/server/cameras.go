package server

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
)

// CamerasConfig is the cameras.* section: the RTSP prober of the video
// network.
type CamerasConfig struct {
	Enabled          bool          `koanf:"enabled" help:"probe the registry's cameras (devices of type camera with an rtsp_url; without one, sample those registered over GB/T 28181 by INVITE)"`
	LivenessInterval time.Duration `koanf:"liveness_interval" help:"time between cheap liveness probes (DESCRIBE) of a camera"`
	SampleInterval   time.Duration `koanf:"sample_interval" help:"time between stream samples (SETUP+PLAY) of a camera"`
	SampleDuration   time.Duration `koanf:"sample_duration" help:"how long a stream sample plays"`
	Timeout          time.Duration `koanf:"timeout" help:"bound of the connection and of each RTSP request; longest silence a sample tolerates"`
	RecheckDelay     time.Duration `koanf:"recheck_delay" help:"wait before a failed probe is repeated, before the camera is declared down"`
	Concurrency      int           `koanf:"concurrency" help:"most camera probes in flight"`
	Transport        string        `koanf:"transport" help:"RTP transport of stream samples: tcp or udp"`
	StillWidth       int           `koanf:"still_width" help:"widest a camera's still (its last good picture, JPEG under data_dir/camera-stills) is, in pixels"`
	StillsMaxBytes   int           `koanf:"stills_max_bytes" help:"bound of the camera stills under data_dir/camera-stills; past it the stills written longest ago are removed"`
	// Diagnosis is the picture diagnosis of stream samples.
	Diagnosis rtsp.Diagnosis `koanf:"diagnosis"`
}

// defaultCameras returns the prober's defaults.
func defaultCameras() CamerasConfig {
	return CamerasConfig{
		Enabled:          true,
		LivenessInterval: rtsp.DefaultLivenessInterval,
		SampleInterval:   rtsp.DefaultSampleInterval,
		SampleDuration:   rtsp.DefaultSampleDuration,
		Timeout:          rtsp.DefaultTimeout,
		RecheckDelay:     rtsp.DefaultRecheckDelay,
		Concurrency:      rtsp.DefaultConcurrency,
		Transport:        rtsp.DefaultTransport,
		StillWidth:       rtsp.DefaultStillWidth,
		StillsMaxBytes:   rtsp.DefaultStillMaxBytes,
		Diagnosis:        rtsp.DefaultDiagnosis(),
	}
}

// validate reports bad cameras.* keys through bad.
func (c *CamerasConfig) validate(bad func(key, format string, args ...any)) {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"cameras.liveness_interval", c.LivenessInterval},
		{"cameras.sample_interval", c.SampleInterval},
		{"cameras.sample_duration", c.SampleDuration},
		{"cameras.timeout", c.Timeout},
		{"cameras.recheck_delay", c.RecheckDelay},
	} {
		if d.v <= 0 {
			bad(d.key, "must be > 0")
		}
	}
	if c.Concurrency <= 0 {
		bad("cameras.concurrency", "must be > 0")
	}
	if c.Transport != "tcp" && c.Transport != "udp" {
		bad("cameras.transport", "must be tcp or udp, not %q", c.Transport)
	}
	if c.StillWidth < 16 {
		bad("cameras.still_width", "must be >= 16")
	}
	if c.StillsMaxBytes < 1<<20 {
		bad("cameras.stills_max_bytes", "must be >= 1 MiB (%d)", 1<<20)
	}
	c.Diagnosis.Validate("cameras.diagnosis.", bad)
}

// cameraHealth is the prober and the batcher of its records.
type cameraHealth struct {
	prober  *rtsp.Prober
	batcher interface{ Close() error }
}

// startCameras starts the camera prober, whose records go through their own
// batcher into the same writer as telemetry.
func (s *Server) startCameras(ctx context.Context) error {
	cfg := s.Config.Cameras
	if !cfg.Enabled {
		return nil
	}
	s.stills = &rtsp.Stills{Dir: filepath.Join(s.Config.DataDir, "camera-stills"), Width: cfg.StillWidth,
		MaxBytes: int64(cfg.StillsMaxBytes)}
	b := rtsp.NewBatcher(s.write)
	// The telemetry batcher's metrics are the registered ones; they are
	// labelled by table.
	if err := startBatcher(ctx, b, &s.Config, s.Logger, s.telemetry.Metrics); err != nil {
		return err
	}
	p := &rtsp.Prober{
		Targets: func() []rtsp.Target {
			cams := s.registry.OfType("camera")
			return append(rtsp.Targets(cams), s.gb.targets(cams)...)
		},
		Play:       s.gb.play,
		OpenSecret: s.secrets.Open,
		Record: func(ctx context.Context, rec rtsp.HealthRecord) error {
			_, err := b.Add(ctx, rec)
			return err
		},
		LivenessInterval: cfg.LivenessInterval,
		SampleInterval:   cfg.SampleInterval,
		SampleDuration:   cfg.SampleDuration,
		Timeout:          cfg.Timeout,
		RecheckDelay:     cfg.RecheckDelay,
		Concurrency:      cfg.Concurrency,
		Transport:        cfg.Transport,
		Diagnosis:        cfg.Diagnosis,
		Stills:           s.stills,
		Logger:           s.Logger.With("component", "camera-prober"),
		Registerer:       s.metrics,
	}
	p.Observe = func(rec rtsp.HealthRecord) { s.alerting.engine.Observe(alerts.CameraObservations(rec)...) }
	s.cameras = &cameraHealth{prober: p, batcher: b}
	if err := p.Start(ctx); err != nil {
		return errors.Join(err, b.Close())
	}
	return nil
}

// closeCameras stops the prober, then flushes its records.
func (s *Server) closeCameras() error {
	if s.cameras == nil {
		return nil
	}
	return errors.Join(s.cameras.prober.Close(), s.cameras.batcher.Close())
}
