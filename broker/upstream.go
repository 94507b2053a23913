package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest"
)

// DefaultUpstreamTopic is the shared subscription gridwatch nodes consume
// from an external broker: each message of the group gridwatch goes to one
// of its members.
const DefaultUpstreamTopic = "$share/gridwatch/" + TopicPrefix + "+/telemetry"

// DefaultUpstreamStatusTopic is the shared subscription of the devices'
// status messages and wills.
const DefaultUpstreamStatusTopic = "$share/gridwatch/" + TopicPrefix + "+/status"

// upstreamAckQueueLen bounds the deliveries whose PUBACK waits for their
// readings to be stored; beyond it the handler, and so paho's reader,
// waits. It is above the in-flight window the README asks of a broker.
const upstreamAckQueueLen = 4096

// Upstream consumes device telemetry from an external MQTT broker or
// cluster (mosquitto, EMQX, HiveMQ) through a shared subscription, and
// hands it to Ingest as the embedded broker's hook does. The external
// broker authenticates the devices and keeps each to its own topics;
// Upstream trusts it and takes the device id from the topic
// (devices/{id}/telemetry).
//
// Its session is persistent (clean session off, under ClientID), so what
// the broker delivered and this node did not acknowledge is delivered
// again, with the DUP flag, when the node connects again, and what arrives
// for the group while the node is away is kept for it by the broker
// (mosquitto 2 does both; see the README). With DurableAck, a QoS 1
// delivery is acknowledged only once its readings are stored.
type Upstream struct {
	// Brokers are the broker URLs (tcp://, ssl://, ws://, wss://), tried
	// in order at each connection attempt. Required.
	Brokers []string
	// ClientID names the node's session on the broker: unique to the
	// node and the same across its restarts. Required.
	ClientID string
	// Username and Password log the node in; Password is never logged.
	Username, Password string
	// TLSConfig is used for ssl:// and wss:// brokers; nil uses the
	// system's roots.
	TLSConfig *tls.Config
	// Topics are the topic filters subscribed at QoS 1. It defaults to
	// DefaultUpstreamTopic.
	Topics []string
	// KeepAlive is the MQTT keepalive. It defaults to 30 seconds.
	KeepAlive time.Duration
	// ConnectTimeout bounds a connection attempt and the subscription.
	// It defaults to 10 seconds.
	ConnectTimeout time.Duration
	// MaxReconnectInterval bounds the exponential backoff between
	// connection attempts, which starts at half a second. It defaults to
	// a minute.
	MaxReconnectInterval time.Duration
	// Ingest receives devices/{id}/telemetry messages. Required.
	Ingest IngestFunc
	// Status receives what registered devices (Lookup) publish, or their
	// wills publish, to devices/{id}/status: "online" or "offline". The
	// external broker's own connects and disconnects are not seen. Nil
	// ignores status messages; Lookup is required with it.
	Status StatusFunc
	// Lookup finds registered devices for Status.
	Lookup LookupFunc
	// DurableAck acknowledges a QoS 1 delivery only once what Ingest took
	// of it is written (Stored.Wait), in the order the deliveries came.
	// A delivery that is not stored is not acknowledged, and the
	// connection is closed and opened again, so that the broker delivers
	// it again. It defaults to false: acknowledge once Ingest returns.
	DurableAck bool
	// ShutdownGrace is how long Close waits for the acknowledgements of
	// readings being stored. It defaults to 10 seconds.
	ShutdownGrace time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer

	client  paho.Client
	metrics *upstreamMetrics
	pending chan upstreamAck
	// acking counts the deliveries queued or being acknowledged: the
	// connection loop waits for none before it connects again, so that a
	// redelivery is never judged while its first copy is being stored.
	acking  atomic.Int64
	lost    chan error    // connection losses, from paho
	refused chan struct{} // a delivery was not stored: reconnect
	closing atomic.Bool
	tried   atomic.Pointer[url.URL] // the broker of the last attempt
	state   atomic.Pointer[UpstreamState]

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// UpstreamState is what /readyz shows of the connection.
type UpstreamState struct {
	// Connected is true while subscribed.
	Connected bool `json:"connected"`
	// Broker is the URL of the broker last connected to or tried.
	Broker string `json:"broker,omitempty"`
	// Since is when the connection was made or lost.
	Since time.Time `json:"since"`
	// Error is why the last attempt failed or the connection was lost.
	Error string `json:"error,omitempty"`
}

// upstreamAck is a delivery whose PUBACK waits for its readings.
type upstreamAck struct {
	msg    paho.Message
	stored Stored // nil: nothing to wait for
	err    error  // ingest's error: a rejection
}

// Start checks the settings and connects in the background: a broker that
// is down is retried with backoff (Ready tells), not an error.
func (u *Upstream) Start(ctx context.Context) error {
	if len(u.Brokers) == 0 || u.ClientID == "" || u.Ingest == nil || (u.Status != nil && u.Lookup == nil) {
		return errors.New("upstream: Brokers, ClientID and Ingest are required, and Lookup with Status")
	}
	if len(u.Topics) == 0 {
		u.Topics = []string{DefaultUpstreamTopic}
	}
	if u.KeepAlive <= 0 {
		u.KeepAlive = 30 * time.Second
	}
	if u.ConnectTimeout <= 0 {
		u.ConnectTimeout = 10 * time.Second
	}
	if u.MaxReconnectInterval <= 0 {
		u.MaxReconnectInterval = time.Minute
	}
	if u.ShutdownGrace <= 0 {
		u.ShutdownGrace = 10 * time.Second
	}
	if u.Logger == nil {
		u.Logger = slog.Default()
	}
	u.Logger = u.Logger.With("component", "upstream")
	u.metrics = newUpstreamMetrics(u.Registerer, u)
	u.pending = make(chan upstreamAck, upstreamAckQueueLen)
	u.lost = make(chan error, 1)
	u.refused = make(chan struct{}, 1)
	u.state.Store(&UpstreamState{Since: time.Now(), Error: "not connected yet"})

	opts := paho.NewClientOptions().
		SetClientID(u.ClientID).
		SetUsername(u.Username).
		SetPassword(u.Password).
		SetCleanSession(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		// The connection loop reconnects, once the acknowledgements of
		// the lost connection are settled.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(u.KeepAlive).
		SetConnectTimeout(u.ConnectTimeout).
		SetProtocolVersion(4).
		// With a persistent session the broker may deliver before the
		// SUBSCRIBE is answered; every delivery takes this one path.
		SetDefaultPublishHandler(u.handle).
		SetConnectionAttemptHandler(func(broker *url.URL, tc *tls.Config) *tls.Config {
			u.tried.Store(&url.URL{Scheme: broker.Scheme, Host: broker.Host}) // no userinfo
			return tc
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case u.lost <- err:
			default:
			}
		})
	if u.TLSConfig != nil {
		opts.SetTLSConfig(u.TLSConfig)
	}
	for _, b := range u.Brokers {
		opts.AddBroker(b)
	}
	u.client = paho.NewClient(opts)

	u.ctx, u.cancel = context.WithCancel(ctx)
	u.wg.Add(2)
	go u.run()
	go u.sendAcks()
	return nil
}

// run connects, subscribes and waits for the connection to end, then
// waits for the acknowledgements of the lost connection to settle and
// connects again after a backoff, until Close.
func (u *Upstream) run() {
	defer u.wg.Done()
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(u.MaxReconnectInterval), backoff.WithMaxElapsedTime(0))
	for u.ctx.Err() == nil {
		started := time.Now()
		err := u.session()
		if u.ctx.Err() != nil {
			return
		}
		u.settleAcks(u.ctx)
		u.setState(false, err)
		u.Logger.Warn("upstream broker connection ended; reconnecting", "err", err)
		if time.Since(started) > u.MaxReconnectInterval {
			b.Reset() // a connection that lasted starts the backoff afresh
		}
		select {
		case <-time.After(b.NextBackOff()):
		case <-u.ctx.Done():
			return
		}
	}
}

