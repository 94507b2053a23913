package rtsp

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
)

// classify maps a probe error onto a status.
func classify(err error) Status {
	var (
		bad     liberrors.ErrClientBadStatusCode
		authErr liberrors.ErrClientAuthSetup
		dnsErr  *net.DNSError
		netErr  net.Error
		stream  *StreamError
	)
	switch {
	case errors.As(err, &stream):
		return stream.Status
	case errors.Is(err, ErrNoVideoTrack):
		return StatusNoVideoTrack
	case errors.Is(err, ErrUnsupportedCodec):
		return StatusUnsupportedCodec
	case errors.Is(err, ErrSealedPassword):
		return StatusAuthFailed
	case errors.As(err, &bad):
		switch bad.Code {
		case base.StatusUnauthorized, base.StatusForbidden:
			return StatusAuthFailed
		case base.StatusNotFound:
			return StatusNotFound
		case base.StatusServiceUnavailable, base.StatusNotEnoughBandwidth:
			return StatusRefused
		}
		return StatusError
	case errors.As(err, &authErr):
		return StatusAuthFailed
	case errors.As(err, new(liberrors.ErrClientTCPTimeout)), errors.As(err, new(liberrors.ErrClientUDPTimeout)):
		return StatusStalled
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return StatusRefused
	case errors.As(err, new(liberrors.ErrClientRequestTimedOut)), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.As(err, &dnsErr), errors.As(err, &netErr) && netErr.Timeout():
		return StatusUnreachable
	}
	return StatusError
}

// userinfo matches the credentials part of any URL in a text.
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@`)

// redact removes t's credentials from an error text: any user:password@ in
// a URL, and the password itself wherever it appears, plain or escaped.
func redact(text string, t Target) string {
	text = userinfo.ReplaceAllString(text, "${1}***@")
	if t.Password != "" {
		text = strings.ReplaceAll(text, t.Password, "***")
		if esc := url.QueryEscape(t.Password); esc != t.Password {
			text = strings.ReplaceAll(text, esc, "***")
		}
	}
	return text
}
