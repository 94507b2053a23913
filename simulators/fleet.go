package simulators

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/gridwatch/gridwatch/devices"
)

// Fleet defaults.
const (
	DefaultBroker             = "tcp://127.0.0.1:1883"
	DefaultConnectConcurrency = 64
	DefaultConnectTimeout     = 10 * time.Second
	DefaultInFlight           = 16
	DefaultAckTimeout         = 30 * time.Second
)

// disconnectQuiesce is how long, in milliseconds, a client may take to send
// its DISCONNECT once every publish of it has completed.
const disconnectQuiesce = 250

// errNotConnected is counted when a QoS 0 publish is skipped because the
// device's connection is down: paho would report such a message as sent
// while it is still reconnecting, and drop it.
var errNotConnected = errors.New("connection down, qos 0 message not sent")

// Source makes the readings a simulated device publishes. *Model is the
// healthy source; fault scenarios wrap it.
type Source interface {
	Next(at time.Time) Reading
}

// Fleet simulates devices publishing telemetry over MQTT: one paho
// connection per device, with username and client id the device id and
// password its secret, each message one JSON object on
// devices/{id}/telemetry with "ts" (epoch ms) and the readings of the
// device's model. Timestamps are strictly increasing per device, so no two
// readings of a device share (ts, metric) even at full speed; a device sending
// more than 1000 messages a second therefore runs ahead of the wall clock.
type Fleet struct {
	// Broker is the broker URL. It defaults to DefaultBroker.
	Broker string
	// Devices are the devices to simulate.
	Devices []devices.Device
	// Rate is the total messages per second across the fleet, spread evenly
	// over the connected devices; 0 publishes as fast as possible.
	Rate float64
	// QoS is the publish QoS, 0 or 1.
	QoS byte
	// Messages is the total number of messages to send, spread evenly over
	// the connected devices; 0 sends until Duration passes or ctx ends.
	Messages int
	// Duration bounds the publishing phase; 0 means no bound.
	Duration time.Duration
	// ConnectConcurrency bounds the connection attempts in progress. It
	// defaults to DefaultConnectConcurrency.
	ConnectConcurrency int
	// ConnectTimeout bounds one connection attempt. It defaults to
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// InFlight bounds each device's publishes not yet completed (QoS 1: not
	// yet acknowledged). It defaults to DefaultInFlight.
	InFlight int
	// AckTimeout is how long a publish may take to complete (QoS 1: until
	// its PUBACK) before it counts as an error. It defaults to
	// DefaultAckTimeout.
	AckTimeout time.Duration
	// Models are the value models of the devices.
	Models Models
	// Sources makes each device's readings. It defaults to Models.New.
	Sources func(devices.Device) (Source, error)
	// OnSent, when set, is called for every message counted as sent: for
	// QoS 1, every PUBACK. An AckLog's Add records them, for checking later
	// that each was stored exactly once. It is called from the devices'
	// goroutines.
	OnSent func(Ack)
	// Progress receives a live progress line every second and a summary at
	// the end; nil writes nothing.
	Progress io.Writer
	// Logger receives connection and publish failures, at most one of each
	// kind per second. It defaults to discarding.
	Logger *slog.Logger
}

