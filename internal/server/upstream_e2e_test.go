package server

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gridwatch/gridwatch/internal/mosquittotest"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestUpstreamNodesShareAndOneIsKilled is the cluster's mode (b) on this
// machine: a QoS 1 fleet publishes to a private mosquitto 2 that
// authenticates the devices and holds each to its own topics; two
// `gridwatch serve --ingest.durable_ack` processes on one ClickHouse
// consume $share/gridwatch/devices/+/telemetry. Deliveries are split over
// both nodes. Node 1 is killed with SIGKILL under load and started again
// (same client id, same data directory) while the fleet keeps publishing:
// mosquitto keeps node 1's unacknowledged deliveries, and its share of what
// arrives meanwhile, for node 1's session, and sends them when it is back
// (the unacknowledged ones flagged DUP, checked against its recovered
// spool and ClickHouse). Every message mosquitto acknowledged to the fleet
// must be stored exactly once.
func TestUpstreamNodesShareAndOneIsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	addr, database := storagetest.Database(t)
	devs := e2eDevices(t, 20)
	var users []mosquittotest.User
	for _, d := range devs {
		users = append(users, mosquittotest.User{Name: d.ID, Password: d.Secret})
	}
	nodes := []mosquittotest.User{{Name: "gw-1", Password: "gw-1-upstream-secret"}, {Name: "gw-2", Password: "gw-2-upstream-secret"}}
	ms := mosquittotest.Start(t, mosquittotest.Config{Devices: users, Readers: nodes})

	var gws []*gridwatchProcess
	for _, n := range nodes {
		gw := newGridwatchProcess(t, addr, database, devs, "--ingest.durable_ack",
			"--upstream.brokers", ms.URL(), "--upstream.client_id", n.Name, "--upstream.username", n.Name,
			"--upstream.max_reconnect_interval", "2s")
		gw.env = []string{EnvPrefix + "UPSTREAM_PASSWORD=" + n.Password}
		gw.start(t)
		waitUpstreamReady(t, gw)
		gws = append(gws, gw)
	}

	acked := simulators.NewAckLog(nil)
	fr := runFleet(&simulators.Fleet{Broker: ms.URL(), Devices: devs, QoS: 1, Rate: 400,
		AckTimeout: 10 * time.Second, OnSent: acked.Add}, acked)
	defer fr.stop()
	fr.underLoad(t, ms.Log)
	fr.underLoad(t, ms.Log)
	before := gws[0].scrape(t)
	gws[0].kill(t)
	t.Logf("node 1 killed after %.0f deliveries (%.0f acknowledged) at its last scrape; %d messages acknowledged to the fleet so far",
		total(before["gridwatch_upstream_deliveries_total"]), total(before["gridwatch_upstream_acks_total"]), acked.Len())
	fr.underLoad(t, ms.Log)
	fr.underLoad(t, ms.Log)
	gws[0].start(t)
	waitUpstreamReady(t, gws[0])
	fr.underLoad(t, ms.Log)
	r := fr.finish(t)

	check := checkSet(t, addr, database, func() int { return gws[0].segments() + gws[1].segments() }, acked)
	after := []map[string]*dto.MetricFamily{gws[0].scrape(t), gws[1].scrape(t)}
	for i, mfs := range after {
		t.Logf("node %d%s: %.0f deliveries, %.0f redelivered (DUP), %.0f acknowledged, %.0f readings kept from being stored twice, %.0f not stored (delivered again), %.0f acks pending",
			i+1, map[bool]string{true: " since its restart"}[i == 0],
			total(mfs["gridwatch_upstream_deliveries_total"]), total(mfs["gridwatch_upstream_redeliveries_total"]),
			total(mfs["gridwatch_upstream_acks_total"]), total(mfs["gridwatch_ingest_duplicates_dropped_total"]),
			counterSum(mfs["gridwatch_upstream_messages_total"], "result", "not_stored"),
			gauge(mfs["gridwatch_upstream_acks_pending"]))
	}
	t.Logf("set check: %s; fleet: %d publish errors, %d connections lost", check, r.stats.Errors, r.stats.ConnectionsLost)
	if check.Acked == 0 || !check.OK() {
		t.Fatalf("%s: want every acknowledged message stored exactly once", check)
	}
	if total(before["gridwatch_upstream_deliveries_total"]) == 0 || total(after[1]["gridwatch_upstream_deliveries_total"]) == 0 {
		t.Fatal("the deliveries were not split over both nodes")
	}
	if total(after[0]["gridwatch_upstream_deliveries_total"]) == 0 {
		t.Fatal("node 1 got nothing after its restart: mosquitto did not keep its share")
	}
	for _, gw := range gws {
		gw.stop(t)
	}
}

// waitUpstreamReady polls a node's /readyz until it answers 200: its
// upstream check among the others, so that it is subscribed.
func waitUpstreamReady(t *testing.T, gw *gridwatchProcess) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + gw.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready within a minute (%v)\n%s", err, gw.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// total sums a counter's series.
func total(mf *dto.MetricFamily) float64 {
	sum := 0.0
	for _, m := range mf.GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// gauge sums a gauge's series.
func gauge(mf *dto.MetricFamily) float64 {
	sum := 0.0
	for _, m := range mf.GetMetric() {
		sum += m.GetGauge().GetValue()
	}
	return sum
}
