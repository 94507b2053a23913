package broker

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sourceCases are the per-address keys of remote addresses; they seed
// FuzzSource.
var sourceCases = []struct{ remote, want string }{
	{"127.0.0.2:51234", "127.0.0.2"},
	{"127.0.0.3:51234", "127.0.0.3"}, // IPv4: per address, not per /24
	{"[::ffff:127.0.0.2]:51234", "127.0.0.2"},
	{"[2001:db8:1:2::1]:51234", "2001:db8:1:2::/64"},
	{"[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", "2001:db8:1:2::/64"},
	{"[2001:db8:1:3::1]:51234", "2001:db8:1:3::/64"},
	{"[fe80::1%eth0]:51234", "fe80::/64"},
	{"[::1]:51234", "::/64"},
	{"2001:db8:1:2::7", "2001:db8:1:2::/64"}, // no port
	{"pipe", "pipe"},
	{"", ""},
}

func TestSourceBucketsIPv6By64(t *testing.T) {
	for _, tc := range sourceCases {
		if got := source(tc.remote); got != tc.want {
			t.Errorf("source(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

// FuzzSource checks that two IPv6 addresses of one /64 are one source,
// and that an address of another /64 is another.
func FuzzSource(f *testing.F) {
	for _, tc := range sourceCases {
		f.Add(tc.remote, uint64(0))
	}
	f.Fuzz(func(t *testing.T, remote string, low uint64) {
		key := source(remote) // must not panic, whatever a peer's address
		ip, err := netip.ParseAddrPort(remote)
		if err != nil || !ip.Addr().Is6() || ip.Addr().Is4In6() {
			return
		}
		b := ip.Addr().As16()
		for i := range 8 {
			b[8+i] = byte(low >> (8 * i))
		}
		if other := source(netip.AddrPortFrom(netip.AddrFrom16(b), 1).String()); other != key {
			t.Errorf("%s and %s, of one /64, are sources %q and %q", remote, netip.AddrFrom16(b), key, other)
		}
		b[7] ^= 1
		if other := source(netip.AddrPortFrom(netip.AddrFrom16(b), 1).String()); other == key {
			t.Errorf("%s and %s, of two /64s, are both source %q", remote, netip.AddrFrom16(b), key)
		}
	})
}

// limitRig is a limit hook of a broker that listens nowhere, and clients
// with any remote address: no other IPv6 address than ::1 can connect over
// loopback here, so the /64 attacks below call the hook as mochi does.
type limitRig struct {
	h      *limitHook
	server *mqtt.Server
}

func newLimitRig(t *testing.T, l Limits) *limitRig {
	t.Helper()
	server := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = server.Close() })
	return &limitRig{h: newLimitHook(l.withDefaults(), server, newMetrics(nil, server.Info), slog.New(slog.DiscardHandler)), server: server}
}

// noConnect is the CONNECT packet OnConnect is given: the hook reads none
// of it.
var noConnect packets.Packet

// client is a client with id connecting from remote.
func (r *limitRig) client(id, remote string) *mqtt.Client {
	cl := r.server.NewClient(nil, "tcp", id, false)
	cl.Net.Remote = remote
	cl.Properties.ProtocolVersion = 4
	return cl
}

// TestAttackIPv6AddressRotation attacks the per-address limits with the
// 2^64 addresses of one /64: an attacker taking a fresh address for every
// connection is held to one address's connection rate, and for every
// password guess to one address's failed-login ban; a device in another
// /64, and one at the next IPv4 address, are let in.
func TestAttackIPv6AddressRotation(t *testing.T) {
	r := newLimitRig(t, Limits{ConnRatePerIP: 0.001, ConnBurstPerIP: 5, AuthFailures: 3, AuthFailureWindow: time.Hour, AuthFailureBan: time.Hour})
	attackerAddr := func(i int) string { return fmt.Sprintf("[2001:db8:1:2::%x]:40000", i+1) }

	refused := 0
	for i := range 20 {
		if r.h.OnConnect(r.client(fmt.Sprintf("rotating-%d", i), attackerAddr(i)), noConnect) != nil {
			refused++
		}
	}
	if refused != 15 {
		t.Errorf("20 connections from 20 addresses of one /64 with a burst of 5: %d refused, want 15", refused)
	}
	if got := testutil.ToFloat64(r.h.metrics.limited.WithLabelValues("conn_rate")); got != 15 {
		t.Errorf("conn_rate refusals = %v, want 15", got)
	}
	for _, remote := range []string{"[2001:db8:1:3::1]:40000", "127.0.0.2:40000", "127.0.0.3:40000"} {
		if err := r.h.OnConnect(r.client("aq-9", remote), noConnect); err != nil {
			t.Errorf("a device at %s refused for the /64's connections: %v", remote, err)
		}
	}

	// Wrong passwords for aq-1, each from a fresh address of the /64: the
	// ban of the third covers the whole /64.
	r = newLimitRig(t, Limits{ConnRatePerIP: -1, AuthFailures: 3, AuthFailureWindow: time.Hour, AuthFailureBan: time.Hour})
	for i := range 3 {
		cl := r.client("aq-1", attackerAddr(i))
		if err := r.h.OnConnect(cl, noConnect); err != nil {
			t.Fatalf("guess %d refused before the ban: %v", i, err)
		}
		r.h.authFailed(cl)
	}
	if err := r.h.OnConnect(r.client("aq-1", attackerAddr(100)), noConnect); err == nil {
		t.Error("a fourth guess from a fresh address of the /64 was let through to the password check")
	}
	if got := testutil.ToFloat64(r.h.metrics.limited.WithLabelValues("auth_failure_ban")); got != 1 {
		t.Errorf("auth_failure_ban refusals = %v, want 1", got)
	}
	for _, remote := range []string{"[2001:db8:1:3::1]:40000", "127.0.0.2:40000"} {
		if err := r.h.OnConnect(r.client("aq-1", remote), noConnect); err != nil {
			t.Errorf("aq-1 at %s refused for the /64's guesses: %v", remote, err)
		}
	}
}

// TestAttackPendingConnectsPerIPv6Prefix attacks the bound of connections
// waiting for their CONNECT with many addresses of one /64.
func TestAttackPendingConnectsPerIPv6Prefix(t *testing.T) {
	r := newLimitRig(t, Limits{ConnBurstPerIP: 4})
	accepted := 0
	for i := range 10 {
		if r.h.pending.add(fmt.Sprintf("[2001:db8:1:2::%x]:40000", i+1)) {
			accepted++
		}
	}
	if accepted != 4 {
		t.Errorf("waiting connections from 10 addresses of one /64, bound 4: %d accepted, want 4", accepted)
	}
	if !r.h.pending.add("[2001:db8:1:3::1]:40000") {
		t.Error("a connection from another /64 refused for the first one's")
	}
}
