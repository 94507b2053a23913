package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/broker"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/storage"
)

// registryState is the server's view of the registry: devices (in
// Server.registry), grids, and device status. ClickHouse is the registry's
// home, so that several gridwatch nodes share one; each node polls
// storage.DB.RegistryVersion every devices.reload_interval and reloads when
// it changed, which is how `gridwatch devices import` reaches running
// servers without a restart, without the CLI having to know every node's
// address or hold an API token.
type registryState struct {
	grids   atomic.Pointer[[]devices.Grid]
	units   atomic.Pointer[unitSet]
	status  *devices.StatusTracker
	batcher *ingest.Batcher[devices.StatusChange]
	version string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startRegistry imports grids.file and devices.file into ClickHouse, loads the registry and
// the device status from it, and starts the reload loop and the status
// writer.
func (s *Server) startRegistry(ctx, life context.Context, write ingest.WriteFunc) error {
	if err := s.importGridsFile(ctx); err != nil {
		return err
	}
	if path := s.Config.Devices.File; path != "" {
		devs, rejected, err := ReadDevicesFile(ctx, s.db, path, nil)
		if err != nil {
			return fmt.Errorf("devices.file %s: %w", path, err)
		}
		if len(rejected) > 0 {
			return fmt.Errorf("devices.file %s: %w (%d rows rejected)", path, rejected[0], len(rejected))
		}
		st, err := ImportDevices(ctx, s.db, devs)
		if err != nil {
			return fmt.Errorf("devices.file %s: %w", s.Config.Devices.File, err)
		}
		s.Logger.Info("devices.file imported", "file", s.Config.Devices.File, "added", st.Added, "updated", st.Updated, "unchanged", st.Unchanged)
	}
	if err := s.importUnitsFile(ctx); err != nil {
		return err
	}
	rs := &s.reg
	if err := s.reloadRegistry(ctx); err != nil {
		return err
	}
	last, err := s.db.LatestStatus(ctx)
	if err != nil {
		return err
	}
	rs.status = devices.NewStatusTracker(last)
	rs.batcher = ingest.NewStatusBatcher(write)
	// The telemetry batcher's metrics are the registered ones: the status
	// batcher's drops must show in /metrics and /readyz like any other.
	if err := startBatcher(life, rs.batcher, &s.Config, s.Logger, s.telemetry.Metrics); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(life)
	rs.cancel = cancel
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		t := time.NewTicker(s.Config.Devices.ReloadInterval)
		defer t.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
				if err := s.reloadRegistry(loopCtx); err != nil && loopCtx.Err() == nil {
					s.Logger.Warn("registry reload failed; keeping the loaded one", "err", err)
				}
			}
		}
	}()
	return nil
}

// reloadRegistry loads devices, grids and units from ClickHouse when the registry
// version changed since the last load.
func (s *Server) reloadRegistry(ctx context.Context) error {
	rs := &s.reg
	v, err := s.db.RegistryVersion(ctx)
	if err != nil || v == rs.version {
		return err
	}
	devs, err := s.db.LoadDevices(ctx)
	if err != nil {
		return err
	}
	grids, err := s.db.LoadGrids(ctx)
	if err != nil {
		return err
	}
	if err := s.loadUnits(ctx); err != nil {
		return err
	}
	s.registry.Replace(devs)
	rs.grids.Store(&grids)
	rs.version = v
	s.Logger.Info("device registry loaded", "devices", len(devs), "grids", len(grids), "units", len(s.Units()), "version", v)
	return nil
}

// reportStatus records a device status change and queues it for storage.
func (s *Server) reportStatus(c devices.StatusChange) {
	if !s.reg.status.Set(c) {
		return
	}
	online := 0.0
	if c.Online {
		online = 1
	}
	s.alerting.engine.Observe(alerts.Observation{Device: c.Device, Metric: alerts.MetricOnline, Value: online, TS: c.At.UnixMilli()})
	if _, err := s.reg.batcher.Add(context.Background(), c); err != nil {
		s.Logger.Warn("device status change not stored", "device", c.Device, "err", err)
	}
}

// closeRegistry stops the reload loop and flushes the status writer.
func (s *Server) closeRegistry() error {
	rs := &s.reg
	if rs.cancel != nil {
		rs.cancel()
		rs.wg.Wait()
	}
	if rs.batcher != nil {
		return rs.batcher.Close()
	}
	return nil
}

// Grids returns the loaded grids.
func (s *Server) Grids() []devices.Grid {
	if g := s.reg.grids.Load(); g != nil {
		return *g
	}
	return nil
}

// DeviceStatus tells whether a device is online and since when: the
// function the alert engine uses.
func (s *Server) DeviceStatus(id string) (online bool, since time.Time) {
	return s.reg.status.Status(id)
}

