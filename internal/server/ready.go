package server

import (
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// lossCounters are the counters of data gridwatch was sent or had accepted
// and did not store, whatever the policy that allowed it. /readyz lists
// each of their series that is not zero. A failed INSERT
// (gridwatch_storage_batches_failed_total) is not one: its batch goes to
// the spool.
var lossCounters = map[string]bool{
	"gridwatch_batcher_rows_dropped_total":       true,
	"gridwatch_spool_rows_dropped_total":         true,
	"gridwatch_spool_segments_quarantined_total": true,
	"gridwatch_spool_rows_quarantined_total":     true,
	"gridwatch_camera_records_dropped_total":     true,
}

// lossResults are the results of gridwatch_mqtt_messages_total that are
// telemetry not stored.
var lossResults = map[string]bool{"refused_qos1": true, "dropped_qos0": true}

// readyDetail is the detail of /readyz: the spool's figures and every
// series of data not stored.
func (s *Server) readyDetail() map[string]any {
	st := s.spool.Stats()
	return map[string]any{
		"spool": map[string]any{
			"segments":                   st.Segments,
			"rows":                       st.Rows,
			"bytes":                      st.Bytes,
			"max_bytes":                  st.MaxBytes,
			"oldest_segment_age_seconds": st.OldestAge.Seconds(),
			"replay_rows_per_second":     st.ReplayRate,
			// Segments set aside, not stored until replayed by hand
			// (gridwatch spool list, gridwatch spool replay).
			"quarantined_segments": s.spool.Quarantined(),
		},
		"losses": s.losses(),
	}
}

// losses returns the non-zero series of the loss counters, keyed by the
// series as Prometheus writes it (name{label="value",…}).
func (s *Server) losses() map[string]float64 {
	out := map[string]float64{}
	mfs, err := s.metrics.Gather()
	if err != nil {
		s.Logger.Warn("gather metrics for /readyz", "err", err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 && isLoss(name, m) {
				out[seriesName(name, m)] = v
			}
		}
	}
	return out
}

// isLoss reports whether the series of counter name is data not stored.
func isLoss(name string, m *dto.Metric) bool {
	if lossCounters[name] {
		return true
	}
	if name != "gridwatch_mqtt_messages_total" {
		return false
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == "result" && lossResults[l.GetValue()] {
			return true
		}
	}
	return false
}

// seriesName writes a series as Prometheus does: name{a="x",b="y"}.
func seriesName(name string, m *dto.Metric) string {
	labels := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
	}
	if len(labels) == 0 {
		return name
	}
	sort.Strings(labels)
	return name + "{" + strings.Join(labels, ",") + "}"
}
