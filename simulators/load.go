package simulators

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/sync/errgroup"

	"github.com/gridwatch/gridwatch/devices"
)

// DefaultLoadAckTimeout is how long a Load waits for a PUBACK by default.
const DefaultLoadAckTimeout = 5 * time.Minute

// Load is a load generator for benchmarks. Like Fleet it logs in as the
// devices (username and client id the device id, password its secret) and
// publishes their models' telemetry on devices/{id}/telemetry, but it
// speaks MQTT 3.1.1 itself over plain TCP: packets are encoded by mochi's
// packets package into a buffered writer and acknowledgements are read by
// one goroutine per connection. paho gives each publish a token, a channel
// and a goroutine hand-off, which makes Fleet the bottleneck at full speed;
// Load is cheap enough to drive a bare broker well past what a pipeline
// behind it stores.
//
// Every connection connects first; then all publish at once, as fast as
// the broker reads. At QoS 0 the last message of each connection is sent
// at QoS 1 and its PUBACK awaited: a broker handles a connection's packets
// in order, so that acknowledgement is a fence behind which every earlier
// message was received, and the run's end is not lost in socket buffers.
type Load struct {
	// Addr is the broker's host:port.
	Addr string
	// Devices are the devices to log in as, one connection each.
	Devices []devices.Device
	// QoS is the publish QoS, 0 or 1.
	QoS byte
	// Messages is the total number of messages, spread evenly over the
	// devices; a device that cannot connect sends none of its share.
	Messages int
	// InFlight bounds each connection's QoS 1 messages not yet
	// acknowledged. It defaults to 64.
	InFlight int
	// ConnectConcurrency bounds the connection attempts in progress. It
	// defaults to DefaultConnectConcurrency.
	ConnectConcurrency int
	// ConnectTimeout bounds one connection attempt (dial and CONNACK); it
	// defaults to DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// AckTimeout bounds the wait for a PUBACK; it defaults to
	// DefaultLoadAckTimeout. At full speed a connection's socket buffers
	// hold thousands of messages the broker has not read yet, and the
	// fence is acknowledged only once it has read them all.
	AckTimeout time.Duration
	// LocalAddrs, when set, are the source addresses the connections are
	// spread over, round robin: on loopback, 127.0.0.x addresses lift the
	// limit of about 64k connections from one address to one port.
	LocalAddrs []netip.Addr
	// Hold keeps the connections open this long after publishing, or until
	// ctx ends, as idle devices (the connection-scale benchmark measures
	// the broker holding them).
	Hold time.Duration
	// Models are the value models of the devices; Sources, when set,
	// replaces them.
	Models  Models
	Sources func(devices.Device) (Source, error)
	// Progress receives a live progress line every second and a summary at
	// the end; nil writes nothing.
	Progress io.Writer
}

// LoadStats says what a Load run did: Stats, with Elapsed from the moment
// every connection was up to the last acknowledgement, and the connect
// phase.
type LoadStats struct {
	Stats
	// ConnectElapsed is how long connecting every device took.
	ConnectElapsed time.Duration `json:"connect_ns"`
	// FirstError is why the first connection that failed did.
	FirstError string `json:"first_error,omitempty"`
}

// ConnectsPerSecond is the rate at which the devices connected.
func (s LoadStats) ConnectsPerSecond() float64 { return perSecond(s.Connected, s.ConnectElapsed) }

// String is the summary of a run.
func (s LoadStats) String() string {
	return fmt.Sprintf("%s; connected in %s (%.0f/s)", s.Stats, s.ConnectElapsed.Round(time.Millisecond), s.ConnectsPerSecond())
}

// loadConn is one device's connection.
type loadConn struct {
	conn   net.Conn
	w      *bufio.Writer
	src    Source
	topic  string
	quota  int
	slots  chan struct{} // one per QoS 1 message awaiting its PUBACK
	counts []int32       // readings of the message in flight under each packet id
	acked  chan struct{} // closed by the reader when it stops
	err    atomic.Pointer[error]
}

// Run connects every device, then publishes Messages as fast as the broker
// takes them, waits for the acknowledgements, holds the connections for Hold
// and disconnects. Devices that cannot connect are counted and left out; Run
// fails when the settings are wrong or no device connected.
func (l *Load) Run(ctx context.Context) (LoadStats, error) {
	cfg, err := l.withDefaults()
	if err != nil {
		return LoadStats{}, err
	}
	r := &loadRun{Load: cfg}
	r.stats.Devices = len(cfg.Devices)
	p := newProgress(cfg.Progress)
	pctx, stopProgress := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.run(pctx, r.progressLine())
	}()
	stats, err := r.run(ctx)
	stopProgress()
	wg.Wait()
	if err == nil {
		p.final(stats.String())
	}
	return stats, err
}

