package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/internal/secretfile"
)

// Files and directories under LocalServer.Dir.
const (
	localConfigFile = "config.xml"
	localUsersFile  = "users.xml"
	// localPasswordFile holds the default user's password (mode 0600); the
	// server's users.xml holds only its SHA-256.
	localPasswordFile = "default-password"
	// localClientConfig is a clickhouse-client config file (mode 0600) with
	// the address and the password, so that the password is never typed on
	// a command line: clickhouse-client --config-file <Dir>/client.xml.
	localClientConfig = "client.xml"
	localStateFile    = "gridwatch-state.json"
	localLockFile     = "gridwatch.lock"
	localLogDir       = "log"
	localErrorLog     = "clickhouse-server.err.log"
	localStdout       = "stdout.log"
	localStderr       = "stderr.log"
)

const (
	// localPollInterval is how often LocalServer checks a server it waits for.
	localPollInterval = 100 * time.Millisecond
	// localLogTailLines is how many lines of each log an error or a crash report quotes.
	localLogTailLines = 20
)

// LocalServer runs a private ClickHouse server under Dir and supervises it: it listens
// on 127.0.0.1 only, its default user has a random password generated at the first
// start and kept in Dir/default-password (mode 0600; users.xml holds its SHA-256), and
// a server that dies is restarted with growing pauses. It is gridwatch's embedded
// default when clickhouse.addr is empty.
type LocalServer struct {
	// Dir holds the server's config, data and logs (under Dir/log). It is required.
	Dir string
	// Binary is the server executable: Debian's clickhouse-server or the single
	// clickhouse binary of current releases. It defaults to the first of these found
	// on PATH, in /usr/sbin or in /usr/bin.
	Binary string
	// StartTimeout bounds how long a start or a restart may take until the server
	// answers. It defaults to 60 seconds.
	StartTimeout time.Duration
	// StopTimeout is how long a stopping server gets after SIGTERM before SIGKILL.
	// It defaults to 30 seconds.
	StopTimeout time.Duration
	// RestartDelay is the first pause before a dead server is restarted; the pause
	// grows while restarts keep failing. It defaults to 1 second.
	RestartDelay time.Duration
	// MaxRestartDelay caps the pause between restarts. It defaults to 30 seconds.
	MaxRestartDelay time.Duration
	// Logger receives starts, crashes and restarts. It defaults to discarding them.
	Logger *slog.Logger
	// Password is the password of LocalUser. It defaults to the one kept in
	// Dir/default-password, which the first start generates (130 random bits); a
	// password set here replaces the one kept there. After Start it holds the
	// password in use.
	Password string

	tcpPort  int
	httpPort int
	lock     *os.File
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	pid      atomic.Int64
	stopOnce sync.Once
	stopErr  error // stopErr is set by supervise before it returns.
}

// Start prepares Dir, starts the server, returns once it answers and supervises it
// until Close. ctx bounds only the start-up: the server outlives it, so that the
// caller stops it with Close after the parts that write to it have flushed. Start
// must be called once.
func (s *LocalServer) Start(ctx context.Context) error {
	if s.cancel != nil {
		return errors.New("local clickhouse: already started")
	}
	if err := s.setDefaults(); err != nil {
		return fmt.Errorf("local clickhouse: %w", err)
	}
	if err := s.lockDir(); err != nil {
		return fmt.Errorf("local clickhouse in %s: %w", s.Dir, err)
	}
	p, err := s.prepareAndLaunch(ctx)
	if err != nil {
		s.lock.Close()
		return fmt.Errorf("start local clickhouse in %s: %w", s.Dir, err)
	}
	s.Logger.Info("local clickhouse started", "addr", s.Addr(), "http", s.HTTPAddr(), "pid", s.PID(), "dir", s.Dir)
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.supervise(runCtx, p) })
	return nil
}

// Addr returns the server's native protocol address, "127.0.0.1:<port>". It is valid
// once Start has returned nil and stays the same across restarts; Start reuses the
// previous run's ports when they are free, so it usually survives gridwatch restarts.
func (s *LocalServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort))
}

// HTTPAddr returns the server's HTTP interface address, "127.0.0.1:<port>", with the
// same lifetime as Addr.
func (s *LocalServer) HTTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort))
}

// LocalUser is the local server's user, for storage.Options.User.
const LocalUser = "default"