// Stats says what a fleet run did. A message counts as sent once its publish
// completed without error: for QoS 1 when its PUBACK arrived, for QoS 0 when
// it was written to the connection. Readings counts the metric values in
// exactly those messages, so while no connection breaks (ConnectionsLost is
// 0) the broker receives exactly Messages messages holding Readings readings.
// When connections break, QoS 0 may lose what was on the wire, and QoS 1 may
// deliver a message twice (it resends what was not acknowledged); publishes
// attempted while a device is reconnecting count as errors.
type Stats struct {
	// Devices is the number of devices asked for.
	Devices int `json:"devices"`
	// Connected is the number of devices that connected.
	Connected int64 `json:"connected"`
	// ConnectErrors is the number of devices that could not connect.
	ConnectErrors int64 `json:"connect_errors"`
	// ConnectionsLost counts connections that broke while publishing.
	ConnectionsLost int64 `json:"connections_lost"`
	// Messages is the number of messages sent.
	Messages int64 `json:"messages"`
	// Readings is the number of metric values in the messages sent.
	Readings int64 `json:"readings"`
	// Bytes is the payload size of the messages sent.
	Bytes int64 `json:"bytes"`
	// Errors counts publishes that failed or did not complete in time.
	Errors int64 `json:"errors"`
	// Elapsed is the length of the publishing phase, from the first publish
	// until the last one completed.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// MessagesPerSecond is the rate of messages sent over Elapsed.
func (s Stats) MessagesPerSecond() float64 { return perSecond(s.Messages, s.Elapsed) }

// ReadingsPerSecond is the rate of readings sent over Elapsed.
func (s Stats) ReadingsPerSecond() float64 { return perSecond(s.Readings, s.Elapsed) }

// String is the summary of a run.
func (s Stats) String() string {
	return fmt.Sprintf("sent %d messages (%d readings, %d bytes) in %s: %.0f msg/s, %.0f readings/s; %d/%d devices connected, %d connect errors, %d publish errors, %d connections lost",
		s.Messages, s.Readings, s.Bytes, s.Elapsed.Round(time.Millisecond), s.MessagesPerSecond(), s.ReadingsPerSecond(),
		s.Connected, s.Devices, s.ConnectErrors, s.Errors, s.ConnectionsLost)
}

// withDefaults returns f with its defaults filled in, or why f cannot run.
func (f Fleet) withDefaults() (Fleet, error) {
	switch {
	case len(f.Devices) == 0:
		return f, fmt.Errorf("fleet: %w", ErrNoDevices)
	case f.QoS > 1:
		return f, fmt.Errorf("fleet: qos %d: %w", f.QoS, ErrQoS)
	case f.Rate < 0 || f.Messages < 0 || f.Duration < 0:
		return f, fmt.Errorf("fleet: rate, messages and duration must not be negative")
	}
	if f.Broker == "" {
		f.Broker = DefaultBroker
	}
	if f.ConnectConcurrency <= 0 {
		f.ConnectConcurrency = DefaultConnectConcurrency
	}
	if f.ConnectTimeout <= 0 {
		f.ConnectTimeout = DefaultConnectTimeout
	}
	if f.InFlight <= 0 {
		f.InFlight = DefaultInFlight
	}
	if f.AckTimeout <= 0 {
		f.AckTimeout = DefaultAckTimeout
	}
	if f.Sources == nil {
		models := f.Models
		f.Sources = func(d devices.Device) (Source, error) { return models.New(d) }
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

// Run connects the devices, publishes until Messages are sent, Duration has
// passed or ctx ends, waits for the publishes in flight and disconnects.
// Devices that cannot connect are counted and left out. Run fails only when
// the settings are wrong, a device has no source, or no device connected;
// ctx ending is a normal stop.
func (f *Fleet) Run(ctx context.Context) (Stats, error) {
	cfg, err := f.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	sources := make([]Source, len(cfg.Devices))
	for i, d := range cfg.Devices {
		if sources[i], err = cfg.Sources(d); err != nil {
			return Stats{}, fmt.Errorf("fleet: %w", err)
		}
	}
	r := &run{
		Fleet:      cfg,
		connectLog: rate.Sometimes{Interval: time.Second},
		publishLog: rate.Sometimes{Interval: time.Second},
		lostLog:    rate.Sometimes{Interval: time.Second},
	}
	r.stats.Devices = len(cfg.Devices)

	p := newProgress(cfg.Progress)
	pctx, stopProgress := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.run(pctx, r.progressLine())
	}()
	stats, err := r.run(ctx, sources)
	stopProgress()
	wg.Wait()
	if err == nil {
		p.final(stats.String())
	}
	return stats, err
}

// run is one Run of a fleet; its counters are updated by the device
// goroutines and read by the progress reporter.
type run struct {
	Fleet
	connected, connectErrors, lost    atomic.Int64
	messages, readings, bytes, errors atomic.Int64
	publishing                        atomic.Bool
	stats                             Stats // the fields fixed before publishing
	connectLog, publishLog, lostLog   rate.Sometimes
}

// device is a connected device.
type device struct {
	devices.Device
	client mqtt.Client
	src    Source
}

func (r *run) run(ctx context.Context, sources []Source) (Stats, error) {
	conns, firstErr := r.connectAll(ctx, sources)
	if len(conns) == 0 {
		if ctx.Err() != nil {
			return r.snapshot(), nil
		}
		return r.snapshot(), fmt.Errorf("fleet: %w (%d devices to %s): %w", ErrNoConnection, len(r.Devices), r.Broker, firstErr)
	}

	pctx := ctx
	if r.Duration > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, r.Duration)
		defer cancel()
	}
	n := len(conns)
	start := time.Now()
	r.publishing.Store(true)
	var wg sync.WaitGroup
	for k, d := range conns {
		quota := int64(-1)
		if r.Messages > 0 {
			quota = int64(r.Messages / n)
			if k < r.Messages%n {
				quota++
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publish(pctx, k, n, d, quota)
		}()
	}
	wg.Wait()
	r.stats.Elapsed = time.Since(start)
	return r.snapshot(), nil
}

// connectAll connects the devices, at most ConnectConcurrency at a time, and
// returns those that connected, in order, and the first connect error.
func (r *run) connectAll(ctx context.Context, sources []Source) ([]*device, error) {
	conns := make([]*device, len(r.Devices))
	var firstErr error
	var once sync.Once
	var g errgroup.Group
	g.SetLimit(r.ConnectConcurrency)
	for i, d := range r.Devices {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			c, err := r.connect(d)
			if err != nil {
				r.connectErrors.Add(1)
				once.Do(func() { firstErr = err })
				r.connectLog.Do(func() { r.Logger.Warn("device could not connect", "device", d.ID, "error", err) })
				return nil
			}
			r.connected.Add(1)
			conns[i] = &device{Device: d, client: c, src: sources[i]}
			return nil
		})
	}
	g.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	if ctx.Err() != nil {
		var g errgroup.Group
		g.SetLimit(r.ConnectConcurrency)
		for _, c := range out {
			g.Go(func() error {
				c.client.Disconnect(disconnectQuiesce)
				return nil
			})
		}
		g.Wait()
		return nil, ctx.Err()
	}
	return out, firstErr
}

