package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLossesListEveryTableSeries attacks the promise of /readyz that every
// non-zero series of data not stored is listed (issue 10 item 13): each
// entry of lossTable, made non-zero in a registry, appears under its
// series name; a series of the same counter with another label value
// (accepted traffic) and a counter left out of the table (a failed INSERT,
// which spools) do not.
func TestLossesListEveryTableSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	want := map[string]float64{}
	for i, ls := range lossTable {
		label := ls.label
		if label == "" {
			label = "table"
		}
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: ls.name, Help: "test"}, []string{label})
		reg.MustRegister(c)
		values := ls.values
		if values == nil {
			values = []string{"telemetry"}
		}
		for _, v := range values {
			c.WithLabelValues(v).Add(float64(i + 1))
			want[ls.name+`{`+label+`="`+v+`"}`] = float64(i + 1)
		}
		if ls.values != nil {
			c.WithLabelValues("accepted").Inc()
		}
	}
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "gridwatch_storage_batches_failed_total", Help: "test"})
	failed.Inc()
	reg.MustRegister(failed)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := lossesIn(mfs)
	for series, v := range want {
		if got[series] != v {
			t.Errorf("losses lack %s = %v (got %v)", series, v, got[series])
		}
	}
	if len(got) != len(want) {
		t.Errorf("losses = %v, want exactly %v", got, want)
	}
}