// ClientConfig returns the path of a clickhouse-client config file that connects to
// the server as LocalUser with its password: clickhouse-client --config-file <path>.
func (s *LocalServer) ClientConfig() string { return filepath.Join(s.Dir, localClientConfig) }

// PID returns the process id of the server while it is up, and 0 while it is down
// or being restarted.
func (s *LocalServer) PID() int {
	return int(s.pid.Load())
}

// Close stops supervision, then the server (SIGTERM, then SIGKILL after StopTimeout),
// and waits until it is gone. It is safe to call twice; later calls return the result
// of the first.
func (s *LocalServer) Close() error {
	s.stopOnce.Do(func() {
		if s.cancel == nil {
			return
		}
		s.cancel()
		s.wg.Wait()
		s.lock.Close()
	})
	return s.stopErr
}

// setDefaults checks the settings and fills in the defaults stated on the fields.
func (s *LocalServer) setDefaults() error {
	if s.Dir == "" {
		return errors.New("Dir is required")
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", s.Dir, err)
	}
	s.Dir = dir
	if s.Binary, err = findClickHouse(s.Binary); err != nil {
		return err
	}
	if s.StartTimeout <= 0 {
		s.StartTimeout = 60 * time.Second
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = 30 * time.Second
	}
	if s.RestartDelay <= 0 {
		s.RestartDelay = time.Second
	}
	if s.MaxRestartDelay <= 0 {
		s.MaxRestartDelay = 30 * time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// findClickHouse resolves binary, or looks for a server binary when it is empty.
func findClickHouse(binary string) (string, error) {
	if binary != "" {
		path, err := exec.LookPath(binary)
		if err != nil {
			return "", fmt.Errorf("%v: %w", err, ErrNoClickHouse)
		}
		return path, nil
	}
	for _, name := range []string{"clickhouse-server", "clickhouse"} {
		for _, candidate := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
			if path, err := exec.LookPath(candidate); err == nil {
				return path, nil
			}
		}
	}
	return "", fmt.Errorf("looked for clickhouse-server and clickhouse on PATH, in /usr/sbin and in /usr/bin: %w", ErrNoClickHouse)
}

// lockDir creates Dir and takes an exclusive lock on it for the life of s, so that
// a second gridwatch on the same directory fails instead of fighting over the server.
// The kernel drops the lock when the process dies, which tells a stale server (its
// gridwatch died) from a live one.
func (s *LocalServer) lockDir() error {
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, localLockFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return ErrDirInUse
		}
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	s.lock = f
	return nil
}

// prepareAndLaunch creates the directories, stops a stale server, picks the ports,
// writes the config and launches the server.
func (s *LocalServer) prepareAndLaunch(ctx context.Context) (*process, error) {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", localLogDir} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o750); err != nil {
			return nil, err
		}
	}
	prev := s.readState()
	if err := s.stopStale(ctx, prev.PID); err != nil {
		return nil, err
	}
	ports, err := pickPorts(prev.TCPPort, prev.HTTPPort)
	if err != nil {
		return nil, err
	}
	s.tcpPort, s.httpPort = ports[0], ports[1]
	if s.Password, err = loadPassword(filepath.Join(s.Dir, localPasswordFile), s.Password); err != nil {
		return nil, err
	}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	return s.launch(ctx)
}

// localState is what a LocalServer remembers in Dir across runs: the ports, so that
// the address stays the same, and the pid, so that a server left behind by a
// gridwatch that died can be stopped.
type localState struct {
	PID      int `json:"pid"`
	TCPPort  int `json:"tcp_port"`
	HTTPPort int `json:"http_port"`
}

// readState returns the state of the previous run; a missing or unreadable state
// file only costs the previous ports, so it is logged and not an error.
func (s *LocalServer) readState() localState {
	var st localState
	data, err := os.ReadFile(filepath.Join(s.Dir, localStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st
	}
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		s.Logger.Warn("ignoring the local clickhouse state of the previous run", "err", err)
		return localState{}
	}
	return st
}

// writeState records the ports and the pid of the running server.
func (s *LocalServer) writeState(pid int) error {
	data, err := json.Marshal(localState{PID: pid, TCPPort: s.tcpPort, HTTPPort: s.httpPort})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, localStateFile), data, 0o640)
}

