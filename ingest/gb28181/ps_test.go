package gb28181

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	mpeg2 "github.com/yapingcat/gomedia/go-mpeg2"
)

// Fake NAL units: the demuxer does not decode them, it only frames them.
var (
	h264SPS   = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9}
	h264PPS   = []byte{0x68, 0xce, 0x3c, 0x80}
	h264IDR   = append([]byte{0x65, 0x88, 0x84}, bytes.Repeat([]byte{0x5a}, 300)...)
	h264Slice = append([]byte{0x41, 0x9a, 0x02}, bytes.Repeat([]byte{0x3c}, 120)...)
	h265VPS   = []byte{0x40, 0x01, 0x0c, 0x01}
	h265SPS   = []byte{0x42, 0x01, 0x01, 0x01}
	h265PPS   = []byte{0x44, 0x01, 0xc1, 0x72}
	h265IDR   = append([]byte{0x26, 0x01, 0xaf}, bytes.Repeat([]byte{0x11}, 200)...)
)

// annexB frames NAL units with 4-byte start codes.
func annexB(nalus ...[]byte) []byte {
	var b []byte
	for _, n := range nalus {
		b = append(b, 0, 0, 0, 1)
		b = append(b, n...)
	}
	return b
}

// muxPS writes frames through gomedia's PS muxer, a foreign
// implementation, and returns one PS pack per frame. pts are in ms, as
// that muxer takes them.
func muxPS(t testing.TB, cid mpeg2.PS_STREAM_TYPE, frames [][]byte, ptsMs []uint64) [][]byte {
	t.Helper()
	m := mpeg2.NewPsMuxer()
	var packs [][]byte
	var cur []byte
	m.OnPacket = func(pkg []byte) { cur = append(cur, pkg...) }
	sid := m.AddStream(cid)
	for i, f := range frames {
		cur = nil
		if err := m.Write(sid, f, ptsMs[i], ptsMs[i]); err != nil {
			t.Fatal(err)
		}
		packs = append(packs, cur)
	}
	return packs
}

func TestPSDemuxForeignMuxer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cid    mpeg2.PS_STREAM_TYPE
		codec  string
		frames [][][]byte
	}{
		{"H264", mpeg2.PS_STREAM_H264, "H264", [][][]byte{{h264SPS, h264PPS, h264IDR}, {h264Slice}, {h264Slice}}},
		{"H265", mpeg2.PS_STREAM_H265, "H265", [][][]byte{{h265VPS, h265SPS, h265PPS, h265IDR}, {h265IDR}}},
		// A frame over 64 KiB goes in several PES packets.
		{"large", mpeg2.PS_STREAM_H264, "H264", [][][]byte{{h264SPS, h264PPS, append([]byte{0x65}, bytes.Repeat([]byte{0x77}, 200_000)...)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var es [][]byte
			var pts []uint64
			for i, f := range tc.frames {
				es = append(es, annexB(f...))
				pts = append(pts, uint64(1000+40*i))
			}
			d := newPSDemuxer()
			for i, pack := range muxPS(t, tc.cid, es, pts) {
				f, err := d.demux(pack)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if f.codec != tc.codec || !f.hasPTS || f.pts != uint32(pts[i]*90) {
					t.Fatalf("frame %d: codec %q pts %d (%v), want %s %d", i, f.codec, f.pts, f.hasPTS, tc.codec, pts[i]*90)
				}
				au, err := accessUnit(f.codec, f.es)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(au, tc.frames[i], bytes.Equal) {
					t.Fatalf("frame %d: %d NAL units, want %d (the muxer's delimiter dropped)", i, len(au), len(tc.frames[i]))
				}
			}
		})
	}
}

