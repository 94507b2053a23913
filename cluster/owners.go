package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
)

// Holder is what Owners hand devices to and take them from: a node's alert
// engine. Owners call it from one goroutine of theirs, never while a call
// to Own waits.
type Holder interface {
	// Take has this node carry on devices it now owns. notes holds, by
	// device, what the node that let the device go passed on (its Give's
	// note); a device it leaves out had no such node, or one that died. On
	// error the Owners call Take again for those devices.
	Take(ctx context.Context, devices []string, notes map[string][]byte) error
	// Give has this node let devices go to another, and returns, by device,
	// the note to pass on to it.
	Give(ctx context.Context, devices []string) map[string][]byte
}

// Owners hand each device to one node of the cluster at a time: the node
// that owns a device holds an ephemeral ZooKeeper node {root}/owners/{device}
// whose data is its name. A node that hears from a device it does not own
// makes it if none exists; otherwise it asks the owner, with an ephemeral
// {root}/asks/{owner}/{device}, and watches the owner's node. The owner,
// which watches its asks, gives the device up (Holder.Give), writes the
// note into the ask and deletes its owner node; the asking node then makes
// its own and takes the device with the note (Holder.Take). When the owner
// dies or is cut off ZooKeeper, its owner nodes go with its session, and
// the waiting nodes take the devices without a note. A node whose
// connection to ZooKeeper drops gives up every device it owned at once
// (keeping the notes, to take them back with), before its session can
// expire and another node take them: its readings ask for them again.
type Owners struct {
	c      *Coordinator
	holder Holder
	dir    string // of the owner nodes
	asks   string // of every node's inbox
	inbox  string // this node's
	kick   chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
	// inboxWatch fires when the asks change; run's own.
	inboxWatch <-chan zk.Event

	mu      sync.Mutex
	want    map[string]bool   // devices to own, not owned yet
	waiting map[string]bool   // wanted devices asked for: not claimed again until their owner node goes or askAgain passes
	asked   map[string]string // the owner whose inbox holds this node's ask for a wanted device
	owned   map[string]bool
	notes   map[string][]byte // of devices given up when the connection or session was lost
	lost    bool              // the connection dropped: give up every device
	// adopted are wanted devices this node adopted (see Adopt): taken if
	// their owner node is this node's, never asked of another.
	adopted  map[string]bool
	adopting []adoption
}

// Ask notes: an ask's data once its owner gave the device up.
const handedPrefix = "handed:"

// askAgain is how often a node asks again for the devices it waits for,
// should an owner have missed its ask or a watch have been lost, and tries
// again a Take that failed.
const askAgain = 10 * time.Second

// Owners returns this node's device owners, which hand devices to holder
// and take them from it until Close.
func (c *Coordinator) Owners(holder Holder) (*Owners, error) {
	if _, err := (keys{}).path(c.Node); err != nil {
		return nil, fmt.Errorf("cluster: node name %q cannot name a ZooKeeper node", c.Node)
	}
	o := &Owners{c: c, holder: holder, dir: c.Root + "/owners", asks: c.Root + "/asks", kick: make(chan struct{}, 1),
		want: map[string]bool{}, waiting: map[string]bool{}, asked: map[string]string{}, owned: map[string]bool{}, notes: map[string][]byte{},
		adopted: map[string]bool{}}
	o.inbox = o.asks + "/" + c.Node
	for _, p := range []string{o.dir, o.asks, o.inbox} {
		if err := c.ensure(p); err != nil {
			return nil, err
		}
	}
	if c.Registerer != nil {
		for _, st := range []string{"owned", "waiting"} {
			c.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gridwatch_cluster_devices", Help: "Devices this node owns (their rule state is here), and those it waits for from another node.",
				ConstLabels: prometheus.Labels{"state": st},
			}, func() float64 {
				owned, waiting := o.Owned()
				if st == "owned" {
					return float64(owned)
				}
				return float64(waiting)
			}))
		}
	}
	c.mu.Lock()
	c.owners = o
	c.mu.Unlock()
	ctx, stop := context.WithCancel(c.ctx)
	o.stop, o.done = stop, make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(o.done)
		o.run(ctx)
	}()
	return o, nil
}

