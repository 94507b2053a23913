package gb28181

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/gridwatch/gridwatch/devices"
)

// maxKeyID bounds the id part of a failure key: a stranger's ids may be
// long, and device ids are 20 digits.
const maxKeyID = 32

// onRegister authenticates a REGISTER and records the registration. The
// answers: 400 for a From that is not a 20-digit id or an unreadable
// Authorization, 404 for an id the registry does not hold, 403 for a
// device without a SIP password, a wrong username or password, or a banned
// (address, id) pair, 401 with a fresh challenge when the request has no
// credentials or a stale nonce, 200 with Expires and Date otherwise.
func (r *Registrar) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	now := r.Now()
	id, host := sender(req)
	if !isDeviceID(id) {
		r.respond(req, tx, sip.StatusBadRequest, "Bad Request (From must be a 20-digit GB/T 28181 id)", "bad_device_id")
		return
	}
	key := failureKey{host, id}
	if r.failures.Banned(key, now) {
		r.respond(req, tx, sip.StatusForbidden, "Forbidden (too many failed logins, retry later)", "auth_failure_ban",
			sip.NewHeader("Retry-After", strconv.Itoa(int(r.AuthFailureBan/time.Second))))
		return
	}
	d, ok := r.Lookup(id)
	if !ok {
		r.respond(req, tx, sip.StatusNotFound, "Not Found (unknown device id)", "unknown_device")
		return
	}
	password, ok := r.password(d)
	if !ok {
		r.respond(req, tx, sip.StatusForbidden, "Forbidden (no SIP password configured)", "no_password")
		return
	}
	h := req.GetHeader("Authorization")
	if h == nil {
		r.challenge(req, tx, now, host, id, false)
		return
	}
	switch r.nonces.check(h.Value(), req.Method.String(), r.Realm, now, host, id, password) {
	case authMalformed:
		r.respond(req, tx, sip.StatusBadRequest, "Bad Request (unreadable Authorization)", "bad_authorization")
		return
	case authStale:
		r.challenge(req, tx, now, host, id, true)
		return
	case authWrongUser:
		r.authFailed(key, now)
		r.respond(req, tx, sip.StatusForbidden, "Forbidden (username is not the device id)", "wrong_username")
		return
	case authWrong:
		r.authFailed(key, now)
		r.respond(req, tx, sip.StatusForbidden, "Forbidden (wrong password)", "wrong_password")
		return
	}
	expires := r.expires(req)
	transport := transportOf(req)
	if expires == 0 {
		r.unregister(id, now)
		r.respond(req, tx, sip.StatusOK, "OK", "", dateHeader(now))
		return
	}
	fresh := r.register(id, transport, req.Source(), host, now, now.Add(expires))
	extra := []sip.Header{sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))), dateHeader(now)}
	if c := req.Contact(); c != nil {
		extra = append(extra, c.Clone())
	}
	r.respond(req, tx, sip.StatusOK, "OK", "", extra...)
	r.metrics.transitions.WithLabelValues("online", ReasonRegistered).Inc()
	r.emit(Presence{Device: id, Online: true, At: now, Reason: ReasonRegistered, Transport: transport})
	if fresh {
		r.queryAfterRegister(id)
	}
}

// password returns d's plain SIP password, or false when it has none or it
// cannot be opened (logged: a node with the wrong secrets key).
func (r *Registrar) password(d devices.Device) (string, bool) {
	if d.SIPPassword == "" {
		return "", false
	}
	if !devices.IsSealed(d.SIPPassword) {
		return d.SIPPassword, true
	}
	if r.OpenSecret == nil {
		return "", false
	}
	p, err := r.OpenSecret(d.ID, d.SIPPassword)
	if err != nil {
		r.Logger.Error("gb28181: SIP password cannot be opened", "device", d.ID, "err", err)
		return "", false
	}
	return p, true
}

// challenge answers 401 with a new nonce for host and id.
func (r *Registrar) challenge(req *sip.Request, tx sip.ServerTransaction, now time.Time, host, id string, stale bool) {
	reason := ""
	if stale {
		reason = "stale_nonce"
	}
	value := r.nonces.challenge(r.Realm, r.nonces.issue(now, host, id), stale)
	r.respond(req, tx, sip.StatusUnauthorized, "Unauthorized", reason, sip.NewHeader("WWW-Authenticate", value))
}

// authFailed counts a wrong digest towards the ban of its (host, id) pair.
func (r *Registrar) authFailed(k failureKey, now time.Time) {
	if len(k.id) > maxKeyID {
		k.id = strings.Clone(k.id[:maxKeyID])
	}
	if r.failures.Add(k, now) {
		r.Logger.Warn("gb28181 registrations banned after failed logins", "device", k.id, "remote", k.host,
			"failures", r.AuthFailures, "window", r.AuthFailureWindow, "ban", r.AuthFailureBan)
	}
}

// expires returns the registration time req asks for (its Expires header,
// else its Contact's expires parameter, else 3600 s), capped at
// MaxExpires; 0 asks to unregister.
func (r *Registrar) expires(req *sip.Request) time.Duration {
	secs := -1
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			secs = n
		}
	}
	if c := req.Contact(); secs < 0 && c != nil {
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				secs = n
			}
		}
	}
	if secs < 0 {
		secs = 3600
	}
	return min(time.Duration(secs)*time.Second, r.MaxExpires)
}

// dateHeader is the Date of a 200 to REGISTER, GB/T 28181's time
// synchronisation: local time without zone, to the millisecond.
func dateHeader(now time.Time) sip.Header {
	return sip.NewHeader("Date", now.Format("2006-01-02T15:04:05.000"))
}
