package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/cluster"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// holders stand for the alert engines of a test's nodes: which node holds
// each device, and the state that moves with it in the notes (the count of
// handovers), failing the test when a node takes a device another holds.
type holders struct {
	t     *testing.T
	mu    sync.Mutex
	by    map[string]string // device → node
	moves map[string]int    // device → handovers carried in notes
	notes map[string][]string
}

func (h *holders) holder(node string) *holder { return &holder{h: h, node: node} }

// holder is one node's.
type holder struct {
	h    *holders
	node string
}

func (n *holder) Take(_ context.Context, devices []string, notes map[string][]byte) error {
	h := n.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range devices {
		if cur := h.by[d]; cur != "" && cur != n.node {
			h.t.Errorf("%s took %s while %s held it", n.node, d, cur)
		}
		h.by[d] = n.node
		note, ok := notes[d]
		if ok {
			var moves int
			if _, err := fmt.Sscanf(string(note), "moves=%d", &moves); err != nil {
				h.t.Errorf("%s took %s with note %q: %v", n.node, d, note, err)
			}
			h.moves[d] = moves + 1
		}
		h.notes[d] = append(h.notes[d], fmt.Sprintf("%s:%v", n.node, ok))
	}
	return nil
}

func (n *holder) Give(_ context.Context, devices []string) map[string][]byte {
	h := n.h
	h.mu.Lock()
	defer h.mu.Unlock()
	notes := map[string][]byte{}
	for _, d := range devices {
		if h.by[d] == n.node {
			delete(h.by, d)
			notes[d] = fmt.Appendf(nil, "moves=%d", h.moves[d])
		}
	}
	return notes
}

// startOwners starts, for each of addrs (ZooKeeper's, or a relay's), a
// node (nodea, nodeb, …) with its owners, holding through h.
func startOwners(t *testing.T, h *holders, addrs []string, timeout time.Duration) ([]*cluster.Owners, []*cluster.Coordinator) {
	t.Helper()
	var (
		owners []*cluster.Owners
		nodes  []*cluster.Coordinator
	)
	for i, addr := range addrs {
		name := "node" + string(rune('a'+i))
		c := startNode(t, addr, name, timeout)
		o, err := c.Owners(h.holder(name))
		if err != nil {
			t.Fatal(err)
		}
		owners, nodes = append(owners, o), append(nodes, c)
	}
	return owners, nodes
}

func newHolders(t *testing.T) *holders {
	return &holders{t: t, by: map[string]string{}, moves: map[string]int{}, notes: map[string][]string{}}
}

// heldBy waits until node holds device, handed over moves times.
func (h *holders) heldBy(device, node string, moves int) {
	h.t.Helper()
	waitFor(h.t, time.Minute, device+" held by "+node, func() bool {
		n, m := h.held(device)
		return n == node && m == moves
	})
}

// held returns the node holding device, and its handovers.
func (h *holders) held(device string) (string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.by[device], h.moves[device]
}

// TestOwnersHandEachDeviceToOneNode: three nodes want devices. The first to
// ask owns one; a node that asks later gets it from the owner, with the
// owner's note; a node cut off ZooKeeper gives its devices up as soon as
// its connection drops, and the node waiting takes them, without a note,
// once the cut-off node's session expired; the cut-off node, back, asks
// for a device again and gets it with the note. No node takes a device
// another holds.
func TestOwnersHandEachDeviceToOneNode(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	h := newHolders(t)
	var (
		proxies []*proxy
		addrs   []string
	)
	for range 3 {
		p := startProxy(t, zk.Addr)
		proxies, addrs = append(proxies, p), append(addrs, p.addr())
	}
	// A short session: the cut-off node's is waited out.
	owners, _ := startOwners(t, h, addrs, 4*time.Second)

	owners[0].Own("bin-1")
	owners[0].Own("bin-2")
	owners[1].Own("lamps/7") // a device id is escaped into one ZooKeeper node
	h.heldBy("bin-1", "nodea", 0)
	h.heldBy("bin-2", "nodea", 0)
	h.heldBy("lamps/7", "nodeb", 0)
	owners[1].Own("bin-1")
	owners[0].Own("lamps/7")
	h.heldBy("bin-1", "nodeb", 1)
	h.heldBy("lamps/7", "nodea", 1)
	owners[2].Own("bin-1")
	h.heldBy("bin-1", "nodec", 2)

	// nodea is cut off: it gives bin-2 up once its connection drops, and
	// nodeb, which asked for it, takes it once nodea's session is gone.
	proxies[0].frozen.Store(true)
	owners[1].Own("bin-2")
	h.heldBy("bin-2", "nodeb", 0)
	if owned, _ := owners[0].Owned(); owned != 0 {
		t.Errorf("nodea, cut off, still owns %d devices", owned)
	}
	proxies[0].thaw()
	owners[0].Own("bin-2")
	h.heldBy("bin-2", "nodea", 1)
	h.mu.Lock()
	t.Logf("takes of bin-1 %v, of bin-2 %v", h.notes["bin-1"], h.notes["bin-2"])
	h.mu.Unlock()
}