func TestPSDemuxMalformed(t *testing.T) {
	packs := muxPS(t, mpeg2.PS_STREAM_H264, [][]byte{annexB(h264SPS, h264PPS, h264IDR), annexB(h264Slice)}, []uint64{0, 40})
	key, p := packs[0], packs[1]

	t.Run("before the first PSM", func(t *testing.T) {
		if _, err := newPSDemuxer().demux(p); !errors.Is(err, errNoPSM) {
			t.Fatalf("err %v, want errNoPSM", err)
		}
	})
	t.Run("every truncation", func(t *testing.T) {
		// A pack cut anywhere is either an error of ErrBadPS or, cut at a
		// unit's end, read as far as it goes; never a panic.
		for n := 1; n < len(key); n++ {
			f, err := newPSDemuxer().demux(key[:n])
			if err != nil && !errors.Is(err, ErrBadPS) {
				t.Fatalf("cut at %d: %v, want ErrBadPS", n, err)
			}
			if err == nil && len(f.es) > 0 && !bytes.HasSuffix(f.es, annexB(h264SPS, h264PPS, h264IDR)) {
				t.Fatalf("cut at %d: part of the frame's video read as a whole", n)
			}
		}
	})
	t.Run("unsupported codec", func(t *testing.T) {
		mpeg4 := muxPS(t, mpeg2.PS_STREAM_H264, [][]byte{annexB(h264IDR)}, []uint64{0})[0]
		i := bytes.Index(mpeg4, []byte{0, 0, 1, 0xbc})
		j := bytes.Index(mpeg4[i:], []byte{0x1b, 0xe0}) // the map's entry
		mpeg4 = slices.Clone(mpeg4)
		mpeg4[i+j] = 0x10 // MPEG-4 Visual
		if _, err := newPSDemuxer().demux(mpeg4); !errors.Is(err, ErrUnsupportedStream) {
			t.Fatalf("err %v, want ErrUnsupportedStream", err)
		}
	})
	t.Run("system header first", func(t *testing.T) {
		// gomedia's demuxer panics here; a system header is not read.
		f, err := newPSDemuxer().demux([]byte{0, 0, 1, 0xbb, 0, 6, 0x80, 0, 1, 0, 0xe1, 0xff})
		if err != nil || len(f.es) != 0 {
			t.Fatalf("video %d bytes, err %v; want none, no error", len(f.es), err)
		}
	})
	for name, b := range map[string][]byte{
		"garbage":                     []byte("RTSP/1.0 200 OK\r\n"),
		"PES longer than the packet":  append(slices.Clone(key[:len(key)-len(h264IDR)]), 0, 0, 1, 0xe0, 0xff, 0xff, 0x80),
		"PES header overruns":         {0, 0, 1, 0xe0, 0, 3, 0x80, 0x80, 0x20},
		"PTS flag, header too short":  {0, 0, 1, 0xe0, 0, 4, 0x80, 0x80, 0x01, 0x21},
		"pack header neither version": {0, 0, 1, 0xba, 0xc4, 0, 4, 0, 4, 1, 0, 0, 3, 0xf8},
		"map info overruns":           {0, 0, 1, 0xbc, 0, 6, 0xe0, 0xff, 0xff, 0xff, 0, 0},
		"stray bytes":                 append(slices.Clone(key), 0, 0),
	} {
		t.Run(name, func(t *testing.T) {
			d := newPSDemuxer()
			_, _ = d.demux(key) // a PSM is known
			if _, err := d.demux(b); !errors.Is(err, ErrBadPS) {
				t.Fatalf("err %v, want ErrBadPS", err)
			}
		})
	}
}

// FuzzPSDemux feeds the demuxer arbitrary packs after a good one: it
// returns an error or video that came from the input, never panics.
func FuzzPSDemux(f *testing.F) {
	packs := muxPS(f, mpeg2.PS_STREAM_H265, [][]byte{annexB(h265VPS, h265SPS, h265PPS, h265IDR), annexB(h265IDR)}, []uint64{0, 40})
	for _, p := range packs {
		f.Add(p)
		f.Add(p[:len(p)/2])
	}
	f.Add([]byte{0, 0, 1, 0xbb, 0, 6, 0x80, 0, 1, 0, 0xe1, 0xff})
	f.Add([]byte{0, 0, 1, 0xba, 0x21, 0, 1, 0, 1, 0x80, 0, 1, 0, 0, 1, 0xe0, 0, 8, 0xff, 0x21, 0, 1, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newPSDemuxer()
		if _, err := d.demux(packs[0]); err != nil {
			t.Fatal(err)
		}
		fr, err := d.demux(b)
		if err != nil {
			return
		}
		if len(fr.es) > len(b) {
			t.Fatalf("%d bytes of video from %d of input", len(fr.es), len(b))
		}
		if len(fr.es) > 0 && fr.codec == "" {
			t.Fatal("video without a codec")
		}
		if au, err := accessUnit(fr.codec, fr.es); err == nil && len(au) == 0 {
			t.Fatal("an access unit without NAL units")
		}
	})
}

