package broker

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/gridwatch/gridwatch/internal/strikes"
)

// Limits bound what one client or one source address may cost the broker.
// Zero fields take the defaults stated beside them; a negative rate turns
// that limit off. A source address is an IPv4 address or an IPv6 /64 (see
// source).
type Limits struct {
	// MaxTopicLength is the longest topic a client may publish to, in bytes.
	// It defaults to 256.
	MaxTopicLength int
	// MaxInflight is how many QoS 1/2 messages a client may have unacked
	// (MQTT 5 receive maximum, and the broker's outbound inflight cap). It
	// defaults to 64.
	MaxInflight int
	// MaxSubscriptions is how many topic filters a client may hold; a
	// SUBSCRIBE that would take it beyond ends its connection. It defaults
	// to 32: a device needs one, devices/{id}/cmd/#, and each filter costs
	// the broker memory for as long as the session lives.
	MaxSubscriptions int
	// MessageRate and MessageBurst bound each client's publishes per second.
	// They default to 10 and 50: a device reports every few seconds at most
	// and flushes a small backlog after a reconnect.
	MessageRate  float64
	MessageBurst int
	// ByteRate and ByteBurst bound each client's published payload bytes per
	// second. They default to 64 KiB/s and 256 KiB.
	ByteRate  float64
	ByteBurst int
	// ConnRatePerIP and ConnBurstPerIP bound new connections per second from
	// one source address. They default to 20 and 200: many devices can sit
	// behind one carrier NAT. ConnBurstPerIP also bounds the connections of
	// one address waiting for their CONNECT (none when ConnRatePerIP < 0):
	// more are closed at once.
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// FlapConnects authenticated connections of one client id within
	// FlapWindow ban that id for FlapBan. They default to 10 in one minute,
	// banned 5 minutes. Only logins that passed count, so that nobody
	// without the device's secret can ban it.
	FlapConnects int
	FlapWindow   time.Duration
	FlapBan      time.Duration
	// AuthFailures failed logins with one client id from one source address
	// within AuthFailureWindow ban that pair for AuthFailureBan: it is
	// refused before its credentials are checked, so that a guess during
	// the ban learns nothing, while the same id from another address is
	// let in. They default to 10 in one minute, banned 5 minutes.
	AuthFailures      int
	AuthFailureWindow time.Duration
	AuthFailureBan    time.Duration
}

// withDefaults fills the zero fields of l.
func (l Limits) withDefaults() Limits {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&l.MaxTopicLength, 256)
	defInt(&l.MaxInflight, 64)
	defInt(&l.MaxSubscriptions, 32)
	def(&l.MessageRate, 10)
	defInt(&l.MessageBurst, 50)
	def(&l.ByteRate, 64<<10)
	defInt(&l.ByteBurst, 256<<10)
	def(&l.ConnRatePerIP, 20)
	defInt(&l.ConnBurstPerIP, 200)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&l.FlapConnects, 10)
	defDur(&l.FlapWindow, time.Minute)
	defDur(&l.FlapBan, 5*time.Minute)
	defInt(&l.AuthFailures, 10)
	defDur(&l.AuthFailureWindow, time.Minute)
	defDur(&l.AuthFailureBan, 5*time.Minute)
	return l
}

// limit returns a rate limit for r per second, or rate.Inf when r < 0.
func limit(r float64) rate.Limit {
	if r < 0 {
		return rate.Inf
	}
	return rate.Limit(r)
}

// sweepEvery is how many insertions into a keyed table trigger a sweep of
// idle entries: the tables stay bounded by the recently active keys.
const sweepEvery = 1024

// addrID is a client id connecting from a source address.
type addrID struct{ addr, id string }

// maxKeyID is how much of a client id keys the failed-login table: a
// stranger's client ids may be 64 KiB each, and device ids are short.
const maxKeyID = 128

// failureKey is the key of cl's failed logins.
func failureKey(cl *mqtt.Client) addrID {
	id := cl.ID
	if len(id) > maxKeyID {
		id = strings.Clone(id[:maxKeyID]) // not a slice of the whole id
	}
	return addrID{sourceOf(cl), id}
}

// limitHook enforces Limits: connection rate per source address, the
// failed-login ban of an (address, client id) pair and the flapping ban of
// a client id when a client connects, before its credentials are checked;
// message and byte rates when it publishes. The auth hook tells it of
// every failed login (authFailed), and it counts a client id's connects
// once its session is established, after authentication. Throttled
// publishes are dropped and counted, and an MQTT 5 client publishing at
// QoS 1 or 2 gets reason code 0x97 (quota exceeded).
type limitHook struct {
	mqtt.HookBase
	limits  Limits
	server  *mqtt.Server
	pending *pendingConnects
	metrics *metrics
	logger  *slog.Logger
	now     func() time.Time

	perID    *strikes.Table[string] // flapping, by client id
	failures *strikes.Table[addrID] // failed logins

	mu      sync.Mutex
	perIP   map[string]*ipEntry
	inserts int
	clients sync.Map // client *mqtt.Client -> *clientLimiter
}

