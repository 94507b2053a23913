package gb28181

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Answered returns what one of sipgo's Client.Do or DoDigestAuth
// returned, with ErrTransactionEnded in place of neither an answer nor an
// error: sipgo returns that when the transaction is terminated from
// elsewhere (its client closing) before it records why.
func Answered(res *sip.Response, err error) (*sip.Response, error) {
	if res == nil && err == nil {
		return nil, ErrTransactionEnded
	}
	return res, err
}

// queryAfterRegister asks a newly registered device for its DeviceInfo and
// Catalog, in the background; the answers arrive as MESSAGEs.
func (r *Registrar) queryAfterRegister(id string) {
	r.background(func() {
		for _, cmd := range []string{CmdDeviceInfo, CmdCatalog} {
			if err := r.Query(r.ctx, id, cmd); err != nil {
				r.Logger.Info("gb28181 query not answered", "device", id, "cmd", cmd, "err", err)
			}
		}
	})
}

// acknowledgeAlarm answers an alarm notification with a Response (Result
// OK) in the background, as GB/T 28181 has the upper platform do: devices
// repeat an alarm that gets none.
func (r *Registrar) acknowledgeAlarm(id string, alarm Message) {
	m := Message{XMLName: xml.Name{Local: "Response"}, CmdType: CmdAlarm, SN: alarm.SN, DeviceID: alarm.DeviceID, Result: "OK"}
	r.background(func() {
		if err := r.send(r.ctx, id, m); err != nil {
			r.Logger.Info("gb28181 alarm response not taken", "device", id, "err", err)
		}
	})
}

// background runs f on a goroutine Close waits for, unless closing.
func (r *Registrar) background(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// Query sends a Query of cmd (CmdCatalog, CmdDeviceInfo) to a registered
// device, over the transport and to the address it registered from, and
// waits for the device to accept it (200). Its answer comes later, as a
// MESSAGE that the registrar reads.
func (r *Registrar) Query(ctx context.Context, id, cmd string) error {
	return r.send(ctx, id, Query(cmd, r.sn.Add(1), id))
}

// send sends m to a registered device and waits for its 200.
func (r *Registrar) send(ctx context.Context, id string, m Message) error {
	cmd := m.CmdType
	r.mu.Lock()
	s := r.sessions[id]
	var transport, source string
	if s != nil {
		transport, source = s.transport, s.source
	}
	r.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%w: %s", ErrNotRegistered, id)
	}
	body, err := m.Encode()
	if err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(source)
	if err != nil {
		return fmt.Errorf("gb28181: device %s address %q: %w", id, source, err)
	}
	port, _ := strconv.Atoi(portText)
	req := sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", User: id, Host: host, Port: port})
	req.SetTransport(strings.ToUpper(transport))
	req.SetDestination(source)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: r.ID, Host: r.Realm}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: id, Host: r.Realm}, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Content-Type", ContentType))
	req.SetBody(body)
	ctx, cancel := context.WithTimeout(ctx, r.QueryTimeout)
	defer cancel()
	res, err := Answered(r.client.Do(ctx, req))
	switch {
	case err != nil:
		r.metrics.queries.WithLabelValues(cmd, "failed").Inc()
		return fmt.Errorf("gb28181: %s to %s: %w", cmd, id, err)
	case res.StatusCode != sip.StatusOK:
		r.metrics.queries.WithLabelValues(cmd, "refused").Inc()
		return fmt.Errorf("gb28181: %s to %s: %d %s", cmd, id, res.StatusCode, res.Reason)
	}
	r.metrics.queries.WithLabelValues(cmd, "sent").Inc()
	return nil
}

// catalog merges a Catalog response into id's channels and reports each
// channel's status. A catalog may come in several messages; each adds its
// items.
func (r *Registrar) catalog(id string, m Message, now time.Time) {
	if m.DeviceList == nil {
		return
	}
	r.mu.Lock()
	s := r.sessions[id]
	transport := ""
	if s != nil {
		transport = s.transport
		for _, it := range m.DeviceList.Items {
			if isDeviceID(it.DeviceID) {
				s.channels[it.DeviceID] = it.Online()
			}
		}
	}
	r.mu.Unlock()
	if s == nil {
		return
	}
	for _, it := range m.DeviceList.Items {
		if !isDeviceID(it.DeviceID) || it.DeviceID == id {
			continue
		}
		p := Presence{Device: it.DeviceID, Parent: id, Online: it.Online(), At: now, Reason: ReasonCatalog, Transport: transport}
		if !p.Online {
			p.Error = "the catalog of " + id + " says " + truncate(it.Status)
		}
		r.emit(p)
	}
}

// deviceInfo records a DeviceInfo response.
func (r *Registrar) deviceInfo(id string, m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sessions[id]; s != nil {
		s.info = DeviceInfo{Name: m.DeviceName, Manufacturer: m.Manufacturer, Model: m.Model, Firmware: m.Firmware, Channels: atoi(m.Channel)}
	}
}
