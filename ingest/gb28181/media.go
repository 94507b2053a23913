package gb28181

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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
	// Transport is the RTP transport: "udp" or "tcp".
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

// maxRTPPacket is the largest RTP packet read.
const maxRTPPacket = 1 << 16

// maxFrameBytes bounds the PS pack of one frame a receiver reassembles:
// a 4K keyframe is 1–2 MB. The packets of a larger one (a device that
// never sets the marker nor moves its timestamp) are dropped, not kept.
const maxFrameBytes = 4 << 20

// rtpSource is where a stream's RTP packets come from.
type rtpSource interface {
	// read returns the next packet from a sender that from accepts, in
	// a buffer of its own; the others' are dropped. It fails with
	// os.ErrDeadlineExceeded past the deadline, which a dropped packet
	// does not move.
	read(from func(net.Addr) bool) ([]byte, error)
	setDeadline(time.Time)
	close()
}

// udpSource reads RTP datagrams.
type udpSource struct {
	conn net.PacketConn
	buf  []byte // a datagram as read; each packet is copied out of it
}

func (s *udpSource) read(from func(net.Addr) bool) ([]byte, error) {
	for {
		n, addr, err := s.conn.ReadFrom(s.buf)
		if err != nil {
			return nil, err
		}
		if from(addr) {
			return bytes.Clone(s.buf[:n]), nil // the reorder buffer keeps packets
		}
	}
}

func (s *udpSource) setDeadline(t time.Time) { _ = s.conn.SetReadDeadline(t) }

func (s *udpSource) close() { _ = s.conn.Close() }

// tcpSource is RTP over TCP with gridwatch passive (RFC 4571, GB/T
// 28181-2016 Annex L): the device connects, then sends each packet after
// its 16-bit length. The first read accepts the one connection from a
// sender that from accepts; others are closed.
type tcpSource struct {
	ln   *net.TCPListener
	mu   sync.Mutex // guards conn against setDeadline
	conn net.Conn
	r    *bufio.Reader
}

func (s *tcpSource) read(from func(net.Addr) bool) ([]byte, error) {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	for conn == nil { // read is called from one goroutine only
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		if !from(c.RemoteAddr()) {
			_ = c.Close()
			continue
		}
		_ = s.ln.Close() // one connection per stream
		s.mu.Lock()
		s.conn, s.r, conn = c, bufio.NewReaderSize(c, maxRTPPacket), c
		s.mu.Unlock()
	}
	var size [2]byte
	if _, err := io.ReadFull(s.r, size[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(s.r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (s *tcpSource) setDeadline(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.ln.SetDeadline(t)
	if s.conn != nil {
		_ = s.conn.SetReadDeadline(t)
	}
}

func (s *tcpSource) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.ln.Close()
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// receiver reads one channel's RTP stream of PS, reassembles its frames
// (the packets of one timestamp, up to the marker) and demuxes them.
//
// Only the device's packets are taken: from a host in hosts (the
// device's SIP source, its SDP answer's c= address) and, with hasSSRC,
// of the SSRC its answer's y= line gave. Others are dropped and counted
// (wrong_source, wrong_ssrc), and do not keep a silent stream alive.
type receiver struct {
	src     rtpSource
	timeout time.Duration // longest silence
	// reliable is set for TCP: packets are not reordered.
	reliable bool
	frame    func(Frame)
	// badPS counts a dropped packet or frame by reason.
	badPS func(reason string)
	// hosts are the addresses the device's RTP may come from; none
	// admits any.
	hosts []netip.Addr
	// ssrc is the stream's SSRC when hasSSRC.
	ssrc    uint32
	hasSSRC bool

	rr    *rtcpreceiver.RTCPReceiver
	demux *psDemuxer
	stats StreamStats
	// foreign and wrongSSRC count the packets dropped for their sender
	// or SSRC, to say why a stream had none.
	foreign, wrongSSRC uint64
	// The frame being reassembled: its timestamp, payload and whether a
	// packet of it is missing or it outgrew maxFrameBytes.
	open     bool
	ts       uint32
	buf      []byte
	broken   bool
	tooLarge bool
	// unsupported is the error of a video stream of another codec.
	unsupported error
}

// run reads packets until ctx ends (nil), the device sends none for
// timeout, or its video is of an unsupported codec.
func (rc *receiver) run(ctx context.Context) error {
	if err := rc.init(); err != nil {
		return err
	}
	defer rc.rr.Close()
	var stopped atomic.Bool
	stop := context.AfterFunc(ctx, func() { stopped.Store(true); rc.src.setDeadline(time.Now()) })
	defer stop()
	// The silence is measured from the device's last packet taken.
	deadline := time.Now().Add(rc.timeout)
	for {
		if stopped.Load() {
			return nil
		}
		rc.src.setDeadline(deadline)
		if stopped.Load() { // ctx ended between the check and the deadline
			return nil
		}
		buf, err := rc.src.read(rc.fromDevice)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded) && rc.stats.Packets == 0:
				return fmt.Errorf("%w within %s of the answer%s", ErrNoRTP, rc.timeout, rc.dropped())
			case errors.Is(err, os.ErrDeadlineExceeded):
				return fmt.Errorf("%w: nothing for %s after %d packets%s", ErrStreamStopped, rc.timeout, rc.stats.Packets, rc.dropped())
			}
			return fmt.Errorf("gb28181: read RTP: %w", err)
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf); err != nil {
			rc.badPS("bad_rtp")
			continue
		}
		now := time.Now()
		taken, err := rc.packet(&pkt, now)
		if err != nil {
			return err
		}
		if taken {
			deadline = now.Add(rc.timeout)
		}
	}
}

// fromDevice reports whether a packet's sender is the device's, counting
// the others.
func (rc *receiver) fromDevice(addr net.Addr) bool {
	if len(rc.hosts) == 0 {
		return true
	}
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip = a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		ip = a.AddrPort().Addr().Unmap()
	}
	if slices.Contains(rc.hosts, ip) {
		return true
	}
	rc.foreign++
	rc.badPS("wrong_source")
	return false
}