type ipEntry struct {
	lim  *rate.Limiter
	last time.Time
}

type clientLimiter struct {
	msgs, bytes *rate.Limiter
}

func newLimitHook(l Limits, server *mqtt.Server, m *metrics, logger *slog.Logger) *limitHook {
	maxPending := l.ConnBurstPerIP
	if l.ConnRatePerIP < 0 {
		maxPending = 0
	}
	return &limitHook{limits: l, server: server, metrics: m, logger: logger, now: time.Now,
		pending:  newPendingConnects(maxPending, m.limited.WithLabelValues("pending_connects")),
		perID:    strikes.NewTable[string](strikes.Rule{Max: l.FlapConnects, Window: l.FlapWindow, Ban: l.FlapBan}),
		failures: strikes.NewTable[addrID](strikes.Rule{Max: l.AuthFailures, Window: l.AuthFailureWindow, Ban: l.AuthFailureBan}),
		perIP:    make(map[string]*ipEntry)}
}

func (h *limitHook) ID() string { return "gridwatch-limits" }

func (h *limitHook) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnSessionEstablish || b == mqtt.OnPacketRead || b == mqtt.OnPublish ||
		b == mqtt.OnWill || b == mqtt.OnDisconnect
}

// OnPacketRead ends the connection of a client whose SUBSCRIBE would take
// it beyond MaxSubscriptions filters: mochi keeps every filter of a
// session, and nothing else bounds how many one client sends.
func (h *limitHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Subscribe {
		return pk, nil
	}
	n := cl.State.Subscriptions.Len()
	for _, sub := range pk.Filters {
		if _, ok := cl.State.Subscriptions.Get(sub.Filter); !ok {
			n++
		}
	}
	if n <= h.limits.MaxSubscriptions {
		return pk, nil
	}
	h.metrics.limited.WithLabelValues("subscriptions").Inc()
	return pk, packets.ErrRejectPacket
}

// sourceOf is the source of cl in the per-address limits: see source.
func sourceOf(cl *mqtt.Client) string { return source(cl.Net.Remote) }

// ipv6SourceBits is the prefix of an IPv6 address that the per-address
// limits take as one source: a /64 is the least a provider gives one
// subscriber (RFC 6177), who may use any of its 2^64 addresses.
const ipv6SourceBits = 64

// source is the key of a remote address (host:port, or a bare host) in the
// per-address limits: an IPv4 address itself (an IPv4-mapped IPv6 address
// too), and the /64 an IPv6 address lies in, so that the holder of a /64
// cannot take a fresh address for every connection or guess and start
// each limit anew. What is no IP address is its own key.
func source(addr string) string {
	// netip parses what net.SplitHostPort may not (a zone holding a
	// bracket: "[::%0]]:1"), so an address netip reads is keyed by it
	// alone, as the connection's netip.AddrPort would be.
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		ip = ap.Addr()
	} else if ip, err = netip.ParseAddr(addr); err != nil {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return addr
		}
		if ip, err = netip.ParseAddr(host); err != nil {
			return host
		}
	}
	switch {
	case ip.Is4In6():
		return ip.Unmap().String()
	case ip.Is6():
		p, _ := ip.WithZone("").Prefix(ipv6SourceBits) // cannot fail: 64 bits of an IPv6 address
		return p.String()
	}
	return ip.String()
}

// pendingConnects counts, per source address, the connections accepted
// and still waiting for their CONNECT, and refuses one beyond max: until
// then the per-address connection rate cannot see them, and each costs two
// goroutines and about 16 KiB for up to Broker.ConnectTimeout. A
// connection stops counting once its CONNECT is read (done from OnConnect)
// or it ends (done from the listener), whichever comes first.
type pendingConnects struct {
	max     int // 0: unlimited
	refused prometheus.Counter

	mu    sync.Mutex
	byIP  map[string]int
	conns map[string]string // remote address -> its IP, while counted
}

func newPendingConnects(max int, refused prometheus.Counter) *pendingConnects {
	return &pendingConnects{max: max, refused: refused, byIP: make(map[string]int), conns: make(map[string]string)}
}

// add counts a new connection from remote (host:port), or reports false
// and counts the refusal when its address has max waiting already.
func (p *pendingConnects) add(remote string) bool {
	ip := source(remote)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max > 0 && p.byIP[ip] >= p.max {
		p.refused.Inc()
		return false
	}
	p.byIP[ip]++
	p.conns[remote] = ip
	return true
}