func (l Load) withDefaults() (Load, error) {
	switch {
	case len(l.Devices) == 0:
		return l, fmt.Errorf("load: %w", ErrNoDevices)
	case l.QoS > 1:
		return l, fmt.Errorf("load: qos %d: %w", l.QoS, ErrQoS)
	case l.Messages < 0 || l.Hold < 0:
		return l, errors.New("load: messages and hold must not be negative")
	case l.Addr == "":
		return l, errors.New("load: a broker address is required")
	}
	if l.InFlight <= 0 {
		l.InFlight = 64
	}
	l.InFlight = min(l.InFlight, 32767) // packet ids are 16 bits; see send
	if l.ConnectConcurrency <= 0 {
		l.ConnectConcurrency = DefaultConnectConcurrency
	}
	if l.ConnectTimeout <= 0 {
		l.ConnectTimeout = DefaultConnectTimeout
	}
	if l.AckTimeout <= 0 {
		l.AckTimeout = DefaultLoadAckTimeout
	}
	if l.Sources == nil {
		models := l.Models
		l.Sources = func(d devices.Device) (Source, error) { return models.New(d) }
	}
	return l, nil
}

type loadRun struct {
	Load
	connected, connectErrors, lost    atomic.Int64
	messages, readings, bytes, errors atomic.Int64
	stats                             LoadStats
}

func (r *loadRun) run(ctx context.Context) (LoadStats, error) {
	start := time.Now()
	conns, firstErr := r.connectAll(ctx)
	r.stats.ConnectElapsed = time.Since(start)
	defer func() {
		for _, c := range conns {
			c.conn.Close()
			<-c.acked
		}
	}()
	if len(conns) == 0 {
		return r.snapshot(), fmt.Errorf("load: %w: %w", ErrNoConnection, firstErr)
	}
	start = time.Now()
	var g sync.WaitGroup
	for _, c := range conns {
		g.Add(1)
		go func() {
			defer g.Done()
			if err := r.publish(ctx, c); err != nil {
				r.errors.Add(1)
				c.err.CompareAndSwap(nil, &err)
			}
		}()
	}
	g.Wait()
	r.stats.Elapsed = time.Since(start)
	for _, c := range conns {
		if err := c.err.Load(); err != nil {
			r.stats.FirstError = fmt.Sprintf("%s: %v", c.topic, *err)
			break
		}
	}
	if r.Hold > 0 {
		t := time.NewTimer(r.Hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	for _, c := range conns {
		if c.err.Load() == nil {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}}
			var b bytes.Buffer
			if pk.DisconnectEncode(&b) == nil {
				c.conn.SetWriteDeadline(time.Now().Add(time.Second))
				c.conn.Write(b.Bytes())
			}
		}
	}
	return r.snapshot(), nil
}

func (r *loadRun) snapshot() LoadStats {
	s := r.stats
	s.Connected, s.ConnectErrors, s.ConnectionsLost = r.connected.Load(), r.connectErrors.Load(), r.lost.Load()
	s.Messages, s.Readings, s.Bytes, s.Errors = r.messages.Load(), r.readings.Load(), r.bytes.Load(), r.errors.Load()
	return s
}

func (r *loadRun) progressLine() func(time.Duration) string {
	var prev int64
	return func(dt time.Duration) string {
		msgs := r.messages.Load()
		line := fmt.Sprintf("connected %d/%d  sent %d msg  %.0f msg/s  readings %d  errors %d",
			r.connected.Load(), len(r.Devices), msgs, perSecond(msgs-prev, dt), r.readings.Load(), r.errors.Load())
		prev = msgs
		return line
	}
}

// connectAll connects the devices, ConnectConcurrency at a time, and returns
// those that connected with the first error of those that did not.
func (r *loadRun) connectAll(ctx context.Context) ([]*loadConn, error) {
	var (
		mu       sync.Mutex
		conns    []*loadConn
		firstErr error
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.ConnectConcurrency)
	per, extra := r.Messages/len(r.Devices), r.Messages%len(r.Devices)
	for i, d := range r.Devices {
		quota := per
		if i < extra {
			quota++
		}
		g.Go(func() error {
			c, err := r.connect(gctx, i, d, quota)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.connectErrors.Add(1)
				if firstErr == nil {
					firstErr = err
				}
				return nil
			}
			r.connected.Add(1)
			conns = append(conns, c)
			return nil
		})
	}
	g.Wait()
	return conns, firstErr
}

