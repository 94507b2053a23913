package gb28181

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// Defaults of the stream settings.
const (
	DefaultInviteTimeout = 5 * time.Second
	DefaultStreamTimeout = 5 * time.Second
	DefaultMaxStreams    = 64
)

// Results of Play, the label of gridwatch_gb28181_streams_total.
const (
	resultOK          = "ok"
	resultNoAnswer    = "no_answer"
	resultRefused     = "refused"
	resultBadAnswer   = "bad_answer"
	resultNoRTP       = "no_rtp"
	resultStopped     = "stopped"
	resultHungUp      = "hung_up"
	resultBadPS       = "bad_ps"
	resultUnsupported = "unsupported_stream"
	resultError       = "error"
)

// Play invites a channel — a registered device, or a channel in a
// registered device's catalog — to stream its live video to gridwatch
// (GB/T 28181 §9.2: INVITE with an SDP offer of PS over RTP/AVP to a UDP
// port opened for it, s=Play, the SSRC on a y= line), hands each frame
// of the program stream to frame until ctx ends, then hangs up with BYE.
// At most MaxStreams play at once; more wait. It returns what the
// receiver counted and, unless ctx ended a healthy stream, why the stream
// failed: ErrNoChannel, ErrNoAnswer (no final answer in InviteTimeout),
// ErrInviteRefused, ErrBadAnswer, ErrNoRTP (nothing in StreamTimeout),
// ErrStreamStopped, ErrHungUp, ErrUnsupportedStream, ErrBadPS (no frame
// could be read). The port is closed and the dialog ended when it returns;
// a device's 200 OK after ErrNoAnswer is acknowledged and hung up at once
// (onLateAnswer).
func (r *Registrar) Play(ctx context.Context, channel string, frame func(Frame)) (StreamStats, error) {
	stats := StreamStats{Transport: r.StreamTransport}
	// A channel offline is told at once, not after a wait for a slot.
	if _, err := r.channelOnline(channel); err != nil {
		r.metrics.streams.WithLabelValues(streamResult(err)).Inc()
		return stats, err
	}
	select {
	case r.streams <- struct{}{}:
	case <-ctx.Done():
		return stats, ctx.Err()
	}
	defer func() { <-r.streams }()
	r.metrics.streaming.Inc()
	defer r.metrics.streaming.Dec()
	stats, err := r.play(ctx, channel, frame)
	r.metrics.streams.WithLabelValues(streamResult(err)).Inc()
	return stats, err
}

// streamResult names the outcome of a stream.
func streamResult(err error) string {
	for _, c := range []struct {
		err    error
		result string
	}{
		{ErrNoAnswer, resultNoAnswer}, {ErrInviteRefused, resultRefused}, {ErrNoChannel, resultRefused},
		{ErrBadAnswer, resultBadAnswer}, {ErrNoRTP, resultNoRTP}, {ErrStreamStopped, resultStopped},
		{ErrHungUp, resultHungUp}, {ErrBadPS, resultBadPS}, {ErrUnsupportedStream, resultUnsupported},
	} {
		if errors.Is(err, c.err) {
			return c.result
		}
	}
	if err != nil {
		return resultError
	}
	return resultOK
}

// channelOnline returns the session whose device is channel or
// catalogues it, or ErrNoChannel unless both are online.
func (r *Registrar) channelOnline(channel string) (session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sessions[channel]; s != nil && s.online {
		return *s, nil
	}
	for _, s := range r.sessions {
		if on, ok := s.channels[channel]; ok && on && s.online {
			return *s, nil
		}
	}
	return session{}, fmt.Errorf("%w: %s", ErrNoChannel, channel)
}

