// Package broker embeds the MQTT broker that field devices publish to: its
// listeners, the hook that lets only registered devices in and only into
// their own topics, and the hook that hands telemetry to ingest.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
)

// DefaultMaxPacketSize bounds an MQTT packet: telemetry messages are a few
// hundred bytes, SenML batches a few KiB.
const DefaultMaxPacketSize = 64 << 10

// IngestFunc takes one telemetry message from a device. It runs on the
// publishing client's goroutine, so blocking in it slows that client only.
type IngestFunc func(ctx context.Context, deviceID, topic string, payload []byte) error

// LookupFunc finds a registered device by id.
type LookupFunc func(id string) (devices.Device, bool)

// Broker is the embedded MQTT broker.
type Broker struct {
	// Listen is the TCP listener address. It defaults to ":1883".
	Listen string
	// MaxPacketSize is the largest packet accepted, in bytes; mochi refuses a
	// larger one from its fixed header, before reading the body.
	// It defaults to DefaultMaxPacketSize.
	MaxPacketSize int
	// Lookup finds devices for authentication. Required.
	Lookup LookupFunc
	// Ingest receives devices/{id}/telemetry messages. Required.
	Ingest IngestFunc
	// ShutdownGrace is how long Close lets in-flight publishes finish before
	// cancelling them (their rows are then counted as dropped by ingest).
	// It defaults to 10 seconds.
	ShutdownGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the broker's metrics; nil registers nothing.
	Registerer prometheus.Registerer

	server    *mqtt.Server
	tcp       *listeners.TCP
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
	if b.ShutdownGrace <= 0 {
		b.ShutdownGrace = 10 * time.Second
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	b.metrics = newMetrics(b.Registerer)

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(b.MaxPacketSize)
	b.server = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(quietHandler{b.Logger.Handler()}).With("component", "mqtt"),
	})
	ctx, b.cancel = context.WithCancel(ctx)
	if err := b.server.AddHook(&authHook{lookup: b.Lookup, metrics: b.metrics, logger: b.Logger}, nil); err != nil {
		return fmt.Errorf("broker: add auth hook: %w", err)
	}
	if err := b.server.AddHook(&ingestHook{ctx: ctx, ingest: b.Ingest, metrics: b.metrics}, nil); err != nil {
		return fmt.Errorf("broker: add ingest hook: %w", err)
	}
	b.tcp = listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.Listen})
	if err := b.server.AddListener(b.tcp); err != nil {
		return fmt.Errorf("broker: listen on %s (mqtt.listen): %w", b.Listen, err)
	}
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.Logger.Info("mqtt listening", "addr", b.tcp.Address())
	return nil
}

// Addr returns the address the TCP listener is bound to, e.g. "[::]:1883".
func (b *Broker) Addr() string { return b.tcp.Address() }

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
