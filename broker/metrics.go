package broker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the broker's counters.
type metrics struct {
	authFailures *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
	messages     *prometheus.CounterVec
	limited      *prometheus.CounterVec
	status       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
	if reg != nil {
		reg.MustRegister(m.authFailures, m.aclDenied, m.messages, m.limited, m.status)
	}
	return m
}
