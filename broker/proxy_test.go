package broker

import (
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// proxied connects a paho client as a TCP load balancer at from would
// forward it: from from, with a PROXY protocol v2 header naming source as
// the client's address, or with none when source is empty.
func proxied(t *testing.T, from, source, addr, clientID, pass string) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(clientID).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).
		SetProtocolVersion(4).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
			d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
			conn, err := d.Dial("tcp", addr)
			if err != nil || source == "" {
				return conn, err
			}
			header := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(source), Port: 40000}, conn.RemoteAddr())
			if _, err := header.WriteTo(conn); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		})
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errTimedOut
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

var errTimedOut = errors.New("connect timed out")

// TestProxyProtocolLimitsTheDevicesOwnAddress attacks, behind a TCP load
// balancer, the promise that failed logins cost the address they come
// from, never the device (issue 10, item 2; issue 14's HAProxy mode): every
// device reaches the broker from the balancer's address, so without the
// PROXY protocol a stranger's wrong passwords with aq-1's id, forwarded
// like everyone's, banned (balancer, aq-1) and with it the device. With
// mqtt.proxy_protocol_from naming the balancer (127.0.0.1 here), the ban
// holds the stranger's own address (10.0.0.66), and aq-1 at 10.0.0.7 gets
// in through the same balancer. A connection from the balancer without a
// header is refused and counted; a header from anywhere else is not
// believed.
func TestProxyProtocolLimitsTheDevicesOwnAddress(t *testing.T) {
	const balancer = "127.0.0.1"
	rec := &received{}
	b, _ := startBroker(t, rec, func(b *Broker) {
		b.ProxyNetworks = []*net.IPNet{{IP: net.ParseIP(balancer), Mask: net.CIDRMask(32, 32)}}
		b.Limits = Limits{AuthFailures: 3, AuthFailureWindow: time.Hour, AuthFailureBan: time.Hour}
	})
	addr := loopback(b.Addr())
	for i := range 4 {
		if _, err := proxied(t, balancer, "10.0.0.66", addr, "aq-1", "guess"); err == nil {
			t.Fatalf("guess %d let in", i)
		}
	}
	if got := testutil.ToFloat64(b.metrics.limited.WithLabelValues("auth_failure_ban")); got != 1 {
		t.Errorf("auth_failure_ban refusals = %v, want 1: the stranger's fourth guess", got)
	}
	device, err := proxied(t, balancer, "10.0.0.7", addr, "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatalf("aq-1 through the balancer is locked out by a stranger's guesses through it: %v", err)
	}
	if tok := device.Publish("devices/aq-1/telemetry", 1, false, `{"pm25":4}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	waitFor(t, "the device's message", func() bool { return len(rec.snapshot()) == 1 })
	if _, err := proxied(t, balancer, "10.0.0.66", addr, "aq-1", "s3cret-aq1"); err == nil {
		t.Error("the stranger's banned address got in through the balancer, with the right secret")
	}

	// From the balancer's network, no header: refused, counted.
	if _, err := proxied(t, balancer, "", addr, "aq-2", "s3cret-aq2"); err == nil {
		t.Error("a connection from the balancer without a PROXY header was let in")
	}
	if got := testutil.ToFloat64(b.metrics.authFailures.WithLabelValues("proxy_header")); got != 1 {
		t.Errorf("proxy_header refusals = %v, want 1", got)
	}
	// From elsewhere, a header is not read: a stranger cannot claim the
	// device's address, and a device there connects as it is.
	if _, err := proxied(t, attacker, "10.0.0.7", addr, "aq-2", "s3cret-aq2"); err == nil {
		t.Error("a PROXY header from outside the balancer's network was believed")
	}
	if _, err := connectFrom(t, attacker, addr, "aq-2", "aq-2", "s3cret-aq2"); err != nil {
		t.Errorf("aq-2 at %s, not behind the balancer: %v", attacker, err)
	}
}
