package broker

import "github.com/prometheus/client_golang/prometheus"

// upstreamMetrics are the Upstream's counters.
type upstreamMetrics struct {
	connected   prometheus.Gauge
	connects    *prometheus.CounterVec
	disconnects prometheus.Counter
	received    prometheus.Counter
	redelivered prometheus.Counter
	acked       prometheus.Counter
	messages    *prometheus.CounterVec
}

// newUpstreamMetrics makes u's metrics and registers them with reg.
func newUpstreamMetrics(reg prometheus.Registerer, u *Upstream) *upstreamMetrics {
	m := &upstreamMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gridwatch_upstream_connected",
			Help: "1 while the node is connected to the upstream MQTT broker and subscribed.",
		}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_upstream_connects_total",
			Help: "Connection attempts to the upstream MQTT broker, by result (ok: connected and subscribed).",
		}, []string{"result"}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_upstream_disconnects_total",
			Help: "Connections to the upstream MQTT broker that broke.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_upstream_deliveries_total",
			Help: "Messages the upstream broker delivered.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_upstream_redeliveries_total",
			Help: "Deliveries with the DUP flag: sent before on a connection that ended unacknowledged; their readings already stored are not stored again (gridwatch_ingest_duplicates_dropped_total).",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_upstream_acks_total",
			Help: "QoS 1 deliveries acknowledged to the upstream broker (with ingest.durable_ack: once stored).",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_upstream_messages_total",
			Help: "Upstream deliveries by outcome: ingested, rejected (stored in the rejected table), not_stored (not acknowledged; the broker delivers it again on the next connection), not_telemetry (acknowledged, not a devices/{id}/telemetry topic), status (a registered device's online/offline), status_ignored (a status message of an unknown device or neither online nor offline; acknowledged), closing (not acknowledged at shutdown; delivered again on the next start).",
		}, []string{"result"}),
	}
	if reg != nil {
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gridwatch_upstream_acks_pending",
			Help: "Upstream deliveries whose acknowledgement waits for their readings to be stored.",
		}, func() float64 { return float64(u.acking.Load()) })
		reg.MustRegister(m.connected, m.connects, m.disconnects, m.received, m.redelivered, m.acked, m.messages, pending)
	}
	return m
}
