package notify

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/alerts"
)

func TestTopic(t *testing.T) {
	cases := []struct {
		grid string
		sev  alerts.Severity
		want string
	}{
		{"D01-S02-G03", alerts.SeverityMajor, "alerts/D01-S02-G03/major"},
		{"110105-003-012", alerts.SeverityCritical, "alerts/110105-003-012/critical"},
		{"a/b+#", alerts.SeverityInfo, "alerts/a_b__/info"},
	}
	for _, tc := range cases {
		if got := Topic(alerts.Alert{Grid: tc.grid, Severity: tc.sev}); got != tc.want {
			t.Errorf("Topic(%q, %v) = %q, want %q", tc.grid, tc.sev, got, tc.want)
		}
	}
}

func TestMQTTPublishesAndCountsFailures(t *testing.T) {
	type msg struct {
		topic   string
		payload []byte
		qos     byte
	}
	var got []msg
	fail := false
	m := &MQTT{QoS: 1, Logger: quiet, Publish: func(topic string, payload []byte, retain bool, qos byte) error {
		if fail {
			return errors.New("broker closed")
		}
		got = append(got, msg{topic, payload, qos})
		return nil
	}}
	m.Notify(transition("a1", 2))
	m.Send(Message{Delivery: "score/water/2026-03-02", Event: "case_score", Topic: "cases/scores/water", Body: []byte(`{"score":1000}`)})
	fail = true
	m.Notify(transition("a1", 3))
	m.Send(Message{Topic: "cases/scores/gas", Body: []byte(`{}`)})
	if len(got) != 2 || got[0].topic != "alerts/D01-S02-G03/major" || got[0].qos != 1 ||
		got[1].topic != "cases/scores/water" || string(got[1].payload) != `{"score":1000}` || got[1].qos != 1 {
		t.Fatalf("published %+v", got)
	}
	var tr alerts.Transition
	if err := json.Unmarshal(got[0].payload, &tr); err != nil || tr.Event.Version != 2 {
		t.Errorf("payload %s (%v)", got[0].payload, err)
	}
	if s, f := testutil.ToFloat64(m.Metrics.sent.WithLabelValues("mqtt")), testutil.ToFloat64(m.Metrics.failed.WithLabelValues("mqtt")); s != 2 || f != 2 {
		t.Errorf("sent %v failed %v, want 2 and 2", s, f)
	}
}
