package server

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
)

// GB28181Config is the gb28181.* section: the GB/T 28181 SIP registrar of
// the video network.
type GB28181Config struct {
	UDPListen         string        `koanf:"udp_listen" help:"GB/T 28181 SIP registrar UDP address (the standard port is :5060); empty opens none, and with tcp_listen empty too the registrar is off"`
	TCPListen         string        `koanf:"tcp_listen" help:"GB/T 28181 SIP registrar TCP address (the standard port is :5060); empty opens none"`
	Realm             string        `koanf:"realm" help:"SIP domain of the registrar's digest challenges, by convention the first 10 digits of gb28181.id"`
	ID                string        `koanf:"id" help:"the registrar's own 20-digit SIP id, which devices are configured with"`
	KeepaliveInterval time.Duration `koanf:"keepalive_interval" help:"keepalive period the devices are configured with"`
	KeepaliveMisses   int           `koanf:"keepalive_misses" help:"keepalives a device may miss in a row before it is offline"`
	MaxExpires        time.Duration `koanf:"max_expires" help:"longest registration granted; a device asking for longer gets this"`
	AuthFailures      int           `koanf:"auth_failures" help:"wrong digests for one device id from one source address within auth_failure_window that ban that pair for auth_failure_ban"`
	AuthFailureWindow time.Duration `koanf:"auth_failure_window" help:"window over which gb28181.auth_failures are counted"`
	AuthFailureBan    time.Duration `koanf:"auth_failure_ban" help:"how long a (source address, device id) pair is refused after gb28181.auth_failures, even with the right password"`
	MediaHost         string        `koanf:"media_host" help:"address of gridwatch that invited GB/T 28181 channels send their RTP to (the SDP offer's c= line); empty: the local address that routes to each device"`
	InviteTimeout     time.Duration `koanf:"invite_timeout" help:"longest wait for a device's answer to the INVITE of a stream sample"`
	StreamTimeout     time.Duration `koanf:"stream_timeout" help:"longest a GB/T 28181 stream sample may go without RTP, its first packet after the answer included"`
	MaxStreams        int           `koanf:"max_streams" help:"most GB/T 28181 streams sampled at once"`
	StreamTransport   string        `koanf:"stream_transport" help:"RTP transport offered to invited GB/T 28181 channels: udp, or tcp with gridwatch passive (the device connects)"`
}

// defaultGB28181 returns the registrar's defaults; without listen
// addresses it is off.
func defaultGB28181() GB28181Config {
	return GB28181Config{
		Realm:             gb28181.DefaultRealm,
		ID:                gb28181.DefaultID,
		KeepaliveInterval: gb28181.DefaultKeepaliveInterval,
		KeepaliveMisses:   gb28181.DefaultKeepaliveMisses,
		MaxExpires:        gb28181.DefaultMaxExpires,
		AuthFailures:      gb28181.DefaultAuthFailures,
		AuthFailureWindow: gb28181.DefaultAuthFailureWindow,
		AuthFailureBan:    gb28181.DefaultAuthFailureBan,
		InviteTimeout:     gb28181.DefaultInviteTimeout,
		StreamTimeout:     gb28181.DefaultStreamTimeout,
		MaxStreams:        gb28181.DefaultMaxStreams,
		StreamTransport:   "udp",
	}
}

// validate reports bad gb28181.* keys through bad.
func (c *GB28181Config) validate(bad func(key, format string, args ...any)) {
	for key, addr := range map[string]string{"gb28181.udp_listen": c.UDPListen, "gb28181.tcp_listen": c.TCPListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "must be host:port, such as :5060 (%v)", err)
		}
	}
	if !digits(c.ID, 20) {
		bad("gb28181.id", "must be 20 digits, not %q", c.ID)
	}
	if c.Realm == "" {
		bad("gb28181.realm", "must not be empty")
	}
	for key, d := range map[string]time.Duration{"gb28181.keepalive_interval": c.KeepaliveInterval, "gb28181.max_expires": c.MaxExpires,
		"gb28181.auth_failure_window": c.AuthFailureWindow, "gb28181.auth_failure_ban": c.AuthFailureBan,
		"gb28181.invite_timeout": c.InviteTimeout, "gb28181.stream_timeout": c.StreamTimeout} {
		if d <= 0 {
			bad(key, "must be > 0")
		}
	}
	if c.MaxExpires > 0 && c.MaxExpires < time.Minute {
		bad("gb28181.max_expires", "must be at least 1m")
	}
	if c.StreamTransport != "udp" && c.StreamTransport != "tcp" {
		bad("gb28181.stream_transport", "must be udp or tcp, not %q", c.StreamTransport)
	}
	if c.MediaHost != "" && net.ParseIP(c.MediaHost) == nil {
		bad("gb28181.media_host", "must be an IP address, not %q", c.MediaHost)
	}
	for key, v := range map[string]int{"gb28181.keepalive_misses": c.KeepaliveMisses, "gb28181.auth_failures": c.AuthFailures,
		"gb28181.max_streams": c.MaxStreams} {
		if v <= 0 {
			bad(key, "must be > 0")
		}
	}
}