// TestOwnersAdoptDevicesNoNodeOwns: of three nodes watching for devices no
// node owns (Adopt, on one lease), the lease holder adopts a device that
// never reported, once it has had no owner for the grace, and the device
// a node owned when it died, once the node's session is gone; never the
// device a live node owns. A node the adopted device then reports to asks
// for it and gets it, with the adopter's note. A device id that cannot
// name an owner node stops no adoption.
func TestOwnersAdoptDevicesNoNodeOwns(t *testing.T) {
	zk := storagetest.StartZooKeeper(t)
	h := newHolders(t)
	const grace = 2 * time.Second
	// ".." cannot name an owner node: it is passed over, not a failure
	// of every look.
	registry := []string{"..", "never-reported", "owned-by-a", "dies-with-c"}
	// 10 s sessions: the device-watch lease, held for half of one past
	// each renewal, must stay held on a loaded box. No session here is
	// waited out (nodec closes its own).
	owners, nodes := startOwners(t, h, []string{zk.Addr, zk.Addr, zk.Addr}, 10*time.Second)
	owners[0].Own("owned-by-a")
	owners[2].Own("dies-with-c")
	h.heldBy("owned-by-a", "nodea", 0)
	h.heldBy("dies-with-c", "nodec", 0)
	start := time.Now()
	for i, o := range owners[:2] {
		name := "node" + string(rune('a'+i))
		o.Adopt(nodes[i].Lease("device-watch"), grace, func() []string {
			h.mu.Lock()
			defer h.mu.Unlock()
			var out []string
			for _, d := range registry {
				if h.by[d] != name {
					out = append(out, d)
				}
			}
			return out
		})
	}
	adopter := func(device string) string {
		t.Helper()
		var by string
		waitFor(t, time.Minute, device+" adopted", func() bool {
			by, _ = h.held(device)
			return by != ""
		})
		return by
	}
	holder := adopter("never-reported")
	if took := time.Since(start); took < grace {
		t.Errorf("never-reported adopted %s after the nodes began to look, before the grace of %s", took, grace)
	}
	if holder != "nodea" && holder != "nodeb" {
		t.Fatalf("never-reported adopted by %s, not a node that looks", holder)
	}
	// nodec dies: its device has no owner once its session is gone.
	nodes[2].Close()
	died := time.Now()
	h.mu.Lock()
	delete(h.by, "dies-with-c") // with nodec's engine
	h.mu.Unlock()
	if by := adopter("dies-with-c"); by != holder {
		t.Errorf("dies-with-c adopted by %s, never-reported by %s: want the lease holder for both", by, holder)
	}
	t.Logf("never-reported adopted by %s %s after the nodes began to look; dies-with-c %s after its node closed",
		holder, time.Since(start).Round(time.Millisecond), time.Since(died).Round(time.Millisecond))
	if n, _ := h.held("owned-by-a"); n != "nodea" {
		t.Errorf("owned-by-a, owned by a live node, is held by %s", n)
	}
	// never-reported reports to the other node: it asks, and gets it
	// with the adopter's note.
	other, to := 1, "nodeb"
	if holder == "nodeb" {
		other, to = 0, "nodea"
	}
	owners[other].Own("never-reported")
	h.heldBy("never-reported", to, 1)
}
