package gb28181

import (
	"mime"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// onMessage takes a MANSCDP MESSAGE of a registered device: a Keepalive,
// an Alarm, a catalog change (Notify Catalog), or a device's Response to a
// Catalog or DeviceInfo query. The
// answers: 400 for a From that is not a 20-digit id or a body that is not
// MANSCDP, 403 for a device that is not registered or registered from
// another address, 413 for a body over MaxBodyBytes, 415 for another
// Content-Type, 200 otherwise (also for command types gridwatch does not
// read, which it ignores).
func (r *Registrar) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	now := r.Now()
	id, host := sender(req)
	if !isDeviceID(id) {
		r.respond(req, tx, sip.StatusBadRequest, "Bad Request (From must be a 20-digit GB/T 28181 id)", "bad_device_id")
		return
	}
	if _, reason := r.sessionFrom(id, host); reason != "" {
		phrase := "Forbidden (not registered)"
		if reason == "source_mismatch" {
			phrase = "Forbidden (registered from another address)"
		}
		r.respond(req, tx, sip.StatusForbidden, phrase, reason)
		return
	}
	if !isMANSCDP(req) {
		r.respond(req, tx, sip.StatusUnsupportedMediaType, "Unsupported Media Type (want "+ContentType+")", "bad_content_type",
			sip.NewHeader("Accept", ContentType))
		return
	}
	body := req.Body()
	if len(body) > MaxBodyBytes {
		r.respond(req, tx, sip.StatusRequestEntityTooLarge, "Request Entity Too Large", "too_large")
		return
	}
	m, err := ParseMessage(body)
	if err != nil {
		r.respond(req, tx, sip.StatusBadRequest, "Bad Request (malformed MANSCDP body)", "malformed_manscdp")
		r.Logger.Debug("gb28181 malformed MANSCDP", "device", id, "err", err)
		return
	}
	switch {
	case m.XMLName.Local == "Notify" && m.CmdType == CmdKeepalive:
		transport, reason := r.alive(id, req.Source(), host, now)
		if reason != "" { // unregistered since the check above
			r.respond(req, tx, sip.StatusForbidden, "Forbidden (not registered)", reason)
			return
		}
		r.respond(req, tx, sip.StatusOK, "OK", "")
		r.metrics.keepalives.Inc()
		r.emit(Presence{Device: id, Online: true, At: now, Reason: ReasonKeepalive, Transport: transport})
	case m.XMLName.Local == "Notify" && m.CmdType == CmdAlarm:
		r.respond(req, tx, sip.StatusOK, "OK", "")
		r.metrics.alarms.Inc()
		r.acknowledgeAlarm(id, m)
		if r.Alarm != nil {
			a := alarmOf(id, m)
			if err := r.Alarm(a); err != nil {
				r.metrics.dropped.Inc()
				r.Logger.Warn("gb28181 alarm not stored", "device", id, "source", a.Source, "err", err)
			}
		}
	case m.XMLName.Local == "Response" && m.CmdType == CmdCatalog:
		r.respond(req, tx, sip.StatusOK, "OK", "")
		r.metrics.queries.WithLabelValues(CmdCatalog, "answered").Inc()
		r.catalog(id, m, now)
	case m.XMLName.Local == "Notify" && m.CmdType == CmdCatalog:
		// A catalog change a device reports of itself (a channel going
		// on or off), read like a catalog's items.
		r.respond(req, tx, sip.StatusOK, "OK", "")
		r.catalog(id, m, now)
	case m.XMLName.Local == "Response" && m.CmdType == CmdDeviceInfo:
		r.respond(req, tx, sip.StatusOK, "OK", "")
		r.metrics.queries.WithLabelValues(CmdDeviceInfo, "answered").Inc()
		r.deviceInfo(id, m)
	default:
		r.respond(req, tx, sip.StatusOK, "OK", "")
		r.Logger.Debug("gb28181 message ignored", "device", id, "root", m.XMLName.Local, "cmd", truncate(m.CmdType))
	}
}

// isMANSCDP reports whether req's Content-Type is MANSCDP, in any case and
// with any parameters.
func isMANSCDP(req *sip.Request) bool {
	ct := req.ContentType()
	if ct == nil {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct.Value())
	return err == nil && strings.EqualFold(mt, ContentType)
}
