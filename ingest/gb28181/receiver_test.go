package gb28181

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	mpeg2 "github.com/yapingcat/gomedia/go-mpeg2"
)

// deviceFrames returns the RTP packets of n H.264 frames of SSRC ssrc, a
// keyframe every 10, one packet each, and their timestamps.
func deviceFrames(t testing.TB, n int, ssrc uint32) []*rtp.Packet {
	t.Helper()
	var es [][]byte
	var pts []uint64
	for i := range n {
		f := annexB(h264Slice)
		if i%10 == 0 {
			f = annexB(h264SPS, h264PPS, h264IDR)
		}
		es, pts = append(es, f), append(pts, uint64(40*i))
	}
	var seq uint16
	var pkts []*rtp.Packet
	for i, p := range muxPS(t, mpeg2.PS_STREAM_H264, es, pts) {
		pp := rtpOf(p, &seq, uint32(3600*i), 1400)
		if len(pp) != 1 {
			t.Fatalf("frame %d in %d packets", i, len(pp))
		}
		pp[0].SSRC = ssrc
		pkts = append(pkts, pp...)
	}
	return pkts
}

// spray sends RTP packets of ssrc, with PS that is not the device's,
// through send every few milliseconds until stop is closed: count of
// them at once first.
func spray(t *testing.T, send func([]byte) error, ssrc uint32, count int, stop <-chan struct{}, wg *sync.WaitGroup) {
	t.Helper()
	junk := func(seq uint16) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3600,
			SSRC: ssrc, Marker: true}, Payload: []byte{0, 0, 1, 0xba, 0x44, 0, 4, 0, 4, 1, 1, 0x89, 0xc3, 0xf8}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range count {
		if err := send(junk(uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint16(count); ; seq++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if send(junk(seq)) != nil {
				return
			}
		}
	}()
}

// runReceiver runs rc until it returns, within a minute.
func runReceiver(t *testing.T, rc *receiver) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := rc.run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the receiver ran until its context ended (err %v, stats %+v)", err, rc.stats)
	}
	return err
}