func (r *Registrar) play(ctx context.Context, channel string, frame func(Frame)) (StreamStats, error) {
	stats := StreamStats{Transport: r.StreamTransport}
	s, err := r.channelOnline(channel)
	if err != nil {
		return stats, err
	}
	host, portText, err := net.SplitHostPort(s.source)
	if err != nil {
		return stats, fmt.Errorf("gb28181: device %s address %q: %w", s.id, s.source, err)
	}
	port, _ := strconv.Atoi(portText)
	local, err := r.mediaHost(s.source)
	if err != nil {
		return stats, err
	}
	src, rtpPort, err := openRTP(r.StreamTransport, local)
	if err != nil {
		return stats, err
	}
	defer src.close()
	ssrc := r.ssrc()

	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: channel, Host: host, Port: port})
	req.SetTransport(strings.ToUpper(s.transport))
	req.SetDestination(s.source)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: r.ID, Host: r.Realm}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: channel, Host: r.Realm}, Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: r.ID, Host: local, Port: r.sipPort(s.transport)}})
	req.AppendHeader(sip.NewHeader("Subject", fmt.Sprintf("%s:%s,%s:0", channel, ssrc, r.ID)))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(MediaSDP(r.ID, local, rtpPort, ssrc, "recvonly", r.StreamTransport))

	sent := time.Now()
	// The INVITE client transaction's own deadline is Timer B (32 s): the
	// answer is waited for InviteTimeout, and a device that never answers
	// is given up without the CANCEL that would wait for its answer.
	wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	giveUp := func() { cancel(sipgo.WaitAnswerForceCancelErr) }
	stopCtx := context.AfterFunc(ctx, giveUp)
	defer stopCtx()
	timer := time.AfterFunc(r.InviteTimeout, giveUp)
	defer timer.Stop()
	dialog, err := r.dialogs.WriteInvite(wctx, req)
	if err != nil {
		return stats, fmt.Errorf("gb28181: INVITE to %s: %w", channel, err)
	}
	defer dialog.Close()
	err = dialog.WaitAnswer(wctx, sipgo.AnswerOptions{})
	var refused *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &refused):
		return stats, fmt.Errorf("%w: %s answered %d %s", ErrInviteRefused, channel, refused.Res.StatusCode, refused.Res.Reason)
	case err != nil:
		r.giveUp(req)
		if ctx.Err() != nil {
			return stats, ctx.Err()
		}
		return stats, fmt.Errorf("%w: %s gave none within %s", ErrNoAnswer, channel, r.InviteTimeout)
	}
	timer.Stop()
	stats.AnswerMs = float64(time.Since(sent).Microseconds()) / 1000
	// The dialog stands from here: it ends with a BYE whatever happens.
	defer func() {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.QueryTimeout)
		defer cancel()
		// 481: the device no longer knows the dialog (its BYE crossed
		// ours, or it dropped the stream); it is ended all the same.
		var gone sipgo.ErrDialogResponse
		if err := dialog.Bye(bctx); err != nil && !(errors.As(err, &gone) && gone.Res.StatusCode == sip.StatusCallTransactionDoesNotExists) {
			r.metrics.streams.WithLabelValues("bye_failed").Inc()
			r.Logger.Info("gb28181 BYE not answered", "channel", channel, "err", err)
		}
	}()
	if err := dialog.Ack(wctx); err != nil {
		return stats, fmt.Errorf("gb28181: ACK to %s: %w", channel, err)
	}
	answer, err := ParseMedia(dialog.InviteResponse.Body())
	if err != nil {
		return stats, fmt.Errorf("%w: %s: %w", ErrBadAnswer, channel, err)
	}
	ssrcAnswered, hasSSRC, err := r.checkAnswer(answer)
	if err != nil {
		return stats, fmt.Errorf("%w: %s: %w", ErrBadAnswer, channel, err)
	}

	// The stream runs until ctx ends or the device hangs up.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	hungUp := context.AfterFunc(dialog.Context(), stop)
	defer hungUp()
	rc := &receiver{src: src, timeout: r.StreamTimeout, reliable: r.StreamTransport == "tcp", frame: frame,
		badPS: func(reason string) { r.metrics.psErrors.WithLabelValues(reason).Inc() },
		hosts: mediaSenders(s.host, answer.Host), ssrc: ssrcAnswered, hasSSRC: hasSSRC}
	err = rc.run(sctx)
	answerMs := stats.AnswerMs
	stats = rc.finish()
	stats.Transport, stats.AnswerMs = r.StreamTransport, answerMs
	switch {
	case err != nil:
		return stats, fmt.Errorf("%s: %w", channel, err)
	case ctx.Err() == nil && dialog.Context().Err() != nil:
		return stats, fmt.Errorf("%w: %s sent BYE after %d frames", ErrHungUp, channel, stats.Frames)
	case stats.Frames == 0 && stats.BadFrames > 0:
		return stats, fmt.Errorf("%w: %s sent %d frames, none readable", ErrBadPS, channel, stats.BadFrames)
	}
	return stats, nil
}

