package cases

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Revisions holds each case's version cluster-wide when several nodes act
// on the cases (the server keeps them in ZooKeeper). An action moves it,
// compare-and-set, from the version the action was planned on to the one
// it leads to, before the action is saved: of two nodes acting on one
// version of a case only one goes on, and a node whose copy of a case is
// behind reads the case again from the Store first.
type Revisions interface {
	// Revision reads a case's version.
	Revision(ctx context.Context, id string) (Revision, error)
	// Swap moves a case's version from r, as read, to version; ok is false
	// when another node moved it since.
	Swap(ctx context.Context, id string, r Revision, version uint32) (next Revision, ok bool, err error)
}

// Revision is a case's version as Revisions read it.
type Revision struct {
	// Version is the case's version; 0 when no node set one.
	Version uint32
	// Exists is false when no node set one.
	Exists bool
	// Set is when it was set.
	Set time.Time
	// Stamp is what Swap compares, Revisions' own.
	Stamp int64
}

// DefaultStaleAfter is how long a version moved on without its action
// being stored holds other nodes off the case.
const DefaultStaleAfter = 30 * time.Second

// fresh returns the case of en as the cluster last stored it, with the
// revision to swap from: the entry's own copy when it is at the cluster's
// version, else the Store's, which then replaces it. While another node's
// action on the case is moving its version but not yet stored, it answers
// ErrNotSaved (retry); after StaleAfter that action is taken as lost (its
// node died between the two) and the case goes on from the Store. Without
// Revisions it returns the entry's copy. The caller holds en's act lock.
func (s *Service) fresh(ctx context.Context, en *entry) (Case, Revision, error) {
	cur := s.current(en)
	if s.Revisions == nil {
		return cur, Revision{}, nil
	}
	rev, err := s.Revisions.Revision(ctx, cur.ID)
	if err != nil {
		return Case{}, Revision{}, fmt.Errorf("%w: the cluster's version of case %s is unreadable: %w", ErrNotSaved, cur.ID, err)
	}
	if rev.Exists && rev.Version == cur.Version {
		return cur, rev, nil
	}
	stored, evs, err := s.Store.LoadCase(ctx, cur.ID)
	if err != nil {
		return Case{}, Revision{}, fmt.Errorf("%w: case %s changed on another node and is not readable: %w", ErrNotSaved, cur.ID, err)
	}
	switch {
	case !rev.Exists || stored.Version >= rev.Version:
	case s.Now().Sub(rev.Set) > s.StaleAfter:
		s.Logger.Warn("case version moved on by a node that never stored its action: going on from the stored case",
			"case", cur.ID, "version", rev.Version, "stored", stored.Version, "since", rev.Set)
	default:
		return Case{}, Revision{}, fmt.Errorf("%w: case %s is being changed on another node (version %d, %d stored): retry", ErrNotSaved, cur.ID, rev.Version, stored.Version)
	}
	if stored.Version <= cur.Version {
		return cur, rev, nil
	}
	s.replace(en, stored, evs)
	return stored, rev, nil
}

// refresh brings en to the cluster's version of its case when another
// node moved it on; on failure the entry keeps its copy.
func (s *Service) refresh(ctx context.Context, en *entry) {
	en.act.Lock()
	defer en.act.Unlock()
	if _, _, err := s.fresh(ctx, en); err != nil {
		s.Logger.Debug("case not refreshed from the cluster", "err", err)
	}
}

// replace puts the Store's newer copy of a case into its entry and tells
// the subscribers of the events it brings.
func (s *Service) replace(en *entry, c Case, evs []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Version <= en.c.Version {
		return
	}
	slices.SortFunc(evs, func(a, b Event) int { return cmp.Compare(a.Seq, b.Seq) })
	var news []Event
	for _, ev := range evs {
		if ev.Seq > en.c.Version {
			news = append(news, ev)
		}
	}
	old := en.c
	en.c, en.events = c, evs
	s.indexLocked(&old, &c)
	s.publishLocked([]Case{c}, news)
}

// indexLocked records the origins of c, and indexes it (see index) in
// place of old, its earlier copy held, if any. Called with mu held.
func (s *Service) indexLocked(old, c *Case) {
	if c.Origin != "" {
		s.origins[originKey(c.Source, c.Origin)] = c.ID
	}
	for _, a := range c.Joined {
		s.origins[originKey(c.Source, a)] = c.ID
	}
	if old != nil {
		s.idx.update(old, c)
	} else {
		s.idx.add(c)
	}
}