// connect opens d's connection: clean session, reconnecting on its own when
// the connection breaks while publishing.
func (r *run) connect(d devices.Device) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().
		AddBroker(r.Broker).
		SetClientID(d.ID).
		SetUsername(d.ID).
		SetPassword(d.Secret).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(r.ConnectTimeout).
		SetWriteTimeout(r.AckTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			r.lost.Add(1)
			r.lostLog.Do(func() { r.Logger.Warn("device connection lost", "device", d.ID, "error", err) })
		})
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(r.ConnectTimeout) {
		c.Disconnect(0)
		return nil, fmt.Errorf("connect %s to %s: no answer within %s", d.ID, r.Broker, r.ConnectTimeout)
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", d.ID, r.Broker, err)
	}
	return c, nil
}

// pending is a publish not yet completed.
type pending struct {
	tok             mqtt.Token
	readings, bytes int
	ts              int64
	sent            time.Time
}

// publish sends d's messages, the k-th of n devices, until it has sent
// quota (negative: no limit) or ctx ends, then waits for its publishes in
// flight and disconnects.
func (r *run) publish(ctx context.Context, k, n int, d *device, quota int64) {
	defer d.client.Disconnect(disconnectQuiesce)
	var lim *rate.Limiter
	if r.Rate > 0 {
		// Stagger the devices over one device interval (n/Rate) so that the
		// fleet's messages are spread evenly in time.
		t := time.NewTimer(time.Duration(float64(k) / r.Rate * float64(time.Second)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		lim = rate.NewLimiter(rate.Limit(r.Rate/float64(n)), 1)
	}
	topic := "devices/" + d.ID + "/telemetry"
	keys := make(map[string][]byte)
	window := make([]pending, 0, r.InFlight)
	var lastTS int64
	for tries := int64(0); quota < 0 || tries < quota; tries++ {
		if lim != nil {
			if lim.Wait(ctx) != nil {
				break
			}
		} else if ctx.Err() != nil {
			break
		}
		// Count what has completed, waiting for the oldest if the window is full.
		i := 0
		for i < len(window) && (len(window)-i == r.InFlight || completed(window[i].tok)) {
			r.settle(d.ID, window[i])
			i++
		}
		window = append(window[:0], window[i:]...)
		ts := max(time.Now().UnixMilli(), lastTS+1)
		lastTS = ts
		rd := d.src.Next(time.UnixMilli(ts))
		payload := appendPayload(make([]byte, 0, 128), ts, rd.Values, keys)
		if r.QoS == 0 && !d.client.IsConnectionOpen() {
			r.fail(d.ID, errNotConnected)
			continue
		}
		tok := d.client.Publish(topic, r.QoS, false, payload)
		window = append(window, pending{tok: tok, readings: len(rd.Values), bytes: len(payload), ts: ts, sent: time.Now()})
	}
	for _, p := range window {
		r.settle(d.ID, p)
	}
}

// completed reports whether t has completed, without waiting.
func completed(t mqtt.Token) bool {
	select {
	case <-t.Done():
		return true
	default:
		return false
	}
}

// settle waits for a publish to complete, at most AckTimeout after it was
// sent, and counts it. The deadline runs from the send, not from the call,
// so that settling a window of publishes to a dead broker takes AckTimeout,
// not AckTimeout per publish.
func (r *run) settle(id string, p pending) {
	if !completed(p.tok) && !p.tok.WaitTimeout(time.Until(p.sent.Add(r.AckTimeout))) {
		r.fail(id, fmt.Errorf("publish not completed within %s", r.AckTimeout))
		return
	}
	if err := p.tok.Error(); err != nil {
		r.fail(id, err)
		return
	}
	r.messages.Add(1)
	r.readings.Add(int64(p.readings))
	r.bytes.Add(int64(p.bytes))
	if r.OnSent != nil {
		r.OnSent(Ack{Device: id, TS: p.ts, Readings: p.readings})
	}
}

// fail counts a failed publish and logs it unless one was logged within the
// last second.
func (r *run) fail(id string, err error) {
	r.errors.Add(1)
	r.publishLog.Do(func() { r.Logger.Warn("publish failed", "device", id, "error", err) })
}

// snapshot returns the counters as Stats.
func (r *run) snapshot() Stats {
	s := r.stats
	s.Connected = r.connected.Load()
	s.ConnectErrors = r.connectErrors.Load()
	s.ConnectionsLost = r.lost.Load()
	s.Messages = r.messages.Load()
	s.Readings = r.readings.Load()
	s.Bytes = r.bytes.Load()
	s.Errors = r.errors.Load()
	return s
}

// progressLine returns the function that renders the live progress line.
func (r *run) progressLine() func(time.Duration) string {
	var prev int64
	return func(dt time.Duration) string {
		if !r.publishing.Load() {
			return fmt.Sprintf("connecting: %d/%d connected, %d failed", r.connected.Load(), len(r.Devices), r.connectErrors.Load())
		}
		msgs := r.messages.Load()
		line := fmt.Sprintf("connected %d/%d  lost %d  sent %d msg  %.0f msg/s  readings %d  errors %d",
			r.connected.Load(), len(r.Devices), r.lost.Load(), msgs, perSecond(msgs-prev, dt), r.readings.Load(), r.errors.Load())
		prev = msgs
		return line
	}
}

// appendPayload appends the telemetry JSON object {"ts":…,"metric":value,…}
// to b. keys caches the JSON-quoted metric names.
func appendPayload(b []byte, ts int64, vals []Value, keys map[string][]byte) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	for _, v := range vals {
		k, ok := keys[v.Metric]
		if !ok {
			k, _ = json.Marshal(v.Metric) // Marshal of a string cannot fail.
			keys[v.Metric] = k
		}
		b = append(b, ',')
		b = append(b, k...)
		b = append(b, ':')
		b = strconv.AppendFloat(b, v.Value, 'f', -1, 64)
	}
	return append(b, '}')
}
