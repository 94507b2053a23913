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
			Name: "gridwatch_api_stream_clients", Help: "Clients connected to the alert and case streams.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_api_stream_events_total", Help: "Alert transitions and case changes sent to stream clients.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_api_stream_dropped_total",
			Help: "Stream clients disconnected for being slow, by reason: overflow (transitions or changes were lost) or write_timeout; or refused because MaxStreams were open (too_many).",
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
// JSON}". See serveStream for heartbeats, overflow and slow clients.
func (s *Server) streamAlerts(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	grid := r.URL.Query().Get("grid")
	serveStream(s, w, r, "alert", func() (<-chan alerts.Transition, func() uint64, func()) {
		sub := s.Alerts.Subscribe(s.StreamBuffer)
		return sub.C, sub.Dropped, sub.Close
	}, func(t alerts.Transition) bool {
		return p.sees(t.Alert.Grid) && (grid == "" || s.InScope(grid, t.Alert.Grid))
	}, writeEvent)
}

// serveStream serves a stream of Server-Sent Events from a subscription
// that subscribe opens (its channel, its count of changes lost, its
// close), writing each item keep admits. A comment line goes out every
// Heartbeat. A client that falls so far behind that items are lost gets an
// "overflow" event and is disconnected, and so is one that does not take a
// write within StreamWriteTimeout: either should list the {noun}s again
// and reconnect. Beyond MaxStreams open at once (of every kind) a client
// gets 503.
func serveStream[T any](s *Server, w http.ResponseWriter, r *http.Request, noun string,
	subscribe func() (<-chan T, func() uint64, func()), keep func(T) bool, write func(io.Writer, T) error) {
	select {
	case s.streamSlots <- struct{}{}:
		defer func() { <-s.streamSlots }()
	default:
		s.stream.dropped.WithLabelValues("too_many").Inc()
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "too_many_streams", fmt.Sprintf("%d streams are open, the most this server serves; retry later", cap(s.streamSlots)))
		return
	}
	rc := http.NewResponseController(w)
	c, dropped, closeSub := subscribe()
	defer closeSub()
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
	if !send(comment("gridwatch " + noun + " stream")) {
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
		case item, ok := <-c:
			if !ok {
				return // the source closed
			}
			if dropped() > 0 {
				s.stream.dropped.WithLabelValues("overflow").Inc()
				send(func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "event: overflow\ndata: {\"error\":\"changes were lost: list the %ss again and reconnect\"}\n\n", noun)
					return err
				})
				return
			}
			if !keep(item) {
				continue
			}
			if !send(func(w io.Writer) error { return write(w, item) }) {
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
