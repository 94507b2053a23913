package storage_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestLocalServerNoClickHouse(t *testing.T) {
	tests := []struct {
		name   string
		binary func(t *testing.T) string
	}{
		{"missing path", func(*testing.T) string { return "/nonexistent/clickhouse-server" }},
		{"name not on PATH", func(*testing.T) string { return "gridwatch-no-such-clickhouse" }},
		{"directory", func(t *testing.T) string { return t.TempDir() }},
		{"not executable", func(t *testing.T) string { return writeFile(t, "clickhouse-server", "", 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &storage.LocalServer{Dir: t.TempDir(), Binary: tt.binary(t)}
			err := s.Start(t.Context())
			if !errors.Is(err, storage.ErrNoClickHouse) {
				t.Fatalf("Start() = %v, want ErrNoClickHouse", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close() after a failed Start = %v", err)
			}
		})
	}
}

func TestLocalServerStartFailureQuotesLogs(t *testing.T) {
	const script = "#!/bin/sh\necho \"fake server: args $*\" >&2\nexit 3\n"
	tests := []struct {
		binary   string
		wantArgs string
	}{
		{"clickhouse-server", "args --config-file="},
		{"clickhouse", "args server --config-file="},
	}
	for _, tt := range tests {
		t.Run(tt.binary, func(t *testing.T) {
			dir := t.TempDir()
			s := &storage.LocalServer{Dir: dir, Binary: writeFile(t, tt.binary, script, 0o755)}
			err := s.Start(t.Context())
			if err == nil {
				s.Close()
				t.Fatal("Start() with a server that exits at once succeeded")
			}
			for _, want := range []string{"exit status 3", filepath.Join(dir, "log", "stderr.log"), "fake server: " + tt.wantArgs + filepath.Join(dir, "config.xml")} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Start() error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestLocalServerStartTimeout(t *testing.T) {
	s := &storage.LocalServer{
		Dir:          t.TempDir(),
		Binary:       writeFile(t, "clickhouse-server", "#!/bin/sh\nexec sleep 60\n", 0o755),
		StartTimeout: 300 * time.Millisecond,
		StopTimeout:  5 * time.Second,
	}
	begin := time.Now()
	err := s.Start(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start() with a server that never answers = %v, want a deadline error", err)
	}
	// The silent server must have been stopped by SIGTERM, not waited out
	// (its sleep lasts 60 s): the bound leaves a loaded machine room.
	if took := time.Since(begin); took > 30*time.Second {
		t.Errorf("Start() took %s to give up on a 300ms start timeout", took)
	}
}

func TestLocalServerIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts ClickHouse, skipped under -short")
	}
	dir := t.TempDir()
	s := &storage.LocalServer{Dir: dir, RestartDelay: 50 * time.Millisecond, Logger: testLogger(t)}
	start(t, s)
	t.Cleanup(func() { s.Close() })
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()},
		Auth: clickhouse.Auth{Username: storage.LocalUser, Password: s.Password}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	var version string
	if err := conn.QueryRow(t.Context(), "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("SELECT version() on %s: %v", s.Addr(), err)
	}
	if version == "" {
		t.Error("SELECT version() returned an empty string")
	}
	if _, err := os.Stat(filepath.Join(dir, "log", "stderr.log")); err != nil {
		t.Errorf("server output is not kept under Dir/log: %v", err)
	}

	// README promises that the managed ClickHouse's default user has a
	// password kept private in data_dir (issue 10 item 9: it had none).
	t.Run("default user needs the generated password", func(t *testing.T) {
		for _, pw := range []string{"", "wrong"} {
			c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()},
				Auth: clickhouse.Auth{Username: storage.LocalUser, Password: pw}, DialTimeout: 5 * time.Second})
			if err == nil {
				err = c.Ping(t.Context())
				c.Close()
			}
			if err == nil {
				t.Errorf("connect as default with password %q succeeded", pw)
			}
		}
		if len(s.Password) < 20 {
			t.Errorf("password of %d characters, want a long random one", len(s.Password))
		}
		for _, name := range []string{"default-password", "client.xml"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("%s has mode %o, want 600", name, mode)
			}
		}
		for _, name := range []string{"users.xml", "config.xml", "gridwatch-state.json", "log/stderr.log", "log/stdout.log"} {
			data, _ := os.ReadFile(filepath.Join(dir, name))
			if strings.Contains(string(data), s.Password) {
				t.Errorf("%s holds the password in plain text", name)
			}
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(cmdline), s.Password) {
			t.Error("the server's command line holds the password")
		}
		client, err := exec.LookPath("clickhouse-client")
		if err != nil {
			return
		}
		out, err := exec.CommandContext(t.Context(), client, "--config-file", s.ClientConfig(), "-q", "SELECT 42").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "42" {
			t.Errorf("clickhouse-client --config-file %s: %v: %s", s.ClientConfig(), err, out)
		}
	})

	t.Run("second server on the same dir is refused", func(t *testing.T) {
		other := &storage.LocalServer{Dir: dir}
		if err := other.Start(t.Context()); !errors.Is(err, storage.ErrDirInUse) {
			other.Close()
			t.Fatalf("Start() on a directory in use = %v, want ErrDirInUse", err)
		}
		if err := conn.Ping(t.Context()); err != nil {
			t.Errorf("the first server stopped answering: %v", err)
		}
	})

	t.Run("restarted after kill -9", func(t *testing.T) {
		killed := s.PID()
		if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
			t.Fatalf("kill server pid %d: %v", killed, err)
		}
		poll(t, 30*time.Second, func() error {
			if pid := s.PID(); pid == 0 || pid == killed {
				return fmt.Errorf("server not restarted: pid %d", pid)
			}
			return conn.Ping(t.Context())
		})
	})

	pid := s.PID()
	if err := s.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("server pid %d still exists after Close: kill(0) = %v", pid, err)
	}
	if got := s.PID(); got != 0 {
		t.Errorf("PID() after Close = %d, want 0", got)
	}

	// The next gridwatch on the directory keeps the password.
	again := &storage.LocalServer{Dir: dir, Logger: testLogger(t)}
	start(t, again)
	defer again.Close()
	if again.Password != s.Password {
		t.Error("the password changed across restarts")
	}
}

