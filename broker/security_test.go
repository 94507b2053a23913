package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/devices"
)

func loopback(addr string) string { return strings.Replace(addr, "[::]", "127.0.0.1", 1) }

func TestClientIDTakeoverRefused(t *testing.T) {
	rec := &received{}
	b, _ := startBroker(t, rec)
	addr := loopback(b.Addr())
	legit, err := connect(t, addr, "aq-1", "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, addr, "aq-1", "aq-1", "wrong"); err == nil {
		t.Fatal("impostor with the same client id connected")
	}
	if !legit.IsConnectionOpen() {
		t.Fatal("the legitimate connection was dropped by a refused impostor")
	}
	if tok := legit.Publish("devices/aq-1/telemetry", 0, false, `{"pm25":3}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish after impostor: %v", tok.Error())
	}
	waitFor(t, "message after impostor", func() bool { return len(rec.snapshot()) == 1 })
}

// TestOversizePacketRefusedWithoutAllocation attacks the promise that a
// packet over the size limit is refused from its fixed header: it announces
// a 200 MiB PUBLISH and checks that the broker closes the connection
// without allocating it.
func TestOversizePacketRefusedWithoutAllocation(t *testing.T) {
	b, _ := startBroker(t, &received{})
	conn, err := net.Dial("tcp", loopback(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if code := rawLogin(t, conn, connectPacket("aq-1", "aq-1", "s3cret-aq1", nil)); code != 0 {
		t.Fatalf("login: return code %d", code)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// PUBLISH QoS 0 with remaining length 200 MiB, then a little data.
	_, _ = conn.Write(append(append([]byte{0x30}, varint(200<<20)...), make([]byte, 1024)...))
	if !closedWithin(conn, 5*time.Second) {
		t.Fatal("connection still open after an oversize packet")
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("heap grew %d MiB on an oversize packet", grew>>20)
	}
}

func TestRateLimitThrottlesAndCounts(t *testing.T) {
	rec := &received{}
	b, _ := startBroker(t, rec, func(b *Broker) { b.Limits = Limits{MessageRate: 1, MessageBurst: 5} })
	c, err := connect(t, loopback(b.Addr()), "aq-1", "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		c.Publish("devices/aq-1/telemetry", 0, false, `{"pm25":1}`).WaitTimeout(time.Second)
	}
	waitFor(t, "throttled publishes counted", func() bool {
		return testutil.ToFloat64(b.metrics.limited.WithLabelValues("message_rate")) >= 40
	})
	if n := len(rec.snapshot()); n < 5 || n > 10 {
		t.Errorf("ingested %d of 50 burst messages, want the burst of 5 (plus refills)", n)
	}
}

func TestConnectionRateAndFlappingBan(t *testing.T) {
	b, _ := startBroker(t, &received{}, func(b *Broker) { b.Limits = Limits{FlapConnects: 3} })
	addr := loopback(b.Addr())
	for i := range 3 {
		c, err := connect(t, addr, "aq-1", "aq-1", "s3cret-aq1")
		if err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		c.Disconnect(0)
	}
	if _, err := connect(t, addr, "aq-1", "aq-1", "s3cret-aq1"); err == nil {
		t.Fatalf("fourth connect within the window was let in; limited=%v rate=%v", testutil.ToFloat64(b.metrics.limited.WithLabelValues("flapping_ban")), testutil.ToFloat64(b.metrics.limited.WithLabelValues("conn_rate")))
	}
	if _, err := connect(t, addr, "aq-2", "aq-2", "s3cret-aq2"); err != nil {
		t.Fatalf("another device is banned too: %v", err)
	}
	if got := testutil.ToFloat64(b.metrics.limited.WithLabelValues("flapping_ban")); got != 1 {
		t.Errorf("flapping bans = %v, want 1", got)
	}
}

func TestStatusFollowsConnections(t *testing.T) {
	var mu sync.Mutex
	var got []string
	b, _ := startBroker(t, &received{}, func(b *Broker) {
		b.Status = func(c devices.StatusChange) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, c.Device+" "+map[bool]string{true: "online", false: "offline"}[c.Online]+" "+c.Reason)
		}
	})
	snapshot := func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(got, ",") }
	c, err := connect(t, loopback(b.Addr()), "aq-1", "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("devices/aq-1/status", 1, false, "offline").WaitTimeout(5 * time.Second)
	c.Disconnect(100)
	want := "aq-1 online connect,aq-1 offline reported,aq-1 offline disconnect"
	waitFor(t, "status changes", func() bool { return snapshot() == want })
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate whose CN is aq-1.
type testPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, IPAddresses: ips,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{pool: pool,
		server: issue(2, "gridwatch", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}),
		client: issue(3, "aq-1", x509.ExtKeyUsageClientAuth, nil)}
}

func TestTLSAndMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	rec := &received{}
	b, _ := startBroker(t, rec, func(b *Broker) {
		b.TLSListen = "127.0.0.1:0"
		b.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool}
	})
	addr := b.TLSAddr()
	dial := func(clientID, user, pass string, certs []tls.Certificate) error {
		opts := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(clientID).SetUsername(user).SetPassword(pass).
			SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).
			SetTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: certs, MinVersion: tls.VersionTLS12})
		c := paho.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(5 * time.Second) {
			return net.ErrClosed
		}
		if tok.Error() == nil {
			c.Disconnect(100)
		}
		return tok.Error()
	}
	if err := dial("aq-2", "aq-2", "s3cret-aq2", nil); err != nil {
		t.Errorf("TLS with password: %v", err)
	}
	if err := dial("aq-1", "aq-1", "", []tls.Certificate{pki.client}); err != nil {
		t.Errorf("mTLS with a certificate for aq-1, no password: %v", err)
	}
	if err := dial("aq-2", "aq-2", "", []tls.Certificate{pki.client}); err == nil {
		t.Error("certificate for aq-1 let aq-2 in")
	}
	// Plain MQTT to the TLS port must fail.
	if _, err := connect(t, addr, "aq-2", "aq-2", "s3cret-aq2"); err == nil {
		t.Error("plaintext MQTT connected to the TLS port")
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
}

// TestWrongPasswordsDoNotLockTheDeviceOut attacks the promise that the
// flapping ban counts a device's own connects and that failed logins cost
// the address they come from, never the device (issue 10, item 2). An
// attacker at 127.0.0.2 sends 15 wrong-password CONNECTs with aq-1's id,
// which is predictable: aq-1 at 127.0.0.1 still connects and publishes,
// while the attacker's later attempts are refused, the right secret
// included, and counted.
func TestWrongPasswordsDoNotLockTheDeviceOut(t *testing.T) {
	rec := &received{}
	b, _ := startBroker(t, rec) // default limits
	addr := loopback(b.Addr())
	const attacker = "127.0.0.2"
	for i := range 15 {
		if _, err := connectFrom(t, attacker, addr, "aq-1", "aq-1", "guess"); err == nil {
			t.Fatalf("wrong password %d was let in", i)
		}
	}
	victim, err := connectFrom(t, "127.0.0.1", addr, "aq-1", "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatalf("the device is locked out by a stranger's wrong passwords: %v (limited: flapping_ban=%v)",
			err, testutil.ToFloat64(b.metrics.limited.WithLabelValues("flapping_ban")))
	}
	if tok := victim.Publish("devices/aq-1/telemetry", 0, false, `{"pm25":4}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	waitFor(t, "the device's message", func() bool { return len(rec.snapshot()) == 1 })

	if got := testutil.ToFloat64(b.metrics.authFailures.WithLabelValues("bad_password")); got != 10 {
		t.Errorf("bad_password failures = %v, want 10: the 11th attempt on is refused before its password is checked", got)
	}
	if got := testutil.ToFloat64(b.metrics.limited.WithLabelValues("auth_failure_ban")); got != 5 {
		t.Errorf("attempts refused by the ban = %v, want 5", got)
	}
	// During the ban the pair is refused without its password being
	// checked, so that a guess learns nothing: the right secret too.
	if _, err := connectFrom(t, attacker, addr, "aq-1", "aq-1", "s3cret-aq1"); err == nil {
		t.Error("the banned address got in, with the right secret")
	}
	if got := testutil.ToFloat64(b.metrics.limited.WithLabelValues("auth_failure_ban")); got != 6 {
		t.Errorf("attempts refused by the ban = %v, want 6", got)
	}
	if got := testutil.ToFloat64(b.metrics.limited.WithLabelValues("flapping_ban")); got != 0 {
		t.Errorf("flapping bans = %v, want 0: the device connected once", got)
	}
	if !victim.IsConnectionOpen() {
		t.Error("the device's connection was dropped by the attacker's attempts")
	}
}
