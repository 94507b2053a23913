// Package gb28181 is gridwatch's GB/T 28181 (2016/2022) registrar: devices
// and lower platforms register over SIP (UDP and TCP) with digest
// authentication, keep alive with MANSCDP Keepalive messages, answer
// Catalog and DeviceInfo queries and send alarm notifications. A device
// that misses KeepaliveMisses keepalives in a row, or whose registration
// expires, is offline. The Registrar reports each device's and catalogued
// channel's presence and each alarm through function fields; the server
// turns them into device status, camera health records and alert
// observations. SIP itself is parsed and framed by sipgo.
package gb28181

import "errors"

// Sentinel errors of the package.
var (
	// ErrBadMANSCDP means a MESSAGE body is not a MANSCDP message.
	ErrBadMANSCDP = errors.New("gb28181: malformed MANSCDP body")
	// ErrNoLookup means the Registrar has no Lookup function.
	ErrNoLookup = errors.New("gb28181: registrar has no Lookup")
	// ErrNoListener means neither a UDP nor a TCP address is set.
	ErrNoListener = errors.New("gb28181: no listen address")
	// ErrStarted means Start was called twice.
	ErrStarted = errors.New("gb28181: registrar already started")
	// ErrNotRegistered means a query names a device that is not registered.
	ErrNotRegistered = errors.New("gb28181: device not registered")
	// ErrTransactionEnded means a SIP client transaction ended with
	// neither a final answer nor an error of its own (see Answered).
	ErrTransactionEnded = errors.New("gb28181: SIP transaction ended without an answer")
)

// Errors of GB/T 28181 streams (Registrar.Play).
var (
	// ErrNoAnswer means a device gave no final answer to an INVITE in time.
	ErrNoAnswer = errors.New("gb28181: no answer to INVITE")
	// ErrInviteRefused means a device answered an INVITE with an error
	// status; the error names it.
	ErrInviteRefused = errors.New("gb28181: INVITE refused")
	// ErrBadAnswer means a device's 200 OK to an INVITE carries no usable
	// SDP answer (no PS/90000 video over RTP).
	ErrBadAnswer = errors.New("gb28181: unusable SDP answer")
	// ErrNoRTP means no RTP packet arrived in time after the answer.
	ErrNoRTP = errors.New("gb28181: no RTP from the device")
	// ErrStreamStopped means the RTP stream stopped for StreamTimeout.
	ErrStreamStopped = errors.New("gb28181: RTP stream stopped")
	// ErrHungUp means the device ended the stream with a BYE.
	ErrHungUp = errors.New("gb28181: device hung up")
	// ErrBadPS means the RTP payload is not a readable MPEG program stream.
	ErrBadPS = errors.New("gb28181: malformed MPEG-PS")
	// ErrUnsupportedStream means the program stream's video is neither
	// H.264 nor H.265.
	ErrUnsupportedStream = errors.New("gb28181: unsupported video stream type")
	// ErrNoChannel means no registered device has the channel in its
	// catalog, or its device is offline.
	ErrNoChannel = errors.New("gb28181: channel not online")

	// errNoPSM means a pack's video stream is not named by a PSM yet:
	// the frames before the first keyframe.
	errNoPSM = errors.New("gb28181: video before the first program stream map")
)