// envAbandonDir tells the test binary to run TestHelperAbandonServer for real.
const envAbandonDir = "GRIDWATCH_TEST_ABANDON_DIR"

// exitNoClickHouse is TestHelperAbandonServer's exit code when there is no ClickHouse.
const exitNoClickHouse = 3

func TestLocalServerStaleIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts ClickHouse, skipped under -short")
	}
	dir := t.TempDir()
	// A helper process plays a gridwatch that dies without Close, leaving its server.
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperAbandonServer$")
	helper.Env = append(os.Environ(), envAbandonDir+"="+dir)
	helper.Stderr = os.Stderr
	out, err := helper.Output()
	if helper.ProcessState.ExitCode() == exitNoClickHouse {
		storagetest.Unavailable(t, "no ClickHouse to start")
	}
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var staleAddr string
	var stalePID int
	if _, err := fmt.Sscan(string(out), &staleAddr, &stalePID); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	t.Cleanup(func() {
		if runsIn(stalePID, dir) {
			syscall.Kill(stalePID, syscall.SIGKILL)
		}
	})

	s := &storage.LocalServer{Dir: dir, Logger: testLogger(t)}
	start(t, s)
	defer s.Close()
	if runsIn(stalePID, dir) {
		t.Errorf("the stale server (pid %d) still runs", stalePID)
	}
	if s.Addr() != staleAddr {
		t.Errorf("Addr() = %s, want the previous run's %s", s.Addr(), staleAddr)
	}
}

// TestHelperAbandonServer is not a test: TestLocalServerStaleIntegration runs it in a
// child process, which starts a server and exits without Close.
func TestHelperAbandonServer(t *testing.T) {
	dir := os.Getenv(envAbandonDir)
	if dir == "" {
		t.Skip("helper process of TestLocalServerStaleIntegration")
	}
	s := &storage.LocalServer{Dir: dir}
	if err := s.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, storage.ErrNoClickHouse) {
			os.Exit(exitNoClickHouse)
		}
		os.Exit(1)
	}
	fmt.Println(s.Addr(), s.PID())
	os.Exit(0)
}

// start starts s, or ends t through storagetest.Unavailable when there is no ClickHouse.
func start(t *testing.T, s *storage.LocalServer) {
	t.Helper()
	err := s.Start(t.Context())
	if errors.Is(err, storage.ErrNoClickHouse) {
		storagetest.Unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// runsIn reports whether process pid runs with dir on its command line.
func runsIn(pid int, dir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), dir)
}

// poll calls check until it returns nil, and fails t with check's last error when
// that takes longer than timeout.
func poll(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		<-tick.C
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func writeFile(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	return path
}