// rtpOf cuts a pack into RTP packets of at most size bytes, the last one
// with the marker.
func rtpOf(pack []byte, seq *uint16, ts uint32, size int) []*rtp.Packet {
	var out []*rtp.Packet
	for len(pack) > 0 {
		n := min(size, len(pack))
		*seq++
		out = append(out, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: *seq,
			Timestamp: ts, SSRC: 0x1234, Marker: n == len(pack)}, Payload: pack[:n]})
		pack = pack[n:]
	}
	return out
}

// TestReceiverFrames reassembles frames from RTP packets in order, out of
// order and with one lost: the frame with the lost packet is counted lost,
// the others are handed on whole, with their timestamps; a frame that is
// not PS is counted bad and dropped.
func TestReceiverFrames(t *testing.T) {
	var es [][]byte
	var pts []uint64
	// Enough frames after the loss for the reorder window (64 packets)
	// to give up on the lost packet.
	const frames = 60
	for i := range frames {
		f := annexB(h264Slice)
		if i%10 == 0 {
			f = annexB(h264SPS, h264PPS, h264IDR)
		}
		es, pts = append(es, f), append(pts, uint64(40*i))
	}
	packs := muxPS(t, mpeg2.PS_STREAM_H264, es, pts)
	var seq uint16
	var pkts []*rtp.Packet
	for i, p := range packs {
		pkts = append(pkts, rtpOf(p, &seq, uint32(3600*i), 100)...)
	}
	// Swap two packets of frame 1, drop one of frame 4.
	first1 := len(rtpOf(packs[0], new(uint16), 0, 100))
	pkts[first1], pkts[first1+1] = pkts[first1+1], pkts[first1]
	lostAt := 0
	for i := 0; i < 4; i++ {
		lostAt += len(rtpOf(packs[i], new(uint16), 0, 100))
	}
	pkts = slices.Delete(pkts, lostAt+1, lostAt+2)
	pkts = append(pkts, rtpOf([]byte("not a program stream"), &seq, frames*3600, 100)...)

	var got []Frame
	bad := map[string]int{}
	rc := &receiver{frame: func(f Frame) { got = append(got, f) }, badPS: func(reason string) { bad[reason]++ }}
	if err := rc.init(); err != nil {
		t.Fatal(err)
	}
	defer rc.rr.Close()
	now := time.Now()
	for _, p := range pkts {
		if _, err := rc.packet(p, now); err != nil {
			t.Fatal(err)
		}
	}
	st := rc.finish()
	if st.LostFrames != 1 || st.PacketsLost != 1 || st.Frames != frames-1 || len(got) != frames-1 {
		t.Fatalf("stats %+v, %d frames; want %d frames, 1 lost with 1 packet", st, len(got), frames-1)
	}
	if st.BadFrames != 1 || bad["bad_ps"] != 1 || len(bad) != 1 {
		t.Fatalf("%d bad frames, counted %v; want 1 bad_ps", st.BadFrames, bad)
	}
	for _, f := range got {
		i := int(f.TS / 3600)
		au, _ := accessUnit("H264", es[i])
		if f.Codec != "H264" || !slices.EqualFunc(f.AU, au, bytes.Equal) || f.Bytes != len(packs[i]) {
			t.Fatalf("frame %d: %s, %d NAL units, %d bytes; want %d units, %d bytes", i, f.Codec, len(f.AU), f.Bytes, len(au), len(packs[i]))
		}
		if i == 4 {
			t.Fatal("the frame with a lost packet was handed on")
		}
	}
}