// done stops counting the connection from remote; it is safe to call
// twice.
func (p *pendingConnects) done(remote string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ip, ok := p.conns[remote]
	if !ok {
		return
	}
	delete(p.conns, remote)
	if p.byIP[ip]--; p.byIP[ip] == 0 {
		delete(p.byIP, ip)
	}
}

// OnConnect refuses a connection over its address's rate, from a banned
// (address, client id) pair or with a banned client id, with CONNACK 0x9F
// (connection rate exceeded; 3, server unavailable, for MQTT 3 clients),
// before the credentials are checked, so that none costs a hash. It only
// reads the bans: what sets them is a login's outcome.
func (h *limitHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	h.pending.done(cl.Net.Remote)
	now := h.now()
	ip := sourceOf(cl)
	h.mu.Lock()
	reason := ""
	e, ok := h.perIP[ip]
	if !ok {
		e = &ipEntry{lim: rate.NewLimiter(limit(h.limits.ConnRatePerIP), h.limits.ConnBurstPerIP)}
		h.perIP[ip] = e
		h.sweepLocked(now)
	}
	e.last = now
	switch {
	case !e.lim.AllowN(now, 1):
		reason = "conn_rate"
	case h.failures.Banned(failureKey(cl), now):
		reason = "auth_failure_ban"
	case h.perID.Banned(cl.ID, now):
		reason = "flapping_ban"
	}
	h.mu.Unlock()
	if reason == "" {
		return nil
	}
	h.metrics.limited.WithLabelValues(reason).Inc()
	code := packets.ErrConnectionRateExceeded
	if cl.Properties.ProtocolVersion < 5 {
		// MQTT 3 has no such code, and clients read unknown ones as success.
		code = packets.ErrServerUnavailable
	}
	_ = h.server.SendConnack(cl, code, false, nil)
	return code
}

// OnSessionEstablish counts an authenticated connect of the client id
// towards its flapping ban; the connect that starts the ban is let in, the
// next ones are refused by OnConnect.
func (h *limitHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if h.perID.Add(cl.ID, h.now()) {
		h.logger.Warn("mqtt client id banned for flapping", "client", cl.ID, "remote", cl.Net.Remote,
			"connects", h.limits.FlapConnects, "window", h.limits.FlapWindow, "ban", h.limits.FlapBan)
	}
}

// authFailed counts a failed login towards the ban of its (address, client
// id) pair.
func (h *limitHook) authFailed(cl *mqtt.Client) {
	k := failureKey(cl)
	if h.failures.Add(k, h.now()) {
		h.logger.Warn("mqtt logins banned after failures", "client", k.id, "remote", k.addr,
			"failures", h.limits.AuthFailures, "window", h.limits.AuthFailureWindow, "ban", h.limits.AuthFailureBan)
	}
}

// sweepLocked drops idle entries every sweepEvery insertions. h.mu is held.
func (h *limitHook) sweepLocked(now time.Time) {
	if h.inserts++; h.inserts%sweepEvery != 0 {
		return
	}
	for ip, e := range h.perIP {
		if now.Sub(e.last) > time.Minute {
			delete(h.perIP, ip)
		}
	}
}

// OnPublish drops a publish beyond its client's message or byte rate, and
// keeps no retained message of a client: nobody but the device itself may
// read its topics, so each would only cost memory, for a day. The broker's
// own messages (alert notifications) are neither limited nor changed.
func (h *limitHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	pk.FixedHeader.Retain = false
	v, ok := h.clients.Load(cl)
	if !ok {
		v, _ = h.clients.LoadOrStore(cl, &clientLimiter{
			msgs:  rate.NewLimiter(limit(h.limits.MessageRate), h.limits.MessageBurst),
			bytes: rate.NewLimiter(limit(h.limits.ByteRate), h.limits.ByteBurst),
		})
	}
	cll := v.(*clientLimiter)
	now := h.now()
	reason := ""
	switch {
	case !cll.msgs.AllowN(now, 1):
		reason = "message_rate"
	case !cll.bytes.AllowN(now, len(pk.Payload)):
		reason = "byte_rate"
	default:
		return pk, nil
	}
	h.metrics.limited.WithLabelValues(reason).Inc()
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return pk, packets.ErrQuotaExceeded
	}
	return pk, packets.ErrRejectPacket
}

// OnWill keeps no retained will, as OnPublish keeps no retained message.
func (h *limitHook) OnWill(_ *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	will.Retain = false
	return will, nil
}

// OnDisconnect forgets the client's rate limiters.
func (h *limitHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.clients.Delete(cl)
}
