package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestClusterThreeNodesBehindHAProxy is issue 14's acceptance on this
// machine: ZooKeeper, two ClickHouse replicas of one shard
// (clickhouse.cluster), three `gridwatch serve --ingest.durable_ack`
// processes coordinating on that ZooKeeper (cluster.zookeeper), nodes 1
// and 3 writing to the first replica and node 2 to the second, behind
// HAProxy (deploy/haproxy/haproxy.cfg), and a QoS 1 fleet spread over them
// through HAProxy. Under load, node 1 is killed (SIGKILL; its devices
// reconnect to the others), the second replica is stopped and started
// again, then ZooKeeper (the replicated tables refuse inserts, the nodes
// lose their leases and claims) and node 1 is started again. Before the
// faults and after them, a full bin reporting to every live node fires one
// alert, notified once by webhook, and the nodes race notes and the
// sign-for on fresh cases (no action lost or doubled). Every message
// acknowledged to the fleet must then be stored exactly once, read through
// either replica.
func TestClusterThreeNodesBehindHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	start := time.Now()
	c := storagetest.StartCluster(t, 2)
	units := filepath.Join(t.TempDir(), "units.yaml")
	var list strings.Builder
	for _, cat := range devices.Categories() {
		fmt.Fprintf(&list, "- {code: U-%s, name: %s unit, categories: [%s]}\n", strings.ToUpper(cat), cat, cat)
	}
	if err := os.WriteFile(units, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	hook, receiver := webhookReceiver(t)
	bin := devices.Device{ID: "bin-once", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-once-secret-0123456789"}
	devs := e2eDevices(t, 30)
	var nodes []*gridwatchProcess
	for i := range 3 {
		n := newGridwatchProcess(t, c.Addr(i%2), "gridwatch", append(devs, bin), "--ingest.durable_ack",
			"--clickhouse.cluster", storagetest.ClusterName, "--ingest.insert_timeout", "5s",
			"--cluster.zookeeper", c.ZooKeeper.Addr, "--cluster.session_timeout", "4s", "--cluster.node", fmt.Sprintf("node%d", i+1),
			"--units.file", units, "--notify.webhook_url", receiver.URL,
			// Behind HAProxy every device comes from one address.
			"--mqtt.conn_rate_per_ip=-1", "--mqtt.conn_burst_per_ip", "100000")
		n.env = []string{EnvPrefix + "NOTIFY_WEBHOOK_SECRET=hook-secret-of-the-test"}
		n.start(t)
		waitUpstreamReady(t, n)
		nodes = append(nodes, n)
	}
	logs := func() string {
		var b strings.Builder
		for i, n := range nodes {
			fmt.Fprintf(&b, "node %d:\n%s\n", i+1, n.logTail())
		}
		return b.String()
	}
	var targets []haproxyTarget
	for _, n := range nodes {
		targets = append(targets, haproxyTarget{n.mqtt, n.http})
	}
	hp := startHAProxy(t, targets)
	waitBackend(t, hp.statsPort, "gridwatch_mqtt", map[string]string{"gridwatch-1": "UP", "gridwatch-2": "UP", "gridwatch-3": "UP"})
	var replicas []*storage.DB
	for i := range 2 {
		db, err := storage.Open(context.Background(), storage.Options{Addr: c.Addr(i), Database: "gridwatch", Password: storagetest.Password(t)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		replicas = append(replicas, db)
	}
	db := replicas[0]
	t.Logf("set up in %s", time.Since(start).Round(time.Millisecond))

	acked := simulators.NewAckLog(nil)
	fr := runFleet(&simulators.Fleet{Broker: fmt.Sprintf("tcp://127.0.0.1:%d", hp.mqttPort), Devices: devs, QoS: 1, Rate: 200,
		AckTimeout: 10 * time.Second, OnSent: acked.Add}, acked)
	defer fr.stop()
	fr.underLoad(t, logs)

	live := func() (out []*gridwatchProcess) {
		for _, n := range nodes {
			if n.cmd != nil {
				out = append(out, n)
			}
		}
		return out
	}
	// claims sums a result of the live nodes' alert claims.
	claims := func(result string) (n float64) {
		for _, p := range live() {
			n += counterSum(p.scrape(t)["gridwatch_alerts_claims_total"], "result", result)
		}
		return n
	}
	notified := func(kind alerts.EventKind) int { return hook.count(bin.ID, kind) }
	// alertOnce fills the bin through every live node: one alert fires,
	// notified once; then empties it and waits for its clear.
	alertOnce := func(episode int) {
		t.Helper()
		ps := live()
		won, lost, failed := claims("won"), claims("lost"), claims("error")
		for _, p := range ps {
			publishTo(t, "tcp://"+p.mqtt, bin, `{"fill_pct": 97, "temp_c": 20}`)
		}
		waitFor(t, 2*time.Minute, func() bool {
			return claims("won")+claims("lost") >= won+lost+float64(len(ps)) && notified(alerts.EventFire) >= episode
		})
		t.Logf("alert episode %d on %d nodes: claims won %.0f, lost %.0f, errors %.0f; %d fire notifications in all",
			episode, len(ps), claims("won")-won, claims("lost")-lost, claims("error")-failed, notified(alerts.EventFire))
		if got := notified(alerts.EventFire); got != episode {
			t.Errorf("alert episode %d: %d fire notifications in all, want %d", episode, got, episode)
		}
		for _, p := range ps {
			publishTo(t, "tcp://"+p.mqtt, bin, `{"fill_pct": 10, "temp_c": 20}`)
		}
		waitFor(t, 2*time.Minute, func() bool { return notified(alerts.EventClear) >= episode })
	}
	// actions races notes and the sign-for on fresh cases through every
	// live node.
	actions := func(when string) {
		t.Helper()
		var clients []caseClient
		for _, p := range live() {
			clients = append(clients, caseClient{t, p})
		}
		ids := clients[0].open(2)
		race := raceCases(clients, ids, 3)
		answered, stored, taken, signed := race.check(t, db, ids)
		t.Logf("actions %s on %d nodes: %d notes answered 2xx, %d stored; %d sign-fors answered for %d cases; %d events on a taken version; refusals by status %v",
			when, len(clients), answered, stored, signed, len(ids), taken, race.refused)
	}

	alertOnce(1)
	actions("before the faults")

	killedAt := time.Now()
	nodes[0].kill(t)
	fr.underLoad(t, logs)
	fr.underLoad(t, logs)
	t.Logf("node 1 killed: %d messages acknowledged, load back %s later", acked.Len(), time.Since(killedAt).Round(time.Millisecond))

	c.Stop(1)
	fr.underLoad(t, logs)
	fr.underLoad(t, logs)
	c.Start(1)
	fr.underLoad(t, logs)

	c.ZooKeeper.Stop()
	fr.underLoad(t, logs)
	fr.underLoad(t, logs)
	c.ZooKeeper.Start(t)
	fr.underLoad(t, logs)
	// The replicas take inserts again once their ZooKeeper sessions are
	// back. A node that starts before would find its migration refused
	// and exit, for its supervisor to start it again.
	backAt := time.Now()
	waitFor(t, 3*time.Minute, func() bool {
		for _, r := range replicas {
			var expired uint64
			err := r.Conn().QueryRow(context.Background(), "SELECT count() FROM system.replicas WHERE is_session_expired OR is_readonly").Scan(&expired)
			if err != nil || expired > 0 {
				return false
			}
		}
		return true
	})
	t.Logf("ZooKeeper back: the replicas' tables out of read-only %s later", time.Since(backAt).Round(time.Millisecond))
	nodes[0].start(t)
	waitUpstreamReady(t, nodes[0])
	fr.underLoad(t, logs)
	alertOnce(2)
	actions("after the faults")
	r := fr.finish(t)

	segments := func() (n int) {
		for _, p := range nodes {
			n += p.segments()
		}
		return n
	}
	for i := range 2 {
		check := checkSetWithin(t, c.Addr(i), "gridwatch", segments, acked, 2*time.Minute)
		t.Logf("read through replica %d: %s; fleet: %d publish errors, %d connections lost", i+1, check, r.stats.Errors, r.stats.ConnectionsLost)
		if check.Acked == 0 || !check.OK() {
			t.Errorf("replica %d: %s; want every acknowledged message stored exactly once", i+1, check)
		}
	}
	t.Logf("the whole run took %s", time.Since(start).Round(time.Millisecond))
}
