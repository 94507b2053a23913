// Package broker embeds the MQTT broker that field devices publish to: its
// listeners, the hook that lets only registered devices in and only into
// their own topics, and the hook that hands telemetry to ingest. Upstream
// instead takes telemetry from an external broker's shared subscription.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
)

// outboundInflight is how many QoS 1/2 deliveries a subscriber may leave
// unacknowledged; beyond, they are dropped and counted.
const outboundInflight = 1024

// outboundPending is how many deliveries may wait to be written to a
// client. mochi allocates the queue (8 bytes an entry) for every
// connection when it accepts it, so it is a cost of every idle device: at
// 100,000 connections 1024 entries took 800 MiB, 256 take 200 MiB. A
// subscriber that reads drains it as fast as it fills; one that does not
// loses the deliveries beyond, counted.
const outboundPending = 256

// DefaultMaxPacketSize bounds an MQTT packet: telemetry messages are a few
// hundred bytes, SenML batches a few KiB.
const DefaultMaxPacketSize = 64 << 10

// Stored tells when what ingest took of a message is written;
// ingest.Receipt is one.
type Stored interface {
	// Wait blocks until the readings are written or ctx ends, and returns
	// the write's error or ctx's.
	Wait(ctx context.Context) error
}

// IngestFunc takes one telemetry message from a device; dup is the
// PUBLISH's DUP flag (a redelivery of a message that may have been received
// before). It returns when the message is taken, with a Stored (nil when
// nothing was taken) that tells when it is written. It runs on the
// publishing client's goroutine, so blocking in it slows that client only.
type IngestFunc func(ctx context.Context, deviceID, topic string, payload []byte, dup bool) (Stored, error)

// LookupFunc finds a registered device by id.
type LookupFunc func(id string) (devices.Device, bool)

// StaffFunc authenticates a staff subscriber: ok when password is the API
// token named name, with the grid scope of the token ("" for the whole
// city).
type StaffFunc func(name string, password []byte) (scope string, ok bool)

