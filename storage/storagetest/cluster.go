package storagetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/storage"
)

// ClusterName is the cluster a Cluster's servers define in their
// remote_servers, for storage.Options.Cluster.
const ClusterName = "gridwatch"

// zooKeeperJar is Debian's ZooKeeper (package zookeeper); its manifest
// names the jars it needs.
const zooKeeperJar = "/usr/share/java/zookeeper.jar"

// Bounds of the cluster's servers on a loaded machine.
const (
	zooKeeperStart = 2 * time.Minute
	clusterReload  = 2 * time.Minute
	// zooKeeperSession bounds the wait for a replica's ZooKeeper session.
	zooKeeperSession = 3 * time.Minute
)

// ZooKeeper is a private standalone ZooKeeper server: Debian's, run by its
// java class directly (there is no systemd here) with a small heap, a data
// directory of the test's own and a free loopback port.
type ZooKeeper struct {
	// Addr is the client address, 127.0.0.1:<port>; it stays the same
	// across Stop and Start.
	Addr string
	java string
	dir  string
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed once cmd has exited
}

// StartZooKeeper starts a ZooKeeper for t and stops it when t ends. Without
// java or Debian's ZooKeeper it calls Unavailable; under -short it skips.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs ZooKeeper, skipped under -short")
	}
	java, err := exec.LookPath("java")
	if err == nil {
		_, err = os.Stat(zooKeeperJar)
	}
	if err != nil {
		Unavailable(t, "ZooKeeper (apt-get install zookeeper):", err)
	}
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	zk := &ZooKeeper{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), java: java, dir: t.TempDir()}
	cfg := fmt.Sprintf("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
		"admin.enableServer=false\n4lw.commands.whitelist=ruok\n", filepath.Join(zk.dir, "data"), port)
	if err := os.WriteFile(filepath.Join(zk.dir, "zoo.cfg"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zk.Stop)
	zk.Start(t)
	return zk
}

