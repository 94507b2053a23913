package notify

import (
	"log/slog"
	"strings"
	"sync"

	"github.com/gridwatch/gridwatch/alerts"
)

// PublishFunc publishes a message from the broker itself; (*broker.Broker).Publish is one.
type PublishFunc func(topic string, payload []byte, retain bool, qos byte) error

// MQTT publishes transitions on the embedded broker under
// alerts/{grid}/{severity}. Publishing is in-process and does not wait for
// subscribers, so it needs no queue of its own.
type MQTT struct {
	// Publish sends one message. Required.
	Publish PublishFunc
	// QoS is the quality of service subscribers receive. It defaults to 0.
	QoS byte
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics defaults to unregistered metrics.
	Metrics *Metrics

	defaults sync.Once
}

// Topic returns the topic a transition of alert a is published on. The
// characters MQTT reserves (/ + #) in a grid code become underscores, so a
// code never adds a topic level or a wildcard.
func Topic(a alerts.Alert) string {
	return "alerts/" + TopicLevel(a.Grid) + "/" + a.Severity.String()
}

// TopicLevel returns s as one topic level: the characters MQTT reserves
// (/ + #) become underscores.
func TopicLevel(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '+', '#':
			return '_'
		}
		return r
	}, s)
}

// setDefaults fills in the unset fields once.
func (m *MQTT) setDefaults() {
	m.defaults.Do(func() {
		if m.Metrics == nil {
			m.Metrics = NewMetrics(nil)
		}
		if m.Logger == nil {
			m.Logger = slog.Default()
		}
	})
}

// Send publishes msg's body on its topic.
func (m *MQTT) Send(msg Message) {
	m.setDefaults()
	if err := m.Publish(msg.Topic, msg.Body, false, m.QoS); err != nil {
		m.Metrics.failed.WithLabelValues("mqtt").Inc()
		m.Logger.Warn("notification not published on mqtt", "topic", msg.Topic, "delivery", msg.Delivery, "err", err)
		return
	}
	m.Metrics.sent.WithLabelValues("mqtt").Inc()
}

// Notify implements Notifier.
func (m *MQTT) Notify(t alerts.Transition) {
	m.setDefaults()
	payload, err := body(t)
	if err == nil {
		err = m.Publish(Topic(t.Alert), payload, false, m.QoS)
	}
	if err != nil {
		m.Metrics.failed.WithLabelValues("mqtt").Inc()
		m.Logger.Warn("alert transition not published on mqtt", "alert", t.Event.AlertID, "version", t.Event.Version, "err", err)
		return
	}
	m.Metrics.sent.WithLabelValues("mqtt").Inc()
}
