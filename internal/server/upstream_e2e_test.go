package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
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
	nodes := []mosquittotest.User{{Name: "gridwatch-1", Password: "gridwatch-1-upstream-secret"}, {Name: "gridwatch-2", Password: "gridwatch-2-upstream-secret"}}
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

// TestUpstreamLostAckIsNotStoredTwice loses the PUBACKs of a node: a proxy
// between it and mosquitto drops what the node sends while a device's
// message is delivered and stored, then cuts the connection. mosquitto
// delivers the message again (DUP) on the node's next connection; the node
// finds its readings stored and acknowledges it without storing them
// again. Then the device's status message is stored as its status.
func TestUpstreamLostAckIsNotStoredTwice(t *testing.T) {
	addr, database := storagetest.Database(t)
	devs := e2eDevices(t, 1)
	d := devs[0]
	ms := mosquittotest.Start(t, mosquittotest.Config{
		Devices: []mosquittotest.User{{Name: d.ID, Password: d.Secret}},
		Readers: []mosquittotest.User{{Name: "gridwatch-1", Password: "gridwatch-1-upstream-secret"}},
	})
	px := startDropProxy(t, ms.Addr())
	srv := startServer(t, addr, database, devs, func(c *Config) {
		c.Ingest.DurableAck = true
		c.Upstream.Brokers, c.Upstream.ClientID = "tcp://"+px.addr(), "gridwatch-1"
		c.Upstream.Username, c.Upstream.Password = "gridwatch-1", "gridwatch-1-upstream-secret"
		c.Upstream.MaxReconnectInterval = time.Second
	})
	waitFor(t, time.Minute, func() bool { return srv.upstream.Ready(context.Background()) == nil })

	px.drop.Store(true)
	m := metricNames(d.Type)
	publishTo(t, ms.URL(), d, fmt.Sprintf(`{"ts": %d, %q: 1, %q: 2}`, time.Now().UnixMilli(), m[0], m[1]))
	waitCount(t, srv, 2, "SELECT count() FROM {db}.telemetry WHERE device = ?", d.ID)
	// The rows show before the INSERT's answer reaches the node, which
	// then sends the PUBACK (4 bytes): wait for it to be dropped.
	waitFor(t, time.Minute, func() bool { return px.dropped.Load() >= 4 })
	px.drop.Store(false)
	px.cut()
	// The first PUBACK went into the proxy and was dropped; the second
	// answers the redelivery.
	waitFor(t, time.Minute, func() bool { return gatheredTotal(t, srv, "gridwatch_upstream_acks_total") >= 2 })
	if n := gatheredTotal(t, srv, "gridwatch_upstream_redeliveries_total"); n != 1 {
		t.Errorf("redeliveries %v, want 1", n)
	}
	if n := gatheredTotal(t, srv, "gridwatch_ingest_duplicates_dropped_total"); n != 2 {
		t.Errorf("readings kept from a second store %v, want 2", n)
	}
	if n := count(t, srv, "SELECT count() FROM {db}.telemetry WHERE device = ?", d.ID); n != 2 {
		t.Errorf("%d rows stored, want 2", n)
	}

	// The device's status messages come through the broker too.
	publishOn(t, ms.URL(), d, "devices/"+d.ID+"/status", "offline")
	waitCount(t, srv, 1, "SELECT count() FROM {db}.device_status WHERE device = ? AND status = 'offline'", d.ID)
}

// gatheredTotal sums the series of the counter or gauge name in srv's registry.
func gatheredTotal(t *testing.T, srv *Server, name string) float64 {
	t.Helper()
	mfs, err := srv.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return total(mf) + gauge(mf) // one of them holds the values
		}
	}
	return 0
}

// dropProxy forwards TCP connections to a target; while drop is set it
// drops what its clients send, and cut closes every connection.
type dropProxy struct {
	ln      net.Listener
	target  string
	drop    atomic.Bool
	dropped atomic.Int64 // bytes
	mu      sync.Mutex
	conns   []net.Conn
}

func startDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *dropProxy) addr() string { return p.ln.Addr().String() }

func (p *dropProxy) pipe(c net.Conn) {
	b, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, b)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(c, b); c.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 && p.drop.Load() {
			p.dropped.Add(int64(n))
		} else if n > 0 {
			if _, werr := b.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	b.Close()
}

