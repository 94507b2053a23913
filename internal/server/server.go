// Package server assembles gridwatch from its parts: the managed or external
// ClickHouse, the schema, the device registry, the ingest pipeline, the MQTT
// broker and the HTTP API. `gridwatch serve`, `gridwatch demo` and the
// end-to-end tests run it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/broker"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/spool"
	"github.com/gridwatch/gridwatch/web"
)

// Server is a running gridwatch.
type Server struct {
	// Config is the validated configuration.
	Config Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the wall clock of the ingest path (receive times and the
	// decoder's timestamp window) and of the alert engine. It defaults to
	// time.Now; the fault tests step it. Batching and the spool time with
	// the monotonic clock instead.
	Now func() time.Time

	metrics   *prometheus.Registry
	registry  *devices.Registry
	reg       registryState
	write     ingest.WriteFunc
	local     *storage.LocalServer
	db        *storage.DB
	secrets   *devices.SecretBox // seals the registry's RTSP passwords
	telemetry *ingest.Batcher[ingest.Reading]
	rejected  *ingest.Batcher[ingest.Rejection]
	spool     *spool.Spool
	durable   *ingest.DurableIndex // in durable mode: the spooled readings
	replaying sync.Mutex           // one quarantine replay at a time (ReplayQuarantined)
	cameras   *cameraHealth
	gb        *gbRegistrar
	stills    *rtsp.Stills // nil unless the prober runs
	alerting  alerting
	cases     caseLoop
	staff     staff
	scores    scoreNotice
	retention retention
	coord     coordination
	// zkDialer, when set, connects to ZooKeeper; the tests cut a node off
	// through it.
	zkDialer  func(network, address string, timeout time.Duration) (net.Conn, error)
	broker    *broker.Broker
	upstream  *broker.Upstream // nil unless upstream.brokers is set
	http      *http.Server
	httpAddr  net.Addr
	httpDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Start brings every part up, in dependency order. On error, what was
// started is stopped again.
func (s *Server) Start(ctx context.Context) (err error) {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	// Parts that own goroutines live until Close, not until ctx ends: a
	// signal cancels ctx, and Close must still flush what they hold.
	life := context.WithoutCancel(ctx)
	cfg := &s.Config
	s.metrics = prometheus.NewRegistry()
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.registry = devices.NewRegistry(nil)

	if err := s.openClickHouse(ctx, life, true); err != nil {
		return err
	}
	if err := s.db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := s.startCoordination(ctx); err != nil {
		return err
	}
	s.startRetention(life)
	if err := s.startIngest(life); err != nil {
		return err
	}
	if err := s.startRegistry(ctx, life, s.write); err != nil {
		return err
	}
	if err := s.startAlerts(life); err != nil {
		return err
	}
	if err := s.startCases(life); err != nil {
		return err
	}
	// The registrar before the prober, which samples the GB/T 28181
	// cameras through it.
	if err := s.startGB28181(life); err != nil {
		return err
	}
	if err := s.startCameras(life); err != nil {
		return err
	}
	tlsConfig, err := brokerTLS(cfg)
	if err != nil {
		return err
	}
	pipeline := &ingest.Pipeline{
		Lookup:    s.registry.Lookup,
		Telemetry: s.telemetry,
		Rejected:  s.rejected,
		Now:       s.Now,
		Logger:    s.Logger,
		Metrics:   ingest.NewPipelineMetrics(s.metrics),
		Admit:     s.spool.Admit,
	}
	if cfg.Ingest.DurableAck {
		// The telemetry batcher's write evaluates the readings once
		// stored (observeStored).
		pipeline.Stored = s.readingsStored
	} else {
		pipeline.Observe = s.observe
	}
	ingestTelemetry := func(ctx context.Context, deviceID, topic string, payload []byte, dup bool) (broker.Stored, error) {
		return pipeline.HandleTelemetry(ctx, deviceID, topic, payload, dup)
	}
	proxies, err := proxyNetworks(cfg.MQTT.ProxyProtocolFrom)
	if err != nil {
		return fmt.Errorf("mqtt.proxy_protocol_from: %w", err)
	}
	s.broker = &broker.Broker{
		ProxyNetworks: proxies,
		Listen:        cfg.MQTT.Listen,
		MaxPacketSize: cfg.MQTT.MaxPacketSize,
		TLSListen:     cfg.MQTT.TLSListen,
		TLSConfig:     tlsConfig,
		Limits:        brokerLimits(cfg),
		Status:        s.reportStatus,
		Lookup:        s.registry.Lookup,
		Ingest:        ingestTelemetry,
		DurableAck:    cfg.Ingest.DurableAck,
		Staff:         s.authenticateStaff,
		InScope:       s.inScope,
		Logger:        s.Logger,
		Registerer:    s.metrics,
	}
	if err := s.broker.Start(life); err != nil {
		return err
	}
	if err := s.startUpstream(life, ingestTelemetry); err != nil {
		return err
	}
	if err := s.startNotify(life); err != nil {
		return err
	}
	s.startScoreNotice(life)
	return s.startHTTP()
}

// openClickHouse checks the secrets key's mode (checkSecretKeyMode) and
// loads it, then connects to the configured ClickHouse, starting the
// managed local one first when clickhouse.addr is empty. createKey lets it
// make the key when there is none, which only a server (serve, demo) may
// do: an admin command on another host making one would seal RTSP
// passwords that no server can open. Without a key, an admin command can
// still do what needs none, and what needs one fails with the error of
// Config.noSecretKey.
func (s *Server) openClickHouse(ctx, life context.Context, createKey bool) error {
	cfg := &s.Config.ClickHouse
	if err := s.Config.checkSecretKeyMode(); err != nil {
		return err
	}
	var noSecrets error
	load, path := devices.LoadSecretBox, s.Config.secretKeyFile()
	if createKey {
		load = devices.LoadOrCreateSecretBox
	}
	secrets, err := load(path)
	switch {
	case !createKey && errors.Is(err, fs.ErrNotExist):
		noSecrets = s.Config.noSecretKey()
	case err != nil:
		return fmt.Errorf("secrets.key_file: %w", err)
	default:
		s.secrets = secrets
	}
	addrs := split(cfg.Addr)
	if len(addrs) == 0 {
		s.local = &storage.LocalServer{Dir: filepath.Join(s.Config.DataDir, "clickhouse"), Logger: s.Logger}
		if err := s.local.Start(life); err != nil {
			return fmt.Errorf("managed ClickHouse (clickhouse.addr is empty): %w", err)
		}
		addrs = []string{s.local.Addr()}
		s.Logger.Info("managed ClickHouse running", "addr", addrs[0], "dir", s.local.Dir)
	}
	user, password := cfg.User, cfg.Password
	if s.local != nil {
		user, password = storage.LocalUser, s.local.Password
	}
	opts := storage.Options{
		Secrets:       s.secrets,
		NoSecrets:     noSecrets,
		Addr:          addrs[0],
		Failover:      addrs[1:],
		Database:      cfg.Database,
		User:          user,
		Password:      password,
		RetentionDays: cfg.RetentionDays,
		Cluster:       cfg.Cluster,
		// clickhouse-go bounds a new connection's handshake by its dial
		// timeout, not by the context: were it longer than an INSERT's
		// bound, an INSERT needing a new connection to a hung server
		// would outlast ingest.insert_timeout.
		DialTimeout: min(storage.DefaultDialTimeout, s.Config.Ingest.InsertTimeout),
	}
	if cfg.TLS {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLSSkipVerify} // #nosec G402 -- opt-in for testing, documented
	}
	db, err := storage.Open(ctx, opts, s.Logger)
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", strings.Join(addrs, ","), err)
	}
	s.db = db
	return nil
}

