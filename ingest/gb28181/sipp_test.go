package gb28181_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/simulators"
)

// sipp returns the path of sipp, failing under CI when it is missing and
// skipping otherwise.
func sipp(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sipp not installed (apt-get install sip-tester)")
		}
		t.Skip("sipp not installed (apt-get install sip-tester)")
	}
	return bin
}

// runSIPp runs one call of scenario against addr over transport (u1, t1)
// as device with password, and returns its error and output.
func runSIPp(t *testing.T, scenario, transport, addr, device, password string) (string, error) {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	scenario, err = filepath.Abs(scenario)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp(t), addr, "-sf", scenario, "-t", transport, "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-au", device, "-ap", password,
		"-key", "device", device, "-key", "server", gb28181.DefaultID, "-key", "realm", realm)
	cmd.Dir = dir // sipp writes its logs beside the scenario or here
	out, err := cmd.CombinedOutput()
	if errs, rerr := os.ReadFile(filepath.Join(dir, "errors.log")); rerr == nil && len(errs) > 0 {
		out = append(out, errs...)
	}
	return string(out), err
}

// TestSIPpRegisters has sipp (Debian's sip-tester), a SIP implementation
// of its own, register as a GB/T 28181 device over UDP and TCP: it answers
// the digest challenge, registers and keeps alive; with a wrong password
// it is refused with 403, counted as wrong_password.
func TestSIPpRegisters(t *testing.T) {
	sipp(t)
	id := simulators.GBDeviceID(realm, 31)
	tr := startRegistrar(t, []devices.Device{camera(id, "sipp-password-1")}, nil)
	for _, c := range []struct{ name, transport, addr string }{{"udp", "u1", tr.UDPAddr()}, {"tcp", "t1", tr.TCPAddr()}} {
		t.Run(c.name, func(t *testing.T) {
			before := tr.log.count(func(p gb28181.Presence) bool { return p.Device == id && p.Reason == gb28181.ReasonKeepalive })
			if out, err := runSIPp(t, "testdata/sipp-register.xml", c.transport, c.addr, id, "sipp-password-1"); err != nil {
				t.Fatalf("sipp: %v\n%s", err, out)
			}
			st, ok := tr.Device(id)
			if !ok || !st.Online || st.Transport != c.name {
				t.Fatalf("after sipp's registration: %+v, %v", st, ok)
			}
			// The presence is reported once the 200 is sent.
			waitFor(t, 10*time.Second, "sipp's keepalive reported", func() bool {
				return tr.log.count(func(p gb28181.Presence) bool { return p.Device == id && p.Reason == gb28181.ReasonKeepalive }) == before+1
			})
			wrong := tr.rejected("wrong_password")
			if out, err := runSIPp(t, "testdata/sipp-register-refused.xml", c.transport, c.addr, id, "not-the-password"); err != nil {
				t.Fatalf("sipp with a wrong password was not refused with 403: %v\n%s", err, out)
			}
			if got := tr.rejected("wrong_password"); got != wrong+1 {
				t.Fatalf("wrong_password counted %v, want %v", got, wrong+1)
			}
		})
	}
}
