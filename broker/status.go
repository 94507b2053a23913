package broker

import (
	"bytes"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gridwatch/gridwatch/devices"
)

// StatusFunc receives a device's online/offline changes. It runs on the
// client's goroutine and must not block.
type StatusFunc func(devices.StatusChange)

// statusHook reports a device online when its session is established and
// offline when its connection ends, and follows what it publishes, or its
// will publishes, to devices/{id}/status ("online" or "offline"). Clients
// that are not registered devices, such as staff subscribers, have no status.
type statusHook struct {
	mqtt.HookBase
	lookup  LookupFunc
	report  StatusFunc
	metrics *metrics
	now     func() time.Time
}

func (h *statusHook) ID() string { return "gridwatch-status" }

func (h *statusHook) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect || b == mqtt.OnPublish || b == mqtt.OnWillSent
}

func (h *statusHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.emit(cl.ID, true, devices.StatusConnect)
}

// OnDisconnect reports the device offline, unless the connection ended
// because the same device connected again (a takeover): then the new
// connection's online stands.
func (h *statusHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.IsTakenOver() {
		return
	}
	h.emit(cl.ID, false, devices.StatusDisconnect)
}

func (h *statusHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.reported(cl.ID, pk)
	return pk, nil
}

func (h *statusHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.reported(cl.ID, pk)
}

// reported handles a message to devices/{id}/status of the client's own id.
func (h *statusHook) reported(id string, pk packets.Packet) {
	tid, kind, ok := splitDeviceTopic(pk.TopicName)
	if !ok || kind != "status" || tid != id {
		return
	}
	if online, ok := reportedStatus(pk.Payload); ok {
		h.emit(id, online, devices.StatusReported)
	}
}

// reportedStatus reads a devices/{id}/status payload: "online" or
// "offline", in any case, blanks around; ok is false for anything else.
func reportedStatus(payload []byte) (online, ok bool) {
	switch p := bytes.TrimSpace(payload); {
	case bytes.EqualFold(p, []byte("online")):
		return true, true
	case bytes.EqualFold(p, []byte("offline")):
		return false, true
	}
	return false, false
}

func (h *statusHook) emit(id string, online bool, reason string) {
	if _, ok := h.lookup(id); !ok {
		return
	}
	status := "offline"
	if online {
		status = "online"
	}
	h.metrics.status.WithLabelValues(status).Inc()
	h.report(devices.StatusChange{Device: id, Online: online, At: h.now(), Reason: reason})
}