// dropped says what packets a stream dropped for their sender or SSRC.
func (rc *receiver) dropped() string {
	if rc.foreign == 0 && rc.wrongSSRC == 0 {
		return ""
	}
	return fmt.Sprintf(" (dropped: %d packets from other hosts than the device's, %d of another SSRC than %d)", rc.foreign, rc.wrongSSRC, rc.ssrc)
}

// init sets up the demuxer and the RTP statistics, which reorder
// packets over a window of 64, count the lost and the jitter; rr.Close
// releases them.
func (rc *receiver) init() error {
	rc.demux = newPSDemuxer()
	rc.rr = &rtcpreceiver.RTCPReceiver{
		ClockRate: 90000, LocalSSRC: new(uint32), UnrealiableTransport: !rc.reliable, Period: time.Hour,
		WritePacketRTCP: func(rtcp.Packet) {}, // receiver reports are not sent
	}
	if err := rc.rr.Initialize(); err != nil {
		return fmt.Errorf("gb28181: RTP receiver: %w", err)
	}
	return nil
}

// packet takes one RTP packet as it arrived and reports whether it is
// the stream's.
func (rc *receiver) packet(pkt *rtp.Packet, now time.Time) (bool, error) {
	if rc.hasSSRC && pkt.SSRC != rc.ssrc {
		rc.wrongSSRC++
		rc.badPS("wrong_ssrc")
		return false, nil
	}
	pkts, lost, err := rc.rr.ProcessPacket2(pkt, now, true)
	if err != nil { // another SSRC than the stream's first
		rc.wrongSSRC++
		rc.badPS("wrong_ssrc")
		return false, nil
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
		switch {
		case rc.tooLarge:
		case len(rc.buf)+len(p.Payload) > maxFrameBytes:
			rc.tooLarge, rc.buf = true, rc.buf[:0]
			rc.stats.BadFrames++
			rc.badPS("frame_too_large")
		default:
			rc.buf = append(rc.buf, p.Payload...)
		}
		if p.Marker {
			rc.flush()
		}
	}
	return true, rc.unsupported
}

// startsPack reports whether b begins with a PS pack header.
func startsPack(b []byte) bool {
	return len(b) >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 1 && b[3] == psPackHeader
}

// flush demuxes the frame reassembled and hands it on.
func (rc *receiver) flush() {
	rc.open = false
	if rc.tooLarge { // counted when it outgrew the bound
		rc.tooLarge, rc.broken = false, false
		return
	}
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
