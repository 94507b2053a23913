package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Causes of dropped rows, the cause label of gridwatch_batcher_rows_dropped_total.
const (
	dropWriteError = "write_error"
	dropOverloaded = "overloaded"
	dropClosed     = "closed"
)

// BatcherMetrics are the counters of all batchers, labelled by table. One
// value serves every batcher of a process.
type BatcherMetrics struct {
	rowsAdded    *prometheus.CounterVec
	rowsWritten  *prometheus.CounterVec
	rowsDropped  *prometheus.CounterVec
	batches      *prometheus.CounterVec
	writeErrors  *prometheus.CounterVec
	pending      *prometheus.GaugeVec
	blocked      *prometheus.CounterVec
	writeSeconds *prometheus.HistogramVec
}

// NewBatcherMetrics creates batcher metrics and registers them on reg; a nil
// reg leaves them unregistered.
func NewBatcherMetrics(reg prometheus.Registerer) *BatcherMetrics {
	f := promauto.With(reg)
	return &BatcherMetrics{
		rowsAdded: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_batcher_rows_added_total",
			Help: "Rows accepted into a batch.",
		}, []string{"table"}),
		rowsWritten: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_batcher_rows_written_total",
			Help: "Rows whose batch was written.",
		}, []string{"table"}),
		rowsDropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_batcher_rows_dropped_total",
			Help: "Rows lost: their batch failed to write (write_error), the batcher stayed full (overloaded) or was closed (closed).",
		}, []string{"table", "cause"}),
		batches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_batcher_batches_total",
			Help: "Batches sealed, by what sealed them: rows, bytes, age or close.",
		}, []string{"table", "reason"}),
		writeErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_batcher_write_errors_total",
			Help: "Batches whose write failed.",
		}, []string{"table"}),
		pending: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gridwatch_batcher_pending_batches",
			Help: "Sealed batches not yet written, the one being written included.",
		}, []string{"table"}),
		blocked: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_batcher_blocked_seconds_total",
			Help: "Time publishers spent waiting for a batch slot while max_pending batches waited for ClickHouse, summed over publishers: backpressure, which slows the MQTT clients' read loops instead of growing memory.",
		}, []string{"table"}),
		writeSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gridwatch_batcher_write_seconds",
			Help:    "Time taken by one batch write, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"table"}),
	}
}

// PipelineMetrics are the counters of the telemetry pipeline.
type PipelineMetrics struct {
	messages *prometheus.CounterVec
	// stored is messages{outcome="stored"}, resolved once: it counts
	// nearly every message, and a label lookup each time showed in
	// profiles.
	stored          prometheus.Counter
	readings        prometheus.Counter
	rejections      *prometheus.CounterVec
	duplicates      prometheus.Counter
	duplicateChecks *prometheus.CounterVec
}

// Results of a redelivery check, the result label of
// gridwatch_ingest_redelivery_checks_total.
const (
	checkDone   = "done"
	checkFailed = "failed"
)

// Outcomes of a telemetry message, the outcome label of
// gridwatch_ingest_messages_total.
const (
	outcomeStored        = "stored"
	outcomePartial       = "partial"
	outcomeRejected      = "rejected"
	outcomeUnknownDevice = "unknown_device"
	outcomeDropped       = "dropped"
	outcomeDuplicate     = "duplicate"
)

// NewPipelineMetrics creates pipeline metrics and registers them on reg; a
// nil reg leaves them unregistered.
func NewPipelineMetrics(reg prometheus.Registerer) *PipelineMetrics {
	f := promauto.With(reg)
	m := &PipelineMetrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_ingest_messages_total",
			Help: "Telemetry messages by outcome: stored, partial (some values rejected), rejected, unknown_device, dropped (overloaded or closed), duplicate (a redelivery stored already).",
		}, []string{"outcome"}),
		readings: f.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_ingest_readings_total",
			Help: "Readings decoded and handed to the telemetry batcher.",
		}),
		rejections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_ingest_rejections_total",
			Help: "Rejected values, records or messages, by reason.",
		}, []string{"reason"}),
		duplicates: f.NewCounter(prometheus.CounterOpts{
			Name: "gridwatch_ingest_duplicates_dropped_total",
			Help: "Readings of redelivered messages (MQTT DUP) not stored again because they were stored or durable already.",
		}),
		duplicateChecks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_ingest_redelivery_checks_total",
			Help: "Redelivered messages (MQTT DUP) checked against what is stored: done, or failed (then stored again).",
		}, []string{"result"}),
	}
	m.stored = m.messages.WithLabelValues(outcomeStored)
	return m
}

// message counts a message of outcome.
func (m *PipelineMetrics) message(outcome string) {
	if outcome == outcomeStored {
		m.stored.Inc()
		return
	}
	m.messages.WithLabelValues(outcome).Inc()
}
