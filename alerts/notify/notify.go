// Package notify tells the world about alert transitions: it publishes them
// on the embedded MQTT broker under alerts/{grid}/{severity} and POSTs them,
// signed, to webhooks. A Dispatcher decides what goes out: nothing a
// silence covers. Every transition that is not delivered is counted. Other
// notifications (a unit's daily score) go out as a Message on the same
// channels.
package notify

import (
	"encoding/json"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridwatch/gridwatch/alerts"
)

// Notifier takes transitions to deliver. Notify must not block for long:
// it runs on the goroutine that fans transitions out to every notifier.
type Notifier interface {
	Notify(t alerts.Transition)
}

// body is the JSON a transition is delivered as, on every channel.
func body(t alerts.Transition) ([]byte, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode transition %s v%d: %w", t.Event.AlertID, t.Event.Version, err)
	}
	return b, nil
}

// Metrics counts deliveries per target ("webhook", "mqtt").
type Metrics struct {
	sent    *prometheus.CounterVec
	retries *prometheus.CounterVec
	failed  *prometheus.CounterVec
	dropped *prometheus.CounterVec
	// silenced counts transitions Dispatcher kept from every target.
	silenced prometheus.Counter
}

// NewMetrics registers the notification metrics with reg; a nil reg
// registers nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_notify_sent_total", Help: "Alert transitions delivered, by target.",
		}, []string{"target"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_notify_retries_total", Help: "Delivery attempts that failed and were retried, by target.",
		}, []string{"target"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_notify_failed_total", Help: "Alert transitions whose delivery finally failed, after retries, by target.",
		}, []string{"target"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_notify_dropped_total", Help: "Alert transitions not attempted, by target and reason (queue_full, shutdown).",
		}, []string{"target", "reason"}),
		silenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_notify_silenced_total", Help: "Alert transitions not delivered because a silence or maintenance window covers the alert.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.retries, m.failed, m.dropped, m.silenced)
	}
	return m
}
