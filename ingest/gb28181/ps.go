package gb28181

import (
	"encoding/binary"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

// GB/T 28181 video travels as an MPEG-2 program stream (ISO/IEC 13818-1
// §2.5) over RTP: each frame of the camera is one PS pack — a pack header,
// on keyframes a system header and a program stream map (PSM) naming the
// streams' types, then the frame's PES packets — sent in the RTP packets
// of one timestamp. psDemuxer is written here rather than taken from
// github.com/yapingcat/gomedia's go-mpeg2 (the one maintained Go PS
// demuxer): that one panics on input a camera can send (a system header
// before a pack header; reads past a buffer through its bit reader), which
// in a server reading foreign cameras would take the process down, and it
// dates the parameter sets that begin a PES with the previous frame's
// time. The simulators use gomedia's PS muxer, so the tests read PS that
// another implementation wrote.

// The PSM stream types of GB/T 28181 video.
const (
	streamTypeH264 = 0x1b
	streamTypeH265 = 0x24
)

// PS start code values (the byte after 00 00 01).
const (
	psPackHeader   = 0xba
	psSystemHeader = 0xbb
	psMap          = 0xbc
	psEnd          = 0xb9
)

// psFrame is the video of one PS pack.
type psFrame struct {
	// codec is "H264" or "H265", from the PSM.
	codec string
	// pts is the presentation time of the pack's first video PES with
	// one, in 90 kHz ticks; hasPTS is false when none carries one.
	pts    uint32
	hasPTS bool
	// es is the video elementary stream, Annex-B.
	es []byte
}

// psDemuxer reads the video of PS packs. It remembers the stream types
// of the latest PSM: a pack's video is read only once a PSM has named it,
// which GB/T 28181 devices send with every keyframe. It is not safe for
// concurrent use.
type psDemuxer struct {
	// types maps a stream id (0xe0…) onto its PSM stream type.
	types map[uint8]uint8
}

func newPSDemuxer() *psDemuxer { return &psDemuxer{types: map[uint8]uint8{}} }

// demux reads one PS pack (or several: a frame may be sent as more than
// one) and returns its video. A pack whose video stream no PSM has named
// yet returns errNoPSM; malformed or truncated input an error wrapping
// ErrBadPS; a video stream of another codec than H.264 or H.265 an error
// wrapping ErrUnsupportedStream. The input is not retained: es is a copy.
func (d *psDemuxer) demux(b []byte) (psFrame, error) {
	var f psFrame
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return f, fmt.Errorf("%w: %d stray bytes at offset %d", ErrBadPS, len(b)-off, off)
		}
		if b[off] != 0 || b[off+1] != 0 || b[off+2] != 1 {
			return f, fmt.Errorf("%w: no start code at offset %d", ErrBadPS, off)
		}
		code := b[off+3]
		switch code {
		case psPackHeader:
			n, err := packHeaderLen(b[off:])
			if err != nil {
				return f, fmt.Errorf("%w at offset %d", err, off)
			}
			off += n
			continue
		case psEnd:
			off += 4
			continue
		}
		// Every other unit carries its length after the start code.
		if len(b)-off < 6 {
			return f, fmt.Errorf("%w: unit 0x%02x truncated at offset %d", ErrBadPS, code, off)
		}
		end := off + 6 + int(binary.BigEndian.Uint16(b[off+4:]))
		if end > len(b) {
			return f, fmt.Errorf("%w: unit 0x%02x of %d bytes truncated to %d at offset %d", ErrBadPS, code, end-off, len(b)-off, off)
		}
		unit := b[off:end]
		off = end
		switch {
		case code == psMap:
			if err := d.readMap(unit); err != nil {
				return f, err
			}
		case code >= 0xe0 && code <= 0xef: // video
			typ, ok := d.types[code]
			if !ok {
				return f, errNoPSM
			}
			codec, err := codecOfStreamType(typ)
			if err != nil {
				return f, err
			}
			pts, hasPTS, payload, err := readPES(unit)
			if err != nil {
				return f, fmt.Errorf("%w at offset %d", err, off-len(unit))
			}
			if f.codec == "" {
				f.codec = codec
			}
			if hasPTS && !f.hasPTS {
				f.pts, f.hasPTS = pts, true
			}
			f.es = append(f.es, payload...)
		default:
			// System header, audio, padding, private streams: not read.
		}
	}
	return f, nil
}

// packHeaderLen returns the length of the pack header at the start of b:
// 14 bytes and its stuffing in MPEG-2, 12 in MPEG-1.
func packHeaderLen(b []byte) (int, error) {
	if len(b) < 5 {
		return 0, fmt.Errorf("%w: pack header truncated", ErrBadPS)
	}
	if b[4]>>4 == 0x2 { // MPEG-1
		if len(b) < 12 {
			return 0, fmt.Errorf("%w: MPEG-1 pack header truncated", ErrBadPS)
		}
		return 12, nil
	}
	if b[4]>>6 != 0x1 {
		return 0, fmt.Errorf("%w: pack header of neither MPEG-1 nor MPEG-2", ErrBadPS)
	}
	if len(b) < 14 {
		return 0, fmt.Errorf("%w: pack header truncated", ErrBadPS)
	}
	n := 14 + int(b[13]&0x07)
	if len(b) < n {
		return 0, fmt.Errorf("%w: pack header stuffing truncated", ErrBadPS)
	}
	return n, nil
}

