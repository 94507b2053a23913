package simulators

import (
	"fmt"
	"strings"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"
)

// clip is a looping video clip cut into access units. Each clip starts
// with a keyframe and ends at a GOP boundary, so looping stays decodable.
type clip struct {
	h265          bool
	vps, sps, pps []byte
	frames        [][][]byte // access units, each a list of NAL units
}

// loadClip parses an embedded Annex-B clip (testdata/name). Clips are
// read-only once loaded, so cameras share them.
func loadClip(name string) (*clip, error) {
	buf, err := clipFiles.ReadFile("testdata/" + name)
	if err != nil {
		return nil, fmt.Errorf("%w: no clip %s", ErrBadCamera, name)
	}
	var nalus h264.AnnexB // H.265 uses the same Annex-B framing
	if err := nalus.Unmarshal(buf); err != nil {
		return nil, fmt.Errorf("clip %s: %w", name, err)
	}
	c := &clip{h265: strings.HasSuffix(name, ".h265")}
	var pending [][]byte
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		vcl, param := c.classify(n)
		switch param {
		case "vps":
			c.vps = first(c.vps, n)
		case "sps":
			c.sps = first(c.sps, n)
		case "pps":
			c.pps = first(c.pps, n)
		}
		pending = append(pending, n)
		if vcl {
			c.frames = append(c.frames, pending)
			pending = nil
		}
	}
	if len(c.frames) == 0 || c.sps == nil || c.pps == nil {
		return nil, fmt.Errorf("clip %s: no frames or parameter sets", name)
	}
	return c, nil
}

func first(have, n []byte) []byte {
	if have != nil {
		return have
	}
	return n
}

// classify tells whether a NAL unit is a picture slice, or which parameter
// set it is. Every clip has one slice per picture.
func (c *clip) classify(n []byte) (vcl bool, param string) {
	if c.h265 {
		switch t := (n[0] >> 1) & 0x3f; {
		case t < 32:
			return true, ""
		case t == 32:
			return false, "vps"
		case t == 33:
			return false, "sps"
		case t == 34:
			return false, "pps"
		}
		return false, ""
	}
	switch h264.NALUType(n[0] & 0x1f) {
	case h264.NALUTypeNonIDR, h264.NALUTypeIDR:
		return true, ""
	case h264.NALUTypeSPS:
		return false, "sps"
	case h264.NALUTypePPS:
		return false, "pps"
	}
	return false, ""
}

// encoder returns an RTP packetizer of access units for the format.
func (c *clip) encoder(f format.Format) (func(au [][]byte) ([]*rtp.Packet, error), error) {
	switch f := f.(type) {
	case *format.H264:
		e, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		return e.Encode, nil
	case *format.H265:
		e, err := f.CreateEncoder()
		if err != nil {
			return nil, err
		}
		return e.Encode, nil
	}
	return nil, fmt.Errorf("%w: no encoder for %s", ErrBadCamera, f.Codec())
}
