package gb28181

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/strikes"
)

// Defaults of the Registrar's settings.
const (
	DefaultRealm             = "3402000000"
	DefaultID                = "34020000002000000001"
	DefaultKeepaliveInterval = time.Minute
	DefaultKeepaliveMisses   = 3
	DefaultMaxExpires        = time.Hour
	DefaultNonceLifetime     = 5 * time.Minute
	DefaultQueryTimeout      = 10 * time.Second
	DefaultAuthFailures      = 10
	DefaultAuthFailureWindow = time.Minute
	DefaultAuthFailureBan    = 5 * time.Minute
)

// Presence reasons.
const (
	ReasonRegistered       = "registered"        // a REGISTER was accepted
	ReasonKeepalive        = "keepalive"         // a Keepalive arrived
	ReasonKeepaliveTimeout = "keepalive_timeout" // KeepaliveMisses keepalives missed
	ReasonUnregistered     = "unregistered"      // the device sent REGISTER with Expires: 0
	ReasonExpired          = "expired"           // the registration ran out without a refresh
	ReasonCatalog          = "catalog"           // a channel's status in the device's catalog
	ReasonParentOffline    = "parent_offline"    // the device a channel belongs to went offline
)

// Presence is what the registrar learnt of a device or channel: a
// registration, a keepalive, a missed keepalive, a catalog entry.
type Presence struct {
	// Device is the 20-digit id of the device or channel.
	Device string
	// Parent is, for a channel, the registered device whose catalog lists
	// it; empty for a registered device itself.
	Parent string
	// Online tells whether it is online.
	Online bool
	// At is when the registrar learnt it.
	At time.Time
	// Reason is one of the Reason constants.
	Reason string
	// Transport is the SIP transport of the device ("udp", "tcp").
	Transport string
	// Error says why a device is offline ("no keepalive for 3m0s").
	Error string
}

// Registrar is a GB/T 28181 SIP registrar (the upper platform's side) on
// UDP and TCP. A device in the registry with a SIP password registers with
// its 20-digit id and digest authentication; it then keeps alive every
// KeepaliveInterval, and is offline once it has missed KeepaliveMisses
// keepalives or its registration has expired. After each registration the
// registrar asks the device for its DeviceInfo and Catalog.
//
// Bad input never costs a good device its service: a malformed message,
// an unknown id, a wrong password are answered with their status code (or,
// unparseable, dropped) and counted; failed digests from one source
// address for one id ban that pair for AuthFailureBan after AuthFailures
// within AuthFailureWindow, while the same device from its own address
// keeps registering.
//
// Set the settings, then Start; Close stops it.
type Registrar struct {
	// UDPListen and TCPListen are the listen addresses; at least one is
	// required (":5060" is the standard port of both).
	UDPListen, TCPListen string
	// Realm is the SIP domain of digest challenges, by convention the
	// first 10 digits of ID. It defaults to DefaultRealm.
	Realm string
	// ID is the registrar's own 20-digit SIP id, which devices are
	// configured with. It defaults to DefaultID.
	ID string
	// KeepaliveInterval is the keepalive period devices are configured
	// with. It defaults to 60 seconds.
	KeepaliveInterval time.Duration
	// KeepaliveMisses is how many keepalives in a row a device may miss
	// before it is offline. It defaults to 3.
	KeepaliveMisses int
	// MaxExpires caps the registration time a device asks for. It
	// defaults to 1 hour.
	MaxExpires time.Duration
	// NonceLifetime is how long a digest challenge may be answered. It
	// defaults to 5 minutes.
	NonceLifetime time.Duration
	// QueryTimeout bounds a Catalog or DeviceInfo query's SIP transaction.
	// It defaults to 10 seconds.
	QueryTimeout time.Duration
	// AuthFailures, AuthFailureWindow and AuthFailureBan: that many wrong
	// digests for one id from one source address within the window ban
	// the pair for the ban's time. They default to 10, 1 minute and 5
	// minutes.
	AuthFailures                      int
	AuthFailureWindow, AuthFailureBan time.Duration
	// MediaHost is the address of gridwatch that devices invited to
	// stream send their RTP to (Play): the SDP offer's c= line, and where
	// the receiving port opens. It defaults to the local address the
	// system routes to each device from.
	MediaHost string
	// InviteTimeout bounds the wait for a device's answer to an INVITE.
	// It defaults to 5 seconds.
	InviteTimeout time.Duration
	// StreamTimeout is the longest a stream may go without RTP, its
	// first packet after the answer included. It defaults to 5 seconds.
	StreamTimeout time.Duration
	// StreamTransport is the RTP transport streams are offered: "udp",
	// or "tcp" with gridwatch passive (the device connects). It defaults
	// to "udp".
	StreamTransport string
	// MaxStreams is the most streams playing at once; more wait for one
	// to end. It defaults to 64.
	MaxStreams int
	// Lookup returns a registered device; one with a SIPPassword may
	// register. Required.
	Lookup func(id string) (devices.Device, bool)
	// OpenSecret opens a device's sealed SIP password (devices.SecretBox).
	// Without it a sealed password cannot be checked and the device is
	// refused.
	OpenSecret func(id, sealed string) (string, error)
	// Presence receives every change and keepalive of a device or
	// channel, in the order they happen for one device. A failure is
	// counted and logged. It defaults to nothing.
	Presence func(Presence) error
	// Alarm receives alarm notifications. It defaults to nothing.
	Alarm func(Alarm) error
	// Now is the clock. It defaults to time.Now.
	Now func() time.Time
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer registers the metrics; nil registers none.
	Registerer prometheus.Registerer

	metrics  *metrics
	nonces   *nonces
	failures *strikes.Table[failureKey]
	ua       *sipgo.UserAgent
	server   *sipgo.Server
	client   *sipgo.Client
	dialogs  *sipgo.DialogClientCache
	streams  chan struct{} // one token per stream playing
	ssrcSeq  atomic.Uint32
	// givenUp holds the Call-IDs of INVITEs given up unanswered, until
	// when a late 200 OK to one may still come (abandoned).
	givenUp sync.Map // string -> time.Time
	udp     net.PacketConn
	tcp     net.Listener
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sn      atomic.Uint32
	started bool
	close   sync.Once

	mu       sync.Mutex
	closing  bool
	sessions map[string]*session
	online   int // sessions online
}

