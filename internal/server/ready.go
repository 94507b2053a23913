package server

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// lossSeries is one entry of lossTable: a counter, or the series of a
// counter whose label has one of the values given.
type lossSeries struct {
	name   string
	label  string
	values []string
}

// lossTable is every counter of data gridwatch was sent, accepted or made
// and did not store or deliver, whatever the policy that allowed it; /readyz
// lists each of their series that is not zero. It is the one list: the
// tests check each entry against the served registry.
//
// The counters that sound like losses but are not are listed with their
// reasons in ready_test.go (notLosses); a test fails on a counter of the
// code that sounds like one and is in neither list.
var lossTable = []lossSeries{
	{name: "gridwatch_batcher_rows_dropped_total"}, // telemetry, rejected, camera_health, device_status
	{name: "gridwatch_spool_rows_dropped_total"},
	{name: "gridwatch_spool_segments_quarantined_total"},
	{name: "gridwatch_spool_rows_quarantined_total"},
	{name: "gridwatch_camera_records_dropped_total"},
	{name: "gridwatch_gb28181_records_dropped_total"},
	// Not gridwatch_ingest_messages_total{outcome="dropped"}: the same
	// messages again, each a QoS 1 refusal, a QoS 0 drop or a batcher's
	// dropped rows.
	{name: "gridwatch_mqtt_messages_total", label: "result", values: []string{"refused_qos1", "dropped_qos0"}},
	// Publishes dropped; not the refused connections (conn_rate,
	// flapping_ban, auth_failure_ban: before any message, which a QoS 1
	// device keeps) nor subscriptions.
	{name: "gridwatch_mqtt_limited_total", label: "limit", values: []string{"message_rate", "byte_rate", "topic_length"}},
	{name: "gridwatch_mqtt_acl_denied_total", label: "action", values: []string{"publish"}},
	{name: "gridwatch_mqtt_deliveries_dropped_total"},
	{name: "gridwatch_alerts_dropped_total"},
	{name: "gridwatch_notify_failed_total"},
	{name: "gridwatch_notify_dropped_total"},
	{name: "gridwatch_api_stream_dropped_total"},
	// Case changes a stream subscriber did not get; the API stream then
	// says overflow and disconnects (gridwatch_api_stream_dropped_total).
	{name: "gridwatch_cases_stream_dropped_total"},
}

// readyDetail is the detail of /readyz: the spool's figures and every
// series of data not stored.
func (s *Server) readyDetail() map[string]any {
	st := s.spool.Stats()
	detail := map[string]any{
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
	if s.upstream != nil {
		detail["upstream"] = s.upstream.State()
	}
	if s.coord.coord != nil {
		detail["cluster"] = s.coord.coord.State()
	}
	return detail
}

// losses returns the non-zero series of lossTable in the server's
// registry, keyed by the series as Prometheus writes it
// (name{label="value",…}).
func (s *Server) losses() map[string]float64 {
	mfs, err := s.metrics.Gather()
	if err != nil {
		s.Logger.Warn("gather metrics for /readyz", "err", err)
	}
	return lossesIn(mfs)
}

// lossesIn returns the non-zero series of lossTable among mfs.
func lossesIn(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
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

// isLoss reports whether the series m of counter name is in lossTable.
func isLoss(name string, m *dto.Metric) bool {
	for _, ls := range lossTable {
		if ls.name != name {
			continue
		}
		if ls.label == "" {
			return true
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == ls.label && slices.Contains(ls.values, l.GetValue()) {
				return true
			}
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