func (r *loadRun) connect(ctx context.Context, i int, d devices.Device, quota int) (*loadConn, error) {
	src, err := r.Sources(d)
	if err != nil {
		return nil, fmt.Errorf("load: %s: %w", d.ID, err)
	}
	dialer := net.Dialer{Timeout: r.ConnectTimeout}
	if len(r.LocalAddrs) > 0 {
		dialer.LocalAddr = &net.TCPAddr{IP: r.LocalAddrs[i%len(r.LocalAddrs)].AsSlice()}
	}
	conn, err := dialer.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return nil, fmt.Errorf("load: %s: %w", d.ID, err)
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			ClientIdentifier: d.ID,
			Clean:            true,
			Keepalive:        60,
			UsernameFlag:     true,
			Username:         []byte(d.ID),
			PasswordFlag:     d.Secret != "",
			Password:         []byte(d.Secret),
		},
	}
	var b bytes.Buffer
	if err := pk.ConnectEncode(&b); err != nil {
		conn.Close()
		return nil, fmt.Errorf("load: %s: encode connect: %w", d.ID, err)
	}
	conn.SetDeadline(time.Now().Add(r.ConnectTimeout))
	rd := bufio.NewReader(conn)
	if _, err := conn.Write(b.Bytes()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("load: %s: %w", d.ID, err)
	}
	typ, body, err := readPacket(rd)
	switch {
	case err != nil:
		err = fmt.Errorf("load: %s: no connack: %w", d.ID, err)
	case typ != packets.Connack || len(body) < 2:
		err = fmt.Errorf("load: %s: got packet type %d, want connack", d.ID, typ)
	case body[1] != 0:
		err = fmt.Errorf("load: %s: connection refused, return code %d", d.ID, body[1])
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	c := &loadConn{
		conn:   conn,
		w:      bufio.NewWriterSize(conn, 16<<10),
		src:    src,
		topic:  "devices/" + d.ID + "/telemetry",
		quota:  quota,
		slots:  make(chan struct{}, r.InFlight),
		counts: make([]int32, 2*r.InFlight),
		acked:  make(chan struct{}),
	}
	go r.readAcks(c, rd)
	return c, nil
}

// readAcks reads c's PUBACKs until the connection ends, freeing a slot and
// counting the message's readings for each.
func (r *loadRun) readAcks(c *loadConn, rd *bufio.Reader) {
	defer close(c.acked)
	for {
		typ, body, err := readPacket(rd)
		if err != nil {
			return
		}
		if typ != packets.Puback || len(body) < 2 {
			continue
		}
		id := int(body[0])<<8 | int(body[1])
		if id == 0 || id > len(c.counts) {
			continue
		}
		r.messages.Add(1)
		r.readings.Add(int64(c.counts[id-1]))
		<-c.slots
	}
}

// publish sends c's quota and waits until the QoS 1 messages among them
// (at QoS 0: the last one, the fence) are acknowledged.
func (r *loadRun) publish(ctx context.Context, c *loadConn) error {
	var (
		keys    = make(map[string][]byte)
		payload []byte
		b       bytes.Buffer
		lastTS  int64
		pk      = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: c.topic, ProtocolVersion: 4}
		timer   = time.NewTimer(r.AckTimeout)
	)
	defer timer.Stop()
	// wait takes a slot, flushing first when none is free: the broker must
	// see what is buffered to acknowledge it.
	wait := func() error {
		select {
		case c.slots <- struct{}{}:
			return nil
		default:
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		timer.Reset(r.AckTimeout)
		select {
		case c.slots <- struct{}{}:
			return nil
		case <-c.acked:
			return errors.New("connection closed")
		case <-timer.C:
			return errors.New("no puback in time")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i := 0; i < c.quota && ctx.Err() == nil; i++ {
		ts := max(time.Now().UnixMilli(), lastTS+1)
		lastTS = ts
		rd := c.src.Next(time.UnixMilli(ts))
		payload = appendPayload(payload[:0], ts, rd.Values, keys)
		qos := r.QoS
		if i == c.quota-1 {
			qos = 1 // the fence
		}
		pk.FixedHeader.Qos, pk.PacketID, pk.Payload = qos, 0, payload
		if qos == 1 {
			if err := wait(); err != nil {
				r.lost.Add(1)
				return err
			}
			// Ids cycle over twice the window, so an id is not reused
			// while its message may still be unacknowledged.
			pk.PacketID = uint16(i%len(c.counts)) + 1
			c.counts[pk.PacketID-1] = int32(len(rd.Values))
		}
		b.Reset()
		if err := pk.PublishEncode(&b); err != nil {
			return err
		}
		if _, err := c.w.Write(b.Bytes()); err != nil {
			r.lost.Add(1)
			return err
		}
		r.bytes.Add(int64(len(payload)))
		if qos == 0 {
			r.messages.Add(1)
			r.readings.Add(int64(len(rd.Values)))
		}
	}
	if err := c.w.Flush(); err != nil {
		r.lost.Add(1)
		return err
	}
	// Every slot taken back means every PUBACK arrived.
	timer.Reset(r.AckTimeout)
	for range r.InFlight {
		select {
		case c.slots <- struct{}{}:
		case <-c.acked:
			return errors.New("connection closed before every puback")
		case <-timer.C:
			return errors.New("no puback in time")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// readPacket reads one MQTT packet: its type and its body.
func readPacket(rd *bufio.Reader) (byte, []byte, error) {
	hb, err := rd.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, _, err := packets.DecodeLength(rd)
	if err != nil {
		return 0, nil, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return 0, nil, err
	}
	return hb >> 4, body, nil
}
