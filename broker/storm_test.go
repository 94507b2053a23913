package broker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/devices"
)

// TestReconnectStorm connects paho clients all at once, cold (every secret
// goes through argon2id) and again warm (the Verifier's cache), and logs
// both times. It connects 1000 clients, or GRIDWATCH_TEST_STORM_DEVICES
// (10000 for the figure in the README), to keep the suite short.
func TestReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("10k connections: skipped under -short")
	}
	n, parallel := 1000, 500
	if v, err := strconv.Atoi(os.Getenv("GRIDWATCH_TEST_STORM_DEVICES")); err == nil && v > 0 {
		n = v
	}
	devs := make([]devices.Device, n)
	hash := mustHash(t, "storm-secret") // one hash: the salt does not change the cost
	for i := range devs {
		devs[i] = devices.Device{ID: fmt.Sprintf("d%05d", i), Type: "noise", Grid: "G1", SecretHash: hash}
	}
	reg := devices.NewRegistry(devs)
	b := &Broker{Listen: "127.0.0.1:0", Lookup: reg.Lookup, Ingest: (&received{}).ingest,
		Limits: Limits{ConnRatePerIP: -1}}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := loopback(b.Addr())
	storm := func() (time.Duration, []paho.Client) {
		clients := make([]paho.Client, n)
		var failed atomic.Int64
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		start := time.Now()
		for i, d := range devs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(d.ID).SetUsername(d.ID).
					SetPassword("storm-secret").SetAutoReconnect(false).SetProtocolVersion(4).SetConnectTimeout(time.Minute))
				if tok := c.Connect(); !tok.WaitTimeout(2*time.Minute) || tok.Error() != nil {
					failed.Add(1)
					return
				}
				clients[i] = c
			}()
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			t.Fatalf("%d of %d connections failed", f, n)
		}
		return time.Since(start), clients
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
	t.Logf("%d-device reconnect storm: cold (argon2id per device) %s, warm (verified-secret cache) %s", n, cold, warm)
}
