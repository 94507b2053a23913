package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// notLosses are the counters whose names sound like losses (lossy below)
// but count nothing lost, each with the reason.
var notLosses = map[string]string{
	"gridwatch_cases_refused_total":                      "a refused report or action is answered with its error and changes nothing",
	"gridwatch_cases_save_errors_total":                  "the action is answered 503 and not applied; a system event is retried at the next tick",
	"gridwatch_api_hotline_refused_total":                "a ticket with a bad signature is answered 401 and carries nothing stored",
	"gridwatch_storage_batches_failed_total":             "a failed INSERT's batch goes to the spool",
	"gridwatch_batcher_write_errors_total":               "a failed write's rows are spooled or counted in gridwatch_batcher_rows_dropped_total",
	"gridwatch_ingest_rejections_total":                  "rejected input is stored in the rejected table",
	"gridwatch_alerts_unknown_device_observations_total": "the reading of an unknown device is stored in the rejected table",
	"gridwatch_ingest_duplicates_dropped_total":          "a copy of a stored reading",
	"gridwatch_camera_probes_late_total":                 "postponed to the next tick, not skipped",
	"gridwatch_notify_silenced_total":                    "kept quiet on purpose by a silence",
	"gridwatch_alerts_inhibited_total":                   "muted on purpose: offline device, maintenance",
	"gridwatch_alerts_eval_errors_total":                 "a rule expression failing counts as false; the reading is stored",
	"gridwatch_alerts_save_errors_total":                 "retried; what is finally dropped is gridwatch_alerts_dropped_total",
	"gridwatch_mqtt_auth_failures_total":                 "a refused login carries no data",
	"gridwatch_api_actions_refused_total":                "a refused action changes nothing and its sender got the error",
	"gridwatch_gb28181_rejected_total":                   "a refused SIP request is answered with its status code (or, unparseable, dropped like any lost datagram); the device resends",
	"gridwatch_gb28181_stream_errors_total":              "unreadable packets of a camera's sampled stream are what the sample diagnoses (its health row says so), not data accepted for storage",
	"gridwatch_notify_retries_total":                     "retried; what finally fails is gridwatch_notify_failed_total",
	"gridwatch_storage_insert_retries_total":             "retried; a batch that still fails goes to the spool",
	"gridwatch_camera_diagnosis_failed_total":            "the sample's record is stored, without picture fields; a still not written is replaced by the next good sample's",
}

// lossy matches the counter names that sound like losses.
var lossy = regexp.MustCompile(`dropped|refused|failed|failures|quarantined|reject|denied|limited|lost|late|skipped|silenced|inhibited|errors|unknown|retries`)

// TestEveryLossyCounterIsClassified audits the code's counters for
// /readyz (issue 10 item 13): each counter named in a non-test Go file of
// the module whose name sounds like a loss is in lossTable or in
// notLosses with its reason, so a new drop counter cannot stay out of
// /readyz unnoticed. Counters of mixed series (gridwatch_mqtt_messages_total)
// are in lossTable by their loss labels.
func TestEveryLossyCounterIsClassified(t *testing.T) {
	name := regexp.MustCompile(`"(gridwatch_[a-z0-9_]+_total)"`)
	inTable := map[string]bool{}
	for _, ls := range lossTable {
		inTable[ls.name] = true
	}
	seen := map[string]bool{}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]] = true
			if lossy.MatchString(m[1]) && !inTable[m[1]] && notLosses[m[1]] == "" {
				t.Errorf("%s (%s) sounds like a loss: add it to lossTable (ready.go) or, with its reason, to notLosses", m[1], path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for n := range inTable {
		if !seen[n] {
			t.Errorf("lossTable names %s, which no code defines", n)
		}
	}
	for n := range notLosses {
		if !seen[n] {
			t.Errorf("notLosses names %s, which no code defines", n)
		}
	}
}
