package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cluster"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/mosquittotest"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// caseClient drives the case API of one node.
type caseClient struct {
	t    *testing.T
	node *gridwatchProcess
}

// post sends an action (path "" reports a case) with If-Match version
// (0: none) and returns the status and the case answered.
func (c caseClient) post(path string, version uint32, body string) (int, cases.Case) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.node.http+"/api/v1/cases"+path, strings.NewReader(body))
	if version > 0 {
		req.Header.Set("If-Match", fmt.Sprintf(`"%d"`, version))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, cases.Case{}
	}
	defer resp.Body.Close()
	var out cases.Case
	if resp.StatusCode/100 == 2 {
		_ = json.NewDecoder(resp.Body).Decode(&out)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, out
}

// get reads a case.
func (c caseClient) get(id string) (cases.Case, bool) {
	resp, err := http.Get("http://" + c.node.http + "/api/v1/cases/" + id)
	if err != nil {
		return cases.Case{}, false
	}
	defer resp.Body.Close()
	var out cases.Case
	return out, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&out) == nil
}

// must posts an action, retrying on 409 and 503 with the case's version
// read afresh, until it is answered 2xx, and returns the case.
func (c caseClient) must(id, action, body string) cases.Case {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		cur, ok := c.get(id)
		if ok {
			if code, got := c.post("/"+id+"/"+action, cur.Version, body); code/100 == 2 {
				return got
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("%s on %s through %s: not answered 2xx within 2 minutes", action, id, c.node.http)
	return cases.Case{}
}

// open reports, registers and dispatches n cases (a manhole cover, to
// the unit U-WATER, which the nodes must know) and returns their ids.
func (c caseClient) open(n int) []string {
	c.t.Helper()
	var ids []string
	for i := range n {
		code, made := c.post("", 0, fmt.Sprintf(`{"category":"C0101","grid":"D01-S01-G01","address":"Hubin Rd %d","description":"cover gone"}`, i))
		if code != http.StatusCreated && code != http.StatusOK {
			c.t.Fatalf("report through %s: %d", c.node.http, code)
		}
		c.must(made.ID, "register", `{"force":true}`)
		c.must(made.ID, "dispatch", `{"unit":"U-WATER"}`)
		ids = append(ids, made.ID)
	}
	return ids
}

// leaseHolders returns the nodes holding the lease.
func leaseHolders(t *testing.T, lease string, nodes ...*gridwatchProcess) []int {
	var out []int
	for i, n := range nodes {
		if n.cmd == nil {
			continue
		}
		for _, m := range n.scrape(t)["gridwatch_cluster_lease_held"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "lease" && l.GetValue() == lease && m.GetGauge().GetValue() == 1 {
					out = append(out, i)
				}
			}
		}
	}
	return out
}

// remindCheck reads each case from ClickHouse and counts its reminders by
// step and deadline: each must be there once.
func remindCheck(t *testing.T, db *storage.DB, ids []string) (reminded, doubled int) {
	t.Helper()
	for _, id := range ids {
		_, evs, err := db.LoadCase(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, ev := range evs {
			if ev.Kind == cases.EventRemind {
				n[ev.Note+" "+ev.Due.String()]++
			}
		}
		if n0 := len(n); n0 > 0 {
			reminded++
		}
		for _, k := range n {
			if k > 1 {
				doubled += k - 1
			}
		}
	}
	return reminded, doubled
}

// caseRace is what raceCases had answered: the notes and sign-fors
// answered 2xx by case, and the refusals by status.
type caseRace struct {
	notes, signs map[string]int
	refused      map[int]int
}

// raceCases has every client post notesEach notes, then the sign-for, on
// every case (dispatched) at once, each with If-Match of the version it
// read.
func raceCases(clients []caseClient, ids []string, notesEach int) caseRace {
	var mu sync.Mutex
	r := caseRace{notes: map[string]int{}, signs: map[string]int{}, refused: map[int]int{}}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, id := range ids {
				for n := 0; n < notesEach; {
					cur, ok := c.get(id)
					if !ok {
						continue
					}
					code, _ := c.post("/"+id+"/note", cur.Version, `{"note":"seen from `+c.node.http+`"}`)
					mu.Lock()
					if code/100 == 2 {
						r.notes[id]++
						n++
					} else {
						r.refused[code]++
					}
					mu.Unlock()
				}
				for {
					cur, ok := c.get(id)
					if !ok {
						continue
					}
					if cur.Status != cases.StatusDispatched {
						break
					}
					code, _ := c.post("/"+id+"/sign", cur.Version, ``)
					mu.Lock()
					if code/100 == 2 {
						r.signs[id]++
					} else {
						r.refused[code]++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return r
}

// check reads each case's trace from ClickHouse and fails t unless every
// note answered is stored once, each case was signed for once, and no two
// events of a case share a version; it returns the figures. It waits up
// to a minute for the traces to be complete, as read through a replica
// that may lag the one a node wrote to.
func (r caseRace) check(t *testing.T, db *storage.DB, ids []string) (answeredNotes, storedNotes, taken, signed int) {
	t.Helper()
	type figures struct{ notes, signs, taken int }
	read := func() (map[string]figures, bool) {
		got, complete := map[string]figures{}, true
		for _, id := range ids {
			_, evs, err := db.LoadCase(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			var f figures
			seen := map[uint32]bool{}
			for _, ev := range evs {
				if seen[ev.Seq] {
					f.taken++
				}
				seen[ev.Seq] = true
				switch ev.Kind {
				case cases.EventNote:
					f.notes++
				case cases.EventSign:
					f.signs++
				}
			}
			got[id] = f
			complete = complete && f.notes >= r.notes[id] && f.signs >= 1
		}
		return got, complete
	}
	got, complete := read()
	for deadline := time.Now().Add(time.Minute); !complete && time.Now().Before(deadline); got, complete = read() {
		time.Sleep(200 * time.Millisecond)
	}
	for _, id := range ids {
		f := got[id]
		answeredNotes += r.notes[id]
		storedNotes += f.notes
		signed += r.signs[id]
		taken += f.taken
		if f.notes != r.notes[id] || f.signs != 1 || r.signs[id] != 1 {
			t.Errorf("case %s: %d notes answered, %d stored; sign-for answered %d times, stored %d times", id, r.notes[id], f.notes, r.signs[id], f.signs)
		}
	}
	if taken > 0 {
		t.Errorf("%d events stored on a version another event of the case had", taken)
	}
	return answeredNotes, storedNotes, taken, signed
}

// TestClusterCasesOneTruth runs two `gridwatch serve` nodes on one
// ClickHouse and one ZooKeeper (cluster.zookeeper). Cases are made and
// dispatched through both, and each node lists them all; with reminders
// due at once, the node holding
// the case-deadlines lease reminds every case once, whichever node made
// it. Then both nodes race notes and the sign-for on every case with
// If-Match: every note answered is stored once, each case is signed for
// once, and no two events of a case share a version. Then the lease
// holder is killed (SIGKILL): the other takes the lease over and reminds
// the cases dispatched after, once. Then ZooKeeper is stopped: actions
// answer 503 and store nothing, and once it is back they go through.
func TestClusterCasesOneTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped under -short")
	}
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	units := filepath.Join(t.TempDir(), "units.yaml")
	if err := os.WriteFile(units, []byte("- {code: U-WATER, name: water bureau, categories: [water]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*gridwatchProcess
	for i := range 2 {
		n := newGridwatchProcess(t, addr, database, e2eDevices(t, 1), "--units.file", units,
			"--cluster.zookeeper", zk.Addr, "--cluster.session_timeout", "4s", "--cluster.node", fmt.Sprintf("node%d", i),
			// Every case's first reminder is due at its dispatch.
			"--cases.tick_every", "200ms", "--cases.remind_before", "100000h")
		n.start(t)
		nodes = append(nodes, n)
	}
	db, err := storage.Open(context.Background(), storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clients := []caseClient{{t, nodes[0]}, {t, nodes[1]}}
	var holder []int
	waitFor(t, time.Minute, func() bool { holder = leaseHolders(t, leaseCaseDeadlines, nodes...); return len(holder) == 1 })
	t.Logf("node %d holds %s", holder[0], leaseCaseDeadlines)
	// /readyz tells who holds what.
	var ready struct {
		Detail struct {
			Cluster struct {
				Node   string          `json:"node"`
				Leases map[string]bool `json:"leases_held"`
			} `json:"cluster"`
		} `json:"detail"`
	}
	resp, err := http.Get("http://" + nodes[holder[0]].http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if err != nil || ready.Detail.Cluster.Node != fmt.Sprintf("node%d", holder[0]) || !ready.Detail.Cluster.Leases[leaseCaseDeadlines] {
		t.Errorf("/readyz of the holder: %+v (%v)", ready.Detail.Cluster, err)
	}

	ids := append(clients[0].open(5), clients[1].open(5)...)
	// Each node lists the cases the other made.
	for _, c := range clients {
		listed := func() int {
			resp, err := http.Get("http://" + c.node.http + "/api/v1/cases?limit=100")
			if err != nil {
				return 0
			}
			defer resp.Body.Close()
			var page cases.Page
			if json.NewDecoder(resp.Body).Decode(&page) != nil {
				return 0
			}
			n := 0
			for _, lc := range page.Cases {
				if slices.Contains(ids, lc.ID) {
					n++
				}
			}
			return n
		}
		waitFor(t, time.Minute, func() bool { return listed() == len(ids) })
	}
	waitFor(t, time.Minute, func() bool { r, _ := remindCheck(t, db, ids); return r == len(ids) })
	time.Sleep(2 * time.Second) // ten more sweeps
	reminded, doubled := remindCheck(t, db, ids)
	t.Logf("reminders: %d of %d cases reminded, %d reminders doubled", reminded, len(ids), doubled)
	if doubled > 0 {
		t.Errorf("%d reminders sent twice", doubled)
	}

	// Both nodes race notes, then the sign-for, on every case.
	race := raceCases(clients, ids, 5)
	answeredNotes, storedNotes, taken, signed := race.check(t, db, ids)
	t.Logf("race: %d notes answered 2xx, %d stored; %d sign-fors answered for %d cases; %d events on a taken version; refusals by status %v",
		answeredNotes, storedNotes, signed, len(ids), taken, race.refused)

	// The lease holder is killed; the other node takes the duty over.
	dead, alive := holder[0], 1-holder[0]
	killedAt := time.Now()
	nodes[dead].kill(t)
	waitFor(t, time.Minute, func() bool { h := leaseHolders(t, leaseCaseDeadlines, nodes...); return len(h) == 1 && h[0] == alive })
	t.Logf("kill: node %d holds %s %s after node %d was killed", alive, leaseCaseDeadlines, time.Since(killedAt).Round(time.Millisecond), dead)
	later := clients[alive].open(3)
	waitFor(t, time.Minute, func() bool { r, _ := remindCheck(t, db, later); return r == len(later) })
	time.Sleep(2 * time.Second)
	reminded, doubled = remindCheck(t, db, append(ids, later...))
	t.Logf("after the kill: %d of %d cases reminded, %d reminders doubled", reminded, len(ids)+len(later), doubled)
	if doubled > 0 {
		t.Errorf("%d reminders sent twice after the kill", doubled)
	}

	// ZooKeeper stopped: the survivor refuses case actions (503) and
	// stores nothing; back, they go through.
	zk.Stop()
	id := later[0]
	before, _, err := db.LoadCase(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := clients[alive].post("/"+id+"/note", before.Version, `{"note":"while ZooKeeper is down"}`)
	after, _, _ := db.LoadCase(context.Background(), id)
	t.Logf("ZooKeeper stopped: a note answered %d; the case stored at version %d, before %d", code, after.Version, before.Version)
	if code != http.StatusServiceUnavailable || after.Version != before.Version {
		t.Errorf("with ZooKeeper stopped a note answered %d and the case went from version %d to %d; want 503 and no change", code, before.Version, after.Version)
	}
	zk.Start(t)
	start := time.Now()
	clients[alive].must(id, "note", `{"note":"ZooKeeper is back"}`)
	t.Logf("ZooKeeper back: a note answered 2xx after %s", time.Since(start).Round(time.Millisecond))
}

// TestClusterAlertOnce runs two nodes on one ClickHouse and one ZooKeeper,
// each with a webhook to one receiver, and a full waste bin reporting to
// both, as a device moving between nodes does: the bin, its rule state and
// its open alert move to the node its reading reaches (cluster.Owners), so
// the condition fires one alert cluster-wide, notified once, opens one
// case, and no two nodes hold it open. The bin emptied on both, the alert
// clears once: filled again, the next episode fires one new alert, once. A
// silence taken on one node then holds on the other, and ends there when
// it ends on the first.
func TestClusterAlertOnce(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	units := filepath.Join(t.TempDir(), "units.yaml")
	var list strings.Builder
	for _, cat := range devices.Categories() {
		fmt.Fprintf(&list, "- {code: U-%s, name: %s unit, categories: [%s]}\n", cat, cat, cat)
	}
	if err := os.WriteFile(units, []byte(list.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	hook, receiver := webhookReceiver(t)
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-1-secret-0123456789"}
	var nodes []*Server
	for i := range 2 {
		nodes = append(nodes, startServer(t, addr, database, []devices.Device{bin}, func(c *Config) {
			c.Units.File = units
			c.Cluster.ZooKeeper, c.Cluster.SessionTimeout, c.Cluster.Node = zk.Addr, 4*time.Second, fmt.Sprintf("node%d", i)
			c.Notify.WebhookURL, c.Notify.WebhookSecret = receiver.URL, "hook-secret-of-the-test"
		}))
	}
	// claims counts the claims answered on both nodes, by result.
	claims := func(result string) float64 {
		n := 0.0
		for _, srv := range nodes {
			n += gathered(t, srv, "gridwatch_alerts_claims_total", "result", result)
		}
		return n
	}
	// raised counts the bin's alerts the two nodes list, each once, and
	// those open on both.
	raised := func() (n, twice int) {
		seen := map[string]bool{}
		for _, srv := range nodes {
			p, _ := srv.alerting.engine.List(alerts.Filter{Device: bin.ID})
			for _, a := range p.Alerts {
				if seen[a.ID] && a.Condition != alerts.ConditionCleared {
					twice++
				}
				seen[a.ID] = true
			}
		}
		return len(seen), twice
	}
	// settled: one node owns the bin and neither waits for it, so that no
	// other node can evaluate it.
	settled := func() bool {
		owned, waiting := 0, 0
		for _, srv := range nodes {
			o, w := srv.coord.owners.Owned()
			owned, waiting = owned+o, waiting+w
		}
		return owned == 1 && waiting == 0
	}
	// barrier returns once each node's engine has taken in the readings
	// published to it: once its mutex was free again (Flush takes it).
	barrier := func() {
		for _, n := range nodes {
			if err := n.alerting.engine.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// handed counts the bin's handovers to (in) and from (out) the nodes.
	handed := func(way string) float64 {
		n := 0.0
		for _, srv := range nodes {
			n += gathered(t, srv, "gridwatch_alerts_devices_handed_total", "way", way)
		}
		return n
	}
	// notified counts the webhook's notifications of the bin, by event.
	notified := func(kind alerts.EventKind) int { return hook.count(bin.ID, kind) }
	// storedFires counts the fire events of the bin's alerts in ClickHouse.
	storedFires := func() uint64 {
		return count(t, nodes[0], "SELECT count() FROM {db}.alert_events WHERE kind = 'fire' AND alert_id IN (SELECT id FROM {db}.alerts WHERE device = ?)", bin.ID)
	}
	for episode := 1; episode <= 2; episode++ {
		for _, n := range nodes {
			publish(t, n, bin, `{"fill_pct": 97, "temp_c": 20}`)
		}
		// The bin settled on one node, which evaluated both readings (see
		// below), and a fire notified: nothing else can fire for this
		// episode.
		// Each node's engine has evaluated its reading, or holds it while
		// it asks for the bin, which it then owns or waits for.
		barrier()
		waitFor(t, time.Minute, func() bool { return settled() && notified(alerts.EventFire) >= episode })
		waitFor(t, time.Minute, func() bool { return storedFires() >= uint64(episode) })
		n, twice := raised()
		t.Logf("episode %d: the bin handed to a node %.0f times; claims won %.0f, lost %.0f, errors %.0f; %d alerts listed on the two nodes, %d open on both, %d fire notifications, %d fire events stored",
			episode, handed("in"), claims("won"), claims("lost"), claims("error"), n, twice, notified(alerts.EventFire), storedFires())
		if n != episode || twice != 0 {
			t.Errorf("episode %d: %d alerts raised on the two nodes in all, %d open on both; want %d, on one", episode, n, twice, episode)
		}
		if got := notified(alerts.EventFire); got != episode {
			t.Errorf("episode %d: %d fire notifications in all, want %d", episode, got, episode)
		}
		if got := storedFires(); got != uint64(episode) {
			t.Errorf("episode %d: %d fire events stored in all, want %d", episode, got, episode)
		}
		for _, n := range nodes {
			publish(t, n, bin, `{"fill_pct": 10, "temp_c": 20}`)
		}
		barrier()
		waitFor(t, time.Minute, func() bool { return settled() && notified(alerts.EventClear) >= episode })
	}
	var open []cases.Case
	waitFor(t, time.Minute, func() bool {
		cs, _, err := nodes[0].DB().LoadCases(context.Background(), time.Now().Add(-time.Hour))
		if err != nil {
			return false
		}
		open = open[:0]
		for _, c := range cs {
			if c.Device == bin.ID {
				open = append(open, c)
			}
		}
		// The second episode's join reaches the case through the
		// asynchronous intake: waited for, not read once.
		return len(open) >= 1 && len(open[0].Joined) >= 1
	})
	listed, _ := raised()
	t.Logf("2 episodes on 2 nodes: %d alerts, %d fire and %d clear notifications, %d case(s) for the condition, joined by %v",
		listed, notified(alerts.EventFire), notified(alerts.EventClear), len(open), open[0].Joined)
	if n := notified(alerts.EventClear); n != 2 {
		t.Errorf("%d clear notifications, want 2", n)
	}
	if len(open) != 1 || len(open[0].Joined) != 1 {
		t.Errorf("%d cases opened for one condition, the first joined by %v; want 1, joined by the second episode's alert", len(open), open[0].Joined)
	}

	// A silence taken on one node applies on the other within its reload
	// interval, and ends there when it ends on the first.
	sil, err := nodes[0].alerting.engine.AddSilence(context.Background(), alerts.Silence{Device: bin.ID, Ends: time.Now().Add(time.Hour), Actor: "wang"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	holds := func() bool {
		for _, x := range nodes[1].alerting.engine.Silences() {
			if x.ID == sil.ID {
				return true
			}
		}
		return false
	}
	waitFor(t, time.Minute, holds)
	t.Logf("a silence taken on node 0 held on node 1 after %s", time.Since(start).Round(time.Millisecond))
	if err := nodes[0].alerting.engine.RemoveSilence(context.Background(), sil.ID); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, 2*time.Minute, func() bool { return !holds() })
	t.Logf("ended on node 0, it ended on node 1 after %s", time.Since(start).Round(time.Millisecond))
}

// startCoordinators starts n nodes' coordinators, node0…, on the
// ZooKeeper at addr.
func startCoordinators(t *testing.T, addr string, n int) []*cluster.Coordinator {
	out := make([]*cluster.Coordinator, n)
	for i := range out {
		c := &cluster.Coordinator{Servers: []string{addr}, Node: fmt.Sprintf("node%d", i)}
		if err := c.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out
}

// TestClaimDayOncePerDay: of two nodes claiming a day's duty, one wins; an
// earlier day after it is refused, the next day is won again.
func TestClaimDayOncePerDay(t *testing.T) {
	var nodes []*coordination
	for _, c := range startCoordinators(t, storagetest.StartZooKeeper(t).Addr, 2) {
		duties, err := c.Claims("duties")
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &coordination{coord: c, duties: duties})
	}
	claim := func(n int, day string) bool {
		t.Helper()
		ok, err := nodes[n].claimDay(leaseScoreNotice, day)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(0, "2026-12-02") || claim(1, "2026-12-02") || claim(1, "2026-12-01") || !claim(1, "2026-12-03") {
		t.Fatal("a day's duty claimed other than once")
	}
}

// TestAlertClaimsNameTheHolder has two nodes' alert claims, on one
// ZooKeeper, ask one condition: the node that lost hears which alert
// holds it, the same alert when both ask one restored alert, and the
// id alone from a holder claimed by a release before holders named their
// node. The alert engine tells from this whether a restored alert was
// taken up by another node (to carry on nowhere else) or superseded by
// another alert (to clear).
func TestAlertClaimsNameTheHolder(t *testing.T) {
	nodes, claim := startAlertClaims(t)
	key := "bin_full,device,bin-1"
	if a := claim(0, alerts.Claim{Key: key, ID: "x1"}); !a.Won {
		t.Fatalf("the first claim: %+v, want won", a)
	}
	for _, c := range []alerts.Claim{{Key: key, ID: "x1"}, {Key: key, ID: "y1"}} {
		if a := claim(1, c); a.Won || a.Holder != "x1" {
			t.Errorf("%s asked on the other node: %+v, want lost to x1", c.ID, a)
		}
	}
	legacy := "bin_full,device,bin-2"
	if _, err := nodes[0].c.Take(url.PathEscape(legacy), "x2", nil); err != nil {
		t.Fatal(err)
	}
	if a := claim(1, alerts.Claim{Key: legacy, ID: "x2"}); a.Won || a.Holder != "x2" {
		t.Errorf("asked while a holder without its node holds it: %+v, want lost to x2", a)
	}
}

// startAlertClaims starts two nodes' alert claims, node0 and node1, on
// one new ZooKeeper, and returns them and how a test asks one's claim.
func startAlertClaims(t *testing.T) ([]alertClaims, func(n int, c alerts.Claim) alerts.Answer) {
	var nodes []alertClaims
	for _, c := range startCoordinators(t, storagetest.StartZooKeeper(t).Addr, 2) {
		firing, err := c.SessionClaims("alerts")
		if err != nil {
			t.Fatal(err)
		}
		cells, err := c.Tallies("alert-cells")
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, alertClaims{firing, cells, c.Node})
	}
	return nodes, func(n int, c alerts.Claim) alerts.Answer {
		t.Helper()
		a, err := nodes[n].Claim(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
}

// TestAlertClaimsHandedTakeOver: a node handed an alert with its device
// takes the alert's claim over from the node that handed it (its claim
// still there: its answer was in flight as the device left), also from a
// node of a release before holders named their node, and with the claim
// its count in the cell: a late release there leaves it counted. Another
// alert's claim is not taken over.
func TestAlertClaimsHandedTakeOver(t *testing.T) {
	nodes, claim := startAlertClaims(t)
	const cell = "bin_full,grid,G1"
	key := "bin_full,device,bin-1"
	if a := claim(0, alerts.Claim{Key: key, ID: "x1", Cell: cell}); !a.Won || a.Firing != 0 {
		t.Fatalf("the first claim: %+v, want won, none other firing", a)
	}
	handed := alerts.Claim{Key: key, ID: "x1", Cell: cell, Handed: true}
	if a := claim(1, handed); !a.Won || a.Firing != 0 {
		t.Errorf("x1 handed to node1: %+v, want won, none other firing", a)
	}
	if err := nodes[0].Release(t.Context(), alerts.Claim{Key: key, ID: "x1", Cell: cell}); err != nil {
		t.Fatal(err)
	}
	if a := claim(1, alerts.Claim{Key: "bin_full,device,bin-2", ID: "x2", Cell: cell}); !a.Won || a.Firing != 1 {
		t.Errorf("another bin of the cell, after node0's late release of x1: %+v, want won, x1 counted", a)
	}
	if a := claim(0, alerts.Claim{Key: key, ID: "z1", Handed: true}); a.Won || a.Holder != "x1" {
		t.Errorf("another alert handed to node0: %+v, want lost to x1", a)
	}
	legacy := "bin_full,device,bin-3"
	if _, err := nodes[0].c.Take(url.PathEscape(legacy), "x3", nil); err != nil {
		t.Fatal(err)
	}
	if a := claim(1, alerts.Claim{Key: legacy, ID: "x3", Handed: true}); !a.Won {
		t.Errorf("x3 handed by a node of an older release: %+v, want won", a)
	}
}

// TestClusterWatchesDevicesNoNodeOwns runs two nodes on one ClickHouse and
// one ZooKeeper, with a waste bin registered that never reports to either:
// the holder of the device-watch lease adopts it (cluster.adopt_after), so
// that once it has been silent for three report intervals (the clock is
// moved on) one device_silent alert fires, on that node alone. That node
// then closes, as one that dies does, with the alert open: the other node
// adopts the bin in turn and carries the same alert on, firing, rather
// than raising it again or letting it go.
func TestClusterWatchesDevicesNoNodeOwns(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	bin := devices.Device{ID: "bin-silent", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-silent-secret-0123456789"}
	var ahead atomic.Int64 // the nodes' clock, ahead of time.Now
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	var nodes []*Server
	for i := range 2 {
		nodes = append(nodes, startServerAt(t, now, addr, database, []devices.Device{bin}, func(c *Config) {
			// A session of 10 s: the device-watch lease is held for half of
			// it past each renewal, which a loaded box must be able to renew.
			c.Cluster.ZooKeeper, c.Cluster.SessionTimeout, c.Cluster.Node = zk.Addr, 10*time.Second, fmt.Sprintf("node%d", i)
			c.Cluster.AdoptAfter = 10 * time.Second
		}))
	}
	// owner returns the node that owns the bin, once one does; failing
	// that, it reports what each node's coordinator holds.
	owner := func(among []*Server) int {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			for i, srv := range among {
				if owned, _ := srv.coord.owners.Owned(); owned == 1 {
					return i
				}
			}
		}
		for _, srv := range among {
			t.Logf("%s: %v", srv.Config.Cluster.Node, srv.coord.coord.State())
		}
		t.Fatal("no node owns the bin within 5m")
		return -1
	}
	// silent returns the bin's device_silent alerts that node lists.
	silent := func(srv *Server) []alerts.Alert {
		p, _ := srv.alerting.engine.List(alerts.Filter{Device: bin.ID, Rule: "device_silent"})
		return p.Alerts
	}
	firing := func(srv *Server) int {
		n := 0
		for _, a := range silent(srv) {
			if a.Condition == alerts.ConditionFiring {
				n++
			}
		}
		return n
	}
	start := time.Now()
	first := owner(nodes)
	t.Logf("the bin, which never reported, adopted by node %d after %s", first, time.Since(start).Round(time.Millisecond))
	// Three 15-minute intervals of silence, then the storm group's wait
	// (an interval), each counted from when the node looked: the clock
	// moves on 20 minutes a second until the alert fires.
	waitFor(t, 2*time.Minute, func() bool {
		ahead.Add(int64(20 * time.Minute))
		time.Sleep(time.Second)
		return firing(nodes[first]) == 1
	})
	t.Logf("device_silent fired on node %d, the clock %s ahead", first, time.Duration(ahead.Load()))
	fired := silent(nodes[first])[0]
	if n := len(silent(nodes[1-first])); n != 0 {
		t.Errorf("the node that does not own the bin lists %d device_silent alerts of it, want 0", n)
	}
	waitFor(t, time.Minute, func() bool {
		return count(t, nodes[1-first], "SELECT count() FROM {db}.alert_events WHERE kind = 'fire' AND alert_id = ?", fired.ID) == 1
	})
	if err := nodes[first].Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	survivor := nodes[1-first]
	owner([]*Server{survivor})
	waitFor(t, 2*time.Minute, func() bool { return firing(survivor) == 1 })
	carried := silent(survivor)
	t.Logf("node %d closed: the bin adopted by the other after %s, which lists %d device_silent alert(s): %s %s",
		first, time.Since(closed).Round(time.Millisecond), len(carried), carried[0].ID, carried[0].Condition)
	if len(carried) != 1 || carried[0].ID != fired.ID {
		t.Errorf("after the owner closed, the other node lists %v; want the one alert %s carried on", carried, fired.ID)
	}
	// The bin has sent nothing since: the absence checks the survivor runs
	// each second keep the alert firing (before, its first one cleared it).
	time.Sleep(5 * time.Second)
	if n := firing(survivor); n != 1 {
		t.Errorf("5 s after the survivor carried the alert on, %d device_silent alerts of the bin fire there, want 1: %v", n, silent(survivor))
	}
	if n := count(t, survivor, "SELECT count() FROM {db}.alert_events WHERE kind = 'fire' AND alert_id IN (SELECT id FROM {db}.alerts WHERE device = ?)", bin.ID); n != 1 {
		t.Errorf("%d fire events stored for the bin, want 1", n)
	}
}

// TestRestoredAlertSupersededNotified starts a node of a cluster taking
// a shared subscription (whose engine restores every open alert) on a
// store holding a bin's alert x1 firing while another node's alert y1
// holds the bin's condition (x1's node died, its claim expired, and the
// other node fired the condition anew): the node restores x1, loses its
// claim to y1 and clears it, and the webhook hears that clear. Before,
// the notifiers subscribed to the engine after it started, and a clear
// settled in between reached none of them.
func TestRestoredAlertSupersededNotified(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	addr, database := storagetest.Database(t)
	bin := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-1-secret-0123456789"}
	other := startCoordinators(t, zk.Addr, 1)[0]
	held, err := other.SessionClaims("alerts")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.Take(url.PathEscape("waste_bin_full,device,"+bin.ID), "y1@"+other.Node, nil); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	db, err := storage.Open(ctx, storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fired := time.Now().Add(-time.Hour)
	if err := db.SaveAlerts(ctx, []alerts.Alert{{ID: "x1", Version: 2, Revision: 1, Rule: "waste_bin_full",
		Device: bin.ID, Grid: bin.Grid, Condition: alerts.ConditionFiring, Severity: alerts.SeverityInfo,
		Fired: fired, Updated: fired}}); err != nil {
		t.Fatal(err)
	}
	hook, receiver := webhookReceiver(t)
	reader := mosquittotest.User{Name: "gridwatch-1", Password: "gridwatch-1-upstream-secret"}
	ms := mosquittotest.Start(t, mosquittotest.Config{Readers: []mosquittotest.User{reader}})
	srv := startServer(t, addr, database, []devices.Device{bin}, func(c *Config) {
		c.Cluster.ZooKeeper, c.Cluster.Node = zk.Addr, "node1"
		c.Upstream.Brokers, c.Upstream.ClientID = ms.URL(), reader.Name
		c.Upstream.Username, c.Upstream.Password = reader.Name, reader.Password
		c.Notify.WebhookURL, c.Notify.WebhookSecret = receiver.URL, "hook-secret-of-the-test"
	})
	waitFor(t, time.Minute, func() bool {
		a, _, err := srv.alerting.engine.Get("x1")
		return err == nil && a.Condition == alerts.ConditionCleared
	})
	waitFor(t, time.Minute, func() bool { return hook.count(bin.ID, alerts.EventClear) > 0 })
	hook.mu.Lock()
	defer hook.mu.Unlock()
	for _, tr := range hook.got {
		t.Logf("webhook: %s %s %q", tr.Alert.ID, tr.Event.Kind, tr.Event.Note)
		if tr.Alert.ID != "x1" || tr.Event.Kind != alerts.EventClear || !strings.Contains(tr.Event.Note, "y1") {
			t.Errorf("webhook heard %s %s %q, want x1's clear naming y1", tr.Alert.ID, tr.Event.Kind, tr.Event.Note)
		}
	}
}