// Close stops handing devices over, and waits for a Take or Give under
// way: the holder can close then. The owner nodes stay until the session
// ends.
func (o *Owners) Close() {
	o.mu.Lock()
	adopting := o.adopting
	o.adopting = nil
	o.mu.Unlock()
	for _, a := range adopting {
		a.stop()
		<-a.done
	}
	o.stop()
	<-o.done
}

// nodeOf returns device's ZooKeeper node name, path-escaped.
func nodeOf(device string) string { return url.PathEscape(device) }

// Own asks, without waiting, that this node own device: Holder.Take gets
// it once it does. It asks again for a device this node owns, whose holder
// has let it go since.
func (o *Owners) Own(device string) {
	o.mu.Lock()
	delete(o.owned, device)
	delete(o.adopted, device) // its readings reach this node: asked for
	o.want[device] = true
	o.mu.Unlock()
	o.wake()
}

// Owned returns the number of devices this node owns and of those it waits
// for.
func (o *Owners) Owned() (owned, waiting int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.owned), len(o.want)
}

// event follows ZooKeeper's events: a deleted owner node frees its device
// for those waiting; an expired session loses every device.
func (o *Owners) event(ev zk.Event) {
	switch {
	case ev.Type == zk.EventSession && (ev.State == zk.StateDisconnected || ev.State == zk.StateExpired):
		o.mu.Lock()
		o.lost = true
		o.mu.Unlock()
	case ev.Type == zk.EventNodeDeleted && strings.HasPrefix(ev.Path, o.dir+"/"):
		o.mu.Lock()
		if d, err := url.PathUnescape(strings.TrimPrefix(ev.Path, o.dir+"/")); err == nil {
			delete(o.waiting, d)
		}
		o.mu.Unlock()
	}
	o.wake()
}

func (o *Owners) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run hands devices over until ctx ends.
func (o *Owners) run(ctx context.Context) {
	t := time.NewTicker(askAgain)
	defer t.Stop()
	tick := true
	for {
		o.step(ctx, tick)
		tick = false
		select {
		case <-ctx.Done():
			return
		case <-o.kick:
		case <-t.C:
			tick = true
			o.mu.Lock()
			clear(o.waiting)
			o.mu.Unlock()
		}
	}
}

// step gives up the devices lost with the connection and those asked of
// this node, then asks for or takes the devices wanted.
func (o *Owners) step(ctx context.Context, tick bool) {
	o.mu.Lock()
	var lost []string
	if o.lost {
		for d := range o.owned {
			lost = append(lost, d)
		}
		clear(o.owned)
		// Ask again: the asks may have gone with the session. Those kept
		// in asked that did are found missing when taking.
		clear(o.waiting)
		o.lost = false
	}
	o.mu.Unlock()
	if len(lost) > 0 {
		o.c.Logger.Warn("cluster: ZooKeeper connection lost: devices given up until their readings ask for them again", "devices", len(lost))
		notes := o.holder.Give(ctx, lost)
		o.mu.Lock()
		for d, n := range notes {
			o.notes[d] = n
		}
		o.mu.Unlock()
	}
	if err := o.answerAsks(ctx, tick || len(lost) > 0); err != nil && ctx.Err() == nil {
		o.c.Logger.Debug("cluster: asks for devices not answered", "err", err)
	}
	if err := o.takeWanted(ctx); err != nil && ctx.Err() == nil {
		o.c.Logger.Debug("cluster: devices not taken", "err", err)
	}
}