// failureKey is a device id from a source host.
type failureKey struct{ host, id string }

// defaults fills in the settings left zero.
func (r *Registrar) defaults() {
	if r.Realm == "" {
		r.Realm = DefaultRealm
	}
	if r.ID == "" {
		r.ID = DefaultID
	}
	if r.KeepaliveInterval <= 0 {
		r.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if r.KeepaliveMisses <= 0 {
		r.KeepaliveMisses = DefaultKeepaliveMisses
	}
	if r.MaxExpires <= 0 {
		r.MaxExpires = DefaultMaxExpires
	}
	if r.NonceLifetime <= 0 {
		r.NonceLifetime = DefaultNonceLifetime
	}
	if r.QueryTimeout <= 0 {
		r.QueryTimeout = DefaultQueryTimeout
	}
	if r.AuthFailures <= 0 {
		r.AuthFailures = DefaultAuthFailures
	}
	if r.AuthFailureWindow <= 0 {
		r.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if r.AuthFailureBan <= 0 {
		r.AuthFailureBan = DefaultAuthFailureBan
	}
	if r.InviteTimeout <= 0 {
		r.InviteTimeout = DefaultInviteTimeout
	}
	if r.StreamTimeout <= 0 {
		r.StreamTimeout = DefaultStreamTimeout
	}
	if r.StreamTransport == "" {
		r.StreamTransport = "udp"
	}
	if r.MaxStreams <= 0 {
		r.MaxStreams = DefaultMaxStreams
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
}

// Start opens the listeners and serves until Close.
func (r *Registrar) Start(ctx context.Context) (err error) {
	if r.Lookup == nil {
		return ErrNoLookup
	}
	if r.UDPListen == "" && r.TCPListen == "" {
		return ErrNoListener
	}
	if r.started {
		return ErrStarted
	}
	r.started = true
	r.defaults()
	if r.StreamTransport != "udp" && r.StreamTransport != "tcp" {
		return fmt.Errorf("gb28181: stream transport %q: want udp or tcp", r.StreamTransport)
	}
	r.metrics = newMetrics(r.Registerer)
	r.failures = strikes.NewTable[failureKey](strikes.Rule{Max: r.AuthFailures, Window: r.AuthFailureWindow, Ban: r.AuthFailureBan})
	r.sessions = map[string]*session{}
	r.streams = make(chan struct{}, r.MaxStreams)
	if r.nonces, err = newNonces(r.NonceLifetime); err != nil {
		return err
	}
	sipLogger := slog.New(newSIPLog(r.Logger.Handler(), func() { r.metrics.rejected.WithLabelValues("malformed_sip").Inc() }))
	r.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent(r.ID),
		sipgo.WithUserAgentHostname(r.Realm),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLogger)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLogger),
			sip.WithTransactionLayerUnhandledResponseHandler(r.onLateAnswer)),
	)
	if err != nil {
		return fmt.Errorf("gb28181: user agent: %w", err)
	}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	if r.server, err = sipgo.NewServer(r.ua, sipgo.WithServerLogger(sipLogger)); err != nil {
		return fmt.Errorf("gb28181: server: %w", err)
	}
	if r.client, err = sipgo.NewClient(r.ua, sipgo.WithClientLogger(sipLogger)); err != nil {
		return fmt.Errorf("gb28181: client: %w", err)
	}
	r.server.OnRegister(r.onRegister)
	r.server.OnMessage(r.onMessage)
	r.server.OnBye(r.onBye)
	r.dialogs = sipgo.NewDialogClientCache(r.client, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: r.ID, Host: r.Realm}})
	r.server.OnNoRoute(r.onOther)
	r.ctx, r.cancel = context.WithCancel(ctx)
	if r.UDPListen != "" {
		if r.udp, err = net.ListenPacket("udp", r.UDPListen); err != nil {
			return fmt.Errorf("gb28181.udp_listen %s: %w", r.UDPListen, err)
		}
		r.serve(func() error { return r.server.ServeUDP(r.udp) })
	}
	if r.TCPListen != "" {
		if r.tcp, err = net.Listen("tcp", r.TCPListen); err != nil {
			return fmt.Errorf("gb28181.tcp_listen %s: %w", r.TCPListen, err)
		}
		r.serve(func() error { return r.server.ServeTCP(r.tcp) })
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sweep(r.ctx)
	}()
	r.Logger.Info("gb28181 registrar listening", "udp", r.UDPAddr(), "tcp", r.TCPAddr(), "realm", r.Realm, "id", r.ID,
		"keepalive_interval", r.KeepaliveInterval, "keepalive_misses", r.KeepaliveMisses)
	return nil
}

