package simulators

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/auth"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"

	"github.com/gridwatch/gridwatch/devices"
)

// CameraFault is a fault a simulated camera can be given.
type CameraFault string

// The camera faults. Each one maps onto the status the prober must report.
const (
	// FaultNone serves the clip normally.
	FaultNone CameraFault = ""
	// FaultOffline points the camera's URL at a port that accepts TCP
	// connections and never answers, like a hung camera.
	FaultOffline CameraFault = "offline"
	// FaultRefusing answers every request with 503 Service Unavailable, like
	// a camera out of sessions.
	FaultRefusing CameraFault = "refusing"
	// FaultAuth requires credentials; the camera's URL carries the right ones.
	FaultAuth CameraFault = "auth"
	// FaultWrongAuth requires credentials; the camera's URL carries a wrong
	// password.
	FaultWrongAuth CameraFault = "wrong_auth"
	// FaultNotFound serves no stream under the camera's path.
	FaultNotFound CameraFault = "not_found"
	// FaultStall stops sending frames StallAfter after PLAY (and after
	// its first few frames).
	FaultStall CameraFault = "stall"
	// FaultLowFPS sends LowFPS frames a second while the SPS announces FPS.
	FaultLowFPS CameraFault = "low_fps"
	// FaultLoss drops LossPct percent of the RTP packets.
	FaultLoss CameraFault = "loss"
	// FaultFrozen shows one picture forever, encoded again and again, so
	// that the frames' bytes differ but the pictures do not.
	FaultFrozen CameraFault = "frozen"
	// FaultCodecChange announces Motion JPEG, a codec the prober does not
	// measure, as after a firmware reconfiguration; it sends no frames.
	FaultCodecChange CameraFault = "codec_change"
	// FaultNoVideo serves an audio-only description.
	FaultNoVideo CameraFault = "no_video"
	// FaultSlow answers every request SlowBy late, like an overloaded
	// camera or link; its video is normal.
	FaultSlow CameraFault = "slow"

	// The picture faults stream normally but show a faulty picture; each
	// maps onto the picture condition the diagnosis must find (see
	// PictureFaults). They are served at 320x240 only.

	// FaultBlack shows a uniform black picture: signal loss.
	FaultBlack CameraFault = "black"
	// FaultBlurred shows the picture out of focus: blur.
	FaultBlurred CameraFault = "blurred"
	// FaultTinted shows the picture desaturated and pushed to orange:
	// colour cast.
	FaultTinted CameraFault = "tinted"
	// FaultNoisy shows the picture under heavy noise: snow.
	FaultNoisy CameraFault = "noisy"
	// FaultCovered shows the upper 60% of the picture behind a dark, flat
	// cover: occlusion.
	FaultCovered CameraFault = "covered"
	// FaultDark and FaultBright show it under- and overexposed.
	FaultDark   CameraFault = "dark"
	FaultBright CameraFault = "bright"
	// FaultMoved shows the normal picture to the first PLAY and another
	// scene to every later one, as a camera turned away after it was
	// set up: a scene change from the second sample on.
	FaultMoved CameraFault = "moved"
)

// PictureFaults maps each picture fault onto the picture condition
// (ingest/rtsp.Condition) it shows: the ground truth of the diagnosis.
var PictureFaults = map[CameraFault]string{
	FaultFrozen: "frozen", FaultBlack: "signal_loss", FaultBlurred: "blur", FaultTinted: "color_cast",
	FaultNoisy: "noise", FaultCovered: "occlusion", FaultDark: "too_dark", FaultBright: "too_bright",
	FaultMoved: "scene_change",
}

// The codecs a camera serves, named as in session descriptions.
const (
	CodecH264 = "H264"
	CodecH265 = "H265"
)

// CameraFaults lists every fault but FaultNone.
var CameraFaults = []CameraFault{FaultOffline, FaultRefusing, FaultAuth, FaultWrongAuth, FaultNotFound,
	FaultStall, FaultLowFPS, FaultLoss, FaultFrozen, FaultCodecChange, FaultNoVideo, FaultSlow,
	FaultBlack, FaultBlurred, FaultTinted, FaultNoisy, FaultCovered, FaultDark, FaultBright, FaultMoved}

