package broker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the broker's counters.
type metrics struct {
	authFailures *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
	messages     *prometheus.CounterVec
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
			Help: "MQTT messages received, by topic kind and outcome.",
		}, []string{"kind", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.authFailures, m.aclDenied, m.messages)
	}
	return m
}
