package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/devices"
)

// received records what the ingest hook was given.
type received struct {
	mu   sync.Mutex
	msgs []string // "id topic payload", " dup" appended for a redelivery
	fail error    // returned for every message once set
	// stored, when set, gives the Stored of each message by payload.
	stored func(payload string) Stored
}

func (r *received) ingest(_ context.Context, id, topic string, payload []byte, dup bool) (Stored, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := id + " " + topic + " " + string(payload)
	if dup {
		msg += " dup"
	}
	r.msgs = append(r.msgs, msg)
	if r.stored != nil {
		return r.stored(string(payload)), r.fail
	}
	return nil, r.fail
}

func (r *received) failWith(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

func (r *received) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func mustHash(t testing.TB, secret string) string {
	t.Helper()
	h, err := devices.HashSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func startBroker(t *testing.T, rec *received, opts ...func(*Broker)) (*Broker, *prometheus.Registry) {
	t.Helper()
	reg := devices.NewRegistry([]devices.Device{
		{ID: "aq-1", Type: "air_quality", Grid: "G1", SecretHash: mustHash(t, "s3cret-aq1")},
		{ID: "aq-2", Type: "air_quality", Grid: "G1", SecretHash: mustHash(t, "s3cret-aq2")},
		{ID: "nosecret", Type: "noise", Grid: "G1"},
	})
	pr := prometheus.NewRegistry()
	b := &Broker{Listen: "127.0.0.1:0", Lookup: reg.Lookup, Ingest: rec.ingest, Registerer: pr}
	for _, o := range opts {
		o(b)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, pr
}

func connect(t *testing.T, addr, clientID, user, pass string) (paho.Client, error) {
	t.Helper()
	return connectFrom(t, "", addr, clientID, user, pass)
}

// connectFrom connects a paho client from the local address local (such as
// 127.0.0.2, a second loopback address standing for another host), or from
// any when local is empty.
func connectFrom(t *testing.T, local, addr, clientID, user, pass string) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).
		SetProtocolVersion(4) // no silent fallback to 3.1, which would count a refusal twice
	if local != "" {
		opts.SetDialer(&net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}})
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // Generous: a passing run does not wait for it.
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectAuthentication(t *testing.T) {
	b, pr := startBroker(t, &received{})
	addr := strings.Replace(b.Addr(), "[::]", "127.0.0.1", 1)
	cases := []struct {
		name, clientID, user, pass, reason string
	}{
		{"valid", "aq-1", "aq-1", "s3cret-aq1", ""},
		{"wrong password", "aq-2", "aq-2", "nope", "bad_password"},
		{"unknown device", "ghost", "ghost", "x", "unknown_device"},
		{"client id not the device", "aq-2-x", "aq-2", "s3cret-aq2", "client_id_mismatch"},
		{"device without secret", "nosecret", "nosecret", "", "no_secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := connect(t, addr, tc.clientID, tc.user, tc.pass)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("connect succeeded, want refusal")
			}
			if got := testutil.ToFloat64(b.metrics.authFailures.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("auth failures{reason=%s} = %v, want 1", tc.reason, got)
			}
		})
	}
	if n, err := testutil.GatherAndCount(pr, "gridwatch_mqtt_auth_failures_total"); err != nil || n != 4 {
		t.Errorf("auth failure series = %d (%v), want 4", n, err)
	}
}

func TestTelemetryReachesIngestAndACLHoldsOthersOut(t *testing.T) {
	rec := &received{}
	b, _ := startBroker(t, rec)
	addr := strings.Replace(b.Addr(), "[::]", "127.0.0.1", 1)
	c, err := connect(t, addr, "aq-1", "aq-1", "s3cret-aq1")
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []struct{ topic, payload string }{
		{"devices/aq-1/telemetry", `{"pm25":1}`},
		{"devices/aq-2/telemetry", `{"pm25":666}`}, // someone else's topic: denied
		{"devices/aq-1/telemetry", `{"pm25":2}`},
	} {
		if tok := c.Publish(pub.topic, 0, false, pub.payload); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", pub.topic, tok.Error())
		}
	}
	waitFor(t, "two messages", func() bool { return len(rec.snapshot()) == 2 })
	want := []string{`aq-1 devices/aq-1/telemetry {"pm25":1}`, `aq-1 devices/aq-1/telemetry {"pm25":2}`}
	if got := rec.snapshot(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ingested %q, want %q", got, want)
	}
	if got := testutil.ToFloat64(b.metrics.aclDenied.WithLabelValues("publish")); got != 1 {
		t.Errorf("acl denied publishes = %v, want 1", got)
	}
}

