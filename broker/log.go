package broker

import (
	"context"
	"log/slog"
)

// quietHandler drops mochi's per-message records: "publish packet error"
// and "client store quota reached". mochi logs every hook refusal at ERROR
// with the whole packet, payload included, and every delivery dropped for
// a subscriber's inflight cap at WARN: one line per message in a storm of
// them. gridwatch counts each (gridwatch_mqtt_deliveries_dropped_total
// the latter), and ingest keeps each refusal, with its reason, in the
// rejected table.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" || r.Message == "client store quota reached" {
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
