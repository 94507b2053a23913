package rtsp

import (
	"fmt"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/pion/rtp"
)

// videoCodec is what the meter needs of a measured codec: H.264 and H.265
// differ only in their RTP depacketizer, NAL unit header and SPS.
type videoCodec struct {
	// sps is the SPS of the session description, if it carries one;
	// params are all its parameter sets (VPS, SPS, PPS), for the decoder.
	sps    []byte
	params [][]byte
	// newDecoder returns a depacketizer of access units.
	newDecoder func() (func(*rtp.Packet) ([][]byte, error), error)
	// isSPS reports whether a NAL unit is a sequence parameter set.
	isSPS func(nalu []byte) bool
	// parseSPS reads the stream's parameters from an SPS.
	parseSPS func(nalu []byte) (streamParams, error)
	// isRandomAccess reports whether an access unit is a keyframe.
	isRandomAccess func(au [][]byte) bool
}

// streamParams are what an SPS tells of a stream.
type streamParams struct {
	profile       string
	width, height uint32
	nominalFPS    float64
}

// The measured codecs, without what a session description adds.
var (
	h264Codec = videoCodec{
		isSPS:          func(n []byte) bool { return h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS },
		parseSPS:       parseH264SPS,
		isRandomAccess: h264.IsRandomAccess,
	}
	h265Codec = videoCodec{
		isSPS:          func(n []byte) bool { return h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT },
		parseSPS:       parseH265SPS,
		isRandomAccess: h265.IsRandomAccess,
	}
)

// codecNamed returns the measured codec of a name ("H264", "H265"), as
// a stream opened by Play names it; ok is false for another.
func codecNamed(name string) (c videoCodec, ok bool) {
	switch name {
	case "H264":
		return h264Codec, true
	case "H265":
		return h265Codec, true
	}
	return videoCodec{}, false
}

// codecOf returns the measured codec of a format; ok is false for a codec
// the prober does not measure.
func codecOf(f format.Format) (c videoCodec, ok bool) {
	switch f := f.(type) {
	case *format.H264:
		sps, pps := f.SafeParams()
		c = h264Codec
		c.sps, c.params = sps, nonEmpty(sps, pps)
		c.newDecoder = func() (func(*rtp.Packet) ([][]byte, error), error) {
			d, err := f.CreateDecoder()
			if err != nil {
				return nil, fmt.Errorf("rtsp: H.264 depacketizer: %w", err)
			}
			return d.Decode, nil
		}
		return c, true
	case *format.H265:
		vps, sps, pps := f.SafeParams()
		c = h265Codec
		c.sps, c.params = sps, nonEmpty(vps, sps, pps)
		c.newDecoder = func() (func(*rtp.Packet) ([][]byte, error), error) {
			d, err := f.CreateDecoder()
			if err != nil {
				return nil, fmt.Errorf("rtsp: H.265 depacketizer: %w", err)
			}
			return d.Decode, nil
		}
		return c, true
	}
	return videoCodec{}, false
}

// nonEmpty returns the parameter sets when every one is there, else nil:
// a decoder needs them all.
func nonEmpty(sets ...[]byte) [][]byte {
	for _, s := range sets {
		if len(s) == 0 {
			return nil
		}
	}
	return sets
}

func parseH264SPS(nalu []byte) (streamParams, error) {
	var sps h264.SPS
	if err := sps.Unmarshal(nalu); err != nil {
		return streamParams{}, fmt.Errorf("rtsp: H.264 SPS: %w", err)
	}
	return streamParams{profile: h264ProfileName(sps.ProfileIdc), width: uint32(sps.Width()),
		height: uint32(sps.Height()), nominalFPS: sps.FPS()}, nil
}

func parseH265SPS(nalu []byte) (streamParams, error) {
	var sps h265.SPS
	if err := sps.Unmarshal(nalu); err != nil {
		return streamParams{}, fmt.Errorf("rtsp: H.265 SPS: %w", err)
	}
	return streamParams{profile: h265ProfileName(sps.ProfileTierLevel.GeneralProfileIdc), width: uint32(sps.Width()),
		height: uint32(sps.Height()), nominalFPS: sps.FPS()}, nil
}

// h264ProfileName names an H.264 profile_idc.
func h264ProfileName(idc uint8) string {
	switch idc {
	case 66:
		return "baseline"
	case 77:
		return "main"
	case 88:
		return "extended"
	case 100:
		return "high"
	case 110:
		return "high10"
	case 122:
		return "high422"
	case 244:
		return "high444"
	}
	return "unknown"
}

// h265ProfileName names an H.265 general_profile_idc.
func h265ProfileName(idc uint8) string {
	switch idc {
	case 1:
		return "main"
	case 2:
		return "main10"
	case 3:
		return "main_still"
	case 4:
		return "rext"
	case 9:
		return "scc"
	}
	return "unknown"
}
