package broker

import (
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// Limits bound what one client or one source address may cost the broker.
// Zero fields take the defaults stated beside them; a negative rate turns
// that limit off.
type Limits struct {
	// MaxTopicLength is the longest topic a client may publish to, in bytes.
	// It defaults to 256.
	MaxTopicLength int
	// MaxInflight is how many QoS 1/2 messages a client may have unacked
	// (MQTT 5 receive maximum, and the broker's outbound inflight cap). It
	// defaults to 64.
	MaxInflight int
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
	// behind one carrier NAT.
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// FlapConnects connections of one client id within FlapWindow ban that
	// id for FlapBan. They default to 10 in one minute, banned 5 minutes.
	FlapConnects int
	FlapWindow   time.Duration
	FlapBan      time.Duration
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
	def(&l.MessageRate, 10)
	defInt(&l.MessageBurst, 50)
	def(&l.ByteRate, 64<<10)
	defInt(&l.ByteBurst, 256<<10)
	def(&l.ConnRatePerIP, 20)
	defInt(&l.ConnBurstPerIP, 200)
	defInt(&l.FlapConnects, 10)
	if l.FlapWindow <= 0 {
		l.FlapWindow = time.Minute
	}
	if l.FlapBan <= 0 {
		l.FlapBan = 5 * time.Minute
	}
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

// limitHook enforces Limits: connection rate per source address and the
// flapping ban when a client connects, message and byte rates when it
// publishes. Throttled publishes are dropped and counted, and an MQTT 5
// client publishing at QoS 1 or 2 gets reason code 0x97 (quota exceeded).
type limitHook struct {
	mqtt.HookBase
	limits  Limits
	server  *mqtt.Server
	metrics *metrics
	now     func() time.Time

	mu      sync.Mutex
	perIP   map[string]*ipEntry
	perID   map[string]*flapEntry
	inserts int
	clients sync.Map // client *mqtt.Client -> *clientLimiter
}

type ipEntry struct {
	lim  *rate.Limiter
	last time.Time
}

type flapEntry struct {
	connects    []time.Time // within the window
	bannedUntil time.Time
}

type clientLimiter struct {
	msgs, bytes *rate.Limiter
}

func newLimitHook(l Limits, server *mqtt.Server, m *metrics) *limitHook {
	return &limitHook{limits: l, server: server, metrics: m, now: time.Now,
		perIP: make(map[string]*ipEntry), perID: make(map[string]*flapEntry)}
}

func (h *limitHook) ID() string { return "gridwatch-limits" }

func (h *limitHook) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnPublish || b == mqtt.OnDisconnect
}

// OnConnect refuses a connection over its address's rate or from a banned
// client id with CONNACK 0x9F (connection rate exceeded; 3, server
// unavailable, for MQTT 3 clients), before the
// credentials are checked, so neither costs a hash.
func (h *limitHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	now := h.now()
	ip, _, err := net.SplitHostPort(cl.Net.Remote)
	if err != nil {
		ip = cl.Net.Remote
	}
	h.mu.Lock()
	reason := ""
	e, ok := h.perIP[ip]
	if !ok {
		e = &ipEntry{lim: rate.NewLimiter(limit(h.limits.ConnRatePerIP), h.limits.ConnBurstPerIP)}
		h.perIP[ip] = e
		h.sweepLocked(now)
	}
	e.last = now
	if !e.lim.AllowN(now, 1) {
		reason = "conn_rate"
	}
	f, ok := h.perID[cl.ID]
	if !ok {
		f = &flapEntry{}
		h.perID[cl.ID] = f
		h.sweepLocked(now)
	}
	switch {
	case now.Before(f.bannedUntil):
		reason = "flapping_ban"
	case reason == "":
		cut := 0
		for cut < len(f.connects) && now.Sub(f.connects[cut]) > h.limits.FlapWindow {
			cut++
		}
		f.connects = append(f.connects[cut:], now)
		if len(f.connects) > h.limits.FlapConnects {
			f.bannedUntil, f.connects = now.Add(h.limits.FlapBan), nil
			reason = "flapping_ban"
		}
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
	for id, f := range h.perID {
		if now.After(f.bannedUntil) && (len(f.connects) == 0 || now.Sub(f.connects[len(f.connects)-1]) > h.limits.FlapWindow) {
			delete(h.perID, id)
		}
	}
}

// OnPublish drops a publish beyond its client's message or byte rate.
func (h *limitHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
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

// OnDisconnect forgets the client's rate limiters.
func (h *limitHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.clients.Delete(cl)
}
