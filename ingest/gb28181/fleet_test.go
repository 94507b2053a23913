package gb28181_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/simulators"
)

// TestThousandDevicesKeepAliveOneFallsSilent registers 1,000 simulated
// devices (half over UDP, half over TCP) with digest auth, lets them keep
// alive at a shortened interval, silences one, and waits for it to be
// offline after three missed keepalives while every other device stays
// online. GRIDWATCH_TEST_GB_DEVICES changes the count.
func TestThousandDevicesKeepAliveOneFallsSilent(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 SIP devices: not under -short")
	}
	n := 1000
	if s := os.Getenv("GRIDWATCH_TEST_GB_DEVICES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	// 5 s keepalives: a device is offline after 15 s without one, a margin
	// that a loaded machine's scheduling delays stay far below.
	const interval = 5 * time.Second
	devs := make([]devices.Device, n)
	for i := range devs {
		devs[i] = camera(simulators.GBDeviceID(realm, i+1), "password-"+strconv.Itoa(i)+"-sim")
	}
	tr := startRegistrar(t, devs, func(r *gb28181.Registrar) { r.KeepaliveInterval = interval })
	fleet := &simulators.GBFleet{}
	for i := range n {
		transport := "udp"
		if i%2 == 1 {
			transport = "tcp"
		}
		fleet.Devices = append(fleet.Devices, tr.device(simulators.GBDeviceID(realm, i+1), "password-"+strconv.Itoa(i)+"-sim", transport))
	}
	start := time.Now()
	if err := fleet.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	t.Logf("%d devices registered in %s", n, time.Since(start).Round(time.Millisecond))
	online := func() int {
		c := 0
		for _, d := range tr.Devices() {
			if d.Online {
				c++
			}
		}
		return c
	}
	if c := online(); c != n {
		t.Fatalf("%d of %d devices online after registering", c, n)
	}
	waitFor(t, 10*interval, "every device's first keepalive", func() bool {
		for _, d := range fleet.Devices {
			if d.Keepalives() < 1 {
				return false
			}
		}
		return true
	})
	t.Logf("every device kept alive after %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*interval, "every device's DeviceInfo", func() bool {
		for _, d := range tr.Devices() {
			if d.Info.Model == "" {
				return false
			}
		}
		return true
	})
	// The steady state's cost, both sides in this process: one interval
	// of keepalives.
	cpu0, wall0, kept0 := cpuTime(t), time.Now(), keepalives(fleet)
	time.Sleep(interval)
	cpu, wall, kept := cpuTime(t)-cpu0, time.Since(wall0), keepalives(fleet)-kept0
	t.Logf("steady state: %d keepalives in %s, %.2f cores (registrar and devices), %.0f µs of CPU per keepalive",
		kept, wall.Round(time.Millisecond), cpu.Seconds()/wall.Seconds(), float64(cpu.Microseconds())/float64(max(kept, 1)))
	silent := fleet.Devices[n/2]
	silenced := time.Now()
	silent.Silence()
	offline := func(p gb28181.Presence) bool {
		return !p.Online && p.Device == silent.ID && p.Reason == gb28181.ReasonKeepaliveTimeout
	}
	waitFor(t, 10*interval, "the silent device offline", func() bool {
		st, ok := tr.Device(silent.ID)
		return ok && !st.Online && tr.log.count(offline) > 0
	})
	t.Logf("the silent device went offline %s after its silence (3 × %s)", time.Since(silenced).Round(time.Millisecond), interval)
	// Counted from its last keepalive the registrar had, not from the
	// silence: on a loaded box that keepalive can come late, more than an
	// interval before the silence (offline 9.5 s after it in a fresh-clone
	// run at load 45).
	st, _ := tr.Device(silent.ID)
	if st.LastKeepalive.Before(silenced.Add(-2 * interval)) {
		t.Fatalf("the silent device's last keepalive at %s, %s before its silence", st.LastKeepalive, silenced.Sub(st.LastKeepalive))
	}
	if since := time.Since(st.LastKeepalive); since < 2*interval {
		t.Fatalf("offline %s after its last keepalive: before 3 keepalives were missed", since)
	}
	if c := online(); c != n-1 {
		t.Fatalf("%d of %d devices online, want all but the silent one", c, n)
	}
	if k := tr.log.count(func(p gb28181.Presence) bool { return !p.Online && p.Device != silent.ID }); k != 0 {
		t.Fatalf("%d other devices went offline", k)
	}
	if on, off := tr.metric("gridwatch_gb28181_devices", "state", "online"), tr.metric("gridwatch_gb28181_devices", "state", "offline"); on != float64(n-1) || off != 1 {
		t.Fatalf("gridwatch_gb28181_devices online %v offline %v, want %d and 1", on, off, n-1)
	}
	if k := tr.log.count(offline); k != 1 {
		t.Fatalf("the silent device went offline %d times", k)
	}
}

// keepalives sums the keepalives the fleet's devices got accepted.
func keepalives(f *simulators.GBFleet) int64 {
	var n int64
	for _, d := range f.Devices {
		n += d.Keepalives()
	}
	return n
}

// cpuTime returns the process's user and system CPU time.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