// Broker is the embedded MQTT broker.
type Broker struct {
	// Listen is the TCP listener address. It defaults to ":1883".
	Listen string
	// TLSListen is the TLS listener address; empty opens none. TLSConfig
	// is required with it.
	TLSListen string
	// TLSConfig configures the TLS listener; MinVersion is raised to TLS
	// 1.2. With ClientCAs set, a client may authenticate with a certificate
	// whose common name is its device id instead of a password.
	TLSConfig *tls.Config
	// MaxPacketSize is the largest packet accepted, in bytes; mochi refuses a
	// larger one from its fixed header, before reading the body.
	// It defaults to DefaultMaxPacketSize.
	MaxPacketSize int
	// ConnectTimeout is how long a new connection may take to send its
	// CONNECT (and finish its TLS handshake) before it is closed; from
	// then on the client's keepalive bounds its silences. It defaults to
	// 10 seconds.
	ConnectTimeout time.Duration
	// ProxyNetworks are the networks of TCP load balancers (HAProxy with
	// send-proxy-v2) whose connections begin with a PROXY protocol header:
	// the source address it names is the client's, for the per-address
	// limits, bans and logs, and a connection from there without one is
	// refused (gridwatch_mqtt_auth_failures_total{reason="proxy_header"}).
	// A header from anywhere else is not read. It defaults to none.
	ProxyNetworks []*net.IPNet
	// Lookup finds devices for authentication. Required.
	Lookup LookupFunc
	// Ingest receives devices/{id}/telemetry messages. Required.
	Ingest IngestFunc
	// DurableAck sends the PUBACK of a QoS 1 telemetry message only once
	// what Ingest took of it is written (Stored.Wait). The client's
	// reader goes on with its next messages meanwhile, and its PUBACKs go
	// out in the order the messages came, from a goroutine of its own. A
	// QoS 2 message is waited for on the reader. It defaults to false:
	// PUBACK once Ingest returns.
	DurableAck bool
	// Staff lets API token holders subscribe to alert notifications
	// (AlertTopicPrefix): username the token's name, password the token,
	// read-only, and a scoped token only to the alerts of its grid subtree
	// as InScope decides. It defaults to admitting devices only.
	Staff StaffFunc
	// InScope reports whether grid lies in the subtree rooted at scope. It
	// defaults to grid == scope.
	InScope func(scope, grid string) bool
	// Verifier checks device secrets; it defaults to a devices.Verifier
	// with its defaults.
	Verifier *devices.Verifier
	// Limits bound clients and source addresses; zero fields take their
	// defaults.
	Limits Limits
	// Status receives online/offline changes; nil ignores them.
	Status StatusFunc
	// ShutdownGrace is how long Close lets in-flight publishes finish before
	// cancelling them (their rows are then counted as dropped by ingest).
	// It defaults to 10 seconds.
	ShutdownGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the broker's metrics; nil registers nothing.
	Registerer prometheus.Registerer

	server    *mqtt.Server
	tcp       *listener
	tls       *listener
	metrics   *metrics
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// Start opens the listener and serves clients in the background.
func (b *Broker) Start(ctx context.Context) error {
	if b.Lookup == nil || b.Ingest == nil {
		return errors.New("broker: Lookup and Ingest are required")
	}
	if b.Listen == "" {
		b.Listen = ":1883"
	}
	if b.MaxPacketSize <= 0 {
		b.MaxPacketSize = DefaultMaxPacketSize
	}
	if b.ConnectTimeout <= 0 {
		b.ConnectTimeout = 10 * time.Second
	}
	if b.ShutdownGrace <= 0 {
		b.ShutdownGrace = 10 * time.Second
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	if b.Verifier == nil {
		b.Verifier = &devices.Verifier{}
	}
	if b.InScope == nil {
		b.InScope = func(scope, grid string) bool { return grid == scope }
	}
	if b.Status == nil {
		b.Status = func(devices.StatusChange) {}
	}
	if b.TLSListen != "" && b.TLSConfig == nil {
		return errors.New("broker: TLSConfig is required with TLSListen (mqtt.tls_cert, mqtt.tls_key)")
	}
	b.Limits = b.Limits.withDefaults()

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(b.MaxPacketSize)
	caps.ReceiveMaximum = uint16(min(b.Limits.MaxInflight, 65535))
	// The outbound cap is of a subscriber's unacked deliveries, which
	// mochi drops beyond it: alert notifications come in bursts, and a
	// device's commands are few.
	caps.MaximumInflight = max(caps.ReceiveMaximum, outboundInflight)
	// mochi allocates each connection's outbound queue when it accepts it,
	// before the CONNECT: at its default of 8192 entries, 64 KiB that a
	// stranger's idle connections cost too. Beyond it, deliveries are
	// dropped and counted as beyond the inflight cap.
	caps.MaximumClientWritesPending = outboundPending
	// mochi announces no topic aliases in its CONNACK, which MQTT 5 reads as
	// none allowed, yet kept up to 65535 per client, each holding a topic;
	// and the ACL sees a PUBLISH before its alias is resolved. A client
	// that uses one is disconnected (0x94).
	caps.TopicAliasMaximum = 0
	b.server = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(quietHandler{b.Logger.Handler()}).With("component", "mqtt"),
		InlineClient: true, // for Publish
	})
	b.metrics = newMetrics(b.Registerer, b.server.Info)
	ctx, b.cancel = context.WithCancel(ctx)
	// Hooks run in the order added: limits refuse cheaply before the auth
	// hook hashes anything, and drop throttled publishes before ingest.
	limits := newLimitHook(b.Limits, b.server, b.metrics, b.Logger)
	for _, h := range []mqtt.Hook{
		limits,
		&authHook{ctx: ctx, lookup: b.Lookup, verifier: b.Verifier, staff: b.Staff, inScope: b.InScope,
			maxTopicLength: b.Limits.MaxTopicLength, failed: limits.authFailed, metrics: b.metrics, logger: b.Logger},
		&statusHook{lookup: b.Lookup, report: b.Status, metrics: b.metrics, now: time.Now},
		&ingestHook{ctx: ctx, ingest: b.Ingest, durable: b.DurableAck, ackQueue: int(caps.ReceiveMaximum), metrics: b.metrics},
	} {
		if err := b.server.AddHook(h, nil); err != nil {
			return fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
		}
	}
	var proxyRefused prometheus.Counter // a series only where proxies are set
	if len(b.ProxyNetworks) > 0 {
		proxyRefused = b.metrics.authFailures.WithLabelValues("proxy_header")
	}
	b.tcp = &listener{id: "tcp", addr: b.Listen, connectTimeout: b.ConnectTimeout, pending: limits.pending,
		proxies: b.ProxyNetworks, proxyRefused: proxyRefused, closeClients: b.closeClientsOf}
	if err := b.server.AddListener(b.tcp); err != nil {
		return fmt.Errorf("broker: listen on %s (mqtt.listen): %w", b.Listen, err)
	}
	if b.TLSListen != "" {
		tc := b.TLSConfig.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
		if tc.ClientCAs != nil && tc.ClientAuth == tls.NoClientCert {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		b.tls = &listener{id: "tls", addr: b.TLSListen, tlsConfig: tc, connectTimeout: b.ConnectTimeout,
			pending: limits.pending, proxies: b.ProxyNetworks, proxyRefused: proxyRefused, closeClients: b.closeClientsOf}
		if err := b.server.AddListener(b.tls); err != nil {
			return fmt.Errorf("broker: listen on %s (mqtt.tls_listen): %w", b.TLSListen, err)
		}
	}
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.Logger.Info("mqtt listening", "addr", b.tcp.Address())
	return nil
}

// Addr returns the address the TCP listener is bound to, e.g. "[::]:1883".
func (b *Broker) Addr() string { return b.tcp.Address() }

// Publish sends a message from the broker itself to the clients subscribed
// to topic, as alert notifications are sent. It bypasses the ACL, which
// governs devices. The broker delivers at qos to subscribers but does not
// wait for their acknowledgements.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if err := b.server.Publish(topic, payload, retain, qos); err != nil {
		return fmt.Errorf("broker: publish on %s: %w", topic, err)
	}
	return nil
}