// answerAsks gives up the devices this node owns that another asked for.
// It lists the asks when they changed since it last did, or when look is
// set (every askAgain, and once devices were given up).
func (o *Owners) answerAsks(ctx context.Context, look bool) error {
	if o.inboxWatch != nil && !look {
		select {
		case <-o.inboxWatch: // changed, or the watch went with the session
		default:
			return nil
		}
	}
	conn := o.c.conn
	children, _, watch, err := conn.ChildrenW(o.inbox) // the watch also wakes run, through event
	if errors.Is(err, zk.ErrNoNode) {
		if err = o.c.ensure(o.inbox); err == nil {
			children, _, watch, err = conn.ChildrenW(o.inbox)
		}
	}
	if err != nil {
		o.inboxWatch = nil
		return fmt.Errorf("asks in %s: %w", o.inbox, err)
	}
	o.inboxWatch = watch
	var give, idle []string
	o.mu.Lock()
	for _, ch := range children {
		d, err := url.PathUnescape(ch)
		switch {
		case err != nil:
		case o.owned[d]:
			give = append(give, d)
		default:
			// Answered already, or given up when the connection dropped
			// while its owner node stayed: let that go too.
			idle = append(idle, d)
		}
	}
	o.mu.Unlock()
	notes := map[string][]byte{}
	if len(give) > 0 {
		notes = o.holder.Give(ctx, give)
	}
	o.mu.Lock()
	for _, d := range give {
		delete(o.owned, d)
	}
	for _, d := range idle {
		if n, ok := o.notes[d]; ok {
			notes[d] = n
			delete(o.notes, d)
		}
		if o.adopted[d] {
			// Adopted, not taken yet: the asking node hears from it.
			delete(o.want, d)
			delete(o.adopted, d)
		}
	}
	o.mu.Unlock()
	var errs []error
	for _, d := range append(give, idle...) {
		if err := o.handOn(d, notes); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// handOn writes device's note, if any, into its ask, then deletes its owner
// node, if this node's: the asking node, which watches the owner node, reads
// the note once it is gone.
func (o *Owners) handOn(device string, notes map[string][]byte) error {
	p := o.dir + "/" + nodeOf(device)
	data, st, err := o.c.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) || err == nil && string(data) != o.c.Node {
		return nil
	}
	if err != nil {
		return fmt.Errorf("owner of %s: %w", device, err)
	}
	if n, ok := notes[device]; ok {
		_, err := o.c.conn.Set(o.inbox+"/"+nodeOf(device), append([]byte(handedPrefix), n...), -1)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("note for %s: %w", device, err)
		}
	}
	err = o.c.conn.Delete(p, st.Version)
	if err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
		return fmt.Errorf("owner of %s: %w", device, err)
	}
	return nil
}