// adopt reads a case another node made from the Store into memory, with
// Revisions; without, it answers ErrNotFound.
func (s *Service) adopt(ctx context.Context, id string) (*entry, error) {
	if s.Revisions == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	c, evs, err := s.Store.LoadCase(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cases == nil {
		return nil, ErrClosed
	}
	if en := s.cases[id]; en != nil {
		return en, nil
	}
	en := &entry{c: c, events: evs}
	s.cases[id] = en
	s.indexLocked(nil, &c)
	return en, nil
}

// commit plans an action on the cases of ens (whose act locks the caller
// holds, in id order) from their fresh copies and stores it: with
// Revisions it first moves each case's cluster version to the planned one,
// and moves them back when the save fails. It returns the cases as stored.
func (s *Service) commit(ctx context.Context, ens []*entry, plan func(curs []Case, now time.Time) ([]Case, []Event, error)) ([]Case, error) {
	curs := make([]Case, len(ens))
	revs := make([]Revision, len(ens))
	for i, en := range ens {
		c, rev, err := s.fresh(ctx, en)
		if err != nil {
			return nil, err
		}
		curs[i], revs[i] = c, rev
	}
	next, evs, err := plan(curs, s.Now())
	if err != nil {
		return nil, err
	}
	if s.Revisions != nil {
		for i := range ens {
			moved, ok, err := s.Revisions.Swap(ctx, curs[i].ID, revs[i], next[i].Version)
			if err == nil && !ok {
				now, _ := s.Revisions.Revision(ctx, curs[i].ID)
				err = &ConflictError{ID: curs[i].ID, Given: curs[i].Version, Current: now.Version}
			} else if err != nil {
				err = fmt.Errorf("%w: the cluster's version of case %s not set: %w", ErrNotSaved, curs[i].ID, err)
			}
			if err != nil {
				s.unswap(ctx, curs[:i], revs[:i])
				return nil, err
			}
			revs[i] = moved
		}
	}
	if err := s.save(ctx, ens, next, evs); err != nil {
		if s.Revisions != nil {
			s.unswap(ctx, curs, revs)
		}
		return nil, err
	}
	return next, nil
}

// unswap moves the cluster versions of cases, moved to revs, back to the
// cases' own. A failure leaves them for StaleAfter (fresh).
func (s *Service) unswap(ctx context.Context, cs []Case, revs []Revision) {
	for i, c := range cs {
		if _, ok, err := s.Revisions.Swap(ctx, c.ID, revs[i], c.Version); err != nil || !ok {
			s.Logger.Warn("case version not moved back after a failed save: the case waits for its stale time", "case", c.ID, "err", err)
		}
	}
}

// syncLookback is how far before its last read sync reads again: the save
// revisions are the saving node's clock, which may be behind this one's.
const syncLookback = time.Minute

// sync reads the cases saved by any node since its last read from the
// Store, so that every node lists the cluster's cases and streams their
// changes, and the node running the deadline sweep sees them all.
func (s *Service) sync(ctx context.Context) error {
	s.mu.RLock()
	since := s.synced
	s.mu.RUnlock()
	next := uint64(s.Now().Add(-syncLookback).UnixMicro())
	cs, events, err := s.Store.LoadCasesChanged(ctx, since)
	if err != nil {
		return err
	}
	byCase := map[string][]Event{}
	for _, ev := range events {
		byCase[ev.CaseID] = append(byCase[ev.CaseID], ev)
	}
	for _, c := range cs {
		s.mu.Lock()
		en := s.cases[c.ID]
		if en == nil && !s.closed && s.cases != nil {
			en = &entry{}
			s.cases[c.ID] = en
		}
		s.mu.Unlock()
		if en != nil {
			s.replace(en, c, byCase[c.ID])
		}
	}
	s.mu.Lock()
	s.synced = max(s.synced, next)
	s.mu.Unlock()
	return nil
}

// syncLogged is sync, logging a failure.
func (s *Service) syncLogged(ctx context.Context) {
	if err := s.sync(ctx); err != nil && ctx.Err() == nil {
		s.Logger.Warn("cases of the other nodes not read: retried at the next tick", "err", err)
	}
}
