package simulators

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"

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

// gbVideo checks and loads what a simulated device streams when invited:
// its Fault and Codec as a farm camera's, FaultNone, a picture fault but
// FaultMoved, FaultStall or FaultLowFPS; FaultOffline streams nothing
// (the device never answers an INVITE).
func (d *GBDevice) gbVideo() error {
	d.video = Camera{Path: d.ID, Fault: d.Fault, Codec: d.Codec}
	if err := d.video.defaults(); err != nil {
		return err
	}
	_, picture := PictureFaults[d.Fault]
	switch {
	case d.Fault == FaultOffline:
		return nil
	case d.Fault == FaultMoved || !picture && d.Fault != FaultNone && d.Fault != FaultStall && d.Fault != FaultLowFPS:
		return fmt.Errorf("%w: GB device %s: fault %q is not simulated over GB/T 28181", ErrBadCamera, d.ID, d.Fault)
	}
	var err error
	d.clip, err = loadClip(d.video.clipName())
	return err
}

// onInvite answers an INVITE of the device or one of its channels with
// 200 OK and an SDP answer, then, once ACKed, streams its video as PS
// over RTP/UDP to the offered address until BYE. A silent device, or one
// with FaultOffline, never answers.
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
	conn, err := net.ListenPacket("udp", net.JoinHostPort(d.LocalHost, "0"))
	if err != nil {
		_ = dialog.Respond(sip.StatusInternalServerError, "Server Internal Error", nil)
		dialog.Close()
		return
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	if err := dialog.RespondSDP(gb28181.MediaSDP(d.ID, d.LocalHost, port, offer.SSRC, "sendonly")); err != nil {
		conn.Close()
		dialog.Close()
		return
	}
	ssrc, err := strconv.ParseUint(offer.SSRC, 10, 32)
	if err != nil {
		ssrc = uint64(rand.Uint32())
	}
	dst := &net.UDPAddr{IP: net.ParseIP(offer.Host), Port: offer.Port}
	d.streamMu.Lock()
	defer d.streamMu.Unlock()
	if d.closed.Load() {
		conn.Close()
		dialog.Close()
		return
	}
	d.invites.Add(1)
	d.streaming.Add(1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.streaming.Add(-1)
		defer conn.Close()
		defer dialog.Close()
		ctx, cancel := context.WithCancel(d.ctx)
		defer cancel()
		stop := context.AfterFunc(dialog.Context(), cancel) // BYE
		defer stop()
		d.stream(ctx, conn, dst, uint32(ssrc))
	}()
}

// stream sends the device's clip as MPEG-PS (one pack per frame, from
// gomedia's muxer) over RTP to dst until ctx ends.
func (d *GBDevice) stream(ctx context.Context, conn net.PacketConn, dst net.Addr, ssrc uint32) {
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
			if _, err := conn.WriteTo(b, dst); err != nil {
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

// Streaming returns how many streams the device is sending now: one
// ended by BYE is no longer counted.
func (d *GBDevice) Streaming() int64 { return d.streaming.Load() }