// cut closes every connection made so far.
func (p *dropProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestUpstreamStormSeenWhole runs two nodes on one ClickHouse and one
// ZooKeeper, consuming a private mosquitto 2's shared subscription, and
// seven waste bins of one cell going full, one after another: each bin's
// reading lands on either node, so neither holds StormMin (5) of the
// cell's alerts, yet the cell's storm is counted across them (each
// device's claim is counted in its cell): five bins fire alerts of their
// own and the sixth opens one grid-level alert, which the seventh does
// not fire beside; the bins' next readings reaching the node holding it,
// the last two are its members. Counted per node, the seven would have
// fired seven alerts of their own.
func TestUpstreamStormSeenWhole(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	const stormCell, stormBins = "cell-storm", 7
	var bins []devices.Device
	var users []mosquittotest.User
	for i := range stormBins {
		b := devices.Device{ID: fmt.Sprintf("bin-%d", i), Type: "waste_bin", Grid: stormCell, Secret: fmt.Sprintf("bin-%d-secret-0123456789", i)}
		bins, users = append(bins, b), append(users, mosquittotest.User{Name: b.ID, Password: b.Secret})
	}
	readers := []mosquittotest.User{{Name: "gridwatch-1", Password: "gridwatch-1-upstream-secret"}, {Name: "gridwatch-2", Password: "gridwatch-2-upstream-secret"}}
	ms := mosquittotest.Start(t, mosquittotest.Config{Devices: users, Readers: readers})
	var nodes []*Server
	for i, r := range readers {
		nodes = append(nodes, startServer(t, addr, database, bins, func(c *Config) {
			c.Cluster.ZooKeeper, c.Cluster.SessionTimeout, c.Cluster.Node = zk.Addr, 10*time.Second, fmt.Sprintf("node%d", i+1)
			c.Upstream.Brokers, c.Upstream.ClientID = ms.URL(), r.Name
			c.Upstream.Username, c.Upstream.Password = r.Name, r.Password
		}))
	}
	for _, n := range nodes {
		waitFor(t, time.Minute, func() bool { return n.upstream.Ready(context.Background()) == nil })
	}
	observed := func() (n float64) {
		for _, s := range nodes {
			n += gatheredTotal(t, s, "gridwatch_alerts_observations_total")
		}
		return n
	}
	// storm lists the cell's open alerts on both nodes, and those pending.
	storm := func() (own, grid []alerts.Alert, pending int, on map[int]int) {
		on = map[int]int{}
		for i, s := range nodes {
			page, err := s.Alerts().List(alerts.Filter{Grid: stormCell, Rule: "waste_bin_full", Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Alerts {
				switch {
				case a.Condition == alerts.ConditionPending:
					pending++
				case a.Device == "":
					grid = append(grid, a)
				default:
					own = append(own, a)
				}
				on[i+1]++
			}
		}
		return own, grid, pending, on
	}
	// full publishes a full reading of b and waits until a node's engine
	// took it in (once its mutex was free again: Flush takes it) and the
	// claims it asked were answered.
	full := func(b devices.Device) {
		before := observed()
		publishTo(t, ms.URL(), b, fmt.Sprintf(`{"ts": %d, "fill_pct": 97, "temp_c": 20}`, time.Now().UnixMilli()))
		waitFor(t, time.Minute, func() bool { return observed() >= before+2 })
		for _, n := range nodes {
			if err := n.alerting.engine.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, time.Minute, func() bool {
			return gatheredTotal(t, nodes[0], "gridwatch_alerts_claims_asked")+gatheredTotal(t, nodes[1], "gridwatch_alerts_claims_asked") == 0
		})
	}
	// accounted is every bin in an alert: one of its own or a member of the
	// grid-level one.
	accounted := func(own, grid []alerts.Alert) map[string]int {
		in := map[string]int{}
		for _, a := range own {
			in[a.Device]++
		}
		for _, a := range grid {
			for _, m := range a.Members {
				in[m]++
			}
		}
		return in
	}
	deliveries := make([]float64, len(nodes))
	for _, b := range bins {
		full(b)
	}
	for i, n := range nodes {
		deliveries[i] = gatheredTotal(t, n, "gridwatch_upstream_deliveries_total")
	}
	own, grid, _, on := storm()
	t.Logf("the bins' first readings: %v delivered to the nodes; %d alerts of their own, %d grid-level, alerts by node %v", deliveries, len(own), len(grid), on)
	if deliveries[0] == 0 || deliveries[1] == 0 {
		t.Fatalf("the bins' readings were not split over the nodes: %v delivered", deliveries)
	}
	rounds := 1
	for ; len(accounted(own, grid)) < stormBins && rounds < 10; rounds++ {
		for _, b := range bins {
			full(b)
		}
		own, grid, _, on = storm()
	}
	in := accounted(own, grid)
	t.Logf("storm over %s (%d bins full, %d rounds of readings): alerts by node %v, %d of their own, %d grid-level of members %v",
		stormCell, stormBins, rounds, on, len(own), len(grid), func() []string {
			if len(grid) == 0 {
				return nil
			}
			return grid[0].Members
		}())
	if len(own) != alerts.DefaultStormMin || len(grid) != 1 || len(grid[0].Members) != stormBins-alerts.DefaultStormMin {
		t.Errorf("storm over %s: %d alerts of their own, %d grid-level; want %d of their own and one grid-level of %d members",
			stormCell, len(own), len(grid), alerts.DefaultStormMin, stormBins-alerts.DefaultStormMin)
	}
	for _, b := range bins {
		if in[b.ID] != 1 {
			t.Errorf("%s is in %d of the cell's alerts, want 1", b.ID, in[b.ID])
		}
	}
}

// TestUpstreamRestartCarriesEachAlertOnOnce runs two nodes on one
// ClickHouse and one ZooKeeper, consuming a private mosquitto 2's shared
// subscription: a full bin fires one alert between them; then both nodes
// stop and start again (the cluster restarted, as after an upgrade). Each
// restores every alert the store holds open, so each asks the bin's
// alert's claim (held as the alert on a node): one node carries it on,
// the other drops it and follows the condition. Emptied, the bin's alert
// clears on the node carrying it, and no node lists it open. Before, both
// nodes carried it on: each listed it firing, and a reading that cleared
// it on one left it firing on the other.
func TestUpstreamRestartCarriesEachAlertOnOnce(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "cell-1", Secret: "bin-1-secret-0123456789"}
	readers := []mosquittotest.User{{Name: "gridwatch-1", Password: "gridwatch-1-upstream-secret"}, {Name: "gridwatch-2", Password: "gridwatch-2-upstream-secret"}}
	ms := mosquittotest.Start(t, mosquittotest.Config{Devices: []mosquittotest.User{{Name: bin.ID, Password: bin.Secret}}, Readers: readers})
	start := func() []*Server {
		var nodes []*Server
		for i, r := range readers {
			nodes = append(nodes, startServer(t, addr, database, []devices.Device{bin}, func(c *Config) {
				c.Cluster.ZooKeeper, c.Cluster.SessionTimeout, c.Cluster.Node = zk.Addr, 10*time.Second, fmt.Sprintf("node%d", i+1)
				c.Upstream.Brokers, c.Upstream.ClientID = ms.URL(), r.Name
				c.Upstream.Username, c.Upstream.Password = r.Name, r.Password
			}))
		}
		for _, n := range nodes {
			waitFor(t, time.Minute, func() bool { return n.upstream.Ready(context.Background()) == nil })
		}
		return nodes
	}
	// open lists the nodes holding the bin's alert open, by alert id, once
	// no claim waits for ZooKeeper.
	open := func(nodes []*Server) map[string][]int {
		waitFor(t, time.Minute, func() bool {
			return gatheredTotal(t, nodes[0], "gridwatch_alerts_claims_asked")+gatheredTotal(t, nodes[1], "gridwatch_alerts_claims_asked") == 0
		})
		on := map[string][]int{}
		for i, n := range nodes {
			page, err := n.Alerts().List(alerts.Filter{Device: bin.ID, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Alerts {
				if a.Condition == alerts.ConditionFiring {
					on[a.ID] = append(on[a.ID], i+1)
				}
			}
		}
		return on
	}
	// publish sends a reading of the bin and waits until a node's engine
	// took it in.
	publish := func(nodes []*Server, fill int) {
		observed := func() (n float64) {
			for _, s := range nodes {
				n += gatheredTotal(t, s, "gridwatch_alerts_observations_total")
			}
			return n
		}
		before := observed()
		publishTo(t, ms.URL(), bin, fmt.Sprintf(`{"ts": %d, "fill_pct": %d, "temp_c": 20}`, time.Now().UnixMilli(), fill))
		waitFor(t, time.Minute, func() bool { return observed() >= before+2 })
	}

	nodes := start()
	publish(nodes, 97)
	var id string
	waitFor(t, time.Minute, func() bool {
		on := open(nodes)
		for k := range on {
			id = k
		}
		return len(on) == 1
	})
	for _, n := range nodes {
		if err := n.alerting.engine.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	nodes = start()
	on := open(nodes)
	t.Logf("after the restart, the bin's alert %s is open on nodes %v (claims answered: %v on node 1, %v on node 2)", id, on[id],
		gatheredTotal(t, nodes[0], "gridwatch_alerts_claims_total"), gatheredTotal(t, nodes[1], "gridwatch_alerts_claims_total"))
	if len(on) != 1 || len(on[id]) != 1 {
		t.Fatalf("after the restart the bin's open alerts are on nodes %v; want %s on one node", on, id)
	}
	holder := nodes[on[id][0]-1]
	tries := 0
	for {
		a, _, err := holder.Alerts().Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Condition == alerts.ConditionCleared {
			break
		}
		if tries++; tries > 10 {
			t.Fatalf("the bin's alert is %s after %d empty readings, want cleared", a.Condition, tries-1)
		}
		publish(nodes, 10)
	}
	t.Logf("the bin's alert cleared on node %d after %d empty readings", on[id][0], tries)
	if on := open(nodes); len(on) != 0 {
		t.Errorf("after the bin emptied (%d readings), its alerts open on nodes %v; want none", tries, on)
	}
}

// TestUpstreamGaugesHeardElsewhereAreNotSilent runs two nodes on one
// ClickHouse and one ZooKeeper, consuming a private mosquitto 2's shared
// subscription, on one clock moved a minute at a time, and eight
// water-level gauges of one cell (a report a minute, device_silent after
// three) that report every minute, one after another: mosquitto hands the
// readings to the nodes in turn, so each node hears four of the gauges
// and not the other four.
// No gauge is counted silent: a node asks ClickHouse when any node last
// heard from a gauge it has not heard from (the checks that found one
// heard elsewhere are logged). A gauge that goes quiet raises one
// device_silent alert between the nodes; six that go quiet together, one
// grid-level alert of six members (every node sees the whole outage); each
// is cleared once the gauges report again, whichever node their readings
// reach.
func TestUpstreamGaugesHeardElsewhereAreNotSilent(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	const cell = "cell-quiet"
	var gauges []devices.Device
	var users []mosquittotest.User
	for i := range 8 {
		g := devices.Device{ID: fmt.Sprintf("gauge-%d", i), Type: "water_level", Grid: cell, Secret: fmt.Sprintf("gauge-%d-secret-0123456789", i)}
		gauges, users = append(gauges, g), append(users, mosquittotest.User{Name: g.ID, Password: g.Secret})
	}
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	readers := []mosquittotest.User{{Name: "gridwatch-1", Password: "gridwatch-1-upstream-secret"}, {Name: "gridwatch-2", Password: "gridwatch-2-upstream-secret"}}
	ms := mosquittotest.Start(t, mosquittotest.Config{Devices: users, Readers: readers})
	var ahead atomic.Int64 // the nodes' clock, ahead of time.Now
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	var nodes []*Server
	for i, r := range readers {
		nodes = append(nodes, startServerAt(t, now, addr, database, gauges, func(c *Config) {
			c.Cluster.ZooKeeper, c.Cluster.SessionTimeout, c.Cluster.Node = zk.Addr, 10*time.Second, fmt.Sprintf("node%d", i+1)
			c.Upstream.Brokers, c.Upstream.ClientID = ms.URL(), r.Name
			c.Upstream.Username, c.Upstream.Password = r.Name, r.Password
		}))
	}
	for _, n := range nodes {
		waitFor(t, time.Minute, func() bool { return n.upstream.Ready(context.Background()) == nil })
	}
	ids := make([]string, len(gauges))
	for i, g := range gauges {
		ids[i] = g.ID
	}
	// report publishes a reading of each gauge named and waits until
	// ClickHouse holds them all at the clock's time.
	report := func(which []int) {
		at := now()
		for _, i := range which {
			publishTo(t, ms.URL(), gauges[i], fmt.Sprintf(`{"ts": %d, "level_cm": 5}`, at.UnixMilli()))
		}
		waitFor(t, time.Minute, func() bool {
			heard, err := nodes[0].db.LastHeard(context.Background(), ids, at)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range which {
				if _, ok := heard[gauges[i].ID]; !ok {
					return false
				}
			}
			return true
		})
	}
	// settle runs both nodes' absence checks at the clock and waits until
	// what they asked (ClickHouse, then the claims) was answered.
	settle := func() {
		for range 2 {
			for _, n := range nodes {
				n.alerting.engine.RunTimers()
				waitFor(t, time.Minute, func() bool {
					return gatheredTotal(t, n, "gridwatch_alerts_heard_asked")+gatheredTotal(t, n, "gridwatch_alerts_claims_asked") == 0
				})
				n.alerting.engine.RunTimers()
			}
		}
	}
	// silent lists the device_silent alerts not cleared: of their own by
	// gauge, grid-level ones, and the nodes the firing ones are on.
	type open struct {
		own      map[string]int
		grid     []alerts.Alert
		firingOn []int
	}
	show := func(o open) string {
		var members [][]string
		for _, a := range o.grid {
			members = append(members, a.Members)
		}
		return fmt.Sprintf("of their own %v, grid-level of members %v, firing on nodes %v", o.own, members, o.firingOn)
	}
	silent := func() (o open) {
		o.own = map[string]int{}
		for i, n := range nodes {
			page, err := n.Alerts().List(alerts.Filter{Grid: cell, Rule: "device_silent", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Alerts {
				switch {
				case a.Condition == alerts.ConditionCleared:
					continue
				case a.Device == "":
					o.grid = append(o.grid, a)
				default:
					o.own[a.Device]++
				}
				if a.Condition == alerts.ConditionFiring {
					o.firingOn = append(o.firingOn, i+1)
				}
			}
		}
		return o
	}
	minute := func(which []int) {
		ahead.Add(int64(time.Minute))
		report(which)
		settle()
	}
	heardElsewhere := func() (n float64) {
		for _, s := range nodes {
			n += gathered(t, s, "gridwatch_alerts_heard_checks_total", "result", "heard")
		}
		return n
	}
	// quiet moves the clock until a device_silent alert fires while only
	// the gauges of reporting report, for at most 6 minutes.
	quiet := func(reporting []int) open {
		for range 6 {
			minute(reporting)
			if o := silent(); len(o.firingOn) > 0 {
				return o
			}
		}
		t.Fatalf("gauges quiet 6 minutes: device_silent open %s, none firing", show(silent()))
		return open{}
	}
	// cleared moves the clock, every gauge reporting, until no device_silent
	// alert is open, for at most 2 minutes: the node holding an alert looks
	// again a report interval after its last look.
	cleared := func(what string) {
		for i := range 2 {
			minute(all)
			if o := silent(); len(o.own)+len(o.grid) == 0 {
				t.Logf("%s reporting again: no device_silent open after %d minutes", what, i+1)
				return
			}
		}
		t.Fatalf("%s reporting again for 2 minutes: device_silent open %s; want none", what, show(silent()))
	}

	report(all)
	for range 8 {
		minute(all)
	}
	deliveries := []float64{gatheredTotal(t, nodes[0], "gridwatch_upstream_deliveries_total"), gatheredTotal(t, nodes[1], "gridwatch_upstream_deliveries_total")}
	o := silent()
	t.Logf("9 minutes of 8 gauges reporting: readings delivered to the nodes %v; %.0f checks found a gauge heard by the other node; device_silent open %s",
		deliveries, heardElsewhere(), show(o))
	if len(o.own)+len(o.grid) != 0 {
		t.Fatalf("gauges reporting every minute: device_silent open %s; want none", show(o))
	}
	if heardElsewhere() == 0 {
		t.Fatalf("no node went three minutes without hearing a gauge (readings delivered %v): the test did not try what it is for", deliveries)
	}

	o = quiet(all[1:])
	t.Logf("gauge-0 quiet: device_silent open %s", show(o))
	if len(o.own) != 1 || o.own["gauge-0"] != 1 || len(o.grid) != 0 || len(o.firingOn) != 1 {
		t.Fatalf("gauge-0 quiet: device_silent open %s; want one alert of gauge-0, firing on one node", show(o))
	}
	cleared("gauge-0")

	o = quiet(all[6:])
	t.Logf("gauges 0-5 quiet: device_silent open %s", show(o))
	if len(o.own) != 0 || len(o.grid) != 1 || len(o.grid[0].Members) != 6 || len(o.firingOn) != 1 {
		t.Fatalf("gauges 0-5 quiet: device_silent open %s; want one grid-level alert of 6 members, firing on one node", show(o))
	}
	cleared("gauges 0-5")
}
