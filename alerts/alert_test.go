package alerts_test

import (
	"encoding/json"
	"testing"

	"github.com/gridwatch/gridwatch/alerts"
)

// TestSeverityJSON checks that every severity, the zero one included,
// survives a JSON round trip, and that unknown names are refused.
func TestSeverityJSON(t *testing.T) {
	for _, tc := range []struct {
		sev  alerts.Severity
		json string
	}{
		{0, `""`},
		{alerts.SeverityInfo, `"info"`},
		{alerts.SeverityMinor, `"minor"`},
		{alerts.SeverityMajor, `"major"`},
		{alerts.SeverityCritical, `"critical"`},
	} {
		b, err := json.Marshal(tc.sev)
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal(%d) = %s, %v; want %s", tc.sev, b, err, tc.json)
			continue
		}
		var got alerts.Severity
		if err := json.Unmarshal(b, &got); err != nil || got != tc.sev {
			t.Errorf("Unmarshal(%s) = %d, %v; want %d", b, got, err, tc.sev)
		}
	}
	var s alerts.Severity
	if err := json.Unmarshal([]byte(`"urgent"`), &s); err == nil {
		t.Error(`Unmarshal("urgent") succeeded; want an error`)
	}
}