// Camera is one simulated camera.
type Camera struct {
	// Path is the stream path, such as "cam0001". Required, unique.
	Path string
	// Resolution picks the clip: "320x240" or "640x360". It defaults to
	// "320x240".
	Resolution string
	// Codec is the video codec: CodecH264 or CodecH265. It defaults to
	// CodecH264.
	Codec string
	// FPS is the frame rate frames are sent at. It defaults to 25, the
	// rate the clips' SPS announces.
	FPS float64
	// Fault is the injected fault; it defaults to none.
	Fault CameraFault
	// StallAfter is when FaultStall stops the frames. It defaults to 500ms.
	StallAfter time.Duration
	// LowFPS is FaultLowFPS's frame rate. It defaults to FPS/5.
	LowFPS float64
	// LossPct is FaultLoss's share of dropped packets. It defaults to 20.
	LossPct float64
	// SlowBy is how late FaultSlow answers. It defaults to 500ms.
	SlowBy time.Duration
}

// CameraFarm serves simulated cameras from one RTSP server: real H.264 or
// H.265 from a small test-pattern clip, looped with continuous timestamps, each camera
// under its own path with its own fault. Every PLAY gets its own paced
// stream, so a camera's fault timeline starts at each session's PLAY.
//
// Set the settings, then Start; Close stops everything and is safe twice.
type CameraFarm struct {
	// Cameras are the cameras to serve. Required.
	Cameras []Camera
	// Listen is the RTSP TCP address. It defaults to "127.0.0.1:0".
	Listen string
	// UDP also serves the UDP transport from a pair of free ports next to
	// Listen's host. It defaults to TCP only.
	UDP bool
	// User and Password are the credentials of FaultAuth and FaultWrongAuth
	// cameras. They default to "admin" and "farm-secret".
	User, Password string
	// BasicAuth offers only basic authentication. It defaults to offering
	// basic and digest.
	BasicAuth bool
	// Logger defaults to discarding.
	Logger *slog.Logger

	server   *gortsplib.Server
	ln       net.Listener
	hole     net.Listener
	cameras  map[string]*farmCamera
	mu       sync.Mutex
	sessions map[*gortsplib.ServerSession]*farmSession
	// playing holds the sessions whose PLAY is being answered on a
	// connection: their pacers start with the answer (OnResponse).
	playing   map[*gortsplib.ServerConn]*farmSession
	holeConns []net.Conn
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// farmCamera is a camera with its clip and description stream.
type farmCamera struct {
	Camera
	clip     *clip
	describe *gortsplib.ServerStream
	// moved is FaultMoved's other scene; plays counts the PLAYs.
	moved *clip
	plays atomic.Int64
}

// farmSession is one reader's paced stream.
type farmSession struct {
	cam    *farmCamera
	stream *gortsplib.ServerStream
	cancel context.CancelFunc
}

// Start loads the clips and starts serving.
func (f *CameraFarm) Start(ctx context.Context) error {
	if len(f.Cameras) == 0 {
		return ErrNoCameras
	}
	if f.Listen == "" {
		f.Listen = "127.0.0.1:0"
	}
	if f.User == "" {
		f.User, f.Password = "admin", "farm-secret"
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	f.sessions = map[*gortsplib.ServerSession]*farmSession{}
	f.playing = map[*gortsplib.ServerConn]*farmSession{}
	f.cameras = make(map[string]*farmCamera, len(f.Cameras))
	clips := map[string]*clip{}
	for i := range f.Cameras {
		c := &f.Cameras[i]
		if err := c.defaults(); err != nil {
			return err
		}
		if _, dup := f.cameras[c.Path]; dup {
			return fmt.Errorf("%w: camera path %q twice", ErrBadCamera, c.Path)
		}
		load := func(name string) (*clip, error) {
			if cl := clips[name]; cl != nil {
				return cl, nil
			}
			cl, err := loadClip(name)
			clips[name] = cl
			return cl, err
		}
		fc := &farmCamera{Camera: *c}
		var err error
		if fc.clip, err = load(c.clipName()); err != nil {
			return err
		}
		if c.Fault == FaultMoved {
			if fc.moved, err = load(c.faultClip("moved")); err != nil {
				return err
			}
		}
		f.cameras[c.Path] = fc
	}

	f.server = &gortsplib.Server{
		Handler:     (*farmHandler)(f),
		RTSPAddress: f.Listen,
		// Listen keeps the listener, for the port chosen for ":0".
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			f.ln = ln
			return ln, err
		},
	}
	if f.BasicAuth {
		f.server.AuthMethods = []auth.VerifyMethod{auth.VerifyMethodBasic}
	}
	if err := f.startServer(); err != nil {
		return err
	}
	// The description streams need the started server; a DESCRIBE reads
	// them under mu.
	f.mu.Lock()
	for _, c := range f.cameras {
		if c.Fault == FaultOffline {
			continue
		}
		c.describe = &gortsplib.ServerStream{Server: f.server, Desc: c.description()}
		if err := c.describe.Initialize(); err != nil {
			f.mu.Unlock()
			f.Close()
			return fmt.Errorf("camera %s: %w", c.Path, err)
		}
	}
	f.mu.Unlock()
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Close()
		return fmt.Errorf("camera farm: offline listener: %w", err)
	}
	f.hole = hole
	f.wg.Add(1)
	go f.holdConns()
	return nil
}

