package gb28181

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/rtcpreceiver"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Frame is one access unit of a channel's video.
type Frame struct {
	// Codec is "H264" or "H265", from the program stream map.
	Codec string
	// AU is the access unit's NAL units, without delimiters.
	AU [][]byte
	// TS is the frame's RTP timestamp (90 kHz), which GB/T 28181 devices
	// set to its presentation time.
	TS uint32
	// Bytes is the RTP payload the frame took, PS headers included.
	Bytes int
}

// StreamStats is what a stream's receiver counted.
type StreamStats struct {
	// Transport is the RTP transport: "udp".
	Transport string
	// AnswerMs is the time from INVITE to its 200 OK.
	AnswerMs float64
	// Packets and PacketsLost count the RTP packets received and missing.
	Packets, PacketsLost uint64
	// JitterMs is the RTP interarrival jitter (RFC 3550).
	JitterMs float64
	// Frames counts the frames handed on; BadFrames those whose PS could
	// not be read; LostFrames those missing packets.
	Frames, BadFrames, LostFrames uint64
}

// maxRTPPacket is the largest RTP packet read over UDP.
const maxRTPPacket = 1 << 16

// receiver reads one channel's RTP stream of PS over UDP, reassembles its
// frames (the packets of one timestamp, up to the marker) and demuxes
// them.
type receiver struct {
	conn    net.PacketConn
	timeout time.Duration // longest silence
	frame   func(Frame)
	// badPS counts an unreadable frame by reason.
	badPS func(reason string)

	rr    *rtcpreceiver.RTCPReceiver
	demux *psDemuxer
	stats StreamStats
	// The frame being reassembled: its timestamp, payload and whether a
	// packet of it is missing.
	open   bool
	ts     uint32
	buf    []byte
	broken bool
	// unsupported is the error of a video stream of another codec.
	unsupported error
}

// run reads packets until ctx ends (nil), the stream is silent for
// timeout, or its video is of an unsupported codec.
func (rc *receiver) run(ctx context.Context) error {
	if err := rc.init(); err != nil {
		return err
	}
	defer rc.rr.Close()
	stop := context.AfterFunc(ctx, func() { _ = rc.conn.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		_ = rc.conn.SetReadDeadline(time.Now().Add(rc.timeout))
		buf := make([]byte, maxRTPPacket) // the reorder buffer keeps packets
		n, _, err := rc.conn.ReadFrom(buf)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded) && rc.stats.Packets == 0:
				return fmt.Errorf("%w within %s of the answer", ErrNoRTP, rc.timeout)
			case errors.Is(err, os.ErrDeadlineExceeded):
				return fmt.Errorf("%w: nothing for %s after %d packets", ErrStreamStopped, rc.timeout, rc.stats.Packets)
			}
			return fmt.Errorf("gb28181: read RTP: %w", err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			rc.badPS("bad_rtp")
			continue
		}
		if err := rc.packet(&pkt, time.Now()); err != nil {
			return err
		}
	}
}

// init sets up the demuxer and the RTP statistics, which reorder
// packets over a window of 64, count the lost and the jitter; rr.Close
// releases them.
func (rc *receiver) init() error {
	rc.demux = newPSDemuxer()
	rc.rr = &rtcpreceiver.RTCPReceiver{
		ClockRate: 90000, LocalSSRC: new(uint32), UnrealiableTransport: true, Period: time.Hour,
		WritePacketRTCP: func(rtcp.Packet) {}, // receiver reports are not sent
	}
	if err := rc.rr.Initialize(); err != nil {
		return fmt.Errorf("gb28181: RTP receiver: %w", err)
	}
	return nil
}

// packet takes one RTP packet as it arrived.
func (rc *receiver) packet(pkt *rtp.Packet, now time.Time) error {
	pkts, lost, err := rc.rr.ProcessPacket2(pkt, now, true)
	if err != nil { // another SSRC than the stream's first
		rc.badPS("wrong_ssrc")
		return nil
	}
	rc.stats.Packets++
	rc.stats.PacketsLost += lost
	if lost > 0 {
		rc.broken = true
	}
	for _, p := range pkts {
		if rc.open && p.Timestamp != rc.ts {
			rc.flush()
		}
		if !rc.open {
			rc.open, rc.ts, rc.buf = true, p.Timestamp, rc.buf[:0]
			// A frame whose first packet was lost does not begin with a
			// pack header: it is lost, not malformed.
			rc.broken = rc.broken && !startsPack(p.Payload)
		}
		rc.buf = append(rc.buf, p.Payload...)
		if p.Marker {
			rc.flush()
		}
	}
	return rc.unsupported
}

// startsPack reports whether b begins with a PS pack header.
func startsPack(b []byte) bool {
	return len(b) >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == psPackHeader
}

// flush demuxes the frame reassembled and hands it on.
func (rc *receiver) flush() {
	rc.open = false
	if rc.broken {
		rc.broken = false
		rc.stats.LostFrames++
		return
	}
	f, err := rc.demux.demux(rc.buf)
	var au [][]byte
	if err == nil && len(f.es) > 0 {
		au, err = accessUnit(f.codec, f.es)
	}
	switch {
	case errors.Is(err, errNoPSM):
		return // before the first keyframe
	case errors.Is(err, ErrUnsupportedStream):
		rc.unsupported = err
		return
	case err != nil:
		rc.stats.BadFrames++
		rc.badPS("bad_ps")
		return
	case len(f.es) == 0:
		return // audio or padding only
	}
	rc.stats.Frames++
	rc.frame(Frame{Codec: f.codec, AU: au, TS: rc.ts, Bytes: len(rc.buf)})
}

// finish completes the statistics.
func (rc *receiver) finish() StreamStats {
	if st := rc.rr.Stats(); st != nil {
		rc.stats.JitterMs = st.Jitter / 90000 * 1000
	}
	return rc.stats
}
