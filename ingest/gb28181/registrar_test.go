package gb28181_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/simulators"
)

const realm = gb28181.DefaultRealm

// presenceLog records what a registrar reports.
type presenceLog struct {
	mu     sync.Mutex
	events []gb28181.Presence
	alarms []gb28181.Alarm
}

func (l *presenceLog) presence(p gb28181.Presence) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, p)
	return nil
}

func (l *presenceLog) alarm(a gb28181.Alarm) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alarms = append(l.alarms, a)
	return nil
}

// count returns how many events match f.
func (l *presenceLog) count(f func(gb28181.Presence) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.events {
		if f(p) {
			n++
		}
	}
	return n
}

// testRegistrar starts a registrar on loopback for the devices of reg,
// whose SIP passwords are sealed by box.
type testRegistrar struct {
	*gb28181.Registrar
	log     *presenceLog
	metrics *prometheus.Registry
}

func startRegistrar(t *testing.T, devs []devices.Device, configure func(*gb28181.Registrar)) *testRegistrar {
	t.Helper()
	box, err := devices.NewSecretBox(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for i := range devs {
		if devs[i].SIPPassword != "" {
			devs[i].SIPPassword = box.Seal(devs[i].ID, devs[i].SIPPassword)
		}
	}
	registry := devices.NewRegistry(devs)
	log := &presenceLog{}
	m := prometheus.NewRegistry()
	r := &gb28181.Registrar{
		UDPListen:  "127.0.0.1:0",
		TCPListen:  "127.0.0.1:0",
		Lookup:     registry.Lookup,
		OpenSecret: box.Open,
		Presence:   log.presence,
		Alarm:      log.alarm,
		Registerer: m,
	}
	if configure != nil {
		configure(r)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return &testRegistrar{Registrar: r, log: log, metrics: m}
}

// rejected returns gridwatch_gb28181_rejected_total{reason}.
func (tr *testRegistrar) rejected(reason string) float64 {
	return tr.metric("gridwatch_gb28181_rejected_total", "reason", reason)
}

// metric returns the series of name whose label has value (or, label
// empty, the one without labels): a counter's or a gauge's value, 0 when
// there is none.
func (tr *testRegistrar) metric(name, label, value string) float64 {
	mfs, _ := tr.metrics.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func camera(id, password string) devices.Device {
	return devices.Device{ID: id, Type: "camera", Grid: "G1", SIPPassword: password}
}

// device returns a simulated device of the registrar over transport.
func (tr *testRegistrar) device(id, password, transport string) *simulators.GBDevice {
	addr := tr.UDPAddr()
	if transport == "tcp" {
		addr = tr.TCPAddr()
	}
	return &simulators.GBDevice{ID: id, Password: password, Server: addr, Transport: transport,
		KeepaliveInterval: tr.KeepaliveInterval, Manufacturer: "Sim", Model: "IPC-1"}
}

// TestRegisterQueryKeepaliveOffline follows a device over each transport:
// it registers with digest auth, answers DeviceInfo and Catalog (whose
// channels are reported), keeps alive, and is offline after three missed
// keepalives, its channels with it.
func TestRegisterQueryKeepaliveOffline(t *testing.T) {
	for i, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			id := simulators.GBDeviceID(realm, 10+i)
			channel := simulators.GBDeviceID(realm, 100+i)
			tr := startRegistrar(t, []devices.Device{camera(id, "pass-word-1234"), camera(channel, "")}, func(r *gb28181.Registrar) {
				r.KeepaliveInterval = 200 * time.Millisecond
			})
			d := tr.device(id, "pass-word-1234", transport)
			d.Channels = []string{channel}
			if err := d.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			waitFor(t, 10*time.Second, "DeviceInfo and Catalog", func() bool {
				st, ok := tr.Device(id)
				return ok && st.Info.Manufacturer == "Sim" && st.Info.Model == "IPC-1" && len(st.Channels) == 1 && st.Channels[0].Online
			})
			st, _ := tr.Device(id)
			if st.Transport != transport || !st.Online {
				t.Fatalf("device state %+v", st)
			}
			waitFor(t, 10*time.Second, "the channel online from the catalog", func() bool {
				return tr.log.count(func(p gb28181.Presence) bool {
					return p.Device == channel && p.Parent == id && p.Online && p.Reason == gb28181.ReasonCatalog
				}) > 0
			})
			// The device reports its channel off, then on again.
			for _, on := range []bool{false, true} {
				if err := d.NotifyChannel(context.Background(), channel, on); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 10*time.Second, "the channel change reported", func() bool {
					st, _ := tr.Device(id)
					return tr.log.count(func(p gb28181.Presence) bool {
						return p.Device == channel && p.Online == on && p.Reason == gb28181.ReasonCatalog
					}) > 0 && len(st.Channels) == 1 && st.Channels[0].Online == on
				})
			}
			waitFor(t, 10*time.Second, "two keepalives reported", func() bool {
				return d.Keepalives() >= 2 && tr.log.count(func(p gb28181.Presence) bool {
					return p.Device == id && p.Reason == gb28181.ReasonKeepalive && p.Online
				}) >= 2
			})
			d.Silence()
			waitFor(t, 10*time.Second, "the silent device offline", func() bool {
				return tr.log.count(func(p gb28181.Presence) bool {
					return p.Device == id && !p.Online && p.Reason == gb28181.ReasonKeepaliveTimeout
				}) == 1
			})
			waitFor(t, time.Second, "its channel offline", func() bool {
				return tr.log.count(func(p gb28181.Presence) bool {
					return p.Device == channel && !p.Online && p.Reason == gb28181.ReasonParentOffline
				}) == 1
			})
			st, _ = tr.Device(id)
			if st.Online {
				t.Fatal("Devices still says online")
			}
		})
	}
}