// takeWanted makes the owner node of each device wanted and not asked for
// yet, asks the owner of those another node owns, and takes those it made.
func (o *Owners) takeWanted(ctx context.Context) error {
	o.mu.Lock()
	var want []string
	for d := range o.want {
		if !o.waiting[d] {
			want = append(want, d)
		}
	}
	o.mu.Unlock()
	var (
		errs []error
		take []string
		from = map[string]string{} // the owner asked, by device taken
	)
	for _, d := range want {
		owner, made, err := o.claim(d)
		switch {
		case err != nil:
			errs = append(errs, err)
		case owner == o.c.Node:
			take = append(take, d)
			o.mu.Lock()
			from[d] = o.asked[d]
			if made {
				// Another node may have owned the device since this one
				// gave it up: the note kept then is stale.
				delete(o.notes, d)
			}
			o.mu.Unlock()
		default:
			o.mu.Lock()
			adopted := o.adopted[d]
			if adopted {
				// Handed on before it was taken, to the node it reports to.
				delete(o.want, d)
				delete(o.adopted, d)
			}
			o.mu.Unlock()
			if adopted {
				continue
			}
			if err := o.ask(d, owner); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(take) == 0 {
		return errors.Join(errs...)
	}
	notes := o.notesFor(take, from)
	if err := o.holder.Take(ctx, take, notes); err != nil {
		// Owned in ZooKeeper, not by the holder: tried again at the next
		// ask round, with the notes kept.
		o.mu.Lock()
		for d, n := range notes {
			o.notes[d] = n
		}
		for _, d := range take {
			o.waiting[d] = true
		}
		o.mu.Unlock()
		return errors.Join(append(errs, fmt.Errorf("take %d devices: %w", len(take), err))...)
	}
	o.mu.Lock()
	for _, d := range take {
		delete(o.want, d)
		delete(o.waiting, d)
		delete(o.asked, d)
		delete(o.notes, d)
		delete(o.adopted, d)
		o.owned[d] = true
	}
	o.mu.Unlock()
	return errors.Join(errs...)
}

// claim makes device's owner node for this node unless another node owns
// it, and returns the owner's name, and whether it made the node (rather
// than found its own).
func (o *Owners) claim(device string) (owner string, made bool, err error) {
	p := o.dir + "/" + nodeOf(device)
	if _, err := (keys{}).path(nodeOf(device)); err != nil {
		return "", false, err
	}
	_, err = o.c.conn.Create(p, []byte(o.c.Node), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if err == nil {
		return o.c.Node, true, nil
	}
	if !errors.Is(err, zk.ErrNodeExists) {
		return "", false, fmt.Errorf("owner of %s: %w", device, err)
	}
	data, _, err := o.c.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		o.wake() // let go meanwhile: made at the next step
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("owner of %s: %w", device, err)
	}
	return string(data), false, nil
}

// ask asks owner for device, and watches its owner node.
func (o *Owners) ask(device, owner string) error {
	if owner == "" {
		return nil
	}
	conn := o.c.conn
	inbox := o.asks + "/" + owner
	if _, err := (keys{}).path(owner); err != nil {
		return fmt.Errorf("owner of %s: %w", device, err)
	}
	ask := inbox + "/" + nodeOf(device)
	_, err := conn.Create(ask, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNoNode) {
		if err = o.c.ensure(inbox); err == nil {
			_, err = conn.Create(ask, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		}
	}
	// An ask that exists is another waiting node's, or this node's own
	// earlier one: the owner answers it all the same.
	if err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("ask %s for %s: %w", owner, device, err)
	}
	o.mu.Lock()
	prev := o.asked[device]
	o.asked[device], o.waiting[device] = owner, true
	o.mu.Unlock()
	if prev != "" && prev != owner {
		_ = conn.Delete(o.asks+"/"+prev+"/"+nodeOf(device), -1) // asked of the device's owner before this one
	}
	exists, _, _, err := conn.ExistsW(o.dir + "/" + nodeOf(device)) // the watch wakes run through event
	if err != nil {
		return fmt.Errorf("owner of %s: %w", device, err)
	}
	if !exists {
		o.mu.Lock()
		delete(o.waiting, device)
		o.mu.Unlock()
		o.wake()
	}
	return nil
}

// notesFor returns the notes of devices just taken: those their owners
// wrote into this node's asks (which it deletes), or kept when this node
// gave them up itself.
func (o *Owners) notesFor(devices []string, from map[string]string) map[string][]byte {
	notes := map[string][]byte{}
	o.mu.Lock()
	for _, d := range devices {
		if n, ok := o.notes[d]; ok {
			notes[d] = n
		}
	}
	o.mu.Unlock()
	for _, d := range devices {
		owner := from[d]
		if owner == "" || owner == o.c.Node {
			continue
		}
		p := o.asks + "/" + owner + "/" + nodeOf(d)
		data, st, err := o.c.conn.Get(p)
		if err != nil {
			continue // no ask left: the owner died, and its note with it
		}
		if n, ok := strings.CutPrefix(string(data), handedPrefix); ok {
			notes[d] = []byte(n)
		}
		_ = o.c.conn.Delete(p, st.Version)
	}
	return notes
}
