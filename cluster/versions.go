package cluster

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Version is a key's value as read, and what a swap needs to set it.
type Version struct {
	// Value is the number of a Versions key; 0 when none was set.
	Value uint64
	// Set is when it was last set, by ZooKeeper's clock; zero when none was.
	Set time.Time
	// Stamp is what a swap compares: the ZooKeeper node's data version, -1
	// when nothing was ever set for the key.
	Stamp int32
	// session is the ZooKeeper session an ephemeral key's node lasts as
	// long as (its ephemeral owner); 0 for others.
	session int64
}

// Exists reports whether a value was ever set for the key.
func (v Version) Exists() bool { return v.Stamp >= 0 }

// keys are ZooKeeper nodes under dir, one per key, whose data is read and
// compared-and-set.
type keys struct {
	c   *Coordinator
	dir string
	// flags are those a key's node is made with: zk.FlagEphemeral for
	// SessionClaims.
	flags int32
}

// newKeys makes the directory of kind under the root's subtree.
func (c *Coordinator) newKeys(tree, kind string) (keys, error) {
	k := keys{c: c, dir: c.Root + "/" + tree + "/" + kind}
	if err := c.ensure(c.Root + "/" + tree); err != nil {
		return keys{}, err
	}
	return k, c.ensure(k.dir)
}

// path returns the node of key, which must be a single path segment.
func (k keys) path(key string) (string, error) {
	if key == "" || key == "." || key == ".." || strings.ContainsAny(key, "/\x00") {
		return "", fmt.Errorf("cluster: %q is not a key", key)
	}
	return k.dir + "/" + key, nil
}

// get reads key's data; no data and Stamp -1 when it has none.
func (k keys) get(key string) ([]byte, Version, error) {
	p, err := k.path(key)
	if err != nil {
		return nil, Version{}, err
	}
	data, st, err := k.c.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, Version{Stamp: -1}, nil
	}
	if err != nil {
		return nil, Version{}, fmt.Errorf("cluster: read %s: %w", p, err)
	}
	return data, Version{Set: time.UnixMilli(st.Mtime), Stamp: st.Version, session: st.EphemeralOwner}, nil
}

// swap sets key's data if it is still as old was read; ErrChanged when
// another node set it meanwhile.
func (k keys) swap(key string, old Version, data []byte) (Version, error) {
	p, err := k.path(key)
	if err != nil {
		return Version{}, err
	}
	if !old.Exists() {
		_, err := k.c.conn.Create(p, data, k.flags, zk.WorldACL(zk.PermAll))
		switch {
		case errors.Is(err, zk.ErrNodeExists):
			return Version{}, ErrChanged
		case err != nil:
			return Version{}, fmt.Errorf("cluster: create %s: %w", p, err)
		}
		return Version{Set: time.Now(), Stamp: 0}, nil
	}
	st, err := k.c.conn.Set(p, data, old.Stamp)
	switch {
	case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode):
		return Version{}, ErrChanged
	case err != nil:
		return Version{}, fmt.Errorf("cluster: set %s: %w", p, err)
	}
	return Version{Set: time.UnixMilli(st.Mtime), Stamp: st.Version}, nil
}

// remove deletes key if it is still as old was read; ErrChanged when
// another node set or removed it meanwhile.
func (k keys) remove(key string, old Version) error {
	p, err := k.path(key)
	if err != nil {
		return err
	}
	err = k.c.conn.Delete(p, old.Stamp)
	switch {
	case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode):
		return ErrChanged
	case err != nil:
		return fmt.Errorf("cluster: delete %s: %w", p, err)
	}
	return nil
}

// Versions keeps one number per key in ZooKeeper (a case's version by its
// id), read and compared-and-set atomically across the nodes.
type Versions struct{ keys }

// Versions returns the versions of kind (a path segment such as "cases").
func (c *Coordinator) Versions(kind string) (*Versions, error) {
	k, err := c.newKeys("versions", kind)
	if err != nil {
		return nil, err
	}
	return &Versions{k}, nil
}

// Get reads key's number.
func (v *Versions) Get(key string) (Version, error) {
	data, ver, err := v.get(key)
	if err != nil || !ver.Exists() {
		return ver, err
	}
	n, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil {
		return Version{}, fmt.Errorf("cluster: %s/%s holds %q, not a version", v.dir, key, data)
	}
	ver.Value = n
	return ver, nil
}

// Swap sets key's number to value if it is still as old was read, and
// returns it as set; ErrChanged when another node set it meanwhile.
func (v *Versions) Swap(key string, old Version, value uint64) (Version, error) {
	ver, err := v.swap(key, old, []byte(strconv.FormatUint(value, 10)))
	ver.Value = value
	return ver, err
}

// Claims keeps one holder per key in ZooKeeper (the case that an alert
// condition raised, by the condition), read and compared-and-set
// atomically across the nodes.
type Claims struct{ keys }

// Claims returns the claims of kind (a path segment such as "alert-cases").
func (c *Coordinator) Claims(kind string) (*Claims, error) {
	k, err := c.newKeys("claims", kind)
	if err != nil {
		return nil, err
	}
	return &Claims{k}, nil
}

// Get reads key's holder, "" when it has none.
func (c *Claims) Get(key string) (string, Version, error) {
	data, ver, err := c.get(key)
	return string(data), ver, err
}

// Swap sets key's holder if it is still as old was read; ErrChanged when
// another node set it meanwhile.
func (c *Claims) Swap(key string, old Version, holder string) (Version, error) {
	return c.swap(key, old, []byte(holder))
}

