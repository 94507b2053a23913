package simulators

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	mpeg2 "github.com/yapingcat/gomedia/go-mpeg2"

	"github.com/gridwatch/gridwatch/ingest/gb28181"
)

// gbRTPPayload is the most PS bytes a simulated device puts in one RTP
// packet, so that a packet fits an Ethernet MTU.
const gbRTPPayload = 1400

// Faults of a simulated GB/T 28181 device's answer to an INVITE and of
// the stream it sends; the picture is FaultNone's.
const (
	// FaultBadSDP answers an INVITE with 200 OK whose body is not a
	// session description, and sends nothing.
	FaultBadSDP CameraFault = "bad_sdp"
	// FaultNoRTP answers an INVITE and sends no RTP.
	FaultNoRTP CameraFault = "no_rtp"
	// FaultWrongSSRC streams with another SSRC than its answer's y= line.
	FaultWrongSSRC CameraFault = "wrong_ssrc"
	// FaultHangUp hangs up (BYE) half a second into the stream.
	FaultHangUp CameraFault = "hang_up"
	// FaultDropsStream stops half a second into the stream and forgets
	// it without a BYE, as a device whose media process restarted: it
	// answers the registrar's BYE 481.
	FaultDropsStream CameraFault = "drops_stream"
)

// GBFaults are the faults of a simulated GB device's answer and stream.
var GBFaults = []CameraFault{FaultBadSDP, FaultNoRTP, FaultWrongSSRC, FaultHangUp, FaultDropsStream}

// gbVideo checks and loads what a simulated device streams when invited:
// its Fault and Codec as a farm camera's, FaultNone, a picture fault but
// FaultMoved, FaultStall or FaultLowFPS, or one of GBFaults; FaultOffline
// streams nothing (the device never answers an INVITE).
func (d *GBDevice) gbVideo() error {
	d.video = Camera{Path: d.ID, Fault: d.Fault, Codec: d.Codec}
	if slices.Contains(GBFaults, d.Fault) {
		d.video.Fault = FaultNone
	}
	if err := d.video.defaults(); err != nil {
		return err
	}
	_, picture := PictureFaults[d.video.Fault]
	switch f := d.video.Fault; {
	case f == FaultOffline:
		return nil
	case f == FaultMoved || !picture && f != FaultNone && f != FaultStall && f != FaultLowFPS:
		return fmt.Errorf("%w: GB device %s: fault %q is not simulated over GB/T 28181", ErrBadCamera, d.ID, d.Fault)
	}
	var err error
	d.clip, err = loadClip(d.video.clipName())
	return err
}

// onInvite answers an INVITE of the device or one of its channels with
// 200 OK and an SDP answer, then, once ACKed, streams its video as PS
// over RTP to the offered address until BYE: over UDP from a port of its
// own, or over TCP connecting to the offered port (the offer's side
// passive, RFC 4571 framing). A silent device, or one with FaultOffline,
// never answers.
func (d *GBDevice) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if d.silent.Load() || d.Fault == FaultOffline {
		return
	}
	offer, err := gb28181.ParseMedia(req.Body())
	if err != nil || offer.Port == 0 {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
		return
	}
	dialog, err := d.dialogs.ReadInvite(req, tx)
	if err != nil {
		return
	}
	select {
	case <-time.After(d.AnswerDelay):
	case <-d.ctx.Done():
		dialog.Close()
		return
	}
	dst := net.JoinHostPort(offer.Host, strconv.Itoa(offer.Port))
	var conn net.PacketConn
	port := 9 // an active TCP side's port (RFC 4145)
	if offer.Transport == "udp" {
		if conn, err = net.ListenPacket("udp", net.JoinHostPort(d.LocalHost, "0")); err != nil {
			_ = dialog.Respond(sip.StatusInternalServerError, "Server Internal Error", nil)
			dialog.Close()
			return
		}
		port = conn.LocalAddr().(*net.UDPAddr).Port
	}
	closeConn := func() {
		if conn != nil {
			conn.Close()
		}
	}
	answer := gb28181.MediaSDP(d.ID, d.LocalHost, port, offer.SSRC, "sendonly", offer.Transport)
	if d.Fault == FaultBadSDP {
		answer = []byte("this is not a session description\r\n")
	}
	if err := dialog.RespondSDP(answer); err != nil {
		closeConn()
		dialog.Close()
		return
	}
	ssrc, err := strconv.ParseUint(offer.SSRC, 10, 32)
	if err != nil {
		ssrc = uint64(rand.Uint32())
	}
	if d.Fault == FaultWrongSSRC {
		ssrc = uint64(uint32(ssrc) + 1)
	}
	d.streamMu.Lock()
	defer d.streamMu.Unlock()
	if d.closed.Load() {
		closeConn()
		dialog.Close()
		return
	}
	d.invites.Add(1)
	d.streaming.Add(1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.streaming.Add(-1)
		defer closeConn()
		defer dialog.Close()
		ctx, cancel := context.WithCancel(d.ctx)
		defer cancel()
		stop := context.AfterFunc(dialog.Context(), cancel) // BYE
		defer stop()
		switch d.Fault {
		case FaultBadSDP, FaultNoRTP: // nothing is sent until BYE
			<-ctx.Done()
			return
		case FaultHangUp:
			hangUp := time.AfterFunc(d.video.StallAfter, func() {
				bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				_ = dialog.Bye(bctx)
			})
			defer hangUp.Stop()
		case FaultDropsStream:
			drop := time.AfterFunc(d.video.StallAfter, func() {
				dialog.Close()
				cancel()
			})
			defer drop.Stop()
		}
		send, done, err := d.mediaSender(ctx, conn, dst)
		if err != nil {
			d.Logger.Warn("simulated GB device cannot reach the stream's receiver", "device", d.ID, "err", err)
			return
		}
		defer done()
		d.stream(ctx, send, uint32(ssrc))
	}()
}

