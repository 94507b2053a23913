// Package mosquittotest runs a private mosquitto 2 (Debian's, which
// deploy/install-deps.sh installs) for the tests of gridwatch's upstream
// mode: the config and ACL shipped in deploy/mosquitto, with their port
// and paths moved into a temporary directory, on a free loopback port,
// stopped with the test. So the tests run what the README asks a city
// for: devices log in with their own credentials and publish under
// devices/{username}/ only, gridwatch nodes read telemetry.
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// User is a login of the broker.
type User struct {
	Name, Password string
}

// Config says who may log in.
type Config struct {
	// Devices publish under devices/{their name}/ only.
	Devices []User
	// Readers are gridwatch nodes, named as in the shipped ACL
	// (gridwatch-1, gridwatch-2, gridwatch-3), which read
	// devices/+/telemetry.
	Readers []User
}

// Server is a running mosquitto.
type Server struct {
	// Port is its loopback TCP port.
	Port int

	bin, dir, conf, log string
	cmd                 *exec.Cmd
	exited              chan error
}

// Start writes the broker's files and runs it until the test ends. Without
// mosquitto it skips t, or fails it when CI is set.
func Start(t testing.TB, c Config) *Server {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto" // Debian installs it outside a user's PATH
	}
	passwd, perr := exec.LookPath("mosquitto_passwd")
	if perr != nil {
		passwd = "/usr/bin/mosquitto_passwd"
	}
	for _, b := range []string{bin, passwd} {
		if _, err := os.Stat(b); err != nil {
			storagetest.Unavailable(t, "mosquitto is not installed (deploy/install-deps.sh installs it):", err)
		}
	}
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Port: port, bin: bin, dir: t.TempDir()}
	s.conf, s.log = filepath.Join(s.dir, "mosquitto.conf"), filepath.Join(s.dir, "mosquitto.log")

	_, here, _, _ := runtime.Caller(0)
	shipped := filepath.Join(filepath.Dir(here), "..", "..", "deploy", "mosquitto")
	acl := read(t, filepath.Join(shipped, "gridwatch.acl"))
	var users strings.Builder
	for _, u := range c.Devices {
		fmt.Fprintf(&users, "%s:%s\n", u.Name, u.Password)
	}
	for _, u := range c.Readers {
		if !strings.Contains(acl, "\nuser "+u.Name+"\n") {
			t.Fatalf("deploy/mosquitto/gridwatch.acl has no user %s", u.Name)
		}
		fmt.Fprintf(&users, "%s:%s\n", u.Name, u.Password)
	}
	write(t, filepath.Join(s.dir, "passwd"), users.String())
	// mosquitto_passwd -U hashes the plain-text passwords in place.
	if out, err := exec.Command(passwd, "-U", filepath.Join(s.dir, "passwd")).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd -U: %v\n%s", err, out)
	}
	write(t, filepath.Join(s.dir, "acl"), acl)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	conf := read(t, filepath.Join(shipped, "mosquitto.conf"))
	for from, to := range map[string]string{
		"\nlistener 1883\n":                        fmt.Sprintf("\nlistener %d 127.0.0.1\n", port),
		"/etc/mosquitto/gridwatch.passwd":          filepath.Join(s.dir, "passwd"),
		"/etc/mosquitto/gridwatch.acl":             filepath.Join(s.dir, "acl"),
		"persistence_location /var/lib/mosquitto/": "persistence_location " + s.dir + "/",
	} {
		if !strings.Contains(conf, from) {
			t.Fatalf("deploy/mosquitto/mosquitto.conf has no %q", strings.TrimSpace(from))
		}
		conf = strings.ReplaceAll(conf, from, to)
	}
	// Run as root, mosquitto would become user mosquitto, which cannot
	// read this test's private directory.
	conf = "user " + me.Username + "\n" + conf + `
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
`
	write(t, s.conf, conf)
	s.start(t)
	t.Cleanup(func() { s.Kill(t) })
	return s
}

func read(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// URL is the broker's address for paho: tcp://127.0.0.1:port.
func (s *Server) URL() string { return "tcp://" + s.Addr() }

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// start runs mosquitto and waits until it takes connections.
func (s *Server) start(t testing.TB) {
	t.Helper()
	log, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(s.bin, "-c", s.conf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan error, 1)
	go func() { s.exited <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-s.exited:
			s.cmd = nil
			t.Fatalf("mosquitto exited at start: %v\n%s", err, s.Log())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s within a minute\n%s", s.Addr(), s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops mosquitto with SIGKILL, if it runs. Its sessions are kept
// only as far as its last autosave (every 60 s) saved them.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart kills mosquitto and starts it again on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill(t)
	s.start(t)
}

// Log returns mosquitto's log.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