// TLSAddr returns the address the TLS listener is bound to, or "" when
// there is none.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// Close stops accepting, disconnects clients and waits for the hooks to
// return, cancelling publishes still in flight after ShutdownGrace. It is
// safe to call twice.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		if b.server == nil {
			return
		}
		grace := time.AfterFunc(b.ShutdownGrace, b.cancel)
		defer grace.Stop()
		err = b.server.Close()
		b.cancel()
	})
	return err
}

// closeClientsOf disconnects the clients of the listener id (see
// closeClients).
func (b *Broker) closeClientsOf(id string) { closeClients(b.server, id) }

// closeClients disconnects srv's clients of the listener id, as mochi's
// Server.Close would through its own CloseFn. That one is not used: mochi
// 2.7.9's Clients.GetByListener takes the clients' read lock twice (Len
// inside RLock), so a client being deleted at that moment (a connection
// ending during shutdown) waits for the write lock between the two, the
// second read waits behind it, and Close hangs for ever. GetAll reads once.
func closeClients(srv *mqtt.Server, id string) {
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// NewTCPListener returns a plain TCP listener on addr for srv, in place of
// mochi's listeners.NewTCP, whose Close can hang for ever or race
// srv.Close (see listener and closeClients): for a bare mochi server, such
// as the benchmarks' baseline. It bounds the wait for a CONNECT to 10 s and
// nothing else.
func NewTCPListener(srv *mqtt.Server, id, addr string) listeners.Listener {
	return &listener{id: id, addr: addr, connectTimeout: 10 * time.Second, pending: newPendingConnects(0, nil),
		closeClients: func(id string) { closeClients(srv, id) }}
}
