package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	"golang.org/x/sync/errgroup"
)

// A device reaches the node its readings reach, and only there is it
// watched. A device that no node owns — it never reported, or it died
// together with its node, whose owner nodes went with its session — would
// be watched by none, and never raise its absence alert. So the holder of
// one lease adopts the devices that have had no owner node for a while:
// it makes their owner nodes itself, where none exists, and takes them as
// any other (without a note: their open alerts are read from the store).
// It never asks an owner for a device. A device adopted that then reports
// to another node is asked for by that node and handed on, as usual.

// DefaultAdoptAfter is how long a device may have no owner node before the
// holder of the adoption lease adopts it.
const DefaultAdoptAfter = time.Minute

// adoptLookups bounds the owner lookups in flight at once.
const adoptLookups = 32

// Adopt has this node, while it holds lease, adopt the devices that
// candidates lists (those it keeps no state of) whose owner node has been
// missing for at least grace, looking every grace/2 (the first time
// grace/2 after the call) until Close. A device is found missing at two
// looks grace apart before it is adopted, so that a device moving to
// another node (its node died, its connection moved) is left to reach it.
func (o *Owners) Adopt(lease *Lease, grace time.Duration, candidates func() []string) {
	ctx, stop := context.WithCancel(o.c.ctx)
	done := make(chan struct{})
	o.mu.Lock()
	o.adopting = append(o.adopting, adoption{stop, done})
	o.mu.Unlock()
	o.c.wg.Add(1)
	go func() {
		defer o.c.wg.Done()
		defer close(done)
		unowned := map[string]time.Time{}
		t := time.NewTicker(max(grace/2, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ran := lease.Do(ctx, func(ctx context.Context) {
				n, err := o.adopt(ctx, candidates(), grace, unowned)
				if n > 0 {
					o.c.Logger.Info("cluster: adopted devices no node owned, to watch them for silence", "devices", n)
				}
				if err != nil && ctx.Err() == nil {
					o.c.Logger.Warn("cluster: devices no node owns not adopted; trying again", "err", err)
				}
			})
			if !ran {
				clear(unowned) // another node looks meanwhile
			}
		}
	}()
}

// adoption is a running Adopt, which Close stops.
type adoption struct {
	stop context.CancelFunc
	done chan struct{}
}

// adopt looks up the owner node of each of devices, notes since when each
// has had none in unowned (which it keeps to devices without one), and
// claims those unowned for grace; run then takes them. A device whose
// owner node names this node while it neither owns nor wants the device
// (it gave the device up when its connection dropped, and kept the node
// through the session) is taken again at once: its readings may never
// come to ask for it. It returns how many it claimed or took back.
func (o *Owners) adopt(ctx context.Context, devices []string, grace time.Duration, unowned map[string]time.Time) (int, error) {
	now := time.Now()
	valid := devices[:0:0]
	for _, d := range devices {
		if _, err := (keys{}).path(nodeOf(d)); err == nil { // "." and ".." cannot be owner nodes
			valid = append(valid, d)
		}
	}
	devices = valid
	owner := make([]string, len(devices)) // "" when none
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(adoptLookups)
	for i, d := range devices {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			data, _, err := o.c.conn.Get(o.dir + "/" + nodeOf(d))
			switch {
			case errors.Is(err, zk.ErrNoNode):
			case err != nil:
				return fmt.Errorf("owner of %s: %w", d, err)
			default:
				owner[i] = string(data)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	seen := make(map[string]time.Time, len(unowned))
	var claim, mine []string
	for i, d := range devices {
		switch owner[i] {
		case o.c.Node:
			mine = append(mine, d)
			continue
		case "":
		default:
			continue
		}
		since, ok := unowned[d]
		if !ok {
			since = now
		}
		seen[d] = since
		if now.Sub(since) >= grace {
			claim = append(claim, d)
		}
	}
	clear(unowned)
	for d, since := range seen {
		unowned[d] = since
	}
	var (
		errs    []error
		claimed []string
		adopted int
	)
	for _, d := range claim {
		_, err := o.c.conn.Create(o.dir+"/"+nodeOf(d), []byte(o.c.Node), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		switch {
		case errors.Is(err, zk.ErrNodeExists):
			// Claimed meanwhile by the node it reached.
			continue
		case err != nil:
			// Made or not (a lost answer): run's claim finds out.
			errs = append(errs, fmt.Errorf("owner of %s: %w", d, err))
		}
		delete(unowned, d)
		claimed = append(claimed, d)
	}
	o.mu.Lock()
	for _, d := range claimed {
		delete(o.notes, d) // kept from long ago, if at all: the store is newer
	}
	for _, d := range append(mine, claimed...) {
		if o.owned[d] || o.want[d] {
			continue // taken, or a reading that reached this node asks for it anyway
		}
		o.want[d], o.adopted[d] = true, true
		adopted++
	}
	o.mu.Unlock()
	if adopted > 0 {
		o.c.m.adopted.Add(float64(adopted))
		o.wake()
	}
	return adopted, errors.Join(errs...)
}
