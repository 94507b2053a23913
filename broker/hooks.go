package broker

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TopicPrefix starts every device topic: devices/{id}/...
const TopicPrefix = "devices/"

// authHook lets in only registered devices whose client id, username and
// secret agree, and keeps each of them inside its own topics: it publishes
// only under devices/{id}/ and subscribes only under devices/{id}/cmd/.
type authHook struct {
	mqtt.HookBase
	lookup  LookupFunc
	metrics *metrics
	logger  *slog.Logger
}

func (h *authHook) ID() string { return "gridwatch-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate checks the CONNECT packet. A refusal never touches an
// existing session with the same client id.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	reason := ""
	switch d, ok := h.lookup(user); {
	case !ok:
		reason = "unknown_device"
	case cl.ID != user:
		reason = "client_id_mismatch"
	case d.Secret == "":
		reason = "no_secret"
	case subtle.ConstantTimeCompare([]byte(d.Secret), pk.Connect.Password) != 1:
		reason = "bad_password"
	}
	if reason != "" {
		h.metrics.authFailures.WithLabelValues(reason).Inc()
		h.logger.Debug("mqtt connect refused", "client", cl.ID, "user", user, "remote", cl.Net.Remote, "reason", reason)
		return false
	}
	return true
}

// OnACLCheck allows a device its own topics only.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
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
// the publishing client's goroutine.
type ingestHook struct {
	mqtt.HookBase
	ctx     context.Context
	ingest  IngestFunc
	metrics *metrics
}

func (h *ingestHook) ID() string { return "gridwatch-ingest" }

func (h *ingestHook) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish ingests telemetry. When ingest rejects some of a message, an
// MQTT 5 client publishing at QoS 1 gets the reason code in its PUBACK.
func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	id, kind, ok := splitDeviceTopic(pk.TopicName)
	if !ok || kind != "telemetry" {
		h.metrics.messages.WithLabelValues("other", "passed").Inc()
		return pk, nil
	}
	err := h.ingest(h.ctx, id, pk.TopicName, pk.Payload)
	if err == nil {
		h.metrics.messages.WithLabelValues(kind, "ingested").Inc()
		return pk, nil
	}
	h.metrics.messages.WithLabelValues(kind, "rejected").Inc()
	return pk, reasonCode(err)
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
