package storage

import (
	"maps"
	"slices"
	"testing"
)

// TestTimeColumns checks that the time columns read off the schema are the
// ones a reader expects as times.
func TestTimeColumns(t *testing.T) {
	cols := timeColumns()
	for table, want := range map[string][]string{
		"telemetry":     {"received", "ts"},
		"camera_health": {"ts"},
		"case_events":   {"due", "ts"},
		"alert_events":  {"ts"},
	} {
		if g := slices.Sorted(maps.Keys(cols[table])); !slices.Equal(g, want) {
			t.Errorf("time columns of %s = %v, want %v", table, g, want)
		}
	}
	if len(cols["alerts"]) != 13 {
		t.Errorf("alerts has %d time columns (%v), want 13", len(cols["alerts"]), cols["alerts"])
	}
}