// startServer starts the RTSP server, on a free even/odd UDP port pair when
// UDP is on; a pair taken between the probe and the bind is retried.
func (f *CameraFarm) startServer() error {
	if !f.UDP {
		if err := f.server.Start(); err != nil {
			return fmt.Errorf("camera farm: listen %s: %w", f.Listen, err)
		}
		return nil
	}
	host, _, err := net.SplitHostPort(f.Listen)
	if err != nil {
		return fmt.Errorf("camera farm: listen %q: %w", f.Listen, err)
	}
	var lastErr error
	for range 20 {
		rtpPort, err := freeUDPPair(host)
		if err != nil {
			return err
		}
		f.server.UDPRTPAddress = net.JoinHostPort(host, strconv.Itoa(rtpPort))
		f.server.UDPRTCPAddress = net.JoinHostPort(host, strconv.Itoa(rtpPort+1))
		if lastErr = f.server.Start(); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("camera farm: listen %s with UDP: %w", f.Listen, lastErr)
}

// freeUDPPair finds an even UDP port whose successor is free too.
func freeUDPPair(host string) (int, error) {
	for range 100 {
		a, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("camera farm: UDP port: %w", err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		a.Close()
		if port%2 != 0 || port > 65534 {
			continue
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port+1)))
		if err != nil {
			continue
		}
		b.Close()
		return port, nil
	}
	return 0, fmt.Errorf("camera farm: no free UDP port pair on %s", host)
}

// holdConns accepts connections for offline cameras and never answers.
func (f *CameraFarm) holdConns() {
	defer f.wg.Done()
	for {
		c, err := f.hole.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.holeConns = append(f.holeConns, c)
		f.mu.Unlock()
	}
}

// Addr returns the RTSP server's address.
func (f *CameraFarm) Addr() string { return f.ln.Addr().String() }

// URL returns camera i's URL, with the credentials its fault calls for:
// the right ones for FaultAuth, a wrong password for FaultWrongAuth.
func (f *CameraFarm) URL(i int) string {
	c := f.Cameras[i]
	host := f.Addr()
	if c.Fault == FaultOffline {
		host = f.hole.Addr().String()
	}
	u := url.URL{Scheme: "rtsp", Host: host, Path: "/" + c.Path}
	switch c.Fault {
	case FaultAuth:
		u.User = url.UserPassword(f.User, f.Password)
	case FaultWrongAuth:
		u.User = url.UserPassword(f.User, "wrong-"+f.Password)
	}
	return u.String()
}

// Devices returns the farm's cameras as camera devices of grid, with ids
// prefix + path and the credentials split out of their URLs, as `gridwatch
// devices import` keeps them. name gives each one's name.
func (f *CameraFarm) Devices(prefix, grid string, name func(Camera) string) ([]devices.Device, error) {
	devs := make([]devices.Device, len(f.Cameras))
	for i, c := range f.Cameras {
		u, err := url.Parse(f.URL(i))
		if err != nil {
			return nil, fmt.Errorf("camera %s: %w", c.Path, err)
		}
		d := devices.Device{ID: prefix + c.Path, Type: "camera", Grid: grid, Name: name(c)}
		if u.User != nil {
			d.RTSPUser = u.User.Username()
			d.RTSPPassword, _ = u.User.Password()
			u.User = nil
		}
		d.RTSPURL = u.String()
		devs[i] = d
	}
	return devs, nil
}

