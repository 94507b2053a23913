package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The replicas of a shard copy each other's inserts asynchronously: a part
// that one node stored through one replica reaches the others a moment
// later, and minutes later after a ZooKeeper outage, when every replica
// catches up at once. A lookup that decides whether a reading is stored
// again — the replay's second look (Writer.Unstored) and the redelivery
// check (StoredReadings) — must see what another node has just stored
// through another replica, so on a cluster it reads the local table of
// every server, where a Distributed table reads one replica of each shard.

// replicaSet holds a connection pool to each of the cluster's servers
// other than the one connected, listed at first use.
type replicaSet struct {
	mu     sync.Mutex
	listed bool
	others []replicaConn
}

// replicaConn is a pool to one server of the cluster.
type replicaConn struct {
	addr string
	conn driver.Conn
}

// replicaConns bounds each pool to another server: the lookups that use
// them run one at a time per node.
const replicaConns = 2

// otherReplicas returns the pools to the cluster's other servers, listing
// them from system.clusters (host_name and port, as remote_servers names
// them) at the first call. The connected server is told by its address
// (18.16's is_local holds for every server of a host, whatever its port);
// when Addr names it otherwise, it is read twice, which costs a query.
// With Failover servers the pool's connections may be to any of them, so
// none is left out.
func (db *DB) otherReplicas(ctx context.Context) ([]replicaConn, error) {
	db.replicas.mu.Lock()
	defer db.replicas.mu.Unlock()
	if db.replicas.listed {
		return db.replicas.others, nil
	}
	rows, err := db.conn.Query(ctx, "SELECT DISTINCT host_name, toUInt16(port) FROM system.clusters WHERE cluster = ?", db.opts.Cluster)
	if err != nil {
		return nil, fmt.Errorf("storage: list the servers of cluster %s: %w", db.opts.Cluster, err)
	}
	defer rows.Close()
	var addrs []string
	for rows.Next() {
		var host string
		var port uint16
		if err := rows.Scan(&host, &port); err != nil {
			return nil, fmt.Errorf("storage: list the servers of cluster %s: %w", db.opts.Cluster, err)
		}
		if addr := net.JoinHostPort(host, strconv.Itoa(int(port))); addr != db.opts.Addr || len(db.opts.Failover) > 0 {
			addrs = append(addrs, addr)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: list the servers of cluster %s: %w", db.opts.Cluster, err)
	}
	var others []replicaConn
	for _, addr := range addrs {
		conn, err := dial(db.opts, []string{addr}, replicaConns, 1)
		if err != nil {
			closeReplicas(others)
			return nil, err
		}
		others = append(others, replicaConn{addr: addr, conn: conn})
	}
	db.replicas.others, db.replicas.listed = others, true
	return others, nil
}

// closeReplicas closes the pools.
func closeReplicas(rs []replicaConn) error {
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.conn.Close())
	}
	return errors.Join(errs...)
}

// everyReplica calls read with a connection and the quoted name of table's
// rows there: on one server, the connected one and table; on a cluster,
// every server and its local table, so that read sees a row stored through
// any replica, copied to the others yet or not. A server other than the
// connected one that fails is logged and left out (its shard's rows are on
// its replicas too, but for the parts it has not sent them yet); the
// connected one's error is returned.
func (db *DB) everyReplica(ctx context.Context, table string, read func(conn driver.Conn, table string) error) error {
	if db.opts.Cluster == "" {
		return read(db.conn, quoteTable(db.opts.Database, table))
	}
	local := quoteTable(db.opts.Database, localTable(table))
	if err := read(db.conn, local); err != nil {
		return err
	}
	others, err := db.otherReplicas(ctx)
	if err != nil {
		return err
	}
	for _, r := range others {
		if err := read(r.conn, local); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			db.logger.Warn("lookup on another replica failed; left out", "addr", r.addr, "table", table, "err", err)
		}
	}
	return nil
}
