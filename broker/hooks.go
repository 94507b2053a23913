package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// TopicPrefix starts every device topic: devices/{id}/...
const TopicPrefix = "devices/"

// AlertTopicPrefix starts the alert notification topics:
// alerts/{grid}/{severity}.
const AlertTopicPrefix = "alerts/"

// ScoreTopicPrefix is the prefix of the units' daily score notices
// (cases/scores/{unit}); staff tokens of the whole city may read them.
const ScoreTopicPrefix = "cases/scores/"

// authHook lets in registered devices whose client id, username and
// credentials agree, and keeps each of them inside its own topics: it
// publishes only under devices/{id}/ and subscribes only under
// devices/{id}/cmd/. Credentials are the device secret, checked against its
// slow hash through the Verifier's cache, or a client certificate, verified
// by the TLS listener, whose common name is the device id. With staff set,
// it also lets in API token holders that only read alert notifications.
type authHook struct {
	mqtt.HookBase
	ctx            context.Context
	lookup         LookupFunc
	verifier       *devices.Verifier
	staff          StaffFunc
	inScope        func(scope, grid string) bool
	maxTopicLength int
	// failed is told of every refused login, before it is answered.
	failed  func(*mqtt.Client)
	metrics *metrics
	logger  *slog.Logger
	// scopes holds the grid scope of each connected staff client, by
	// *mqtt.Client, from authentication to disconnection.
	scopes sync.Map
}

func (h *authHook) ID() string { return "gridwatch-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnDisconnect
}

// authenticateStaff admits an API token holder whose client id is not a
// device's, so that it can never take over a device's session.
func (h *authHook) authenticateStaff(cl *mqtt.Client, pk packets.Packet) bool {
	if _, isDevice := h.lookup(cl.ID); isDevice {
		return false
	}
	scope, ok := h.staff(string(pk.Connect.Username), pk.Connect.Password)
	if ok {
		h.scopes.Store(cl, scope)
	}
	return ok
}

// OnDisconnect forgets a staff client's scope.
func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.scopes.Delete(cl) }

// staffACL lets a staff client read alert notifications of its scope: it
// may subscribe under alerts/ (a wildcard grid level included) and is
// delivered only the alerts/{grid}/... topics whose grid lies in its
// scope. A client of the whole city may also read the score notices. It
// never publishes.
func (h *authHook) staffACL(scope, topic string, write bool) bool {
	if !write && scope == "" && strings.HasPrefix(topic, ScoreTopicPrefix) {
		return true
	}
	rest, ok := strings.CutPrefix(topic, AlertTopicPrefix)
	grid, _, _ := strings.Cut(rest, "/")
	if ok && !write && (scope == "" || grid == "+" || grid == "#" || h.inScope(scope, grid)) {
		return true
	}
	h.metrics.aclDenied.WithLabelValues("staff").Inc()
	return false
}

// OnConnectAuthenticate checks the CONNECT packet. mochi calls it before it
// looks for an existing session with the same client id, so a refusal never
// touches the connection of the legitimate device. A will the client could
// not publish itself is refused with the login: mochi sends wills without
// asking the ACL.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	reason := ""
	d, ok := h.lookup(user)
	cn, hasCert := peerCommonName(cl)
	switch {
	case !ok && h.staff != nil && !hasCert && h.authenticateStaff(cl, pk):
	case !ok:
		reason = "unknown_device"
	case strings.ContainsAny(user, "/+#"):
		// devices/{id}/ would hold other devices' topics, or all of them.
		reason = "bad_device_id"
	case cl.ID != user:
		reason = "client_id_mismatch"
	case hasCert && cn != user:
		reason = "cert_cn_mismatch"
	case hasCert:
		// A certificate the listener verified against mqtt.tls_client_ca,
		// naming this device, is the credential; no password is needed.
	case !d.HasSecret():
		reason = "no_secret"
	case !h.verifier.Verify(h.ctx, d, pk.Connect.Password):
		reason = "bad_password"
	}
	if reason == "" && pk.Connect.WillFlag && !h.OnACLCheck(cl, pk.Connect.WillTopic, true) {
		reason = "will_denied"
	}
	if reason != "" {
		h.scopes.Delete(cl)
		h.failed(cl)
		h.metrics.authFailures.WithLabelValues(reason).Inc()
		h.logger.Debug("mqtt connect refused", "client", cl.ID, "user", user, "remote", cl.Net.Remote, "reason", reason)
		return false
	}
	return true
}

// peerCommonName returns the common name of the client certificate of a
// TLS connection, when the client presented one.
func peerCommonName(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", false
	}
	return certs[0].Subject.CommonName, true
}

// OnACLCheck allows a device its own topics only, and no topic longer than
// the limit.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if len(topic) > h.maxTopicLength {
		h.metrics.limited.WithLabelValues("topic_length").Inc()
		return false
	}
	if scope, staff := h.scopes.Load(cl); staff {
		return h.staffACL(scope.(string), topic, write)
	}
	own := TopicPrefix + string(cl.Properties.Username) + "/"
	if write {
		if strings.HasPrefix(topic, own) {
			return true
		}
		h.metrics.aclDenied.WithLabelValues("publish").Inc()
		return false
	}
	if strings.HasPrefix(topic, own+"cmd/") {
		return true
	}
	h.metrics.aclDenied.WithLabelValues("subscribe").Inc()
	return false
}

