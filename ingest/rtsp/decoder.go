//go:build cgo

package rtsp

// The prober decodes pictures with FFmpeg's libavcodec through cgo, as
// gortsplib's examples do, rather than with an ffmpeg subprocess per sample:
// starting ffmpeg costs about 0.1 s of CPU, which over 1,000 cameras is
// more than a sweep's whole budget, while decoding a keyframe in-process
// costs a fraction of a millisecond at these sizes (see the commit that
// added this file and BenchmarkDecodeKeyframe).

// #cgo pkg-config: libavcodec libavutil libswscale
// #include <libavcodec/avcodec.h>
// #include <libavutil/imgutils.h>
// #include <libswscale/swscale.h>
//
// // gw_decode sends one access unit to the decoder and asks for a picture:
// // 1 when one came out into f, 0 when the decoder needs more, or a
// // negative AVERROR. The packet does not own data, so the decoder copies it.
// static int gw_decode(AVCodecContext *c, AVPacket *pkt, AVFrame *f, uint8_t *data, int size) {
//   pkt->data = data;
//   pkt->size = size;
//   int r = avcodec_send_packet(c, pkt);
//   pkt->data = NULL;
//   pkt->size = 0;
//   if (r < 0 && r != AVERROR(EAGAIN)) return r;
//   r = avcodec_receive_frame(c, f);
//   if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
//   return r < 0 ? r : 1;
// }
//
// // gw_drain asks a decoder fed its last packet for the pictures it holds
// // back: 1 when one came out into f, 0 when there are none, or a negative
// // AVERROR.
// static int gw_drain(AVCodecContext *c, AVFrame *f) {
//   int r = avcodec_send_packet(c, NULL);
//   if (r < 0 && r != AVERROR_EOF) return r;
//   r = avcodec_receive_frame(c, f);
//   if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
//   return r < 0 ? r : 1;
// }
//
// // gw_scale converts f into out, a YUV 4:2:0 frame of out's size,
// // reusing *sws; 0 or a negative AVERROR.
// static int gw_scale(struct SwsContext **sws, AVFrame *f, AVFrame *out) {
//   *sws = sws_getCachedContext(*sws, f->width, f->height, f->format,
//     out->width, out->height, AV_PIX_FMT_YUV420P, SWS_AREA, NULL, NULL, NULL);
//   if (*sws == NULL) return AVERROR(EINVAL);
//   int r = sws_scale(*sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, out->data, out->linesize);
//   return r < 0 ? r : 0;
// }
import "C"

import (
	"fmt"
	"unsafe"
)

// pictureDecoder decodes H.264 or H.265 access units into pictures scaled
// for analysis. It is not safe for concurrent use.
type pictureDecoder struct {
	ctx      *C.AVCodecContext
	pkt      *C.AVPacket
	frame    *C.AVFrame
	out      *C.AVFrame
	sws      *C.struct_SwsContext
	maxWidth int
}

// newPictureDecoder opens a decoder of codec ("H264" or "H265") whose
// pictures are at most maxWidth wide.
func newPictureDecoder(codec string, maxWidth int) (*pictureDecoder, error) {
	id := uint32(C.AV_CODEC_ID_H264)
	if codec == "H265" {
		id = C.AV_CODEC_ID_HEVC
	}
	c := C.avcodec_find_decoder(id)
	if c == nil {
		return nil, fmt.Errorf("%w: libavcodec has no %s decoder", ErrDecoder, codec)
	}
	d := &pictureDecoder{maxWidth: maxWidth}
	d.ctx = C.avcodec_alloc_context3(c)
	d.pkt = C.av_packet_alloc()
	d.frame = C.av_frame_alloc()
	if d.ctx == nil || d.pkt == nil || d.frame == nil {
		d.close()
		return nil, fmt.Errorf("%w: out of memory", ErrDecoder)
	}
	// One thread: the prober runs many samples at once, and frame threads
	// would hold pictures back.
	d.ctx.thread_count = 1
	if r := C.avcodec_open2(d.ctx, c, nil); r < 0 {
		d.close()
		return nil, fmt.Errorf("%w: open %s decoder: %s", ErrDecoder, codec, averror(r))
	}
	return d, nil
}

// decode decodes one Annex-B access unit and returns its picture, or nil
// when the decoder produced none.
func (d *pictureDecoder) decode(annexB []byte) (*picture, error) {
	if len(annexB) == 0 {
		return nil, nil
	}
	return d.picture(C.gw_decode(d.ctx, d.pkt, d.frame, (*C.uint8_t)(unsafe.Pointer(&annexB[0])), C.int(len(annexB))))
}

// drain returns a picture the decoder held back once the last access unit
// was sent, or nil when it holds no more.
func (d *pictureDecoder) drain() (*picture, error) {
	return d.picture(C.gw_drain(d.ctx, d.frame))
}

// picture turns the result of gw_decode or gw_drain into the picture
// decoded, nil for none, or the error.
func (d *pictureDecoder) picture(r C.int) (*picture, error) {
	switch {
	case r < 0:
		return nil, fmt.Errorf("%w: %s", ErrDecoder, averror(r))
	case r == 0:
		return nil, nil
	}
	return d.convert()
}

// convert scales the decoded frame into a Go picture of at most maxWidth.
func (d *pictureDecoder) convert() (*picture, error) {
	w, h := int(d.frame.width), int(d.frame.height)
	if w < 2 || h < 2 {
		return nil, fmt.Errorf("%w: picture of %dx%d", ErrDecoder, w, h)
	}
	if w > d.maxWidth {
		w, h = d.maxWidth, h*d.maxWidth/w
	}
	w, h = w&^1, max(h&^1, 2)
	if d.out == nil || int(d.out.width) != w || int(d.out.height) != h {
		C.av_frame_free(&d.out)
		d.out = C.av_frame_alloc()
		if d.out == nil {
			return nil, fmt.Errorf("%w: out of memory", ErrDecoder)
		}
		d.out.format, d.out.width, d.out.height = C.AV_PIX_FMT_YUV420P, C.int(w), C.int(h)
		if r := C.av_frame_get_buffer(d.out, 0); r < 0 {
			return nil, fmt.Errorf("%w: picture buffer: %s", ErrDecoder, averror(r))
		}
	}
	if r := C.gw_scale(&d.sws, d.frame, d.out); r < 0 {
		return nil, fmt.Errorf("%w: convert picture: %s", ErrDecoder, averror(r))
	}
	p := &picture{w: w, h: h}
	p.y = planeOf(d.out, 0, w, h)
	p.u = planeOf(d.out, 1, w/2, h/2)
	p.v = planeOf(d.out, 2, w/2, h/2)
	return p, nil
}

// planeOf copies plane i of f, w x h bytes, into Go memory.
func planeOf(f *C.AVFrame, i, w, h int) []byte {
	stride := int(f.linesize[i])
	src := unsafe.Slice((*byte)(unsafe.Pointer(f.data[i])), stride*(h-1)+w)
	out := make([]byte, w*h)
	for row := range h {
		copy(out[row*w:(row+1)*w], src[row*stride:row*stride+w])
	}
	return out
}

// close frees the decoder. It is safe to call twice.
func (d *pictureDecoder) close() {
	if d.sws != nil {
		C.sws_freeContext(d.sws)
		d.sws = nil
	}
	C.av_frame_free(&d.out)
	C.av_frame_free(&d.frame)
	C.av_packet_free(&d.pkt)
	C.avcodec_free_context(&d.ctx)
}

// averror names a libav error code.
func averror(code C.int) string {
	buf := make([]C.char, 128)
	C.av_strerror(code, &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}