// TestAlarmNotification checks that an alarm reaches Alarm with its codes,
// and that the device gets its Response.
func TestAlarmNotification(t *testing.T) {
	id := simulators.GBDeviceID(realm, 20)
	tr := startRegistrar(t, []devices.Device{camera(id, "pass-word-1234")}, nil)
	d := tr.device(id, "pass-word-1234", "udp")
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Alarm(context.Background(), 1, 5, 6, "区域入侵"); err != nil {
		t.Fatal(err)
	}
	// The alarm is handed on once its 200 is sent.
	waitFor(t, 10*time.Second, "the alarm handed on", func() bool {
		tr.log.mu.Lock()
		defer tr.log.mu.Unlock()
		return len(tr.log.alarms) > 0
	})
	tr.log.mu.Lock()
	defer tr.log.mu.Unlock()
	if len(tr.log.alarms) != 1 {
		t.Fatalf("%d alarms", len(tr.log.alarms))
	}
	a := tr.log.alarms[0]
	if a.Device != id || a.Source != id || a.Priority != 1 || a.Method != 5 || a.Type != 6 || a.Description != "区域入侵" {
		t.Fatalf("alarm %+v", a)
	}
	waitFor(t, 10*time.Second, "the alarm's response at the device", func() bool { return d.AlarmsAcknowledged() == 1 })
}

// TestBadInputIsRefusedAndCounted sends what a registrar meets from
// strangers and broken devices; each gets its status code and its counter,
// and a good device registers meanwhile.
func TestBadInputIsRefusedAndCounted(t *testing.T) {
	good := simulators.GBDeviceID(realm, 1)
	nopass := simulators.GBDeviceID(realm, 2)
	tr := startRegistrar(t, []devices.Device{camera(good, "right-password-1"), camera(nopass, "")}, nil)

	wrong := tr.device(good, "wrong-password-1", "udp")
	err := wrong.Start(context.Background())
	if !errors.Is(err, simulators.ErrRegisterRefused) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("wrong password: %v, want 403", err)
	}
	if n := tr.rejected("wrong_password"); n != 1 {
		t.Fatalf("wrong_password counted %v times", n)
	}
	unknown := tr.device(simulators.GBDeviceID(realm, 3), "right-password-1", "tcp")
	if err := unknown.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown device: %v, want 404", err)
	}
	none := tr.device(nopass, "right-password-1", "udp")
	if err := none.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("device without a SIP password: %v, want 403", err)
	}

	raw := dialUDP(t, "127.0.0.1:0", tr.UDPAddr())
	// Not SIP at all, and SIP without its mandatory headers.
	raw.send(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	raw.send(t, "REGISTER sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
	// A From that is no 20-digit id.
	if code := raw.request(t, "REGISTER", "not-a-gb-id", "", ""); code != 400 {
		t.Fatalf("bad device id: %d, want 400", code)
	}
	// A MESSAGE of a device that never registered.
	if code := raw.request(t, "MESSAGE", simulators.GBDeviceID(realm, 4), "Application/MANSCDP+xml", "<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>"); code != 403 {
		t.Fatalf("unregistered keepalive: %d, want 403", code)
	}
	waitFor(t, 5*time.Second, "malformed SIP counted", func() bool { return tr.rejected("malformed_sip") >= 1 })
	for _, reason := range []string{"unknown_device", "no_password", "bad_device_id", "not_registered"} {
		if tr.rejected(reason) < 1 {
			t.Errorf("%s not counted", reason)
		}
	}

	ok := tr.device(good, "right-password-1", "udp")
	if err := ok.Start(context.Background()); err != nil {
		t.Fatalf("good device after the bad input: %v", err)
	}
	defer ok.Close()
	// The registered device's keepalive from another address is refused:
	// a forged keepalive must not keep a dead camera online.
	other := dialUDP(t, "127.0.0.2:0", tr.UDPAddr())
	if code := other.request(t, "MESSAGE", good, "Application/MANSCDP+xml", "<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>"); code != 403 {
		t.Fatalf("keepalive from another address: %d, want 403", code)
	}
	if tr.rejected("source_mismatch") != 1 {
		t.Fatal("source_mismatch not counted")
	}
}

// TestAuthFailureBanSparesTheDevice bans the (address, id) pair that keeps
// guessing, and lets the device register from its own address meanwhile,
// with the ban's failures counted.
func TestAuthFailureBanSparesTheDevice(t *testing.T) {
	id := simulators.GBDeviceID(realm, 7)
	tr := startRegistrar(t, []devices.Device{camera(id, "right-password-1")}, func(r *gb28181.Registrar) {
		r.AuthFailures = 3
	})
	for i := range 3 {
		d := tr.device(id, fmt.Sprintf("guess-%d-password", i), "udp")
		if err := d.Start(context.Background()); err == nil {
			t.Fatal("a guess registered")
		}
	}
	// Banned now, even with the right password, from the guesser's address
	// (127.0.0.1).
	d := tr.device(id, "right-password-1", "udp")
	err := d.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("banned pair: %v, want 403", err)
	}
	if n := tr.rejected("auth_failure_ban"); n < 1 {
		t.Fatalf("auth_failure_ban counted %v", n)
	}
	// The device from its own address is let in.
	own := tr.device(id, "right-password-1", "udp")
	own.LocalHost = "127.0.0.3"
	if err := own.Start(context.Background()); err != nil {
		t.Fatalf("device from its own address: %v", err)
	}
	own.Close()
}

