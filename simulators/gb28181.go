package simulators

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"golang.org/x/sync/errgroup"

	"github.com/gridwatch/gridwatch/ingest/gb28181"
)

// GBDevice is a simulated GB/T 28181 device: an IPC or NVR that registers
// with a registrar over SIP (UDP or TCP) with digest authentication, keeps
// alive every KeepaliveInterval, answers Catalog and DeviceInfo queries
// with its Channels, sends alarms, and can fall silent (Silence) like a
// camera whose power or link is cut. Over UDP it also answers an INVITE
// of any of its channels (GB/T 28181 live play): 200 OK with an SDP
// answer, then the farm's clip of its Fault as MPEG-PS over RTP to the
// offered port, until BYE. It uses sipgo, like the registrar,
// but only its public client and server API: what goes over the wire is
// ordinary SIP that foreign registrars read too.
type GBDevice struct {
	// ID is the device's 20-digit id, its SIP user. Required.
	ID string
	// Password is its SIP digest password.
	Password string
	// Server is the registrar's host:port. Required.
	Server string
	// ServerID and Realm are the registrar's 20-digit id and SIP domain.
	// They default to gb28181.DefaultID and gb28181.DefaultRealm.
	ServerID, Realm string
	// Transport is "udp" (the default) or "tcp".
	Transport string
	// KeepaliveInterval is the keepalive period. It defaults to 60 s.
	KeepaliveInterval time.Duration
	// Expires is the registration time asked for. It defaults to 1 hour.
	Expires time.Duration
	// Channels are the catalog's channel ids, all reported ON.
	Channels []string
	// Fault is the picture an invited stream shows, as a farm camera's:
	// FaultNone, a picture fault (PictureFaults) but FaultMoved,
	// FaultStall or FaultLowFPS; FaultOffline never answers an INVITE;
	// GBFaults misbehave in the answer or the stream. It defaults to none.
	Fault CameraFault
	// AnswerDelay is how late the device answers an INVITE, like one
	// slower than the registrar waits.
	AnswerDelay time.Duration
	// Codec of the stream: CodecH264 (the default) or CodecH265.
	Codec string
	// Manufacturer and Model answer DeviceInfo.
	Manufacturer, Model string
	// LocalHost is the loopback address a UDP device sends from, such as
	// 127.0.0.2 for a device on another host. It defaults to 127.0.0.1.
	LocalHost string
	// Logger defaults to discarding.
	Logger *slog.Logger

	ua        *sipgo.UserAgent
	dialogs   *sipgo.DialogServerCache
	video     Camera
	clip      *clip
	ctx       context.Context
	streamMu  sync.Mutex // orders a stream's start after Close
	invites   atomic.Int64
	streaming atomic.Int64
	byes      atomic.Int64 // BYEs of answered INVITEs received
	client    *sipgo.Client
	conn      net.PacketConn
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	silent    atomic.Bool
	closed    atomic.Bool
	sn        atomic.Uint32
	keepalive atomic.Int64 // keepalives accepted
	queries   atomic.Int64 // queries answered
	alarmAcks atomic.Int64 // alarm responses received
	closeOnce sync.Once
}

// ErrRegisterRefused means the registrar refused a simulated device's
// REGISTER; the error names the status code.
var ErrRegisterRefused = errors.New("registration refused")