// TestIngestHookPassesDup checks that ingest learns of a redelivery (the
// PUBLISH's DUP flag), which it checks against what is stored already.
func TestIngestHookPassesDup(t *testing.T) {
	rec := &received{}
	h := &ingestHook{ctx: context.Background(), ingest: rec.ingest, metrics: newMetrics(nil, nil)}
	for _, dup := range []bool{false, true} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Dup: dup},
			TopicName: "devices/aq-1/telemetry", Payload: []byte(`{"pm25":1}`)}
		// Stored: acknowledged as usual, delivered to no one.
		if _, err := h.OnPublish(&mqtt.Client{}, pk); !errors.Is(err, packets.CodeSuccessIgnore) {
			t.Fatalf("OnPublish(dup=%v) = %v, want %v", dup, err, packets.CodeSuccessIgnore)
		}
	}
	want := []string{`aq-1 devices/aq-1/telemetry {"pm25":1}`, `aq-1 devices/aq-1/telemetry {"pm25":1} dup`}
	if got := rec.snapshot(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ingested %q, want %q", got, want)
	}
}

func TestReasonCodes(t *testing.T) {
	if got := reasonCode(fmt.Errorf("x")); got != packets.ErrPayloadFormatInvalid {
		t.Errorf("reasonCode(other) = %v", got)
	}
	if got := reasonCode(fmt.Errorf("wrap: %w", context.Canceled)); got != packets.ErrServerBusy {
		t.Errorf("reasonCode(canceled) = %v", got)
	}
}

// TestForeignClientMosquittoPub publishes with mosquitto_pub over MQTT 3.1.1
// and 5, and checks that an MQTT 5 client sees a rejection in its PUBACK.
func TestForeignClientMosquittoPub(t *testing.T) {
	bin := mosquitto(t, "mosquitto_pub")
	rec := &received{}
	b, _ := startBroker(t, rec)
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	pub := func(version, payload string) string {
		out, err := exec.Command(bin, "-d", "-V", version, "-h", host, "-p", port, "-i", "aq-2", "-u", "aq-2", "-P", "s3cret-aq2",
			"-q", "1", "-t", "devices/aq-2/telemetry", "-m", payload).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub -V %s: %v: %s", version, err, out)
		}
		return string(out)
	}
	pub("311", `{"pm10":311}`)
	if out := pub("5", `{"pm10":5}`); !strings.Contains(out, "received PUBACK") {
		t.Errorf("MQTT 5 publish got no PUBACK:\n%s", out)
	}
	waitFor(t, "mosquitto messages", func() bool { return len(rec.snapshot()) == 2 })

	rec.failWith(fmt.Errorf("malformed"))
	if out := pub("5", `{"pm10":`); !strings.Contains(out, "rc:153") && !strings.Contains(out, "RC:153") {
		t.Errorf("rejected MQTT 5 publish: want PUBACK reason 153 (payload format invalid), got:\n%s", out)
	}
}

// TestCloseWhileClientsComeAndGo checks what a SIGTERM relies on: Close
// returns while devices connect and drop at the same time. mochi's own
// listener CloseFn could hang for ever there (Clients.GetByListener reads
// the clients' lock twice, and a client being deleted between the two
// blocks the second read behind its write lock), which hung this
// package's tests once in a run of make test under load. The window is a
// few instructions wide: the test does not catch that hang reliably, it
// attacks the promise.
func TestCloseWhileClientsComeAndGo(t *testing.T) {
	for range 10 {
		b, _ := startBroker(t, &received{}, func(b *Broker) { b.Limits = Limits{ConnRatePerIP: -1} })
		addr := loopback(b.Addr())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, pass := "aq-1", "s3cret-aq1"
				if i%2 == 1 {
					id, pass = "aq-2", "s3cret-aq2"
				}
				for {
					select {
					case <-stop:
						return
					default:
					}
					conn, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						continue // closed: the loop ends at stop
					}
					_, _ = conn.Write(connectPacket(id, id, pass, nil))
					_, _ = conn.Write([]byte{0xe0, 0}) // DISCONNECT
					conn.Close()
				}
			}()
		}
		time.Sleep(50 * time.Millisecond) // Connections come and go.
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case <-closed:
		case <-time.After(time.Minute):
			t.Fatal("Close did not return within a minute while clients came and went")
		}
		close(stop)
		wg.Wait()
	}
}