// mediaSender returns how RTP packets reach dst: datagrams from conn,
// or, without conn, a TCP connection with each packet after its 16-bit
// length; done releases it.
func (d *GBDevice) mediaSender(ctx context.Context, conn net.PacketConn, dst string) (send func([]byte) error, done func(), err error) {
	if conn != nil {
		addr, err := net.ResolveUDPAddr("udp", dst)
		if err != nil {
			return nil, nil, err
		}
		return func(b []byte) error { _, err := conn.WriteTo(b, addr); return err }, func() {}, nil
	}
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", dst)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return func(b []byte) error {
			framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(b)), uint16(len(b)))
			_, err := c.Write(append(framed, b...))
			return err
		}, func() {
			stop()
			c.Close()
		}, nil
}

// stream sends the device's clip as MPEG-PS (one pack per frame, from
// gomedia's muxer) in RTP packets to send until ctx ends.
func (d *GBDevice) stream(ctx context.Context, send func([]byte) error, ssrc uint32) {
	mux := mpeg2.NewPsMuxer()
	var pack []byte
	mux.OnPacket = func(b []byte) { pack = append(pack, b...) }
	cid := mpeg2.PS_STREAM_H264
	if d.clip.h265 {
		cid = mpeg2.PS_STREAM_H265
	}
	sid := mux.AddStream(cid)
	seq := uint16(rand.Uint32())
	// The 90 kHz time starts above a second: the muxer writes a pack's
	// clock reference a frame before its time.
	d.video.play(ctx, d.clip, 90000+rand.Uint32N(1<<30), func(au [][]byte, ts uint32) error {
		es, err := h264.AnnexB(au).Marshal() // H.265 is framed the same way
		if err != nil {
			return err
		}
		pack = pack[:0]
		ms := uint64(ts) / 90 // the muxer takes milliseconds
		if err := mux.Write(sid, es, ms, ms); err != nil {
			return err
		}
		for off := 0; off < len(pack); off += gbRTPPayload {
			end := min(off+gbRTPPayload, len(pack))
			seq++
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts,
				SSRC: ssrc, Marker: end == len(pack)}, Payload: pack[off:end]}
			b, err := pkt.Marshal()
			if err != nil {
				return err
			}
			if err := send(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// newGBDialogs returns the dialogs of a device's server side.
func newGBDialogs(client *sipgo.Client, id, contact string) *sipgo.DialogServerCache {
	host, portText, _ := net.SplitHostPort(contact)
	port, _ := strconv.Atoi(portText)
	return sipgo.NewDialogServerCache(client, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: id, Host: host, Port: port}})
}

// Invites returns how many INVITEs the device answered and streamed.
func (d *GBDevice) Invites() int64 { return d.invites.Load() }

// Byes returns how many of the device's answered INVITEs the registrar
// hung up (BYE).
func (d *GBDevice) Byes() int64 { return d.byes.Load() }

// Streaming returns how many streams the device is sending now: one
// ended by BYE is no longer counted.
func (d *GBDevice) Streaming() int64 { return d.streaming.Load() }