// TestUnregister ends a registration with Expires: 0.
func TestUnregister(t *testing.T) {
	id := simulators.GBDeviceID(realm, 8)
	tr := startRegistrar(t, []devices.Device{camera(id, "right-password-1")}, nil)
	d := tr.device(id, "right-password-1", "tcp")
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Unregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Device(id); ok {
		t.Fatal("still registered")
	}
	if n := tr.log.count(func(p gb28181.Presence) bool {
		return p.Device == id && !p.Online && p.Reason == gb28181.ReasonUnregistered
	}); n != 1 {
		t.Fatalf("%d unregistered presences", n)
	}
	if n := len(tr.Devices()); n != 0 {
		t.Fatalf("%d devices listed", n)
	}
}

// rawPeer sends hand-made SIP over UDP, as a broken device or a stranger.
type rawPeer struct {
	conn net.PacketConn
	to   net.Addr
	seq  int
}

func dialUDP(t *testing.T, local, remote string) *rawPeer {
	t.Helper()
	conn, err := net.ListenPacket("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	to, err := net.ResolveUDPAddr("udp", remote)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{conn: conn, to: to}
}

func (p *rawPeer) send(t *testing.T, text string) {
	t.Helper()
	if _, err := p.conn.WriteTo([]byte(text), p.to); err != nil {
		t.Fatal(err)
	}
}

// request sends method from the id with the body and returns the
// response's status code.
func (p *rawPeer) request(t *testing.T, method, from, contentType, body string) int {
	t.Helper()
	p.seq++
	local := p.conn.LocalAddr().String()
	var b strings.Builder
	fmt.Fprintf(&b, "%s sip:%s@%s SIP/2.0\r\n", method, gb28181.DefaultID, p.to)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-raw-%d-%d\r\n", local, time.Now().UnixNano(), p.seq)
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=raw%d\r\n", from, realm, p.seq)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", gb28181.DefaultID, realm)
	callID := fmt.Sprintf("raw-%d-%d", time.Now().UnixNano(), p.seq)
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n", callID, p.seq, method)
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	p.send(t, b.String())
	buf := make([]byte, 65536)
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: no response: %v", method, err)
		}
		var code int
		res := string(buf[:n])
		if _, err := fmt.Sscanf(res, "SIP/2.0 %d", &code); err == nil && code >= 200 && strings.Contains(res, callID) {
			return code
		}
	}
}

// TestAnsweredMakesAnEndedTransactionAnError: sipgo's Client.Do returns
// neither an answer nor an error when its transaction is terminated from
// elsewhere first; a caller reading the answer must get an error instead
// (a simulated device closing during a query crashed a CI run).
func TestAnsweredMakesAnEndedTransactionAnError(t *testing.T) {
	if res, err := gb28181.Answered(nil, nil); res != nil || !errors.Is(err, gb28181.ErrTransactionEnded) {
		t.Fatalf("Answered(nil, nil) = %v, %v; want ErrTransactionEnded", res, err)
	}
	ok := sip.NewResponse(sip.StatusOK, "OK")
	if res, err := gb28181.Answered(ok, nil); res != ok || err != nil {
		t.Fatalf("Answered(200, nil) = %v, %v; want the answer", res, err)
	}
	cause := errors.New("timer B")
	if _, err := gb28181.Answered(nil, cause); err != cause {
		t.Fatalf("Answered(nil, cause) error = %v; want cause", err)
	}
}