// TestReceiverTakesOnlyTheDevicesRTP attacks an invited UDP stream: a
// host that is not the device's sprays RTP of the stream's SSRC at its
// port, and the device's own host RTP of another SSRC, both starting
// before the device. Only the device's frames are handed on, every one of
// them; the others are counted wrong_source and wrong_ssrc; and once the
// device stops, the stream is stopped after the timeout although the
// spray goes on.
func TestReceiverTakesOnlyTheDevicesRTP(t *testing.T) {
	const ssrc = 340200001
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := &udpSource{conn: conn, buf: make([]byte, maxRTPPacket)}
	defer src.close()
	sender := func(local string) func([]byte) error {
		c, err := net.ListenPacket("udp", local+":0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return func(b []byte) error { _, err := c.WriteTo(b, conn.LocalAddr()); return err }
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	spray(t, sender("127.0.0.2"), ssrc, 10, stop, &wg)   // another host, the stream's SSRC
	spray(t, sender("127.0.0.1"), ssrc+1, 10, stop, &wg) // the device's host, another SSRC
	device := sender("127.0.0.1")
	pkts := deviceFrames(t, 30, ssrc)
	for _, p := range pkts {
		b, _ := p.Marshal()
		if err := device(b); err != nil {
			t.Fatal(err)
		}
	}

	var frames []Frame
	bad := map[string]int{}
	rc := &receiver{src: src, timeout: 2 * time.Second, frame: func(f Frame) { frames = append(frames, f) },
		badPS: func(reason string) { bad[reason]++ },
		hosts: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ssrc: ssrc, hasSSRC: true}
	err = runReceiver(t, rc)
	if !errors.Is(err, ErrStreamStopped) {
		t.Fatalf("err %v, want ErrStreamStopped", err)
	}
	st := rc.finish()
	if len(frames) != len(pkts) || st.Frames != uint64(len(pkts)) || st.Packets != uint64(len(pkts)) || st.BadFrames != 0 {
		t.Fatalf("%d frames handed on, stats %+v; want the device's %d", len(frames), st, len(pkts))
	}
	for i, f := range frames {
		if f.TS != uint32(3600*i) {
			t.Fatalf("frame %d at %d, want the device's %d", i, f.TS, 3600*i)
		}
	}
	if bad["wrong_source"] < 10 || bad["wrong_ssrc"] < 10 || bad["bad_ps"] != 0 {
		t.Fatalf("counted %v; want at least 10 wrong_source and 10 wrong_ssrc", bad)
	}
}

// TestReceiverSprayedNeverSends: a device that sends nothing while
// another host sprays its port gets ErrNoRTP after the timeout, naming
// what was dropped.
func TestReceiverSprayedNeverSends(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := &udpSource{conn: conn, buf: make([]byte, maxRTPPacket)}
	defer src.close()
	c, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	spray(t, func(b []byte) error { _, err := c.WriteTo(b, conn.LocalAddr()); return err }, 7, 5, stop, &wg)
	rc := &receiver{src: src, timeout: 2 * time.Second, frame: func(Frame) { t.Error("a frame") }, badPS: func(string) {},
		hosts: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ssrc: 7, hasSSRC: true}
	if err := runReceiver(t, rc); !errors.Is(err, ErrNoRTP) || rc.foreign < 5 {
		t.Fatalf("err %v after %d foreign packets, want ErrNoRTP after at least 5", err, rc.foreign)
	}
}

// TestReceiverTCPTakesTheDevicesConnection: over TCP (gridwatch passive)
// another host connects first and sends RTP; its connection is closed
// and the device's, after it, is the stream.
func TestReceiverTCPTakesTheDevicesConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := &tcpSource{ln: ln.(*net.TCPListener)}
	defer src.close()
	framed := func(pkts []*rtp.Packet) []byte {
		var out []byte
		for _, p := range pkts {
			b, _ := p.Marshal()
			out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
			out = append(out, b...)
		}
		return out
	}
	dial := func(local string, payload []byte) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		return c
	}
	intruder := dial("127.0.0.2", framed(deviceFrames(t, 10, 99)))
	pkts := deviceFrames(t, 20, 5)
	var frames int
	rc := &receiver{src: src, timeout: 2 * time.Second, reliable: true, frame: func(Frame) { frames++ }, badPS: func(string) {},
		hosts: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ssrc: 5, hasSSRC: true}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rc.run(ctx) }()
	// The intruder's connection is closed once the receiver has seen it;
	// then the device connects.
	_ = intruder.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := intruder.Read(make([]byte, 1)); err == nil {
		t.Fatal("the intruder's connection got data")
	}
	dial("127.0.0.1", framed(pkts))
	if err := <-done; ctx.Err() != nil || !errors.Is(err, ErrStreamStopped) || frames != len(pkts) || rc.foreign != 1 {
		t.Fatalf("err %v, %d frames, %d foreign connections; want ErrStreamStopped after the device's %d frames, 1 refused",
			err, frames, rc.foreign, len(pkts))
	}
}

// TestReceiverBoundsAFrame: a device that never ends a frame (no marker,
// one timestamp) sends three times maxFrameBytes; what is kept of it stays
// within the bound, it is counted frame_too_large once, and the frames
// after it are handed on.
func TestReceiverBoundsAFrame(t *testing.T) {
	var frames int
	bad := map[string]int{}
	rc := &receiver{frame: func(Frame) { frames++ }, badPS: func(reason string) { bad[reason]++ }}
	if err := rc.init(); err != nil {
		t.Fatal(err)
	}
	defer rc.rr.Close()
	good := deviceFrames(t, 3, 0x1234)
	now := time.Now()
	take := func(p *rtp.Packet) {
		t.Helper()
		if _, err := rc.packet(p, now); err != nil {
			t.Fatal(err)
		}
	}
	take(good[0])
	payload := make([]byte, 1400)
	seq := good[0].SequenceNumber
	for range 3 * maxFrameBytes / len(payload) {
		seq++
		take(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 1800, SSRC: 0x1234},
			Payload: payload})
	}
	if c := cap(rc.buf); c > 2*maxFrameBytes {
		t.Fatalf("the frame's buffer holds %d bytes, beyond the bound %d", c, maxFrameBytes)
	}
	for _, p := range good[1:] {
		seq++
		p.SequenceNumber = seq
		take(p)
	}
	st := rc.finish()
	if frames != 3 || st.Frames != 3 || st.BadFrames != 1 || bad["frame_too_large"] != 1 || len(bad) != 1 {
		t.Fatalf("%d frames, stats %+v, counted %v; want 3 frames and 1 frame_too_large", frames, st, bad)
	}
}