// stopStale stops a server that a previous gridwatch left running on Dir when it died
// without Close. It stops rather than adopts it: only a child process can be waited
// for, and so supervised, and the stale server may run an older config. A pid whose
// command line does not name this Dir's config belongs to someone else and is left
// alone. Without /proc (non-Linux systems) a stale server goes unseen, and the start
// then fails with ClickHouse's own error about its locked data directory.
func (s *LocalServer) stopStale(ctx context.Context, pid int) error {
	if pid <= 0 || !s.runsOurConfig(pid) {
		return nil
	}
	s.Logger.Warn("stopping a local clickhouse left running by a previous gridwatch", "pid", pid, "dir", s.Dir)
	proc, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("find stale server (pid %d): %w", pid, err)
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop stale server (pid %d): %w", pid, err)
	}
	if s.awaitGone(ctx, pid) == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stop stale server (pid %d): %w", pid, ctx.Err())
	}
	if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill stale server (pid %d): %w", pid, err)
	}
	if err := s.awaitGone(ctx, pid); err != nil {
		return fmt.Errorf("stale server (pid %d) still running after SIGKILL: %w", pid, err)
	}
	return nil
}

// awaitGone polls until process pid no longer runs this Dir's server, for at most
// StopTimeout.
func (s *LocalServer) awaitGone(ctx context.Context, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, s.StopTimeout)
	defer cancel()
	tick := time.NewTicker(localPollInterval)
	defer tick.Stop()
	for s.runsOurConfig(pid) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// runsOurConfig reports whether process pid is a server started with this Dir's
// config file. A zombie has an empty command line and so does not count.
func (s *LocalServer) runsOurConfig(pid int) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return slices.Contains(strings.Split(string(cmdline), "\x00"), s.configFlag())
}

// configFlag is the command-line flag that points the server at its config.
func (s *LocalServer) configFlag() string {
	return "--config-file=" + filepath.Join(s.Dir, localConfigFile)
}

// pickPorts returns a free 127.0.0.1 port for each preferred one (0 for none): the
// preferred port itself when it is free, else one below the ephemeral range
// (freeport); the ports differ.
func pickPorts(preferred ...int) ([]int, error) {
	ports := make([]int, len(preferred))
	for i, want := range preferred {
		if want != 0 && !slices.Contains(ports[:i], want) {
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(want))); err == nil {
				l.Close()
				ports[i] = want
				continue
			}
		}
		// The server binds seconds later: a port of the ephemeral range
		// could be some connection's by then.
		for ports[i] == 0 || slices.Contains(ports[:i], ports[i]) {
			p, err := freeport.Loopback()
			if err != nil {
				return nil, fmt.Errorf("pick a free port: %w", err)
			}
			ports[i] = p
		}
	}
	return ports, nil
}

// serverConfig is the local server's config.xml. Its root element is <yandex>, which
// 18.16 requires and current servers still accept.
type serverConfig struct {
	XMLName              xml.Name     `xml:"yandex"`
	Logger               serverLogger `xml:"logger"`
	ListenHost           string       `xml:"listen_host"`
	TCPPort              int          `xml:"tcp_port"`
	HTTPPort             int          `xml:"http_port"`
	Path                 string       `xml:"path"`
	TmpPath              string       `xml:"tmp_path"`
	UserFilesPath        string       `xml:"user_files_path"`
	FormatSchemaPath     string       `xml:"format_schema_path"`
	MarkCacheSize        int64        `xml:"mark_cache_size"`
	MaxConcurrentQueries int          `xml:"max_concurrent_queries"`
	UsersConfig          string       `xml:"users_config"`
	DefaultProfile       string       `xml:"default_profile"`
	DefaultDatabase      string       `xml:"default_database"`
	Timezone             string       `xml:"timezone"`
}

// serverLogger is the <logger> section of serverConfig.
type serverLogger struct {
	Level    string `xml:"level"`
	Log      string `xml:"log"`
	ErrorLog string `xml:"errorlog"`
	Size     string `xml:"size"`
	Count    int    `xml:"count"`
	Console  int    `xml:"console"`
}

// localUsers is the local server's users.xml: the default user, with the SHA-256 of
// its password (%s, hex; password_sha256_hex is in 18.16), reachable from loopback
// only. Its poll_interval of 1 second (the server's default is
// 10) lets the server notice a shutdown on idle connections at once, so that Close
// does not wait 10 seconds for a connection pool that is still open.
const localUsers = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage><poll_interval>1</poll_interval></default>
  </profiles>
  <users>
    <default>
      <password_sha256_hex>%s</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