// Start registers the device, then keeps it alive until Close or Silence.
// A refused registration is an error wrapping ErrRegisterRefused.
func (d *GBDevice) Start(ctx context.Context) (err error) {
	if d.ServerID == "" {
		d.ServerID = gb28181.DefaultID
	}
	if d.Realm == "" {
		d.Realm = gb28181.DefaultRealm
	}
	if d.Transport == "" {
		d.Transport = "udp"
	}
	if d.KeepaliveInterval <= 0 {
		d.KeepaliveInterval = gb28181.DefaultKeepaliveInterval
	}
	if d.Expires <= 0 {
		d.Expires = time.Hour
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.LocalHost == "" {
		d.LocalHost = "127.0.0.1"
	}
	if d.Transport != "udp" && d.Transport != "tcp" {
		return fmt.Errorf("%w: transport %q", ErrBadCamera, d.Transport)
	}
	if err := d.gbVideo(); err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	if d.ua, err = sipgo.NewUA(sipgo.WithUserAgent(d.ID), sipgo.WithUserAgentHostname(d.LocalHost),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet))); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	srv, err := sipgo.NewServer(d.ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		return err
	}
	srv.OnMessage(d.onMessage)
	if d.Transport == "udp" { // streams are offered to UDP devices only
		srv.OnInvite(d.onInvite)
		srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = d.dialogs.ReadAck(req, tx) })
		srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			if err := d.dialogs.ReadBye(req, tx); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
				return
			}
			d.byes.Add(1)
		})
	}
	opts := []sipgo.ClientOption{sipgo.WithClientLogger(quiet)}
	ctx, d.cancel = context.WithCancel(ctx)
	d.ctx = ctx
	if d.Transport == "udp" {
		// One socket for both directions, as a camera has: the registrar
		// sends its queries to the address the device registered from.
		if d.conn, err = net.ListenPacket("udp", net.JoinHostPort(d.LocalHost, "0")); err != nil {
			return err
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			_ = srv.ServeUDP(d.conn)
		}()
		local := d.conn.LocalAddr().String()
		opts = append(opts, sipgo.WithClientConnectionAddr(local))
		// The client sends from the listener once sipgo has pooled it;
		// before that it would open a socket of its own on the same port.
		for {
			if c, _ := d.ua.TransportLayer().GetConnection("udp", local); c != nil {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}
	if d.client, err = sipgo.NewClient(d.ua, opts...); err != nil {
		return err
	}
	if d.conn != nil {
		d.dialogs = newGBDialogs(d.client, d.ID, d.conn.LocalAddr().String())
	}
	if err := d.register(ctx, d.Expires); err != nil {
		return err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.keepAlive(ctx)
	}()
	return nil
}

// request returns a request of method to the registrar, from the device.
func (d *GBDevice) request(method sip.RequestMethod) *sip.Request {
	host, portText, _ := net.SplitHostPort(d.Server)
	port, _ := strconv.Atoi(portText)
	req := sip.NewRequest(method, sip.Uri{Scheme: "sip", User: d.ServerID, Host: host, Port: port})
	req.SetTransport(strings.ToUpper(d.Transport))
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: d.ID, Host: d.Realm}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: d.ID, Host: d.Realm}, Params: sip.NewParams()}
	if method != sip.REGISTER {
		to.Address.User = d.ServerID
	}
	req.AppendHeader(to)
	return req
}

// register sends REGISTER, answering the digest challenge.
func (d *GBDevice) register(ctx context.Context, expires time.Duration) error {
	req := d.request(sip.REGISTER)
	local := d.LocalHost
	if d.conn != nil {
		local = d.conn.LocalAddr().String()
	}
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: d.ID, Host: local}})
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	// A SIP client transaction over UDP may take Timer F (64×T1, 32 s),
	// retransmissions included: a request or an answer lost when 1,000
	// devices register on a loaded box is sent again within it. A register
	// is two transactions (the digest challenge).
	ctx, cancel := context.WithTimeout(ctx, 2*sip.Timer_F)
	defer cancel()
	res, err := gb28181.Answered(d.client.Do(ctx, req))
	if err != nil {
		return fmt.Errorf("device %s: register: %w", d.ID, err)
	}
	if res.StatusCode == sip.StatusUnauthorized {
		if res, err = gb28181.Answered(d.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: d.ID, Password: d.Password})); err != nil {
			return fmt.Errorf("device %s: register: %w", d.ID, err)
		}
	}
	if res.StatusCode != sip.StatusOK {
		return fmt.Errorf("device %s: %w: %d %s", d.ID, ErrRegisterRefused, res.StatusCode, res.Reason)
	}
	return nil
}

// send sends a MANSCDP message to the registrar and waits for its answer.
func (d *GBDevice) send(ctx context.Context, m gb28181.Message) error {
	body, err := m.Encode()
	if err != nil {
		return err
	}
	req := d.request(sip.MESSAGE)
	req.AppendHeader(sip.NewHeader("Content-Type", gb28181.ContentType))
	req.SetBody(body)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := gb28181.Answered(d.client.Do(ctx, req))
	if err != nil {
		return fmt.Errorf("device %s: %s: %w", d.ID, m.CmdType, err)
	}
	if res.StatusCode != sip.StatusOK {
		return fmt.Errorf("device %s: %s: %d %s", d.ID, m.CmdType, res.StatusCode, res.Reason)
	}
	return nil
}

// notify returns a Notify of cmd from the device.
func (d *GBDevice) notify(cmd string) gb28181.Message {
	m := gb28181.Query(cmd, d.sn.Add(1), d.ID)
	m.XMLName.Local = "Notify"
	return m
}

// keepAlive sends a Keepalive every KeepaliveInterval while not silent.
func (d *GBDevice) keepAlive(ctx context.Context) {
	t := time.NewTicker(d.KeepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.silent.Load() {
			continue
		}
		m := d.notify(gb28181.CmdKeepalive)
		m.Status = "OK"
		if err := d.send(ctx, m); err != nil {
			if ctx.Err() == nil {
				d.Logger.Warn("simulated GB device keepalive failed", "device", d.ID, "err", err)
			}
			continue
		}
		d.keepalive.Add(1)
	}
}