// TestUDPSourceAllocatesPerPacket: reading a small datagram allocates
// about its size, not a 64 KiB buffer (64 streams at 1,000 packets a
// second each would churn 4 GB/s).
func TestUDPSourceAllocatesPerPacket(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src := &udpSource{conn: conn, buf: make([]byte, maxRTPPacket)}
	defer src.close()
	c, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 100
	for range n {
		if _, err := c.Write(make([]byte, 200)); err != nil {
			t.Fatal(err)
		}
	}
	src.setDeadline(time.Now().Add(time.Minute))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		if _, err := src.read(func(net.Addr) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 16<<10 {
		t.Fatalf("%d bytes allocated per 200-byte datagram", per)
	}
}

// TestCheckAnswer refuses an SDP answer that does not take the offer: RTP
// over another transport, a stream refused with port 0, a y= line that
// is no SSRC; it takes the answer's SSRC, or any without a y= line.
func TestCheckAnswer(t *testing.T) {
	for _, tc := range []struct {
		offered, answer string
		ssrc            uint32
		hasSSRC, bad    bool
	}{
		{"udp", string(MediaSDP("d", "127.0.0.1", 5000, "0340200001", "sendonly", "udp")), 340200001, true, false},
		{"tcp", string(MediaSDP("d", "127.0.0.1", 9, "0340200001", "sendonly", "tcp")), 340200001, true, false},
		{"udp", strings.Replace(string(MediaSDP("d", "127.0.0.1", 5000, "1", "sendonly", "udp")), "y=1\r\n", "", 1), 0, false, false},
		{"tcp", string(MediaSDP("d", "127.0.0.1", 5000, "0340200001", "sendonly", "udp")), 0, false, true},
		{"udp", string(MediaSDP("d", "127.0.0.1", 9, "0340200001", "sendonly", "tcp")), 0, false, true},
		{"udp", string(MediaSDP("d", "127.0.0.1", 0, "0340200001", "sendonly", "udp")), 0, false, true},
		{"udp", string(MediaSDP("d", "127.0.0.1", 5000, "99999999999", "sendonly", "udp")), 0, false, true},
		{"udp", string(MediaSDP("d", "127.0.0.1", 5000, "0x1234", "sendonly", "udp")), 0, false, true},
	} {
		m, err := ParseMedia([]byte(tc.answer))
		if err != nil {
			t.Fatalf("%q: %v", tc.answer, err)
		}
		r := &Registrar{StreamTransport: tc.offered}
		ssrc, has, err := r.checkAnswer(m)
		if (err != nil) != tc.bad || ssrc != tc.ssrc || has != tc.hasSSRC {
			t.Errorf("offered %s, answer %q: SSRC %d (%v), err %v", tc.offered, tc.answer, ssrc, has, err)
		}
	}
}

// FuzzReceiver feeds a receiver RTP packets a device could send — the
// input cut at each 0xff 0xff into datagrams after a good keyframe's —
// and holds that it never panics, hands on only frames it could read and
// keeps its counts consistent.
func FuzzReceiver(f *testing.F) {
	good := deviceFrames(f, 3, 0x1234)
	for _, p := range good {
		b, _ := p.Marshal()
		f.Add(b)
		f.Add(append(append(b[:len(b):len(b)], 0xff, 0xff), b[:len(b)/2]...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var frames uint64
		rc := &receiver{frame: func(fr Frame) {
			frames++
			if len(fr.AU) == 0 || fr.Codec == "" {
				t.Fatalf("a frame without NAL units or codec: %+v", fr)
			}
		}, badPS: func(string) {}}
		if err := rc.init(); err != nil {
			t.Fatal(err)
		}
		defer rc.rr.Close()
		now := time.Now()
		first, _ := good[0].Marshal()
		for _, b := range append([][]byte{first}, bytes.Split(in, []byte{0xff, 0xff})...) {
			var pkt rtp.Packet
			if pkt.Unmarshal(b) != nil {
				continue
			}
			if _, err := rc.packet(&pkt, now); err != nil && !errors.Is(err, ErrUnsupportedStream) {
				t.Fatalf("packet: %v", err)
			}
		}
		st := rc.finish()
		if st.Frames != frames || len(rc.buf) > maxFrameBytes {
			t.Fatalf("stats %+v, %d frames handed on, %d bytes buffered", st, frames, len(rc.buf))
		}
	})
}
