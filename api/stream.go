package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/alerts"
)

// Defaults of the alert stream.
const (
	DefaultHeartbeat          = 15 * time.Second
	DefaultStreamBuffer       = 256
	DefaultStreamWriteTimeout = 10 * time.Second
	// DefaultMaxStreams bounds the streams open at once: each holds a
	// goroutine, a buffer and a subscription every transition is copied to.
	DefaultMaxStreams = 1000
)

// streamMetrics counts the clients of the alert stream.
type streamMetrics struct {
	clients prometheus.Gauge
	events  prometheus.Counter
	dropped *prometheus.CounterVec
}

func newStreamMetrics(reg prometheus.Registerer) *streamMetrics {
	m := &streamMetrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gridwatch_api_stream_clients", Help: "Clients connected to the alert stream.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_api_stream_events_total", Help: "Alert transitions sent to stream clients.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_api_stream_dropped_total",
			Help: "Stream clients disconnected for being slow, by reason: overflow (transitions were lost) or write_timeout; or refused because MaxStreams were open (too_many).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.events, m.dropped)
	}
	return m
}

// CloseStreams ends every alert stream, now and from now on, so that an
// http.Server shuts down without waiting for them (RegisterOnShutdown). It
// is safe to call twice.
func (s *Server) CloseStreams() {
	s.closeStreams.Do(func() { close(s.streamsDone) })
}

// streamAlerts serves GET /api/v1/alerts/stream?grid=: Server-Sent Events,
// one per transition of an alert in the principal's scope (and under grid,
// when given): "id: {alert}/{version}", "event: {kind}", "data: {transition
// JSON}". A comment line goes out every Heartbeat. A client that falls so
// far behind that transitions are lost gets an "overflow" event and is
// disconnected, and so is one that does not take a write within
// StreamWriteTimeout: either should list the alerts again and reconnect.
// Beyond MaxStreams open at once a client gets 503.
func (s *Server) streamAlerts(w http.ResponseWriter, r *http.Request) {
	select {
	case s.streamSlots <- struct{}{}:
		defer func() { <-s.streamSlots }()
	default:
		s.stream.dropped.WithLabelValues("too_many").Inc()
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "too_many_streams", fmt.Sprintf("%d alert streams are open, the most this server serves; retry later", cap(s.streamSlots)))
		return
	}
	p := principalFrom(r.Context())
	grid := r.URL.Query().Get("grid")
	rc := http.NewResponseController(w)
	sub := s.Alerts.Subscribe(s.StreamBuffer)
	defer sub.Close()
	s.stream.clients.Inc()
	defer s.stream.clients.Dec()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // tell reverse proxies not to buffer
	w.WriteHeader(http.StatusOK)
	send := func(write func(io.Writer) error) bool {
		if err := rc.SetWriteDeadline(time.Now().Add(s.StreamWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		err := write(w)
		if err == nil {
			err = rc.Flush()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.stream.dropped.WithLabelValues("write_timeout").Inc()
		}
		return err == nil
	}
	comment := func(text string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := fmt.Fprintf(w, ": %s\n\n", text); return err }
	}
	if !send(comment("gridwatch alert stream")) {
		return
	}
	heartbeat := time.NewTicker(s.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.streamsDone:
			return
		case <-heartbeat.C:
			if !send(comment("heartbeat")) {
				return
			}
		case t, ok := <-sub.C:
			if !ok {
				return // the engine closed
			}
			if sub.Dropped() > 0 {
				s.stream.dropped.WithLabelValues("overflow").Inc()
				send(func(w io.Writer) error {
					_, err := fmt.Fprint(w, "event: overflow\ndata: {\"error\":\"transitions were lost: list the alerts again and reconnect\"}\n\n")
					return err
				})
				return
			}
			if !p.sees(t.Alert.Grid) || (grid != "" && !s.InScope(grid, t.Alert.Grid)) {
				continue
			}
			if !send(func(w io.Writer) error { return writeEvent(w, t) }) {
				return
			}
			s.stream.events.Inc()
		}
	}
}

// writeEvent writes one transition as a Server-Sent Event.
func writeEvent(w io.Writer, t alerts.Transition) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode transition: %w", err)
	}
	_, err = fmt.Fprintf(w, "id: %s/%d\nevent: %s\ndata: %s\n\n", t.Event.AlertID, t.Event.Version, t.Event.Kind, data)
	return err
}
