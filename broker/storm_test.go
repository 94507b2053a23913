package broker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/devices"
)

// stormSecret is every storm device's password.
const stormSecret = "storm-secret"

// stormDevices is how many devices TestReconnectStorm connects: 1000, or
// GRIDWATCH_TEST_STORM_DEVICES (10000 for the figure in the README).
func stormDevices() int {
	if v, err := strconv.Atoi(os.Getenv("GRIDWATCH_TEST_STORM_DEVICES")); err == nil && v > 0 {
		return v
	}
	return 1000
}

// TestReconnectStorm connects paho clients all at once, cold (every secret
// goes through argon2id) and again warm (the Verifier's cache), and logs
// both times. The clients run in a child process (TestReconnectStormClients):
// a connection takes a descriptor at each end, and 10k of them on both
// sides exceed a common limit of 20,000 open files per process, which left
// the last connections unaccepted until the client timed out.
func TestReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("10k connections: skipped under -short")
	}
	n := stormDevices()
	devs := make([]devices.Device, n)
	hash := mustHash(t, stormSecret) // one hash: the salt does not change the cost
	for i := range devs {
		devs[i] = devices.Device{ID: stormID(i), Type: "noise", Grid: "G1", SecretHash: hash}
	}
	reg := devices.NewRegistry(devs)
	b := &Broker{Listen: "127.0.0.1:0", Lookup: reg.Lookup, Ingest: (&received{}).ingest,
		Limits: Limits{ConnRatePerIP: -1}}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReconnectStormClients$", "-test.v")
	cmd.Env = append(os.Environ(), "GRIDWATCH_STORM_BROKER="+loopback(b.Addr()), "GRIDWATCH_TEST_STORM_DEVICES="+strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "storm") || strings.Contains(line, "latency") || strings.Contains(line, "failed") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Fatalf("storm clients: %v", err)
	}
}

// TestReconnectStormClients is the client half of TestReconnectStorm; it
// runs only in the child process, where GRIDWATCH_STORM_BROKER is set.
func TestReconnectStormClients(t *testing.T) {
	addr := os.Getenv("GRIDWATCH_STORM_BROKER")
	if addr == "" {
		t.Skip("the client half of TestReconnectStorm")
	}
	n, parallel := stormDevices(), 500
	storm := func() (time.Duration, []paho.Client) {
		clients := make([]paho.Client, n)
		took := make([]time.Duration, n)
		var failed atomic.Int64
		var firstErr sync.Once
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id := stormID(i)
				c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(id).
					SetPassword(stormSecret).SetAutoReconnect(false).SetProtocolVersion(4).SetConnectTimeout(time.Minute))
				connStart := time.Now()
				if tok := c.Connect(); !tok.WaitTimeout(2*time.Minute) || tok.Error() != nil {
					failed.Add(1)
					firstErr.Do(func() {
						t.Logf("%s: connect failed after %s: %v", id, time.Since(connStart).Round(time.Millisecond), tok.Error())
					})
					return
				}
				clients[i], took[i] = c, time.Since(connStart)
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(took)
		t.Logf("connect latency: p50 %s, p99 %s, max %s", took[n/2].Round(time.Millisecond),
			took[n*99/100].Round(time.Millisecond), took[n-1].Round(time.Millisecond))
		if f := failed.Load(); f > 0 {
			t.Fatalf("%d of %d connections failed", f, n)
		}
		return elapsed, clients
	}
	disconnect := func(cs []paho.Client) {
		for _, c := range cs {
			c.Disconnect(0)
		}
	}
	cold, cs := storm()
	disconnect(cs)
	warm, cs := storm()
	disconnect(cs)
	t.Logf("%d-device reconnect storm: cold (argon2id per device) %s, warm (verified-secret cache) %s",
		n, cold.Round(10*time.Millisecond), warm.Round(10*time.Millisecond))
}

// stormID is the id of storm device i.
func stormID(i int) string { return fmt.Sprintf("d%05d", i) }
