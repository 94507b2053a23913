package rtsp

import "github.com/prometheus/client_golang/prometheus"

// metrics are the prober's Prometheus series. They carry the camera's
// status and probe kind, never its URL or credentials.
type metrics struct {
	probes   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dropped  prometheus.Counter
	late     prometheus.Counter
	lag      prometheus.Histogram
	waiting  prometheus.Gauge
	// The picture diagnosis.
	pictures        prometheus.Counter
	conditions      *prometheus.CounterVec
	diagnosisFailed *prometheus.CounterVec
	stillsRemoved   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_camera_probes_total",
			Help: "Camera probes by kind and status.",
		}, []string{"kind", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gridwatch_camera_probe_duration_seconds",
			Help:    "Duration of camera probes, rechecks included.",
			Buckets: []float64{0.005, 0.02, 0.1, 0.5, 1, 2, 5, 10, 20},
		}, []string{"kind"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_camera_records_dropped_total",
			Help: "Camera health records that could not be stored.",
		}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_camera_probes_late_total",
			Help: "Due camera probes that found every worker busy and waited for one (each is run, none skipped).",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gridwatch_camera_probe_lag_seconds",
			Help:    "Time from a camera probe's due time to its start.",
			Buckets: []float64{0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900},
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gridwatch_camera_probes_waiting",
			Help: "Due camera probes waiting for a free worker.",
		}),
		pictures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_camera_pictures_decoded_total",
			Help: "Keyframes of stream samples decoded for the picture diagnosis.",
		}),
		conditions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_camera_picture_conditions_total",
			Help: "Picture conditions (signal_loss, frozen, blur, …) found by the diagnosis of stream samples.",
		}, []string{"condition"}),
		diagnosisFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_camera_diagnosis_failed_total",
			Help: "Stream samples whose pictures could not be diagnosed (reason decoder: the record has no picture fields) or whose still was not stored (reason still).",
		}, []string{"reason"}),
		stillsRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_camera_stills_removed_total",
			Help: "Camera stills removed, the oldest first, to keep the stills under their size bound.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.probes, m.duration, m.dropped, m.late, m.lag, m.waiting,
			m.pictures, m.conditions, m.diagnosisFailed, m.stillsRemoved)
	}
	return m
}

func (m *metrics) observe(rec HealthRecord) {
	m.probes.WithLabelValues(string(rec.Kind), string(rec.Status)).Inc()
	m.duration.WithLabelValues(string(rec.Kind)).Observe(rec.DurationMs / 1000)
}