// Start starts the server (again, after Stop, on its data) and waits until
// it answers.
func (zk *ZooKeeper) Start(t testing.TB) {
	t.Helper()
	logFile := filepath.Join(zk.dir, "zookeeper.log")
	out, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	// -Xmx256m: the JVM would otherwise size its heap by the machine's memory.
	cmd := exec.Command(zk.java, "-Xmx256m", "-XX:+UseSerialGC", "-cp", zooKeeperJar,
		"org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(zk.dir, "zoo.cfg"))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	zk.cmd, zk.done = cmd, done
	deadline := time.Now().Add(zooKeeperStart)
	for !zk.ok() {
		select {
		case <-done:
			log, _ := os.ReadFile(logFile)
			t.Fatalf("ZooKeeper exited during start-up: %s\n%s", cmd.ProcessState, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ZooKeeper did not answer ruok on %s within %s", zk.Addr, zooKeeperStart)
		}
	}
}

// PID returns the server's process id, 0 while it is stopped.
func (zk *ZooKeeper) PID() int {
	if zk.cmd == nil {
		return 0
	}
	return zk.cmd.Process.Pid
}

// ok reports whether the server answers the ruok command with imok.
func (zk *ZooKeeper) ok() bool {
	conn, err := net.DialTimeout("tcp", zk.Addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ruok")); err != nil {
		return false
	}
	b, _ := io.ReadAll(conn)
	return string(b) == "imok"
}

// Stop stops the server (SIGTERM, SIGKILL after 30 seconds) and waits for
// it. It is safe to call on a stopped server.
func (zk *ZooKeeper) Stop() {
	if zk.cmd == nil {
		return
	}
	_ = zk.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-zk.done:
	case <-time.After(30 * time.Second):
		_ = zk.cmd.Process.Kill()
		<-zk.done
	}
	zk.cmd = nil
}

// Cluster is a ClickHouse cluster named ClusterName for t: one shard whose
// replicas are storage.LocalServers in directories of their own, over a
// private ZooKeeper, with the settings deploy/clickhouse ships (zookeeper,
// macros, distributed_ddl, remote_servers) rendered for their ports under
// each server's config.d. Replicas connect as user default with Password.
type Cluster struct {
	// ZooKeeper is the cluster's coordination service.
	ZooKeeper *ZooKeeper
	t         testing.TB
	dirs      []string
	servers   []*storage.LocalServer // nil while stopped
	addrs     []string               // of each replica's last start
}

// StartCluster starts ZooKeeper and a cluster of replicas ClickHouse servers
// for t, and stops them when t ends.
func StartCluster(t testing.TB, replicas int) *Cluster {
	t.Helper()
	c := &Cluster{ZooKeeper: StartZooKeeper(t), t: t, servers: make([]*storage.LocalServer, replicas), addrs: make([]string, replicas)}
	for i := range replicas {
		dir := t.TempDir()
		port, err := freeport.Loopback()
		if err != nil {
			t.Fatal(err)
		}
		host, zkPort, _ := net.SplitHostPort(c.ZooKeeper.Addr)
		cfg := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <zookeeper><node><host>%s</host><port>%s</port></node></zookeeper>
  <macros><shard>01</shard><replica>replica-%d</replica></macros>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>%d</interserver_http_port>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
`, host, zkPort, i+1, port)
		writeConfigD(t, dir, "replica.xml", cfg)
		c.dirs = append(c.dirs, dir)
		t.Cleanup(func() { c.Stop(i) })
	}
	for i := range replicas {
		c.Start(i)
	}
	// Cleanups run last first: this one before the replicas stop. The
	// replicas' logs go with t's directories, so a failure shows their
	// tails (run 302 lost a table on a restarted replica and kept no trace
	// of why).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, s := range c.servers {
			if s != nil {
				t.Logf("replica %d (%s):%s", i, c.addrs[i], s.LogTail())
			}
		}
	})
	return c
}

// writeConfigD writes a file under dir/config.d, which the server merges
// into its config.xml and rereads when it changes.
func writeConfigD(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "config.d"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.d", name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Server returns replica i's server, nil while it is stopped. It restarts
// a server that dies (storage.LocalServer).
func (c *Cluster) Server(i int) *storage.LocalServer { return c.servers[i] }

// Addr returns the native address of replica i (of its last start).
func (c *Cluster) Addr(i int) string { return c.addrs[i] }

// Len is the number of servers.
func (c *Cluster) Len() int { return len(c.addrs) }

// Start starts replica i (again, after Stop, on its data), and waits until
// every running replica's remote_servers lists every replica's port.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	s := &storage.LocalServer{Dir: c.dirs[i], Password: Password(c.t),
		StartTimeout: 3 * time.Minute, StopTimeout: 2 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		Unavailable(c.t, "ClickHouse replica:", err)
	}
	c.servers[i], c.addrs[i] = s, s.Addr()
	c.renderRemoteServers()
	c.waitZooKeeper(i)
}

// Stop stops replica i (SIGTERM, as systemctl stop does). It is safe to call
// on a stopped replica.
func (c *Cluster) Stop(i int) {
	if c.servers[i] == nil {
		return
	}
	if err := c.servers[i].Close(); err != nil {
		c.t.Logf("stop replica %d: %v", i, err)
	}
	c.servers[i] = nil
}

// renderRemoteServers writes the cluster of the replicas' ports (a stopped
// one keeps the ports it had) to every replica's config.d, and waits until
// the running ones have reread it.
func (c *Cluster) renderRemoteServers() {
	c.t.Helper()
	var ports []string
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\"?>\n<yandex>\n  <remote_servers>\n    <" + ClusterName + ">\n      <shard>\n        <internal_replication>true</internal_replication>\n")
	for _, addr := range c.addrs {
		if addr == "" {
			continue // not started yet
		}
		_, port, _ := net.SplitHostPort(addr)
		ports = append(ports, port)
		fmt.Fprintf(&b, "        <replica><host>127.0.0.1</host><port>%s</port><user>%s</user><password>%s</password></replica>\n",
			port, storage.LocalUser, Password(c.t))
	}
	b.WriteString("      </shard>\n    </" + ClusterName + ">\n  </remote_servers>\n</yandex>\n")
	for _, dir := range c.dirs {
		writeConfigD(c.t, dir, "remote_servers.xml", b.String())
	}
	slices.Sort(ports)
	want := strings.Join(ports, ",")
	deadline := time.Now().Add(clusterReload)
	for i, s := range c.servers {
		if s == nil {
			continue
		}
		for {
			got, err := c.clusterPorts(s.Addr())
			if err == nil && got == want {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("replica %d lists ports %q of cluster %s, want %q (%v)", i, got, ClusterName, want, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// clusterPorts returns the sorted ports the server at addr lists for the
// cluster, comma-separated.
func (c *Cluster) clusterPorts(addr string) (string, error) {
	var ports string
	err := c.queryRow(addr, &ports, "SELECT arrayStringConcat(arraySort(groupArray(toString(port))), ',') FROM system.clusters WHERE cluster = ?", ClusterName)
	return ports, err
}

// waitZooKeeper waits until replica i has its ZooKeeper session, which it
// opens at start and which every replicated table and distributed DDL
// uses. 18.16's DDL worker dereferences a session it failed to open: a
// replica whose first try failed (a ZooKeeper slow to serve sessions on a
// loaded box, 20 s in two fresh-clone runs) crashed with a segfault while
// a test's first query ran, and answered it EOF. Its supervisor restarts
// it; this waits for a session through any restarts.
func (c *Cluster) waitZooKeeper(i int) {
	c.t.Helper()
	deadline := time.Now().Add(zooKeeperSession)
	var n uint64
	for {
		err := c.queryRow(c.addrs[i], &n, "SELECT count() FROM system.zookeeper WHERE path = '/'")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %d has no ZooKeeper session within %s: %v", i, zooKeeperSession, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// queryRow runs query on the server at addr into dest.
func (c *Cluster) queryRow(addr string, dest any, query string, args ...any) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr},
		Auth: clickhouse.Auth{Username: storage.LocalUser, Password: Password(c.t)}, DialTimeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return conn.QueryRow(ctx, query, args...).Scan(dest)
}