// digits reports whether s is n decimal digits.
func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// KindGB28181 is the kind of the camera_health records of GB/T 28181
// presence: a registration, a keepalive, missed keepalives, a catalog
// entry. They stand beside the prober's liveness and sample records for a
// camera that has no RTSP URL.
const KindGB28181 rtsp.Kind = "gb28181"

// gbRegistrar is the registrar and the batcher of the camera records it
// makes.
type gbRegistrar struct {
	registrar *gb28181.Registrar
	batcher   *ingest.Batcher[rtsp.HealthRecord]
}

// startGB28181 starts the registrar when a listen address is set. Devices
// register against the registry's SIP passwords; their presence becomes
// device status, and for cameras without an RTSP URL camera_health
// records and camera observations, so the camera rules (camera_offline…)
// see them; alarms become observations of the camera_alarm rule.
func (s *Server) startGB28181(ctx context.Context) error {
	cfg := s.Config.GB28181
	if cfg.UDPListen == "" && cfg.TCPListen == "" {
		return nil
	}
	b := rtsp.NewBatcher(s.write)
	// The telemetry batcher's metrics are the registered ones; they are
	// labelled by table.
	if err := startBatcher(ctx, b, &s.Config, s.Logger, s.telemetry.Metrics); err != nil {
		return err
	}
	g := &gbRegistrar{batcher: b}
	g.registrar = &gb28181.Registrar{
		UDPListen:         cfg.UDPListen,
		TCPListen:         cfg.TCPListen,
		Realm:             cfg.Realm,
		ID:                cfg.ID,
		KeepaliveInterval: cfg.KeepaliveInterval,
		KeepaliveMisses:   cfg.KeepaliveMisses,
		MaxExpires:        cfg.MaxExpires,
		AuthFailures:      cfg.AuthFailures,
		AuthFailureWindow: cfg.AuthFailureWindow,
		AuthFailureBan:    cfg.AuthFailureBan,
		MediaHost:         cfg.MediaHost,
		InviteTimeout:     cfg.InviteTimeout,
		StreamTimeout:     cfg.StreamTimeout,
		MaxStreams:        cfg.MaxStreams,
		StreamTransport:   cfg.StreamTransport,
		Lookup:            s.registry.Lookup,
		OpenSecret:        s.secrets.Open,
		Presence:          func(p gb28181.Presence) error { return s.gbPresence(ctx, b, p) },
		Alarm:             s.gbAlarm,
		Now:               s.Now,
		Logger:            s.Logger.With("component", "gb28181"),
		Registerer:        s.metrics,
	}
	s.gb = g
	if err := g.registrar.Start(ctx); err != nil {
		s.gb = nil
		return errors.Join(err, b.Close())
	}
	return nil
}

