package alerts

import "github.com/prometheus/client_golang/prometheus"

// engineMetrics are the engine's Prometheus metrics.
type engineMetrics struct {
	observations prometheus.Counter
	unknown      prometheus.Counter
	evalErrors   prometheus.Counter
	inhibited    prometheus.Counter
	reloads      prometheus.Counter
	events       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	saveErrors   prometheus.Counter
	claims       *prometheus.CounterVec
	asked        prometheus.Gauge
	heard        *prometheus.CounterVec
	heardAsked   prometheus.Gauge
	handed       *prometheus.CounterVec
}

// newEngineMetrics creates the metrics and registers them with reg, if
// not nil.
func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		observations: prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_alerts_observations_total",
			Help: "Observations evaluated by the alert engine."}),
		unknown: prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_alerts_unknown_device_observations_total",
			Help: "Observations dropped because their device or device type is unknown."}),
		evalErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_alerts_eval_errors_total",
			Help: "Rule expressions that failed at run time (counted as false)."}),
		inhibited: prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_alerts_inhibited_total",
			Help: "Rule matches muted because the device is offline or silent, or in a maintenance window."}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_alerts_rule_reloads_total",
			Help: "Rule sets loaded after the first."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridwatch_alerts_events_total",
			Help: "Alert events (transitions and actions), by kind."}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridwatch_alerts_dropped_total",
			Help: "Transitions a slow subscriber lost (what=subscriber) and alert rows or events dropped because the store failed too long (what=alert, event), and observations of a device this node waited to own beyond the 64 kept (what=held)."},
			[]string{"what"}),
		saveErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_alerts_save_errors_total",
			Help: "Failed saves of alerts or events (retried)."}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridwatch_alerts_claims_total",
			Help: "Claims of alert conditions across the nodes of a cluster, by result: won (the alert fires), lost (another node's alert holds the condition), error (ZooKeeper did not answer; asked again)."},
			[]string{"result"}),
		asked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gridwatch_alerts_claims_asked",
			Help: "Claims of alerts ready to fire that are asked and not answered yet: they grow while ZooKeeper is slow or unreachable."}),
		heard: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridwatch_alerts_heard_checks_total",
			Help: "Devices this node had not heard from for an absence window, asked whether another node of the cluster did, by result: heard (another node did: not silent), silent, error (not answered; asked again)."},
			[]string{"result"}),
		heardAsked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gridwatch_alerts_heard_asked",
			Help: "Devices this node had not heard from for an absence window that wait for the answer whether another node did: they grow while ClickHouse is slow or unreachable."}),
		handed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridwatch_alerts_devices_handed_total",
			Help: "Devices whose rule state and open alerts this node took over from another (way=in) or let go to another (way=out)."},
			[]string{"way"}),
	}
	if reg != nil {
		reg.MustRegister(m.observations, m.unknown, m.evalErrors, m.inhibited, m.reloads, m.events, m.dropped, m.saveErrors, m.claims, m.asked, m.heard, m.heardAsked, m.handed)
	}
	return m
}
