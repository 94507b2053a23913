package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Versions keeps one number per key in ZooKeeper (a case's version by its
// id), read and compared-and-set atomically across the nodes.
type Versions struct {
	c   *Coordinator
	dir string
}

// Version is a key's number as read, and what Swap needs to set it.
type Version struct {
	// Value is the number; 0 when none was set.
	Value uint64
	// Set is when it was last set, by ZooKeeper's clock; zero when none was.
	Set time.Time
	// Stamp is what Swap compares: the ZooKeeper node's data version, -1
	// when no number was ever set for the key.
	Stamp int32
}

// Exists reports whether a number was ever set for the key.
func (v Version) Exists() bool { return v.Stamp >= 0 }

// Versions returns the versions of kind (a path segment such as "cases").
func (c *Coordinator) Versions(kind string) (*Versions, error) {
	v := &Versions{c: c, dir: c.Root + "/versions/" + kind}
	if err := c.ensure(v.dir); err != nil {
		return nil, err
	}
	return v, nil
}

// key returns the node of key, which must be a single path segment.
func (v *Versions) key(key string) (string, error) {
	if key == "" || key == "." || key == ".." || strings.ContainsAny(key, "/\x00") {
		return "", fmt.Errorf("cluster: %q is not a version key", key)
	}
	return v.dir + "/" + key, nil
}

// Get reads key's number.
func (v *Versions) Get(key string) (Version, error) {
	p, err := v.key(key)
	if err != nil {
		return Version{}, err
	}
	data, st, err := v.c.conn.Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return Version{Stamp: -1}, nil
	}
	if err != nil {
		return Version{}, fmt.Errorf("cluster: read %s: %w", p, err)
	}
	n, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil {
		return Version{}, fmt.Errorf("cluster: %s holds %q, not a version", p, data)
	}
	return Version{Value: n, Set: time.UnixMilli(st.Mtime), Stamp: st.Version}, nil
}

// Swap sets key's number to value if it is still as old was read, and
// returns it as set; ErrChanged when another node set it meanwhile.
func (v *Versions) Swap(key string, old Version, value uint64) (Version, error) {
	p, err := v.key(key)
	if err != nil {
		return Version{}, err
	}
	data := []byte(strconv.FormatUint(value, 10))
	if !old.Exists() {
		_, err := v.c.conn.Create(p, data, 0, zk.WorldACL(zk.PermAll))
		switch {
		case errors.Is(err, zk.ErrNodeExists):
			return Version{}, ErrChanged
		case err != nil:
			return Version{}, fmt.Errorf("cluster: create %s: %w", p, err)
		}
		return Version{Value: value, Set: time.Now(), Stamp: 0}, nil
	}
	st, err := v.c.conn.Set(p, data, old.Stamp)
	switch {
	case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode):
		return Version{}, ErrChanged
	case err != nil:
		return Version{}, fmt.Errorf("cluster: set %s: %w", p, err)
	}
	return Version{Value: value, Set: time.UnixMilli(st.Mtime), Stamp: st.Version}, nil
}