// ingestHook hands devices/{id}/telemetry messages to ingest, in-process, on
// the publishing client's goroutine. In durable mode it sends the PUBACKs of
// QoS 1 telemetry itself, once the readings are written, from one ackQueue
// goroutine per client.
type ingestHook struct {
	mqtt.HookBase
	ctx     context.Context
	ingest  IngestFunc
	durable bool
	// ackQueue bounds the PUBACKs a client may have waiting for their
	// readings to be written; beyond it the client's reader waits. It is
	// the receive maximum the broker announces (mqtt.max_inflight): an
	// MQTT 5 client never has more in flight, an MQTT 3.1.1 one that sends
	// more waits. At 1,024 the queues were 40 KiB per publishing client.
	ackQueue int
	metrics  *metrics

	mu     sync.Mutex
	queues map[*mqtt.Client]chan pendingAck
	wg     sync.WaitGroup // the queues' goroutines
}

// pendingAck is a QoS 1 telemetry message whose PUBACK waits for stored.
type pendingAck struct {
	packetID uint16
	stored   Stored // nil: nothing to wait for
	err      error  // ingest's error: a rejection
}

func (h *ingestHook) ID() string { return "gridwatch-ingest" }

func (h *ingestHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || h.durable && b == mqtt.OnDisconnect
}

// OnPublish ingests telemetry. When ingest rejects some of a message, an
// MQTT 5 client publishing at QoS 1 gets the reason code in its PUBACK.
func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	id, kind, ok := splitDeviceTopic(pk.TopicName)
	if !ok || kind != "telemetry" {
		h.metrics.messages.WithLabelValues("other", "passed").Inc()
		return pk, nil
	}
	stored, err := h.ingest(h.ctx, id, pk.TopicName, pk.Payload, pk.FixedHeader.Dup)
	if errors.Is(err, ingest.ErrNotStored) {
		return pk, h.refuse(pk.FixedHeader.Qos)
	}
	if h.durable && stored != nil && pk.FixedHeader.Qos > 0 {
		if pk.FixedHeader.Qos == 1 && !cl.Net.Inline {
			h.ackLater(cl, pendingAck{packetID: pk.PacketID, stored: stored, err: err})
			// mochi sends no PUBACK for a rejected packet: the queue does.
			return pk, packets.ErrRejectPacket
		}
		if werr := stored.Wait(h.ctx); werr != nil {
			return pk, h.refuse(pk.FixedHeader.Qos)
		}
	}
	h.count(err)
	if err != nil {
		return pk, reasonCode(err)
	}
	// The ACL lets no client subscribe to a device's telemetry, so mochi
	// need not look for subscribers (7.8 % of gridwatch's CPU at QoS 0 in
	// make bench): CodeSuccessIgnore acknowledges the message as usual and
	// delivers it to no one.
	return pk, packets.CodeSuccessIgnore
}

// refuse counts a message ingest could not store and returns the error that
// makes mochi send no PUBACK, so that a QoS 1 device sends it again; a QoS 0
// one is lost. Acked means stored.
func (h *ingestHook) refuse(qos byte) error {
	result := "refused_qos1"
	if qos == 0 {
		result = "dropped_qos0"
	}
	h.metrics.messages.WithLabelValues("telemetry", result).Inc()
	return packets.ErrRejectPacket
}

// count counts a telemetry message taken by ingest, err its rejection.
func (h *ingestHook) count(err error) {
	if err != nil {
		h.metrics.messages.WithLabelValues("telemetry", "rejected").Inc()
		return
	}
	h.metrics.ingested.Inc()
}

// ackLater queues a PUBACK on the client's ack queue, starting it on the
// client's first message. It blocks while the queue is full.
func (h *ingestHook) ackLater(cl *mqtt.Client, a pendingAck) {
	h.mu.Lock()
	q, ok := h.queues[cl]
	if !ok {
		if h.queues == nil {
			h.queues = make(map[*mqtt.Client]chan pendingAck)
		}
		q = make(chan pendingAck, h.ackQueue)
		h.queues[cl] = q
		h.wg.Add(1)
		go h.sendAcks(cl, q)
	}
	h.mu.Unlock()
	q <- a
}

// sendAcks sends the client's PUBACKs in order, each once its readings are
// written, until the queue is closed. A message whose write fails gets
// none, so the device sends it again; so does one whose connection is gone.
func (h *ingestHook) sendAcks(cl *mqtt.Client, q <-chan pendingAck) {
	defer h.wg.Done()
	for a := range q {
		if err := a.stored.Wait(h.ctx); err != nil {
			h.refuse(1)
			continue
		}
		h.count(a.err)
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: a.packetID}
		if a.err != nil && cl.Properties.ProtocolVersion == 5 {
			code := reasonCode(a.err)
			ack.ReasonCode, ack.Properties.ReasonString = code.Code, code.Reason
		}
		_ = cl.WritePacket(ack) // fails only when the client is gone
	}
}

// OnDisconnect ends the client's ack queue once its PUBACKs are sent. mochi
// calls it after the client's reader, where OnPublish runs, has returned.
func (h *ingestHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	q, ok := h.queues[cl]
	delete(h.queues, cl)
	h.mu.Unlock()
	if ok {
		close(q)
	}
}

// Stop waits for the ack queues, whose clients are all disconnected when
// mochi stops its hooks.
func (h *ingestHook) Stop() error {
	h.wg.Wait()
	return nil
}

// reasonCode maps an ingest error to an MQTT 5 reason code.
func reasonCode(err error) packets.Code {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return packets.ErrServerBusy
	}
	return packets.ErrPayloadFormatInvalid
}

// splitDeviceTopic splits devices/{id}/{kind} into id and kind.
func splitDeviceTopic(topic string) (id, kind string, ok bool) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return "", "", false
	}
	id, kind, ok = strings.Cut(rest, "/")
	if !ok || id == "" || kind == "" || strings.Contains(kind, "/") {
		return "", "", false
	}
	return id, kind, true
}