// Close stops serving. It is safe to call twice.
func (f *CameraFarm) Close() error {
	f.closeOnce.Do(func() {
		if f.hole != nil {
			f.hole.Close()
		}
		if f.server != nil {
			f.server.Close() // closes the sessions, and so their pacers
		}
		f.wg.Wait()
		f.mu.Lock()
		for _, c := range f.holeConns {
			c.Close()
		}
		f.mu.Unlock()
		for _, c := range f.cameras {
			if c.describe != nil {
				c.describe.Close()
			}
		}
	})
	return nil
}

// defaults fills in a camera's zero settings and checks the rest.
func (c *Camera) defaults() error {
	if c.Path == "" {
		return fmt.Errorf("%w: empty path", ErrBadCamera)
	}
	if c.Resolution == "" {
		c.Resolution = "320x240"
	}
	switch c.Codec {
	case "":
		c.Codec = CodecH264
	case CodecH264, CodecH265:
	default:
		return fmt.Errorf("%w: camera %s: codec %q: want %s or %s", ErrBadCamera, c.Path, c.Codec, CodecH264, CodecH265)
	}
	if c.FPS <= 0 {
		c.FPS = 25
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 500 * time.Millisecond
	}
	if c.LowFPS <= 0 {
		c.LowFPS = c.FPS / 5
	}
	if c.LossPct <= 0 {
		c.LossPct = 20
	}
	if c.SlowBy <= 0 {
		c.SlowBy = 500 * time.Millisecond
	}
	known := c.Fault == FaultNone
	for _, f := range CameraFaults {
		known = known || c.Fault == f
	}
	if !known {
		return fmt.Errorf("%w: camera %s: unknown fault %q", ErrBadCamera, c.Path, c.Fault)
	}
	if _, pic := PictureFaults[c.Fault]; pic && c.Resolution != pictureResolution {
		return fmt.Errorf("%w: camera %s: fault %s is served at %s only", ErrBadCamera, c.Path, c.Fault, pictureResolution)
	}
	return nil
}

// pictureResolution is the one picture size of the picture faults' clips.
const pictureResolution = "320x240"

// clipName is the embedded clip the camera serves, such as
// "cam-320x240.h265", or "pic-blurred.h264" for a picture fault.
func (c *Camera) clipName() string {
	if _, pic := PictureFaults[c.Fault]; pic && c.Fault != FaultMoved {
		return c.faultClip(string(c.Fault))
	}
	return "cam-" + c.Resolution + "." + strings.ToLower(c.Codec)
}

// faultClip is the clip of a picture fault in the camera's codec.
func (c *Camera) faultClip(name string) string {
	return "pic-" + name + "." + strings.ToLower(c.Codec)
}

// description is the camera's session description.
func (c *farmCamera) description() *description.Session {
	var forma format.Format
	media := description.MediaTypeVideo
	switch {
	case c.Fault == FaultNoVideo:
		media, forma = description.MediaTypeAudio, &format.G711{PayloadTyp: 0, MULaw: true, SampleRate: 8000, ChannelCount: 1}
	case c.Fault == FaultCodecChange:
		forma = &format.MJPEG{}
	case c.clip.h265:
		forma = &format.H265{PayloadTyp: 96, VPS: c.clip.vps, SPS: c.clip.sps, PPS: c.clip.pps}
	default:
		forma = &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.clip.sps, PPS: c.clip.pps}
	}
	return &description.Session{Medias: []*description.Media{{Type: media, Formats: []format.Format{forma}}}}
}

// farmHandler is the farm seen as a gortsplib handler.
type farmHandler CameraFarm

