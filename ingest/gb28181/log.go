package gb28181

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// sipLog is the slog.Handler given to sipgo. sipgo reports a datagram or
// stream it cannot parse only through its logger ("failed to parse", at
// error level, with the raw bytes), then drops it (UDP) or closes the
// connection (TCP); this handler counts those as malformed_sip and logs
// them at most once per second without the bytes. Everything else sipgo
// says goes to the registrar's logger at debug level: transaction and
// transport chatter is not the operator's business.
type sipLog struct {
	next      slog.Handler
	malformed func()
	last      *atomic.Int64 // unix nanoseconds of the last malformed log
}

func newSIPLog(next slog.Handler, malformed func()) *sipLog {
	return &sipLog{next: next, malformed: malformed, last: new(atomic.Int64)}
}

// Enabled lets every record through: parse failures must be counted
// whatever the level.
func (h *sipLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *sipLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "failed to parse" {
		h.malformed()
		now := time.Now().UnixNano()
		if last := h.last.Load(); now-last < int64(time.Second) || !h.last.CompareAndSwap(last, now) {
			return nil
		}
		var reason string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" {
				reason = a.Value.String()
			}
			return true
		})
		out := slog.NewRecord(r.Time, slog.LevelWarn, "gb28181: malformed SIP message dropped (logged once a second; counted in gridwatch_gb28181_rejected_total{reason=\"malformed_sip\"})", r.PC)
		out.AddAttrs(slog.String("err", truncate(reason)))
		return h.next.Handle(ctx, out)
	}
	if !h.next.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	r.Level = slog.LevelDebug
	return h.next.Handle(ctx, r)
}

func (h *sipLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &sipLog{next: h.next.WithAttrs(as), malformed: h.malformed, last: h.last}
}

func (h *sipLog) WithGroup(name string) slog.Handler {
	return &sipLog{next: h.next.WithGroup(name), malformed: h.malformed, last: h.last}
}

// LibraryLogger returns a logger for what sipgo writes through its package
// logger (sip.SetDefaultLogger) rather than the loggers a Registrar hands
// it, such as notices of connections closing: next's, at debug level. A
// process sets it once, where it builds its logger.
func LibraryLogger(next slog.Handler) *slog.Logger {
	return slog.New(newSIPLog(next, func() {}))
}
