// Package rtsp probes the city's cameras over RTSP and turns each probe into
// a camera_health record: a classified status (ok, unreachable, refused,
// auth_failed, not_found, no_video_track, unsupported_codec, stalled,
// degraded) and the stream's measurements. The Prober schedules the probes;
// records go to the same Arrow batcher and ClickHouse writer as telemetry.
package rtsp

import "errors"

// Sentinel errors of the package.
var (
	// ErrBadURL means a camera's RTSP URL cannot be parsed.
	ErrBadURL = errors.New("rtsp: invalid camera URL")
	// ErrNoVideoTrack means the session description has no video media.
	ErrNoVideoTrack = errors.New("rtsp: no video track")
	// ErrUnsupportedCodec means the video codec is neither H.264 nor H.265.
	ErrUnsupportedCodec = errors.New("rtsp: unsupported video codec")
	// ErrSealedPassword means a camera's sealed RTSP password cannot be
	// opened: the prober has another secrets key than the one that sealed it.
	ErrSealedPassword = errors.New("rtsp: camera's RTSP password cannot be decrypted")
	// ErrNoTargets means the Prober has no Targets function.
	ErrNoTargets = errors.New("rtsp: prober has no Targets")
	// ErrDecoder means libavcodec could not decode a picture.
	ErrDecoder = errors.New("rtsp: picture decoder")
	// ErrNoDecoder means gridwatch was built without cgo, so without
	// libavcodec: pictures are not diagnosed.
	ErrNoDecoder = errors.New("rtsp: built without cgo, no picture decoder")
	// ErrNoPlay means a target is to be played (Target.Play) by a Prober
	// without a Play function.
	ErrNoPlay = errors.New("rtsp: camera has no RTSP URL and the prober no other way to its stream")
	// ErrStarted means Start was called twice.
	ErrStarted = errors.New("rtsp: prober already started")
)