// readMap takes the stream types of a PSM (§2.5.4): after the 6 bytes of
// start code and length, 2 flag bytes, the program stream info, the
// elementary stream map of (type, id, info) entries, and a CRC.
func (d *psDemuxer) readMap(m []byte) error {
	bad := func(what string) error { return fmt.Errorf("%w: program stream map: %s", ErrBadPS, what) }
	if len(m) < 12 {
		return bad("truncated")
	}
	pos := 10 + int(binary.BigEndian.Uint16(m[8:]))
	if pos+2 > len(m) {
		return bad("program stream info overruns it")
	}
	end := pos + 2 + int(binary.BigEndian.Uint16(m[pos:]))
	pos += 2
	if end > len(m) {
		return bad("elementary stream map overruns it")
	}
	types := map[uint8]uint8{}
	for pos < end {
		if end-pos < 4 {
			return bad("elementary stream entry truncated")
		}
		typ, id := m[pos], m[pos+1]
		pos += 4 + int(binary.BigEndian.Uint16(m[pos+2:]))
		if pos > end {
			return bad("elementary stream info overruns the map")
		}
		types[id] = typ
	}
	d.types = types
	return nil
}

// readPES returns a PES packet's presentation time and payload: MPEG-2
// headers (§2.4.3.6) carry a header length and flags; MPEG-1 ones
// stuffing, an optional buffer size, then the time stamps.
func readPES(p []byte) (pts uint32, hasPTS bool, payload []byte, err error) {
	if len(p) < 7 {
		return 0, false, nil, fmt.Errorf("%w: PES header truncated", ErrBadPS)
	}
	if p[6]>>6 == 0x2 { // MPEG-2
		if len(p) < 9 {
			return 0, false, nil, fmt.Errorf("%w: PES header truncated", ErrBadPS)
		}
		start := 9 + int(p[8])
		if start > len(p) {
			return 0, false, nil, fmt.Errorf("%w: PES header of %d bytes overruns the packet", ErrBadPS, p[8])
		}
		if p[7]&0x80 != 0 {
			if p[8] < 5 {
				return 0, false, nil, fmt.Errorf("%w: PES header too short for its PTS", ErrBadPS)
			}
			pts, hasPTS = readTimestamp(p[9:14]), true
		}
		return pts, hasPTS, p[start:], nil
	}
	i := 6
	for i < len(p) && p[i] == 0xff && i < 6+16 {
		i++
	}
	if i+1 < len(p) && p[i]>>6 == 0x1 { // STD buffer size
		i += 2
	}
	switch {
	case i < len(p) && p[i]>>4 == 0x2 && i+5 <= len(p):
		return readTimestamp(p[i : i+5]), true, p[i+5:], nil
	case i < len(p) && p[i]>>4 == 0x3 && i+10 <= len(p):
		return readTimestamp(p[i : i+5]), true, p[i+10:], nil
	case i < len(p) && p[i] == 0x0f:
		return 0, false, p[i+1:], nil
	}
	return 0, false, nil, fmt.Errorf("%w: MPEG-1 PES header unreadable", ErrBadPS)
}

// readTimestamp reads a 33-bit PTS or DTS, keeping its low 32 bits: RTP
// time, which wraps the same way.
func readTimestamp(b []byte) uint32 {
	v := uint64(b[0]>>1&0x07)<<30 | uint64(b[1])<<22 | uint64(b[2]>>1)<<15 | uint64(b[3])<<7 | uint64(b[4]>>1)
	return uint32(v)
}

// codecOfStreamType names the codec of a PSM video stream type.
func codecOfStreamType(typ uint8) (string, error) {
	switch typ {
	case streamTypeH264:
		return "H264", nil
	case streamTypeH265:
		return "H265", nil
	}
	return "", fmt.Errorf("%w: stream type 0x%02x", ErrUnsupportedStream, typ)
}

// accessUnit splits a frame's Annex-B video into NAL units, without the
// access unit delimiters that PS muxers add.
func accessUnit(codec string, es []byte) ([][]byte, error) {
	var nalus h264.AnnexB // H.265 is framed the same way
	if err := nalus.Unmarshal(es); err != nil {
		return nil, fmt.Errorf("%w: video: %w", ErrBadPS, err)
	}
	out := nalus[:0]
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		aud := h264.NALUType(n[0]&0x1f) == h264.NALUTypeAccessUnitDelimiter
		if codec == "H265" {
			aud = h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_AUD_NUT
		}
		if !aud {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: video without NAL units", ErrBadPS)
	}
	return out, nil
}