// brokerTLS builds the TLS listener's configuration from the mqtt.tls_*
// keys, or returns nil when mqtt.tls_listen is empty.
func brokerTLS(cfg *Config) (*tls.Config, error) {
	if cfg.MQTT.TLSListen == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.MQTT.TLSCert, cfg.MQTT.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("mqtt.tls_cert/mqtt.tls_key: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if cfg.MQTT.TLSClientCA != "" {
		if tc.ClientCAs, err = loadCertPool("mqtt.tls_client_ca", cfg.MQTT.TLSClientCA); err != nil {
			return nil, err
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// proxyNetworks parses mqtt.proxy_protocol_from: networks in CIDR
// notation, or single addresses.
func proxyNetworks(list string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range split(list) {
		if ip := net.ParseIP(s); ip != nil {
			bits := 8 * len(ip.To4())
			if bits == 0 {
				bits = 128
			}
			s = fmt.Sprintf("%s/%d", s, bits)
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a network (10.0.0.0/8) nor an address", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// brokerLimits maps the mqtt.* limit keys onto broker.Limits.
func brokerLimits(cfg *Config) broker.Limits {
	m := &cfg.MQTT
	return broker.Limits{
		MaxTopicLength: m.MaxTopicLength, MaxInflight: m.MaxInflight, MaxSubscriptions: m.MaxSubscriptions,
		MessageRate: m.MessageRate, MessageBurst: m.MessageBurst,
		ByteRate: m.ByteRate, ByteBurst: m.ByteBurst,
		ConnRatePerIP: m.ConnRatePerIP, ConnBurstPerIP: m.ConnBurstPerIP,
		FlapConnects: m.FlapConnects, FlapWindow: m.FlapWindow, FlapBan: m.FlapBan,
		AuthFailures: m.AuthFailures, AuthFailureWindow: m.AuthFailureWindow, AuthFailureBan: m.AuthFailureBan,
	}
}

// ImportStats counts what an import did.
type ImportStats struct {
	Added, Updated, Unchanged int
}

// ImportDevices merges devs into the registry in ClickHouse: new ids are
// added, known ones updated, identical ones left alone, so importing the
// same file twice changes nothing. A device without a secret (or RTSP or
// SIP password) keeps its stored one; a secret is hashed (on every core) unless it already
// verifies against the stored hash.
func ImportDevices(ctx context.Context, db *storage.DB, devs []devices.Device) (ImportStats, error) {
	var st ImportStats
	stored, err := db.LoadDevices(ctx)
	if err != nil {
		return st, err
	}
	old := make(map[string]devices.Device, len(stored))
	for _, d := range stored {
		old[d.ID] = d
	}
	merged := make([]devices.Device, len(devs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, d := range devs {
		// Sealed first, so that an unchanged camera compares equal.
		if d, err = db.SealSecrets(d); err != nil {
			return st, err
		}
		prev, known := old[d.ID]
		if known {
			d.SecretHash, d.PrevSecretHash, d.PrevSecretUntil = prev.SecretHash, prev.PrevSecretHash, prev.PrevSecretUntil
			if d.RTSPUser == "" {
				d.RTSPUser, d.RTSPPassword = prev.RTSPUser, prev.RTSPPassword
			}
			if d.SIPPassword == "" {
				d.SIPPassword = prev.SIPPassword
			}
		}
		if d.Secret == "" {
			merged[i] = d
			continue
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if !known || prev.SecretHash == "" || !devices.CheckSecret(prev.SecretHash, []byte(d.Secret)) {
				h, err := devices.HashSecret(d.Secret)
				if err != nil {
					return err
				}
				d.SecretHash, d.PrevSecretHash, d.PrevSecretUntil = h, "", time.Time{}
			}
			d.Secret = ""
			merged[i] = d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return st, fmt.Errorf("hash secrets: %w", err)
	}
	changed := merged[:0]
	for _, d := range merged {
		prev, known := old[d.ID]
		switch {
		case !known:
			st.Added++
		case prev == d:
			st.Unchanged++
			continue
		default:
			st.Updated++
		}
		changed = append(changed, d)
	}
	if err := db.SaveDevices(ctx, changed); err != nil {
		return st, err
	}
	return st, nil
}

// ErrNoSuchDevice is returned by ProvisionDevices for an id the registry
// does not hold.
var ErrNoSuchDevice = errors.New("no such device")

// ProvisionDevices gives each device in ids a new random secret and returns
// the secrets by id, to be shown once. A device's current secret stays valid
// for grace (0: it stops working at once).
func ProvisionDevices(ctx context.Context, db *storage.DB, ids []string, grace time.Duration) (map[string]string, error) {
	stored, err := db.LoadDevices(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]devices.Device, len(stored))
	for _, d := range stored {
		byID[d.ID] = d
	}
	out := make(map[string]string, len(ids))
	updated := make([]devices.Device, 0, len(ids))
	now := time.Now()
	for _, id := range ids {
		d, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("provision %q: %w", id, ErrNoSuchDevice)
		}
		secret, err := devices.GenerateSecret()
		if err != nil {
			return nil, err
		}
		if d, err = devices.Rotate(d, secret, grace, now); err != nil {
			return nil, err
		}
		out[id] = secret
		updated = append(updated, d)
	}
	return out, db.SaveDevices(ctx, updated)
}

// OpenStore connects to the configured ClickHouse (starting the managed one
// when clickhouse.addr is empty, which must then not be in use by a running
// server) and applies the migrations, for the admin commands. Call the
// returned function to close it.
func OpenStore(ctx context.Context, cfg Config, logger *slog.Logger) (*storage.DB, func() error, error) {
	s := &Server{Config: cfg, Logger: logger}
	if err := s.openClickHouse(ctx, ctx, false); err != nil {
		return nil, nil, errors.Join(err, s.Close())
	}
	if err := s.db.Migrate(ctx); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("migrate: %w", err), s.Close())
	}
	return s.db, s.Close, nil
}