// gbPresence turns a device's or channel's presence into its device
// status and, for a camera the prober does not reach (no RTSP URL), a
// camera_health record and the camera rules' observations. Ids the
// registry does not hold (a platform's channels that were never imported)
// are left to the registrar's own list.
func (s *Server) gbPresence(ctx context.Context, b *ingest.Batcher[rtsp.HealthRecord], p gb28181.Presence) error {
	d, ok := s.registry.Lookup(p.Device)
	if !ok {
		return nil
	}
	s.reportStatus(devices.StatusChange{Device: d.ID, Online: p.Online, At: p.At, Reason: "gb28181_" + p.Reason})
	if d.Type != "camera" || d.RTSPURL != "" {
		return nil
	}
	rec := rtsp.HealthRecord{
		TS: p.At.UnixMilli(), Camera: d.ID, Grid: d.Grid, Kind: KindGB28181, Transport: p.Transport,
		Status: rtsp.StatusOK, Detail: p.Reason, Error: p.Error,
	}
	if !p.Online {
		rec.Status = rtsp.StatusUnreachable
	}
	s.alerting.engine.Observe(alerts.CameraObservations(rec)...)
	_, err := b.Add(ctx, rec)
	return err
}

// gbAlarm hands an alarm to the alert engine as observations of the
// channel it is about, or of the device that sent it when the channel is
// not registered.
func (s *Server) gbAlarm(a gb28181.Alarm) error {
	d, ok := s.registry.Lookup(a.Source)
	if !ok {
		if d, ok = s.registry.Lookup(a.Device); !ok {
			return nil
		}
	}
	s.alerting.engine.Observe(alerts.GB28181AlarmObservations(d, a, s.Now())...)
	return nil
}

// targets returns the prober's targets among devs that only GB/T 28181
// reaches: cameras without an RTSP URL that are online as a registered
// device or a channel of one. They are sampled by INVITE (play).
func (g *gbRegistrar) targets(devs []devices.Device) []rtsp.Target {
	if g == nil {
		return nil
	}
	online := map[string]bool{}
	for _, d := range g.registrar.Devices() {
		if !d.Online {
			continue
		}
		online[d.ID] = true
		for _, ch := range d.Channels {
			online[ch.ID] = online[ch.ID] || ch.Online
		}
	}
	var out []rtsp.Target
	for _, d := range devs {
		if d.Type == "camera" && d.RTSPURL == "" && online[d.ID] {
			out = append(out, rtsp.Target{Camera: d.ID, Grid: d.Grid, Play: true})
		}
	}
	return out
}

// play is the prober's way to the stream of a GB/T 28181 camera: an
// INVITE of its id, whose failures are given the camera status they mean.
func (g *gbRegistrar) play(ctx context.Context, t rtsp.Target, frame func(rtsp.Frame)) (rtsp.PlayStats, error) {
	if g == nil {
		return rtsp.PlayStats{}, rtsp.ErrNoPlay
	}
	st, err := g.registrar.Play(ctx, t.Camera, func(f gb28181.Frame) {
		frame(rtsp.Frame{Codec: f.Codec, AU: f.AU, TS: f.TS, Bytes: f.Bytes})
	})
	stats := rtsp.PlayStats{Transport: st.Transport, LatencyMs: st.AnswerMs, Packets: st.Packets,
		PacketsLost: st.PacketsLost, JitterMs: st.JitterMs}
	for _, c := range []struct {
		err    error
		status rtsp.Status
	}{
		{gb28181.ErrNoChannel, rtsp.StatusUnreachable}, {gb28181.ErrNoAnswer, rtsp.StatusUnreachable},
		{gb28181.ErrInviteRefused, rtsp.StatusRefused}, {gb28181.ErrNoRTP, rtsp.StatusStalled},
		{gb28181.ErrStreamStopped, rtsp.StatusStalled}, {gb28181.ErrHungUp, rtsp.StatusStalled},
		{gb28181.ErrUnsupportedStream, rtsp.StatusUnsupportedCodec},
	} {
		if errors.Is(err, c.err) {
			return stats, &rtsp.StreamError{Status: c.status, Err: err}
		}
	}
	return stats, err
}

// closeGB28181 stops the registrar, then flushes its records.
func (s *Server) closeGB28181() error {
	if s.gb == nil {
		return nil
	}
	return errors.Join(s.gb.registrar.Close(), s.gb.batcher.Close())
}

// GB28181UDPAddr returns the registrar's UDP address, or "".
func (s *Server) GB28181UDPAddr() string {
	if s.gb == nil {
		return ""
	}
	return s.gb.registrar.UDPAddr()
}

// GB28181TCPAddr returns the registrar's TCP address, or "".
func (s *Server) GB28181TCPAddr() string {
	if s.gb == nil {
		return ""
	}
	return s.gb.registrar.TCPAddr()
}
