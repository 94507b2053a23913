package gb28181

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// session is a registered device. It lives from a registration until the
// device unregisters or its registration expires; in between it is online
// or, having missed its keepalives, offline.
type session struct {
	id        string
	transport string // "udp" or "tcp"
	source    string // host:port the device registered from
	host      string
	since     time.Time // registered since
	expires   time.Time
	lastAlive time.Time // the registration or the latest keepalive
	online    bool
	info      DeviceInfo
	channels  map[string]bool // catalog: channel id -> online
}

// DeviceInfo is a device's answer to a DeviceInfo query.
type DeviceInfo struct {
	Name         string `json:"name,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	Firmware     string `json:"firmware,omitempty"`
	// Channels is the number of channels the device says it has.
	Channels int `json:"channels,omitempty"`
}

// DeviceState is a registered device as the registrar sees it.
type DeviceState struct {
	ID        string `json:"id"`
	Online    bool   `json:"online"`
	Transport string `json:"transport"`
	// Remote is the address the device registered from.
	Remote        string     `json:"remote"`
	RegisteredAt  time.Time  `json:"registered_at"`
	Expires       time.Time  `json:"expires"`
	LastKeepalive time.Time  `json:"last_keepalive"`
	Info          DeviceInfo `json:"info"`
	// Channels are the catalogued channels' ids with their status, ordered
	// by id.
	Channels []ChannelState `json:"channels"`
}

// ChannelState is one catalogued channel.
type ChannelState struct {
	ID     string `json:"id"`
	Online bool   `json:"online"`
}

// register records a registration and reports whether it is fresh: the
// device was not registered, or registered from another address or
// transport, so that its catalog and info are to be asked again.
func (r *Registrar) register(id, transport, source, host string, now, expires time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[id]
	fresh := s == nil || s.source != source || s.transport != transport
	if s == nil {
		s = &session{id: id, since: now, channels: map[string]bool{}}
		r.sessions[id] = s
	}
	if fresh {
		s.since = now
	}
	s.transport, s.source, s.host = transport, source, host
	s.expires, s.lastAlive = expires, now
	r.setOnlineLocked(s, true)
	return fresh
}

// unregister ends id's registration: it and its channels go offline.
func (r *Registrar) unregister(id string, now time.Time) {
	r.mu.Lock()
	s := r.sessions[id]
	var st DeviceState
	if s != nil {
		st = s.state()
		r.setOnlineLocked(s, false)
		delete(r.sessions, id)
		r.gaugeLocked()
	}
	r.mu.Unlock()
	if s != nil {
		r.offline(st, now, ReasonUnregistered, "the device unregistered")
	}
}

// alive records a keepalive of id from source, on host. It returns the
// session's transport, or why the keepalive is refused: not_registered,
// and source_mismatch for a device registered from another host (a forged
// keepalive must not keep a dead device online). The source's port may
// change (a new TCP connection, a NAT mapping): queries go to the latest.
func (r *Registrar) alive(id, source, host string, now time.Time) (transport, reason string) {
	r.mu.Lock()
	s := r.sessions[id]
	switch {
	case s == nil:
		r.mu.Unlock()
		return "", "not_registered"
	case s.host != host:
		r.mu.Unlock()
		return "", "source_mismatch"
	}
	back := !s.online
	s.lastAlive, s.source = now, source
	r.setOnlineLocked(s, true)
	transport = s.transport
	r.mu.Unlock()
	if back {
		r.metrics.transitions.WithLabelValues("online", ReasonKeepalive).Inc()
	}
	return transport, ""
}

// sessionFrom returns a copy of id's session when it is registered from
// host, or the rejection reason.
func (r *Registrar) sessionFrom(id, host string) (session, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[id]
	switch {
	case s == nil:
		return session{}, "not_registered"
	case s.host != host:
		return session{}, "source_mismatch"
	}
	return *s, ""
}

// sweep marks offline the devices that missed their keepalives and ends
// the expired registrations, until ctx ends.
func (r *Registrar) sweep(ctx context.Context) {
	every := max(r.KeepaliveInterval/10, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.sweepOnce(r.Now())
	}
}

// sweepOnce applies the keepalive and expiry rules at now.
func (r *Registrar) sweepOnce(now time.Time) {
	timeout := time.Duration(r.KeepaliveMisses) * r.KeepaliveInterval
	type change struct {
		s       DeviceState
		reason  string
		message string
	}
	var changes []change
	r.mu.Lock()
	for id, s := range r.sessions {
		switch {
		case !now.Before(s.expires):
			if s.online {
				changes = append(changes, change{s.state(), ReasonExpired, "the registration expired without a refresh"})
			}
			r.setOnlineLocked(s, false)
			delete(r.sessions, id)
		case s.online && now.Sub(s.lastAlive) >= timeout:
			r.setOnlineLocked(s, false)
			changes = append(changes, change{s.state(), ReasonKeepaliveTimeout,
				fmt.Sprintf("no keepalive for %s (%d × %s)", now.Sub(s.lastAlive).Round(time.Second), r.KeepaliveMisses, r.KeepaliveInterval)})
		}
	}
	r.gaugeLocked()
	r.mu.Unlock()
	for _, c := range changes {
		r.offline(c.s, now, c.reason, c.message)
	}
}

// offline reports s and its online channels offline.
func (r *Registrar) offline(s DeviceState, now time.Time, reason, message string) {
	r.metrics.transitions.WithLabelValues("offline", reason).Inc()
	r.Logger.Info("gb28181 device offline", "device", s.ID, "reason", reason, "detail", message)
	r.emit(Presence{Device: s.ID, Online: false, At: now, Reason: reason, Transport: s.Transport, Error: message})
	for _, ch := range s.Channels {
		if ch.Online && ch.ID != s.ID {
			r.emit(Presence{Device: ch.ID, Parent: s.ID, Online: false, At: now, Reason: ReasonParentOffline,
				Transport: s.Transport, Error: "device " + s.ID + " is offline: " + message})
		}
	}
}

// setOnlineLocked sets s online or not, keeping the count of online
// sessions, and the gauges. r.mu is held.
func (r *Registrar) setOnlineLocked(s *session, online bool) {
	switch {
	case online && !s.online:
		r.online++
	case !online && s.online:
		r.online--
	}
	s.online = online
	r.gaugeLocked()
}

// gaugeLocked sets the device gauges. r.mu is held.
func (r *Registrar) gaugeLocked() {
	r.metrics.devices.WithLabelValues("online").Set(float64(r.online))
	r.metrics.devices.WithLabelValues("offline").Set(float64(len(r.sessions) - r.online))
}

// Devices returns the registered devices, ordered by id.
func (r *Registrar) Devices() []DeviceState {
	r.mu.Lock()
	out := make([]DeviceState, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s.state())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b DeviceState) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Device returns one registered device.
func (r *Registrar) Device(id string) (DeviceState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[id]
	if s == nil {
		return DeviceState{}, false
	}
	return s.state(), true
}

func (s *session) state() DeviceState {
	return DeviceState{
		ID: s.id, Online: s.online, Transport: s.transport, Remote: s.source,
		RegisteredAt: s.since, Expires: s.expires, LastKeepalive: s.lastAlive, Info: s.info,
		Channels: sortedChannels(s.channels),
	}
}

// sortedChannels returns a catalog's channels ordered by id.
func sortedChannels(m map[string]bool) []ChannelState {
	out := make([]ChannelState, 0, len(m))
	for id, on := range m {
		out = append(out, ChannelState{ID: id, Online: on})
	}
	slices.SortFunc(out, func(a, b ChannelState) int { return strings.Compare(a.ID, b.ID) })
	return out
}