// camera finds the camera of a request path and checks its access.
func (h *farmHandler) camera(conn *gortsplib.ServerConn, req *base.Request, path string) (*farmCamera, *base.Response, error) {
	c := h.cameras[trimPath(path)]
	if c == nil || c.Fault == FaultNotFound || c.Fault == FaultOffline {
		return nil, &base.Response{StatusCode: base.StatusNotFound}, nil
	}
	if c.Fault == FaultRefusing {
		return nil, &base.Response{StatusCode: base.StatusServiceUnavailable}, nil
	}
	if c.Fault == FaultSlow {
		time.Sleep(c.SlowBy) // blocks this connection only
	}
	if (c.Fault == FaultAuth || c.Fault == FaultWrongAuth) && !conn.VerifyCredentials(req, h.User, h.Password) {
		return nil, &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	return c, &base.Response{StatusCode: base.StatusOK}, nil
}

// trimPath turns "/cam0001" or "/cam0001/trackID=0" into "cam0001".
func trimPath(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return p
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (h *farmHandler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	c, res, err := h.camera(ctx.Conn, ctx.Request, ctx.Path)
	if c == nil {
		return res, nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return res, c.describe, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup: each session gets a
// stream of its own.
func (h *farmHandler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	c, res, err := h.camera(ctx.Conn, ctx.Request, ctx.Path)
	if c == nil {
		return res, nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.sessions[ctx.Session]; s != nil {
		return res, s.stream, nil
	}
	st := &gortsplib.ServerStream{Server: h.server, Desc: c.description()}
	if err := st.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil, err
	}
	h.sessions[ctx.Session] = &farmSession{cam: c, stream: st}
	return res, st, nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay: the session's pacer
// starts once the PLAY is answered (OnResponse).
func (h *farmHandler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.sessions[ctx.Session]; s != nil && s.cancel == nil {
		h.playing[ctx.Conn] = s
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnResponse implements gortsplib.ServerHandlerOnResponse: it starts the
// pacer of a session whose PLAY is answered. gortsplib adds the session to
// its stream's readers after OnPlay returns, before the answer: a pacer
// started in OnPlay could send its first frame, the keyframe, to no one,
// and on a loaded machine did (a reader then saw one keyframe fewer than a
// camera sends).
func (h *farmHandler) OnResponse(conn *gortsplib.ServerConn, res *base.Response) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.playing[conn]
	if s == nil {
		return
	}
	delete(h.playing, conn)
	if res.StatusCode != base.StatusOK {
		return
	}
	pctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		s.pace(pctx)
	}()
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose: it stops
// the session's pacer and stream.
func (h *farmHandler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.mu.Lock()
	s := h.sessions[ctx.Session]
	delete(h.sessions, ctx.Session)
	for conn, p := range h.playing {
		if p == s {
			delete(h.playing, conn)
		}
	}
	h.mu.Unlock()
	if s == nil {
		return
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.stream.Close()
}

// pace writes the clip's frames to the session's stream and applies the
// fault.
func (s *farmSession) pace(ctx context.Context) {
	c := s.cam
	if c.Fault == FaultNoVideo || c.Fault == FaultCodecChange {
		return
	}
	medi := s.stream.Desc.Medias[0]
	cl := c.clip
	if c.Fault == FaultMoved && c.plays.Add(1) > 1 {
		cl = c.moved
	}
	enc, err := cl.encoder(medi.Formats[0])
	if err != nil {
		return
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	c.Camera.play(ctx, cl, rng.Uint32(), func(au [][]byte, ts uint32) error {
		pkts, err := enc(au)
		if err != nil {
			return err
		}
		for _, p := range pkts {
			p.Timestamp = ts
			if c.Fault == FaultLoss && rng.Float64()*100 < c.LossPct {
				continue
			}
			if err := s.stream.WritePacketRTP(medi, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// stallMinFrames is how many frames FaultStall sends at least before it
// stops, however late its goroutine first runs: a camera that stalls has
// streamed first (one that never streams is FaultCodecChange's or a
// timeout's), and on a loaded machine StallAfter could pass before the
// first frame went out.
const stallMinFrames = 5

// play hands the clip's frames to send at the camera's rate, looping,
// with 90 kHz timestamps from ts0 that keep counting across loops, until
// ctx ends or send fails; FaultLowFPS slows the rate and FaultStall stops
// the frames after StallAfter.
func (c *Camera) play(ctx context.Context, cl *clip, ts0 uint32, send func(au [][]byte, ts uint32) error) {
	fps := c.FPS
	if c.Fault == FaultLowFPS {
		fps = c.LowFPS
	}
	interval := time.Duration(float64(time.Second) / fps)
	start := time.Now()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for n := 0; ; n++ {
		if c.Fault == FaultStall && n >= stallMinFrames && time.Since(start) >= c.StallAfter {
			<-ctx.Done()
			return
		}
		if err := send(cl.frames[n%len(cl.frames)], ts0+uint32(float64(n)*90000/fps)); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

//go:embed testdata/cam-* testdata/pic-*
var clipFiles embed.FS