`

// writeConfig writes config.xml and users.xml for the chosen ports.
func (s *LocalServer) writeConfig() error {
	sub := func(name string) string { return filepath.Join(s.Dir, name) + string(filepath.Separator) }
	logs := filepath.Join(s.Dir, localLogDir)
	cfg := serverConfig{
		Logger: serverLogger{
			Level:    "warning",
			Log:      filepath.Join(logs, "clickhouse-server.log"),
			ErrorLog: filepath.Join(logs, localErrorLog),
			Size:     "100M",
			Count:    3,
		},
		ListenHost:           "127.0.0.1",
		TCPPort:              s.tcpPort,
		HTTPPort:             s.httpPort,
		Path:                 sub("data"),
		TmpPath:              sub("tmp"),
		UserFilesPath:        sub("user_files"),
		FormatSchemaPath:     sub("format_schemas"),
		MarkCacheSize:        256 << 20, // modest: the server's default is 5 GiB
		MaxConcurrentQueries: 100,
		UsersConfig:          filepath.Join(s.Dir, localUsersFile),
		DefaultProfile:       "default",
		DefaultDatabase:      "default",
		Timezone:             "UTC",
	}
	data, err := xml.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("render %s: %w", localConfigFile, err)
	}
	data = append([]byte(xml.Header), append(data, '\n')...)
	if err := os.WriteFile(filepath.Join(s.Dir, localConfigFile), data, 0o640); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(s.Password))
	users := fmt.Sprintf(localUsers, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(filepath.Join(s.Dir, localUsersFile), []byte(users), 0o640); err != nil {
		return err
	}
	client, err := xml.MarshalIndent(clientConfig{Host: "127.0.0.1", Port: s.tcpPort, User: LocalUser, Password: s.Password}, "", "  ")
	if err != nil {
		return fmt.Errorf("render %s: %w", localClientConfig, err)
	}
	return writePrivate(filepath.Join(s.Dir, localClientConfig), append(client, '\n'))
}

// clientConfig is the clickhouse-client config file written beside the server's.
type clientConfig struct {
	XMLName  xml.Name `xml:"config"`
	Host     string   `xml:"host"`
	Port     int      `xml:"port"`
	User     string   `xml:"user"`
	Password string   `xml:"password"`
}

// loadPassword returns the password kept in the file at path, creating the file
// (mode 0600) with a new random password when there is none. A password set
// replaces the one kept.
func loadPassword(path, set string) (string, error) {
	if set != "" {
		return set, writePrivate(path, []byte(set+"\n"))
	}
	data, err := secretfile.ReadOrCreate(path, func() ([]byte, error) {
		return []byte(rand.Text() + "\n"), nil // 26 base32 characters: 130 random bits.
	})
	if err != nil {
		return "", fmt.Errorf("the password: %w", err)
	}
	// Tighten a file made readable by hand.
	return strings.TrimSpace(string(data)), os.Chmod(path, 0o600)
}

// writePrivate writes data to the file at path, readable by its owner alone.
func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// A file created earlier with a wider mode keeps it through OpenFile.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// process is one run of the server binary.
type process struct {
	cmd     *exec.Cmd
	cancel  context.CancelFunc // cancel stops the server: SIGTERM, then SIGKILL after StopTimeout.
	started time.Time
	exited  chan struct{} // exited is closed once the process has been waited for.
	err     error         // err is what Wait returned; read it after exited is closed.
}

// stop stops the process and waits until it is gone. It returns nil when the server
// exited cleanly on SIGTERM.
func (p *process) stop() error {
	p.cancel()
	<-p.exited
	if errors.Is(p.err, context.Canceled) {
		return nil
	}
	return p.err
}

// launch starts the server and waits until it answers. On failure it stops what it
// started and returns an error that quotes the end of the server's logs.
func (s *LocalServer) launch(ctx context.Context) (*process, error) {
	p, err := s.spawn()
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, p); err != nil {
		_ = p.stop() // The start-up error says more than how the stop went.
		return nil, fmt.Errorf("%w%s", err, s.LogTail())
	}
	s.pid.Store(int64(p.cmd.Process.Pid))
	return p, nil
}

// spawn starts the server binary with its output in files under Dir/log, and a
// goroutine that waits for it.
func (s *LocalServer) spawn() (*process, error) {
	logs := filepath.Join(s.Dir, localLogDir)
	// The output files are truncated: they matter only for the current run, mostly
	// when the server fails before its own logger is set up.
	stdout, err := os.Create(filepath.Join(logs, localStdout))
	if err != nil {
		return nil, err
	}
	defer stdout.Close() // The child has its own copy.
	stderr, err := os.Create(filepath.Join(logs, localStderr))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()

	args := []string{s.configFlag()}
	if filepath.Base(s.Binary) == "clickhouse" {
		args = append([]string{"server"}, args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, s.Binary, args...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Setpgid keeps the server out of the terminal's process group: Ctrl-C reaches
	// gridwatch alone, which stops the server after its writers have flushed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = s.StopTimeout
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	p := &process{cmd: cmd, cancel: cancel, started: time.Now(), exited: make(chan struct{})}
	s.wg.Go(func() {
		p.err = cmd.Wait()
		close(p.exited)
	})
	if err := s.writeState(cmd.Process.Pid); err != nil {
		s.Logger.Warn("local clickhouse runs, but a gridwatch that dies now would leave it running unnoticed", "err", err)
	}
	return p, nil
}

// waitReady polls the server until it answers, exits, StartTimeout passes or ctx ends.
func (s *LocalServer) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, s.StartTimeout)
	defer cancel()
	tick := time.NewTicker(localPollInterval)
	defer tick.Stop()
	for {
		err := s.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("server exited during start-up: %s", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("no answer from http://%s/ping within start timeout %s: %w (last try: %v)", s.HTTPAddr(), s.StartTimeout, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// ping asks the server's HTTP interface whether it is up.
func (s *LocalServer) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.HTTPAddr()+"/ping", nil)
	if err != nil {
		return err
	}
	req.Close = true // No idle connection outlives the check.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// supervise owns the running server p: it restarts the server whenever it dies and
// stops it when ctx ends.
func (s *LocalServer) supervise(ctx context.Context, p *process) {
	delays := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.RestartDelay),
		backoff.WithMaxInterval(s.MaxRestartDelay),
		backoff.WithMaxElapsedTime(0), // Never give up while gridwatch runs.
	)
	for {
		select {
		case <-ctx.Done():
			if err := p.stop(); err != nil {
				s.stopErr = fmt.Errorf("stop local clickhouse (pid %d): %w", p.cmd.Process.Pid, err)
			}
			s.pid.Store(0)
			return
		case <-p.exited:
		}
		s.pid.Store(0)
		ran := time.Since(p.started)
		s.Logger.Error("local clickhouse exited unexpectedly; restarting it",
			"pid", p.cmd.Process.Pid, "exit", p.cmd.ProcessState.String(), "ran", ran.Round(time.Millisecond), "logs", s.LogTail())
		if ran > s.MaxRestartDelay {
			delays.Reset() // It had been up a while: this is a new failure, not a crash loop.
		}
		if p = s.restart(ctx, delays); p == nil {
			return
		}
	}
}

// restart starts the server again after the next delay, until it answers. It returns
// nil when ctx ends first.
func (s *LocalServer) restart(ctx context.Context, delays backoff.BackOff) *process {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delays.NextBackOff()):
		}
		p, err := s.launch(ctx)
		if err == nil {
			s.Logger.Info("local clickhouse restarted", "addr", s.Addr(), "pid", s.PID())
			return p
		}
		if ctx.Err() != nil {
			return nil
		}
		s.Logger.Error("restart local clickhouse", "err", err)
	}
}

// LogTail returns the last lines of the server's error log and of its stderr, where
// a failing server says why, formatted to follow an error message.
func (s *LocalServer) LogTail() string {
	var b strings.Builder
	for _, name := range []string{localErrorLog, localStderr} {
		path := filepath.Join(s.Dir, localLogDir, name)
		lines := tailLines(path, localLogTailLines)
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nlast lines of %s:", path)
		for _, line := range lines {
			b.WriteString("\n  " + line)
		}
	}
	return b.String()
}

// tailLines returns the last n lines of the file at path, or none when it cannot be read.
func tailLines(path string, n int) []string {
	const window = 64 << 10 // Far more than n log lines.
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	cut := false
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return nil
		}
		cut = true
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	text := strings.TrimRight(string(data), "\n")
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	if cut {
		lines = lines[1:] // The window starts inside a line.
	}
	return lines[max(0, len(lines)-n):]
}