// onMessage answers the registrar's queries: 200 at once, then the
// Response in a MESSAGE of its own, as GB/T 28181 has it.
func (d *GBDevice) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	if d.silent.Load() {
		return // a silent device answers nothing
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	q, err := gb28181.ParseMessage(req.Body())
	if err == nil && q.XMLName.Local == "Response" && q.CmdType == gb28181.CmdAlarm && q.Result == "OK" {
		d.alarmAcks.Add(1)
		return
	}
	if err != nil || q.XMLName.Local != "Query" {
		return
	}
	m := gb28181.Query(q.CmdType, q.SN, d.ID)
	m.XMLName.Local = "Response"
	switch q.CmdType {
	case gb28181.CmdDeviceInfo:
		m.DeviceName, m.Result, m.Manufacturer, m.Model, m.Firmware = d.ID, "OK", d.Manufacturer, d.Model, "sim-1.0"
		m.Channel = strconv.Itoa(len(d.Channels))
	case gb28181.CmdCatalog:
		m.SumNum = len(d.Channels)
		list := &gb28181.CatalogList{Num: len(d.Channels)}
		for i, ch := range d.Channels {
			list.Items = append(list.Items, gb28181.CatalogItem{DeviceID: ch, Name: fmt.Sprintf("通道 %d", i+1), Manufacturer: d.Manufacturer,
				Model: d.Model, CivilCode: d.Realm, ParentID: d.ID, Status: "ON"})
		}
		m.DeviceList = list
	default:
		return
	}
	// The handler runs on a goroutine of sipgo's own, which is done with
	// the query's transaction: the answer may wait for its 200 here.
	if err := d.send(context.Background(), m); err != nil {
		if !d.closed.Load() {
			d.Logger.Warn("simulated GB device response failed", "device", d.ID, "cmd", m.CmdType, "err", err)
		}
		return
	}
	d.queries.Add(1)
}

// Alarm sends an alarm notification about the device itself.
func (d *GBDevice) Alarm(ctx context.Context, priority, method, typ int, description string) error {
	m := d.notify(gb28181.CmdAlarm)
	m.AlarmPriority, m.AlarmMethod = strconv.Itoa(priority), strconv.Itoa(method)
	m.AlarmTime = time.Now().Format("2006-01-02T15:04:05")
	m.AlarmDescription = description
	m.AlarmInfo = &gb28181.AlarmInfo{AlarmType: strconv.Itoa(typ)}
	return d.send(ctx, m)
}

// NotifyChannel reports a channel of the catalog on or off, as a device
// notifies a catalog change (Notify Catalog with one item).
func (d *GBDevice) NotifyChannel(ctx context.Context, channel string, on bool) error {
	m := d.notify(gb28181.CmdCatalog)
	status := "OFF"
	if on {
		status = "ON"
	}
	m.SumNum = 1
	m.DeviceList = &gb28181.CatalogList{Num: 1, Items: []gb28181.CatalogItem{{DeviceID: channel, ParentID: d.ID, Status: status}}}
	return d.send(ctx, m)
}

// Unregister sends REGISTER with Expires: 0.
func (d *GBDevice) Unregister(ctx context.Context) error { return d.register(ctx, 0) }

// Silence makes the device fall silent: no keepalives, no answers.
func (d *GBDevice) Silence() { d.silent.Store(true) }

// Keepalives returns how many keepalives the registrar accepted.
func (d *GBDevice) Keepalives() int64 { return d.keepalive.Load() }

// AlarmsAcknowledged returns how many alarm responses the registrar sent.
func (d *GBDevice) AlarmsAcknowledged() int64 { return d.alarmAcks.Load() }

// QueriesAnswered returns how many queries the device answered.
func (d *GBDevice) QueriesAnswered() int64 { return d.queries.Load() }

// Close stops the device without unregistering. It is safe to call twice.
func (d *GBDevice) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.streamMu.Lock()
		d.closed.Store(true)
		d.streamMu.Unlock()
		if d.cancel != nil {
			d.cancel()
		}
		if d.conn != nil {
			err = d.conn.Close()
		}
		if d.ua != nil {
			err = errors.Join(err, d.ua.Close())
		}
		d.wg.Wait()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	})
	return err
}

// GBFleet starts many simulated GB/T 28181 devices.
type GBFleet struct {
	// Devices are the devices to run. Required.
	Devices []*GBDevice
	// Concurrency is how many register at once. It defaults to 50.
	Concurrency int
}

// Start registers every device, Concurrency at a time; the first failure
// stops it and is returned (the devices started keep running until Close).
func (f *GBFleet) Start(ctx context.Context) error {
	if len(f.Devices) == 0 {
		return ErrNoDevices
	}
	limit := f.Concurrency
	if limit <= 0 {
		limit = 50
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for _, d := range f.Devices {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			return d.Start(ctx)
		})
	}
	return g.Wait()
}

// Close stops every device.
func (f *GBFleet) Close() error {
	var err error
	for _, d := range f.Devices {
		err = errors.Join(err, d.Close())
	}
	return err
}

// GBDeviceID returns the n-th simulated device id of a civil code (the
// realm's 10 digits): type 132 (network camera), as in 34020000001320000001.
func GBDeviceID(realm string, n int) string {
	return fmt.Sprintf("%s132%07d", realm, n)
}
