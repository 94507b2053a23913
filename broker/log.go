package broker

import (
	"context"
	"log/slog"
)

// quietHandler drops mochi's per-message "publish packet error" record. mochi
// logs every hook refusal at ERROR with the whole packet, payload included:
// one line per bad message in a storm of them. gridwatch counts each
// refusal and ingest keeps it, with its reason, in the rejected table.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}