// telemetryWriters is how many telemetry batches are written at once in
// the default mode.
const telemetryWriters = 2

// startIngest builds the per-table batchers in front of the ClickHouse writer.
func (s *Server) startIngest(ctx context.Context) error {
	write, err := s.openSpool(ctx)
	if err != nil {
		return err
	}
	s.write = write
	bm := ingest.NewBatcherMetrics(s.metrics)
	telemetryWrite := write
	if s.Config.Ingest.DurableAck {
		telemetryWrite = s.observeStored(write)
	}
	s.telemetry = ingest.NewTelemetryBatcher(telemetryWrite)
	if !s.Config.Ingest.DurableAck {
		// One INSERT at a time bounded make bench at QoS 0 by its latency
		// (0.26-0.67 s for 50,000 rows on the loaded box) with the cores
		// not all busy. Telemetry's rows have no order ClickHouse keeps,
		// so two are written at once. Durable mode keeps one: its writes
		// are the group commits, and observeStored evaluates them in
		// order.
		s.telemetry.Writers = telemetryWriters
	}
	s.telemetry.MaxAge = telemetryBatchAge(&s.Config)
	s.rejected = ingest.NewRejectedBatcher(write)
	if err := startBatcher(ctx, s.telemetry, &s.Config, s.Logger, bm); err != nil {
		return err
	}
	return startBatcher(ctx, s.rejected, &s.Config, s.Logger, bm)
}

// startBatcher applies the ingest.* settings to b (MaxAge only when unset)
// and starts it.
func startBatcher[T any](ctx context.Context, b *ingest.Batcher[T], cfg *Config, logger *slog.Logger, m *ingest.BatcherMetrics) error {
	b.MaxRows = cfg.Ingest.BatchRows
	b.MaxBytes = cfg.Ingest.BatchBytes
	if b.MaxAge <= 0 {
		b.MaxAge = cfg.Ingest.BatchAge
	}
	b.MaxPending = cfg.Ingest.MaxPending
	b.Logger = logger
	b.Metrics = m
	if err := b.Start(ctx); err != nil {
		return fmt.Errorf("start %s batcher: %w", b.Table, err)
	}
	return nil
}

