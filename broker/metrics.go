package broker

import (
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's counters.
type metrics struct {
	authFailures *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
	messages     *prometheus.CounterVec
	// ingested is messages{kind="telemetry",result="ingested"}, resolved
	// once: it counts every message, and a label lookup each time showed
	// in profiles.
	ingested prometheus.Counter
	limited  *prometheus.CounterVec
	status   *prometheus.CounterVec
}

// newMetrics makes the broker's counters, and registers them with reg,
// with the deliveries mochi dropped, which info counts.
func newMetrics(reg prometheus.Registerer, info *system.Info) *metrics {
	m := &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_mqtt_auth_failures_total",
			Help: "MQTT connections refused, by reason.",
		}, []string{"reason"}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_mqtt_acl_denied_total",
			Help: "Publishes and subscriptions refused by the topic ACL.",
		}, []string{"action"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_mqtt_messages_total",
			Help: "MQTT messages received, by topic kind and outcome; refused_qos1 (no PUBACK, the device resends) and dropped_qos0 are telemetry ingest could not store.",
		}, []string{"kind", "result"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_mqtt_limited_total",
			Help: "Connections refused and publishes dropped by a broker limit, by limit.",
		}, []string{"limit"}),
		status: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_mqtt_status_reports_total",
			Help: "Device status reports (connects, disconnects, status messages and wills), by status.",
		}, []string{"status"}),
	}
	m.ingested = m.messages.WithLabelValues("telemetry", "ingested")
	if reg != nil {
		dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gridwatch_mqtt_deliveries_dropped_total",
			Help: "Messages not delivered to a subscriber that had too many unacknowledged (QoS 1/2) or waiting to be written.",
		}, func() float64 {
			return float64(atomic.LoadInt64(&info.InflightDropped) + atomic.LoadInt64(&info.MessagesDropped))
		})
		reg.MustRegister(m.authFailures, m.aclDenied, m.messages, m.limited, m.status, dropped)
	}
	return m
}