// SessionClaims returns the claims of kind that last only as long as the
// session of the node that made them (ephemeral ZooKeeper nodes): a claim
// of a node that died or was cut off ZooKeeper past its session timeout
// goes with it, for another node to take. A Swap of an existing claim
// leaves it with the session that made it: Take and Release them.
func (c *Coordinator) SessionClaims(kind string) (*Claims, error) {
	k, err := c.newKeys("session-claims", kind)
	if err != nil {
		return nil, err
	}
	k.flags = zk.FlagEphemeral
	return &Claims{k}, nil
}

// takeAttempts bounds Take's rounds when the claim keeps changing.
const takeAttempts = 5

// Take makes holder key's holder unless another holds it, and returns the
// holder key has then: holder when it was taken (or already held by it).
// A holder that over accepts (nil: none) is taken over as if it held
// nothing. A session claim that holder made in an earlier session (the
// node restarted before ZooKeeper expired the one it had) is made again in
// this one, so that it does not end with that session.
func (c *Claims) Take(key, holder string, over func(holder string) bool) (string, error) {
	for range takeAttempts {
		cur, v, err := c.Get(key)
		if err != nil {
			return cur, err
		}
		if v.Exists() {
			earlier := cur == holder && c.flags&zk.FlagEphemeral != 0 && v.session != c.c.conn.SessionID()
			if !earlier && (cur == holder || over == nil || !over(cur)) {
				return cur, nil
			}
			if err := c.remove(key, v); err != nil && !errors.Is(err, ErrChanged) {
				return "", err
			}
			continue
		}
		_, err = c.Swap(key, v, holder)
		if !errors.Is(err, ErrChanged) {
			return holder, err
		}
	}
	return "", fmt.Errorf("cluster: the claim %s/%s kept changing", c.dir, key)
}

// Release removes key's claim if holder has it; another holder's stays.
func (c *Claims) Release(key, holder string) error {
	cur, v, err := c.Get(key)
	if err != nil || !v.Exists() || cur != holder {
		return err
	}
	if err := c.remove(key, v); err != nil && !errors.Is(err, ErrChanged) {
		return err
	}
	return nil
}

// Tallies count, per key, the members that the nodes add, for as long as
// the session of the node that added each lasts: a member is an
// ephemeral ZooKeeper node under its key's, one per holder that added it
// (named member|holder), gone with that session, and counts once however
// many holders added it. So a member whose claim passed to another holder
// counts while either holds it, and a late Remove by the holder it passed
// from leaves it counted. A key's node stays once made.
type Tallies struct{ keys }

// Tallies returns the tallies of kind (a path segment such as "alert-cells").
func (c *Coordinator) Tallies(kind string) (*Tallies, error) {
	k, err := c.newKeys("tallies", kind)
	if err != nil {
		return nil, err
	}
	return &Tallies{k}, nil
}

// Add counts member under key for holder, and returns how many members
// key counts. Holder's member of an earlier session (its node restarted
// under its name before ZooKeeper expired the old one) is taken into this
// session.
func (t *Tallies) Add(key, member, holder string) (int, error) {
	p, m, err := t.member(key, member, holder)
	if err != nil {
		return 0, err
	}
	for range takeAttempts {
		_, err := t.c.conn.Create(m, []byte(holder), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		switch {
		case err == nil:
			return t.count(p)
		case errors.Is(err, zk.ErrNoNode):
			if err := t.c.ensure(p); err != nil {
				return 0, err
			}
			continue
		case !errors.Is(err, zk.ErrNodeExists):
			return 0, fmt.Errorf("cluster: create %s: %w", m, err)
		}
		exists, st, err := t.c.conn.Exists(m)
		switch {
		case err != nil:
			return 0, fmt.Errorf("cluster: read %s: %w", m, err)
		case !exists:
			continue
		case st.EphemeralOwner == t.c.conn.SessionID():
			return t.count(p)
		}
		if err := t.c.conn.Delete(m, st.Version); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
			return 0, fmt.Errorf("cluster: delete %s: %w", m, err)
		}
	}
	return 0, fmt.Errorf("cluster: the member %s kept changing", m)
}

// count returns how many members the key at p counts.
func (t *Tallies) count(p string) (int, error) {
	names, _, err := t.c.conn.Children(p)
	if err != nil {
		return 0, fmt.Errorf("cluster: list %s: %w", p, err)
	}
	members := make(map[string]bool, len(names))
	for _, name := range names {
		if i := strings.LastIndexByte(name, '|'); i >= 0 {
			name = name[:i]
		}
		members[name] = true // a release before member|holder named it alone
	}
	return len(members), nil
}

// Remove stops counting member under key for holder.
func (t *Tallies) Remove(key, member, holder string) error {
	_, m, err := t.member(key, member, holder)
	if err != nil {
		return err
	}
	if err := t.c.conn.Delete(m, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("cluster: delete %s: %w", m, err)
	}
	return nil
}

// member returns the node of key, a single path segment, and that of
// holder's member under it.
func (t *Tallies) member(key, member, holder string) (string, string, error) {
	p, err := t.path(key)
	if err != nil {
		return "", "", err
	}
	if _, err := t.path(member); err != nil || strings.Contains(member, "|") {
		return "", "", fmt.Errorf("cluster: %q is not a member", member)
	}
	name := member + "|" + url.PathEscape(holder)
	return p, p + "/" + name, nil
}