// Bounds of the HTTP server against clients that hold connections. Request
// bodies are bounded by the API (api.Server.BodyTimeout, MaxBodyBytes); a
// whole-request ReadTimeout would also cut the alert stream.
const (
	// readHeaderTimeout bounds the time a client takes to send a request's
	// headers (slow-loris).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a keep-alive connection idle for this long.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds a request's headers; larger ones get 431.
	maxHeaderBytes = 64 << 10
)

// startHTTP serves the API, metrics and health checks.
func (s *Server) startHTTP() error {
	a := &api.Server{
		Store:      s.db,
		Lookup:     s.registry.Lookup,
		Checks:     map[string]api.Check{"clickhouse": s.db.Ready, "spool": s.spool.Ready},
		Detail:     s.readyDetail,
		Gatherer:   s.metrics,
		AdminToken: s.Config.API.AdminToken,
		MaxSilence: s.Config.API.MaxSilence,
		Logger:     s.Logger,
		Console:    web.Handler(),
	}
	if s.upstream != nil {
		a.Checks["upstream"] = s.upstream.Ready
	}
	a.Cameras, a.Devices = s.db, s.registry.All
	if s.gb != nil {
		a.GB28181 = s.gb.registrar.Devices
	}
	a.Exports = s.db
	if s.stills != nil {
		a.Stills = s.stills
	}
	basemap, err := s.Config.Grids.basemap()
	if err != nil {
		return err
	}
	a.Basemap = basemap
	a.Registry = s
	a.CaseStats, a.CaseEvaluation = s.db, s.Config.Cases.Evaluation.evaluation()
	if s.cases.calendar != nil {
		a.CaseLocation = s.cases.calendar.Location()
	}
	a.Spool = s
	if err := s.configureAPI(a); err != nil {
		return err
	}
	open := a.Open()
	addr, err := s.Config.httpListen(open)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", addr, err)
	}
	s.httpAddr = ln.Addr()
	if open {
		s.Logger.Warn("the API is open to this host only: neither api.admin_token nor api.tokens_file holds a token", "addr", s.httpAddr.String())
	}
	s.http = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	s.http.RegisterOnShutdown(a.CloseStreams)
	s.httpDone = make(chan struct{})
	go func() {
		defer close(s.httpDone)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Logger.Error("http server stopped", "err", err)
		}
	}()
	s.Logger.Info("http listening", "addr", s.httpAddr.String())
	return s.startPprof()
}

// startPprof serves Go's profiler on http.pprof_listen, when set. It is
// closed with the API.
func (s *Server) startPprof() error {
	if s.Config.HTTP.PprofListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.Config.HTTP.PprofListen)
	if err != nil {
		return fmt.Errorf("http.pprof_listen %s: %w", s.Config.HTTP.PprofListen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	s.http.RegisterOnShutdown(func() { srv.Close() })
	go srv.Serve(ln)
	s.Logger.Info("profiler listening", "addr", ln.Addr().String())
	return nil
}

// MQTTAddr returns the MQTT listener's address.
func (s *Server) MQTTAddr() string { return s.broker.Addr() }

// HTTPAddr returns the HTTP listener's address.
func (s *Server) HTTPAddr() string { return s.httpAddr.String() }

// DB returns the ClickHouse handle.
func (s *Server) DB() *storage.DB { return s.db }

// Close shuts down in the order that loses nothing: stop taking MQTT
// messages, stop the API, flush the batchers into ClickHouse, then close
// ClickHouse. It is safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.upstream != nil {
			errs = append(errs, s.upstream.Close())
		}
		if s.broker != nil {
			errs = append(errs, s.broker.Close())
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, s.http.Shutdown(ctx))
			cancel()
			<-s.httpDone
		}
		errs = append(errs, s.closeNotify())
		errs = append(errs, s.closeCameras(), s.closeGB28181()) // the prober's streams end first
		s.closeRetention()
		errs = append(errs, s.closeIngest(func() error {
			err := s.closeRegistry()
			if s.telemetry != nil {
				err = errors.Join(err, s.telemetry.Close(), s.rejected.Close())
			}
			return err
		}))
		errs = append(errs, s.closeCases())
		errs = append(errs, s.closeAlerts())
		errs = append(errs, s.closeCoordination())
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		if s.local != nil {
			errs = append(errs, s.local.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Run starts the server, blocks until ctx ends, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	s.Logger.Info("shutting down")
	return s.Close()
}

// Migrate connects to the configured ClickHouse (starting the managed one
// when clickhouse.addr is empty), applies the schema migrations and stops.
func Migrate(ctx context.Context, cfg Config, logger *slog.Logger) error {
	s := &Server{Config: cfg, Logger: logger}
	defer s.Close()
	if err := s.openClickHouse(ctx, ctx, false); err != nil {
		return err
	}
	return s.db.Migrate(ctx)
}

// ClickHouseClient returns the clickhouse-client flags that connect to the
// ClickHouse in use: the managed one's config file, which holds its password
// (so that no password appears on a command line), or the address.
func (s *Server) ClickHouseClient() string {
	if s.local != nil {
		return "--config-file " + s.local.ClientConfig()
	}
	host, port, _ := net.SplitHostPort(split(s.Config.ClickHouse.Addr)[0])
	return "--host " + host + " --port " + port
}
