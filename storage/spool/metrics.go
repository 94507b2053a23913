package spool

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the spool's Prometheus metrics. The gauges read the spool
// when scraped.
type metrics struct {
	spooled, replayed, deduplicated, dropped *prometheus.CounterVec
	readingsDeduplicated                     *prometheus.CounterVec
	quarantined, quarantinedRows             *prometheus.CounterVec
}

// newMetrics creates the metrics of s and registers them on reg when set.
func newMetrics(reg prometheus.Registerer, s *Spool) (*metrics, error) {
	m := &metrics{
		spooled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_rows_spooled_total",
			Help: "Rows written to the disk spool instead of (or, in durable mode, before) ClickHouse, by table.",
		}, []string{"table"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_rows_replayed_total",
			Help: "Rows replayed from the spool into ClickHouse, by table; its rate is the replay rate.",
		}, []string{"table"}),
		deduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_batches_deduplicated_total",
			Help: "Spooled batches not replayed because the ledger showed them stored already (an INSERT whose answer was lost).",
		}, []string{"table"}),
		readingsDeduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_readings_deduplicated_total",
			Help: "Readings of replayed batches left out because ClickHouse held them already under another batch (on a cluster: a device's resend, after a node died before its PUBACK, stored by another node), by table.",
		}, []string{"table"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_rows_dropped_total",
			Help: "Rows that could be neither inserted nor spooled (a disk error), by table.",
		}, []string{"table"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_segments_quarantined_total",
			Help: "Segment files moved to the quarantine directory, by reason: corrupt (checksum, truncation), partial (a write a crash interrupted), rejected (ClickHouse refused the batch permanently) or unclassified (refused UnclassifiedAttempts times with an unknown error).",
		}, []string{"reason"}),
		quarantinedRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gridwatch_spool_rows_quarantined_total",
			Help: "Rows in segments quarantined because ClickHouse refused them (rejected, unclassified) or they were damaged after spooling, by table and reason; they are stored only once replayed by hand (gridwatch spool replay).",
		}, []string{"table", "reason"}),
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gridwatch_spool_bytes", Help: "Bytes in the spool's segment files.",
		}, func() float64 { return float64(s.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gridwatch_spool_max_bytes", Help: "The spool's bound (ingest.spool_max_bytes).",
		}, func() float64 { return float64(s.MaxBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gridwatch_spool_segments", Help: "Segment files waiting for replay.",
		}, func() float64 { return float64(s.Stats().Segments) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gridwatch_spool_quarantined_segments", Help: "Segment files in the quarantine directory, waiting to be replayed by hand or deleted.",
		}, func() float64 { return float64(s.Quarantined()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gridwatch_spool_oldest_segment_age_seconds", Help: "Age of the oldest segment waiting for replay; 0 when none.",
		}, func() float64 { return s.Stats().OldestAge.Seconds() }),
	}
	if reg != nil {
		for _, c := range append([]prometheus.Collector{m.spooled, m.replayed, m.deduplicated, m.readingsDeduplicated, m.dropped, m.quarantined, m.quarantinedRows}, gauges...) {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("spool: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
