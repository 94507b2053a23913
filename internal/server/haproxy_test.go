package server

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/internal/logbuf"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestHAProxyConfigFrontsNodes runs deploy/haproxy/haproxy.cfg, as shipped
// but for its addresses and maxconn, in front of two gridwatch nodes sharing
// one ClickHouse, its third server being a node that is down: HAProxy's
// checks (/readyz) take the live nodes in and leave the dead one out, and
// the API answers through HAProxy's HTTP port. Devices connecting through
// HAProxy's MQTT port land by grid cell, with the map that `gridwatch
// devices export --format haproxy-map` writes: every device of a cell on
// one node, where a grid-level (storm) alert sees them all, the cells on
// both live nodes, a device missing from the map let in too, and every
// reading stored once. HAProxy sends the PROXY protocol (send-proxy-v2),
// which the nodes read from it (mqtt.proxy_protocol_from): a stranger at
// 127.0.0.2 guessing a device's secret through HAProxy until the device's
// node has banned it bans its own address, and the device, at 127.0.0.3
// through the same HAProxy, still gets in (without the header both were
// HAProxy's address to the node, so the ban was the device's too: issue
// 10, item 2).
func TestHAProxyConfigFrontsNodes(t *testing.T) {
	addr, database := storagetest.Database(t)
	devs := e2eDevices(t, 20)
	// Seven waste bins in the storm's cell, the others in cells of three
	// devices each; the last device is left out of the map.
	const stormCell, stormBins = "cell-storm", 7
	var bins []devices.Device
	others := 0
	for i := range devs {
		if devs[i].Type == "waste_bin" && len(bins) < stormBins {
			devs[i].Grid = stormCell
			bins = append(bins, devs[i])
			continue
		}
		devs[i].Grid = fmt.Sprintf("cell-%d", others/3)
		others++
	}
	if len(bins) < stormBins {
		t.Fatalf("%d waste bins among the devices, want %d", len(bins), stormBins)
	}
	mapped, unmapped := devs[:len(devs)-1], devs[len(devs)-1]
	const token = "haproxy-test-token-0123"
	node := func(c *Config) {
		c.API.AdminToken = token
		c.MQTT.ProxyProtocolFrom = haproxySource
		c.MQTT.AuthFailures = 3
	}
	nodes := []*Server{startServer(t, addr, database, devs, node), startServer(t, addr, database, devs, node)}

	targets := []haproxyTarget{{nodes[0].MQTTAddr(), nodes[0].HTTPAddr()}, {nodes[1].MQTTAddr(), nodes[1].HTTPAddr()}, {}}
	hp := startHAProxy(t, targets, mapped)
	apiPort, statsPort, mqttPort := hp.apiPort, hp.statsPort, hp.mqttPort

	// The API through HAProxy, once its checks found a node ready.
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/devices/%s", apiPort, devs[0].ID)
	deadline := time.Now().Add(time.Minute)
	for {
		req, _ := http.NewRequest(http.MethodGet, api, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API through HAProxy did not answer 200 within a minute: %v\nhaproxy:\n%s", err, hp.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitBackend(t, statsPort, "gridwatch_mqtt", map[string]string{"gridwatch-1": "UP", "gridwatch-2": "UP", "gridwatch-3": "DOWN"})

	// Each device publishes once, in turn; the node whose broker ingested
	// its message is the one HAProxy sent it to.
	url := fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort)
	sent := 0
	reach := func(d devices.Device) int {
		t.Helper()
		before := []float64{ingested(t, nodes[0]), ingested(t, nodes[1])}
		m := metricNames(d.Type)
		publishTo(t, url, d, fmt.Sprintf(`{"ts": %d, %q: 1, %q: 2}`, time.Now().UnixMilli()-int64(sent), m[0], m[1]))
		sent++
		node := 0
		waitFor(t, 2*time.Minute, func() bool {
			for j, s := range nodes {
				if ingested(t, s) > before[j] {
					node = j + 1
					return true
				}
			}
			return false
		})
		return node
	}
	nodeOf := map[string]int{}
	for _, d := range devs {
		nodeOf[d.ID] = reach(d)
	}
	// The device not in the map is hashed on its client id: one node,
	// each time (with no key HAProxy would take turns).
	for range 2 {
		if n := reach(unmapped); n != nodeOf[unmapped.ID] {
			t.Errorf("%s, not in the map, reached node %d, then node %d", unmapped.ID, nodeOf[unmapped.ID], n)
		}
	}
	waitCount(t, nodes[0], uint64(2*sent), "SELECT count() FROM {db}.telemetry")
	cells := map[string]map[int]bool{}
	for _, d := range mapped {
		if cells[d.Grid] == nil {
			cells[d.Grid] = map[int]bool{}
		}
		cells[d.Grid][nodeOf[d.ID]] = true
	}
	took := map[int]int{}
	for cell, on := range cells {
		if len(on) != 1 {
			t.Errorf("the devices of %s reached nodes %v through HAProxy, want one node", cell, on)
		}
		for n := range on {
			took[n]++
		}
	}
	t.Logf("cells per node through HAProxy: %v; %s, not in the map, on node %d", took, unmapped.ID, nodeOf[unmapped.ID])
	// Which node a cell goes to is HAProxy's hash of its name, fixed for
	// these names and servers.
	for n := 1; n <= len(nodes); n++ {
		if took[n] == 0 {
			t.Errorf("node %d took no cell through HAProxy (cells per node: %v)", n, took)
		}
	}

	// A storm over the cell: every bin full. The node holding the cell
	// sees them all: StormMin (5) alerts of their own, then one grid-level
	// alert the next ones join (split over the nodes, each node would see
	// fewer than 6 and raise an alert per bin).
	for _, b := range bins {
		publishTo(t, url, b, fmt.Sprintf(`{"ts": %d, "fill_pct": 97, "temp_c": 20}`, time.Now().UnixMilli()))
	}
	storm := func() (own, grid []alerts.Alert, on map[int]bool) {
		on = map[int]bool{}
		for i, s := range nodes {
			page, err := s.Alerts().List(alerts.Filter{Grid: stormCell, Rule: "waste_bin_full", Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Alerts {
				on[i+1] = true
				if a.Device == "" {
					grid = append(grid, a)
				} else {
					own = append(own, a)
				}
			}
		}
		return own, grid, on
	}
	// Every bin in an alert: one of its own or a grid-level one's members.
	accounted := func(own, grid []alerts.Alert) int {
		n := len(own)
		for _, a := range grid {
			n += len(a.Members)
		}
		return n
	}
	own, grid, on := storm()
	for deadline := time.Now().Add(2 * time.Minute); accounted(own, grid) < stormBins && time.Now().Before(deadline); own, grid, on = storm() {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("storm over %s (%d bins full): on nodes %v, %d alerts of their own, %d grid-level", stormCell, len(bins), on, len(own), len(grid))
	if len(on) != 1 || len(own) != alerts.DefaultStormMin || len(grid) != 1 || len(grid[0].Members) != stormBins-alerts.DefaultStormMin {
		members := -1
		if len(grid) == 1 {
			members = len(grid[0].Members)
		}
		t.Errorf("storm over %s: alerts on nodes %v, %d of their own, %d grid-level (members of one: %d); want them on one node, %d of their own and one grid-level of %d",
			stormCell, on, len(own), len(grid), members, alerts.DefaultStormMin, stormBins-alerts.DefaultStormMin)
	}

	victim := devs[0]
	home := nodes[nodeOf[victim.ID]-1]
	banned := func() bool { return gathered(t, home, "gridwatch_mqtt_limited_total", "limit", "auth_failure_ban") > 0 }
	guesses := 0
	for ; !banned(); guesses++ {
		if guesses == 100 {
			t.Fatalf("after %d guesses through HAProxy the device's node had not banned the stranger", guesses)
		}
		if err := connectFrom(url, "127.0.0.2", victim.ID, "guess"); err == nil {
			t.Fatalf("guess %d let in", guesses)
		}
	}
	t.Logf("the device's node banned the stranger after %d guesses through HAProxy", guesses)
	other := nodes[2-nodeOf[victim.ID]]
	if n := gathered(t, other, "gridwatch_mqtt_auth_failures_total", "reason", "bad_password"); n != 0 {
		t.Errorf("%v of the stranger's guesses for %s reached the node its cell does not go to", n, victim.ID)
	}
	if err := connectFrom(url, "127.0.0.3", victim.ID, victim.Secret); err != nil {
		t.Errorf("%s through HAProxy is locked out by a stranger's %d guesses through it: %v", victim.ID, guesses, err)
	}
	for i, s := range nodes {
		if n := gathered(t, s, "gridwatch_mqtt_auth_failures_total", "reason", "proxy_header"); n != 0 {
			t.Errorf("node %d refused %v connections from HAProxy for their PROXY header", i+1, n)
		}
	}
}

// connectFrom logs in as device id with secret through the broker at url,
// from the local address local, and disconnects.
func connectFrom(url, local, id, secret string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).SetPassword(secret).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetDialer(&net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}))
	tok := c.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		return errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(100)
	return nil
}

// haproxySource is the address HAProxy connects to the nodes' MQTT ports
// from: the nodes behind it read PROXY headers from there
// (mqtt.proxy_protocol_from).
const haproxySource = "127.0.0.9"

// haproxyTarget is a gridwatch node HAProxy fronts: its MQTT and HTTP
// addresses; none for a node that is down.
type haproxyTarget struct{ mqtt, http string }

// haproxyRun is HAProxy running deploy/haproxy/haproxy.cfg.
type haproxyRun struct {
	mqttPort, apiPort, statsPort int
	out                          *logbuf.Buffer
}

// logs returns what HAProxy logged.
func (h *haproxyRun) logs() string { return h.out.String() }

// startHAProxy runs deploy/haproxy/haproxy.cfg, as shipped but for its
// addresses and maxconn, in front of three nodes (gridwatch-1..3), with the
// cells map of devs, until t ends.
func startHAProxy(t *testing.T, nodes []haproxyTarget, devs []devices.Device) *haproxyRun {
	t.Helper()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		storagetest.Unavailable(t, "haproxy is not installed (deploy/install-deps.sh installs it)")
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	port := func() int {
		p, err := freeport.Loopback()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := &haproxyRun{mqttPort: port(), apiPort: port(), statsPort: port(), out: &logbuf.Buffer{}}
	downPort := port()
	cfg := string(raw)
	// The addresses change, and maxconn: 200,000 connections need more
	// file descriptors than a test may open.
	// HAProxy reaches the nodes' MQTT ports from haproxySource, which
	// they take PROXY headers from, so that a test's own clients at
	// 127.0.0.1 can still connect to a node directly.
	for from, to := range map[string]string{
		"maxconn 200000":                         "maxconn 2000",
		"bind :1883":                             "bind 127.0.0.1:" + strconv.Itoa(h.mqttPort),
		"bind :8080":                             "bind 127.0.0.1:" + strconv.Itoa(h.apiPort),
		"bind :8404":                             "bind 127.0.0.1:" + strconv.Itoa(h.statsPort),
		"backend gridwatch_mqtt\n    mode tcp\n": "backend gridwatch_mqtt\n    mode tcp\n    source " + haproxySource + "\n",
	} {
		if !strings.Contains(cfg, from) {
			t.Fatalf("haproxy.cfg has no %q", from)
		}
		cfg = strings.ReplaceAll(cfg, from, to)
	}
	// gridwatch-N:PORT names the Nth node.
	server := regexp.MustCompile(`gridwatch-(\d):(1883|8080)( check port 8080)?`)
	replaced := 0
	cfg = server.ReplaceAllStringFunc(cfg, func(m string) string {
		replaced++
		p := server.FindStringSubmatch(m)
		n, _ := strconv.Atoi(p[1])
		if n > len(nodes) || nodes[n-1].mqtt == "" {
			return fmt.Sprintf("127.0.0.1:%d", downPort)
		}
		s := nodes[n-1]
		target := s.mqtt
		if p[2] == "8080" {
			target = s.http
		}
		if p[3] != "" {
			_, hp, _ := strings.Cut(s.http, ":")
			return target + " check port " + hp
		}
		return target
	})
	if replaced != 6 {
		t.Fatalf("haproxy.cfg names %d node addresses, want 3 MQTT and 3 HTTP", replaced)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var cells bytes.Buffer
	if err := devices.WriteHAProxyMap(&cells, devs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cells.map"), cells.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, haproxy, "-db", "-f", file)
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	return h
}

// waitBackend polls HAProxy's statistics (CSV) until each server of
// backend has the status wanted.
func waitBackend(t *testing.T, statsPort int, backend string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var got map[string]string
	for {
		got = map[string]string{}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats;csv", statsPort))
		if err == nil {
			records, _ := csv.NewReader(resp.Body).ReadAll()
			resp.Body.Close()
			for _, r := range records {
				if len(r) > 17 && r[0] == backend {
					got[r[1]] = strings.Fields(r[17] + " ")[0] // "UP", "DOWN", "UP 1/2"…
				}
			}
		}
		ok := true
		for server, status := range want {
			ok = ok && got[server] == status
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy's %s servers are %v after a minute, want %v", backend, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ingested is the telemetry messages a node's broker ingested.
func ingested(t *testing.T, s *Server) float64 {
	t.Helper()
	families, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "gridwatch_mqtt_messages_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "ingested" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