// session makes one connection and subscription and returns when it ends.
func (u *Upstream) session() error {
	select {
	case <-u.lost: // a stale loss of the previous connection
	default:
	}
	select {
	case <-u.refused:
	default:
	}
	// paho bounds each broker's attempt by ConnectTimeout itself.
	tok := u.client.Connect()
	if err := u.wait(tok, time.Duration(len(u.Brokers)+1)*u.ConnectTimeout); err != nil {
		u.metrics.connects.WithLabelValues("failed").Inc()
		return fmt.Errorf("connect: %w", err)
	}
	filters := make(map[string]byte, len(u.Topics))
	for _, t := range u.Topics {
		filters[t] = 1
	}
	sub := u.client.SubscribeMultiple(filters, nil)
	if err := u.wait(sub, u.ConnectTimeout); err != nil {
		u.client.Disconnect(0)
		u.metrics.connects.WithLabelValues("failed").Inc()
		return fmt.Errorf("subscribe: %w", err)
	}
	for topic, code := range sub.(*paho.SubscribeToken).Result() {
		if code > 2 { // 0x80: the broker refused the filter (its ACL)
			u.client.Disconnect(0)
			u.metrics.connects.WithLabelValues("failed").Inc()
			return fmt.Errorf("subscribe: the broker refused %q (code %#x): check its ACL for user %q", topic, code, u.Username)
		}
	}
	u.metrics.connects.WithLabelValues("ok").Inc()
	u.setState(true, nil)
	u.Logger.Info("upstream broker connected", "broker", u.state.Load().Broker, "client_id", u.ClientID, "topics", u.Topics)
	select {
	case err := <-u.lost:
		u.metrics.disconnects.Inc()
		return fmt.Errorf("connection lost: %w", err)
	case <-u.refused:
		// The broker delivers again only on a new connection; the
		// deliveries before are acknowledged first.
		u.settleAcks(u.ctx)
		u.client.Disconnect(250)
		return errors.New("a delivery was not stored; reconnecting so that the broker sends it again")
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

// wait waits for tok within timeout, or until Close.
func (u *Upstream) wait(tok paho.Token, timeout time.Duration) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-time.After(timeout):
		return fmt.Errorf("no answer within %s", timeout)
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
}

// settleAcks waits until no delivery is queued or being acknowledged, or
// ctx ends.
func (u *Upstream) settleAcks(ctx context.Context) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for u.acking.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// setState records the connection's state.
func (u *Upstream) setState(connected bool, err error) {
	st := &UpstreamState{Connected: connected, Since: time.Now()}
	if b := u.tried.Load(); b != nil {
		st.Broker = b.String()
	}
	if err != nil {
		st.Error = err.Error()
	}
	if connected {
		u.metrics.connected.Set(1)
	} else {
		u.metrics.connected.Set(0)
	}
	u.state.Store(st)
}

// handle takes one delivery, on paho's dispatch goroutine.
func (u *Upstream) handle(_ paho.Client, m paho.Message) {
	u.metrics.received.Inc()
	if m.Duplicate() {
		u.metrics.redelivered.Inc()
	}
	if u.closing.Load() {
		// Not acknowledged: the broker delivers it again to this
		// session's next connection.
		u.metrics.messages.WithLabelValues("closing").Inc()
		return
	}
	id, kind, ok := splitDeviceTopic(m.Topic())
	if ok && kind == "status" && u.Status != nil {
		u.status(id, m.Payload())
		u.ack(upstreamAck{msg: m})
		return
	}
	if !ok || kind != "telemetry" {
		u.metrics.messages.WithLabelValues("not_telemetry").Inc()
		u.ack(upstreamAck{msg: m})
		return
	}
	stored, err := u.Ingest(u.ctx, id, m.Topic(), m.Payload(), m.Duplicate())
	if errors.Is(err, ingest.ErrNotStored) {
		u.notStored()
		return
	}
	u.ack(upstreamAck{msg: m, stored: stored, err: err})
}

// status reports what a registered device published to its status topic.
func (u *Upstream) status(id string, payload []byte) {
	online, ok := reportedStatus(payload)
	if _, known := u.Lookup(id); !ok || !known {
		u.metrics.messages.WithLabelValues("status_ignored").Inc()
		return
	}
	u.metrics.messages.WithLabelValues("status").Inc()
	u.Status(devices.StatusChange{Device: id, Online: online, At: time.Now(), Reason: devices.StatusReported})
}

// ack acknowledges a delivery: at once, or in durable mode through the
// queue, in order, once stored.
func (u *Upstream) ack(a upstreamAck) {
	if !u.DurableAck || a.msg.Qos() == 0 {
		u.count(a.err)
		u.acked(a.msg)
		return
	}
	u.acking.Add(1)
	select {
	case u.pending <- a:
	case <-u.ctx.Done():
		u.acking.Add(-1)
	}
}

// sendAcks acknowledges the queued deliveries in order, each once its
// readings are written, until Close.
func (u *Upstream) sendAcks() {
	defer u.wg.Done()
	for {
		select {
		case a := <-u.pending:
			u.settle(a)
		case <-u.ctx.Done():
			return
		}
	}
}

// settle acknowledges a once stored, or refuses it. Once Close's grace
// has passed it acknowledges nothing more: the next start is delivered
// again what was not acknowledged by then, and finds stored what was.
func (u *Upstream) settle(a upstreamAck) {
	defer u.acking.Add(-1)
	if a.stored != nil {
		if err := a.stored.Wait(u.ctx); err != nil && u.ctx.Err() == nil {
			u.notStored()
			return
		}
	}
	if u.ctx.Err() != nil {
		u.metrics.messages.WithLabelValues("closing").Inc()
		return
	}
	u.count(a.err)
	u.acked(a.msg)
}

// acked sends the PUBACK; paho drops it when the connection it came on is
// gone, and the broker then delivers the message again.
func (u *Upstream) acked(m paho.Message) {
	m.Ack()
	if m.Qos() > 0 {
		u.metrics.acked.Inc()
	}
}

// notStored counts a delivery ingest could not store, leaves it
// unacknowledged and asks for a new connection, on which the broker
// delivers it again.
func (u *Upstream) notStored() {
	u.metrics.messages.WithLabelValues("not_stored").Inc()
	select {
	case u.refused <- struct{}{}:
	default:
	}
}

// count counts a telemetry delivery taken by ingest, err its rejection.
func (u *Upstream) count(err error) {
	result := "ingested"
	if err != nil {
		result = "rejected"
	}
	u.metrics.messages.WithLabelValues(result).Inc()
}

// Ready reports an error unless the node is connected and subscribed.
func (u *Upstream) Ready(context.Context) error {
	st := u.State()
	if st.Connected {
		return nil
	}
	return fmt.Errorf("not connected to the upstream broker since %s: %s", st.Since.UTC().Format(time.RFC3339), st.Error)
}

// State returns the connection's state.
func (u *Upstream) State() UpstreamState { return *u.state.Load() }

// Close stops taking deliveries, waits up to ShutdownGrace for the
// acknowledgements of what was taken, and disconnects; the session stays
// on the broker, which delivers what was not acknowledged when the node
// connects again. It is safe to call twice.
func (u *Upstream) Close() error {
	u.closeOnce.Do(func() {
		if u.client == nil {
			return
		}
		u.closing.Store(true)
		grace, cancel := context.WithTimeout(u.ctx, u.ShutdownGrace)
		u.settleAcks(grace)
		cancel()
		u.cancel()
		u.wg.Wait()
		u.client.Disconnect(250)
		u.metrics.connected.Set(0)
	})
	return nil
}