// serve runs one listener's loop until Close.
func (r *Registrar) serve(loop func() error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := loop(); err != nil && !errors.Is(err, net.ErrClosed) {
			r.Logger.Error("gb28181 listener stopped", "err", err)
		}
	}()
}

// UDPAddr returns the UDP listener's address, or "" without one.
func (r *Registrar) UDPAddr() string {
	if r.udp == nil {
		return ""
	}
	return r.udp.LocalAddr().String()
}

// TCPAddr returns the TCP listener's address, or "" without one.
func (r *Registrar) TCPAddr() string {
	if r.tcp == nil {
		return ""
	}
	return r.tcp.Addr().String()
}

// Close stops the listeners, the keepalive sweep and the queries in flight.
// It is safe to call twice.
func (r *Registrar) Close() error {
	var err error
	r.close.Do(func() {
		r.mu.Lock()
		r.closing = true
		r.mu.Unlock()
		if r.cancel != nil {
			r.cancel()
		}
		if r.udp != nil {
			err = errors.Join(err, r.udp.Close())
		}
		if r.tcp != nil {
			err = errors.Join(err, r.tcp.Close())
		}
		if r.ua != nil {
			err = errors.Join(err, r.ua.Close())
		}
		r.wg.Wait()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// respond answers req with code and counts it; reason, when not empty, is
// the rejection counted in gridwatch_gb28181_rejected_total.
func (r *Registrar) respond(req *sip.Request, tx sip.ServerTransaction, code int, phrase, reason string, extra ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, phrase, nil)
	for _, h := range extra {
		res.AppendHeader(h)
	}
	// Counted before it is sent, so that whoever reads the answer finds
	// it counted.
	r.metrics.responses.WithLabelValues(req.Method.String(), strconv.Itoa(code)).Inc()
	if reason != "" {
		r.metrics.rejected.WithLabelValues(reason).Inc()
	}
	if err := tx.Respond(res); err != nil {
		r.Logger.Debug("gb28181 response not sent", "method", req.Method.String(), "code", code, "err", err)
	}
}

// onOther answers the methods gridwatch does not take (INVITE, SUBSCRIBE…
// from a device) with 405.
func (r *Registrar) onOther(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	r.respond(req, tx, sip.StatusMethodNotAllowed, "Method Not Allowed", "", sip.NewHeader("Allow", "REGISTER, MESSAGE, BYE"))
}

// isDeviceID reports whether id is a GB/T 28181 code: 20 decimal digits.
func isDeviceID(id string) bool {
	return len(id) == 20 && digits(id)
}

// sender returns the device id a request comes from (its From user) and
// the host of its source address.
func sender(req *sip.Request) (id, host string) {
	if f := req.From(); f != nil {
		id = f.Address.User
	}
	host, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		host = req.Source()
	}
	return id, host
}

// transportOf returns a request's transport in lower case ("udp", "tcp").
func transportOf(req *sip.Request) string { return strings.ToLower(req.Transport()) }

// emit hands p to Presence.
func (r *Registrar) emit(p Presence) {
	if r.Presence == nil {
		return
	}
	if err := r.Presence(p); err != nil {
		r.metrics.dropped.Inc()
		r.Logger.Warn("gb28181 presence not stored", "device", p.Device, "reason", p.Reason, "err", err)
	}
}
