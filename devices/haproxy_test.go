package devices_test

import (
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

// TestWriteHAProxyMap: one "client-id cell" line per device with a cell,
// after a comment, which HAProxy's map files allow.
func TestWriteHAProxyMap(t *testing.T) {
	var b strings.Builder
	err := devices.WriteHAProxyMap(&b, []devices.Device{{ID: "wb-1", Grid: "0101"}, {ID: "cam-2"}, {ID: "mh.3", Grid: "0102"}})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "# ") || lines[1] != "wb-1 0101" || lines[2] != "mh.3 0102" {
		t.Errorf("map:\n%s\nwant a comment, then \"wb-1 0101\" and \"mh.3 0102\"", b.String())
	}
}