// checkAnswer checks a device's SDP answer against the offer: the same
// RTP transport and a port (0 refuses the stream, RFC 3264). It returns
// the SSRC the RTP is to carry: the answer's y= line, decimal (GB/T 28181
// Annex F); without one, any SSRC is taken (the stream's first).
func (r *Registrar) checkAnswer(m Media) (ssrc uint32, ok bool, err error) {
	switch {
	case m.Transport != r.StreamTransport:
		return 0, false, fmt.Errorf("RTP over %s answered, %s offered", m.Transport, r.StreamTransport)
	case m.Port == 0:
		return 0, false, errors.New("the video stream refused (port 0)")
	case m.SSRC == "":
		return 0, false, nil
	}
	v, err := strconv.ParseUint(m.SSRC, 10, 32)
	if err != nil {
		return 0, false, fmt.Errorf("y=%s is not a decimal SSRC", truncate(m.SSRC))
	}
	return uint32(v), true, nil
}

// mediaSenders returns the addresses a device's RTP may come from: the
// host it registered from and its SDP answer's c= address (a lower
// platform's media server), when that is an address.
func mediaSenders(sipHost, answerHost string) []netip.Addr {
	var out []netip.Addr
	for _, h := range []string{sipHost, answerHost} {
		if a, err := netip.ParseAddr(h); err == nil && !a.IsUnspecified() && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// giveUp records an INVITE given up unanswered, for a late answer to it
// (onLateAnswer) until a device's 200 OK retransmissions end (64×T1);
// the records past it are dropped.
func (r *Registrar) giveUp(invite *sip.Request) {
	now := time.Now()
	r.givenUp.Range(func(k, until any) bool {
		if now.After(until.(time.Time)) {
			r.givenUp.Delete(k)
		}
		return true
	})
	if id := invite.CallID(); id != nil {
		r.givenUp.Store(id.Value(), now.Add(64*sip.T1))
	}
}

// onLateAnswer takes the responses no transaction waits for. A 200 OK
// to an INVITE given up, were it left unacknowledged, would have the
// device stream to a closed port until its retransmissions end (32 s),
// holding one of the few streams a camera serves: it is acknowledged and
// hung up at once (RFC 3261 §13.2.2.4), and counted (late_answer).
// Other stray responses, such as retransmissions, are dropped.
func (r *Registrar) onLateAnswer(res *sip.Response) {
	cseq, id := res.CSeq(), res.CallID()
	if !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE || id == nil || res.From() == nil || res.To() == nil {
		return
	}
	if _, ok := r.givenUp.LoadAndDelete(id.Value()); !ok {
		return
	}
	r.metrics.streams.WithLabelValues("late_answer").Inc()
	ack := r.inDialog(sip.ACK, res, cseq.SeqNo)
	if err := r.client.WriteRequest(ack); err != nil {
		r.Logger.Info("gb28181 late answer not acknowledged", "err", err)
		return
	}
	r.background(func() {
		ctx, cancel := context.WithTimeout(r.ctx, r.QueryTimeout)
		defer cancel()
		if res, err := Answered(r.client.Do(ctx, r.inDialog(sip.BYE, res, cseq.SeqNo+1))); err != nil || !res.IsSuccess() {
			r.metrics.streams.WithLabelValues("bye_failed").Inc()
		}
	})
}

// inDialog returns a request of method in the dialog a 200 OK to an
// INVITE of gridwatch's set up, to the device's Contact.
func (r *Registrar) inDialog(method sip.RequestMethod, ok *sip.Response, seq uint32) *sip.Request {
	host, portText, _ := net.SplitHostPort(ok.Source())
	port, _ := strconv.Atoi(portText)
	to := sip.Uri{Scheme: "sip", User: ok.To().Address.User, Host: host, Port: port}
	if c := ok.Contact(); c != nil {
		to = *c.Address.Clone()
	}
	req := sip.NewRequest(method, to)
	req.AppendHeader(sip.HeaderClone(ok.From()))
	req.AppendHeader(sip.HeaderClone(ok.To()))
	req.AppendHeader(sip.HeaderClone(ok.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	req.SetTransport(ok.Transport())
	req.SetDestination(ok.Source())
	return req
}

// openRTP opens the port a stream's RTP is received on: a UDP socket, or
// for "tcp" a listener the device connects to.
func openRTP(transport, host string) (rtpSource, int, error) {
	if transport == "tcp" {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, 0, fmt.Errorf("gb28181: RTP port on %s: %w", host, err)
		}
		return &tcpSource{ln: ln.(*net.TCPListener)}, ln.Addr().(*net.TCPAddr).Port, nil
	}
	conn, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, 0, fmt.Errorf("gb28181: RTP port on %s: %w", host, err)
	}
	return &udpSource{conn: conn, buf: make([]byte, maxRTPPacket)}, conn.LocalAddr().(*net.UDPAddr).Port, nil
}

// onBye takes a device's BYE of a stream it was invited to.
func (r *Registrar) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if err := r.dialogs.ReadBye(req, tx); err != nil {
		r.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
		return
	}
	r.metrics.responses.WithLabelValues(sip.BYE.String(), strconv.Itoa(sip.StatusOK)).Inc()
}

// mediaHost returns the address RTP is received on: MediaHost, else the
// local address the system routes to the device from.
func (r *Registrar) mediaHost(device string) (string, error) {
	if r.MediaHost != "" {
		return r.MediaHost, nil
	}
	c, err := net.Dial("udp", device) // sends nothing
	if err != nil {
		return "", fmt.Errorf("gb28181: no route to %s for RTP: %w", device, err)
	}
	defer c.Close()
	host, _, err := net.SplitHostPort(c.LocalAddr().String())
	return host, err
}

// sipPort returns the port of the listener of a transport.
func (r *Registrar) sipPort(transport string) int {
	addr := r.UDPAddr()
	if transport == "tcp" {
		addr = r.TCPAddr()
	}
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// ssrc returns the y= SSRC of a new live stream (GB/T 28181 Annex F): 0
// for live, digits 4–8 of the SIP domain, and a 4-digit sequence.
func (r *Registrar) ssrc() string {
	domain := "00000"
	if len(r.Realm) >= 8 && digits(r.Realm[3:8]) {
		domain = r.Realm[3:8]
	}
	return fmt.Sprintf("0%s%04d", domain, r.ssrcSeq.Add(1)%10000)
}

// digits reports whether s is all decimal digits.
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MediaSDP is the SDP of a GB/T 28181 live stream of PS over RTP/AVP
// to or from host:port: an offer (direction "recvonly", from the upper
// platform) or an answer ("sendonly", from the device), with the SSRC on
// the y= line. Over transport "tcp" the offer's side listens
// (a=setup:passive) and the answer's connects (active).
func MediaSDP(id, host string, port int, ssrc, direction, transport string) []byte {
	ip := "IP4"
	if strings.Contains(host, ":") {
		ip = "IP6"
	}
	proto, setup := "RTP/AVP", ""
	if transport == "tcp" {
		proto, setup = "TCP/RTP/AVP", "a=setup:passive\r\na=connection:new\r\n"
		if direction == "sendonly" {
			setup = "a=setup:active\r\na=connection:new\r\n"
		}
	}
	return []byte(fmt.Sprintf("v=0\r\no=%s 0 0 IN %s %s\r\ns=Play\r\nc=IN %s %s\r\nt=0 0\r\n"+
		"m=video %d %s 96\r\na=%s\r\n%sa=rtpmap:96 PS/90000\r\ny=%s\r\n", id, ip, host, ip, host, port, proto, direction, setup, ssrc))
}

// Media is what the SDP of a GB/T 28181 stream says of its video.
type Media struct {
	// Host and Port are the c= address and the m= port.
	Host string
	Port int
	// SSRC is the y= line, "" without one.
	SSRC string
	// Transport is "udp" for RTP/AVP, "tcp" for TCP/RTP/AVP.
	Transport string
}

// ParseMedia reads the SDP of a GB/T 28181 stream: a video m= line of
// PS/90000 over RTP/AVP. The y= (SSRC) and f= (media format) lines that
// GB/T 28181 adds are not SDP; they are read apart before parsing.
func ParseMedia(body []byte) (Media, error) {
	var kept []string
	var m Media
	for _, line := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "y="):
			m.SSRC = strings.TrimSpace(line[2:])
		case line != "" && !strings.HasPrefix(line, "f="):
			kept = append(kept, line)
		}
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(strings.Join(kept, "\r\n") + "\r\n"); err != nil {
		return m, fmt.Errorf("SDP: %s", truncate(err.Error())) // it quotes the device's text
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" || !strings.Contains(strings.Join(md.MediaName.Protos, "/"), "RTP/AVP") {
			continue
		}
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" || !strings.Contains(strings.ToUpper(a.Value), "PS/90000") {
				continue
			}
			m.Port, m.Transport = md.MediaName.Port.Value, "udp"
			if md.MediaName.Protos[0] == "TCP" {
				m.Transport = "tcp"
			}
			switch {
			case md.ConnectionInformation != nil && md.ConnectionInformation.Address != nil:
				m.Host = md.ConnectionInformation.Address.Address
			case sd.ConnectionInformation != nil && sd.ConnectionInformation.Address != nil:
				m.Host = sd.ConnectionInformation.Address.Address
			}
			return m, nil
		}
	}
	return m, errors.New("no video m= line with rtpmap PS/90000 over RTP/AVP")
}
