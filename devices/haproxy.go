package devices

import (
	"bufio"
	"io"
)

// WriteHAProxyMap writes an HAProxy map file from each device's id, which
// is its MQTT client id, to the code of its grid cell. The MQTT frontend of
// deploy/haproxy/haproxy.cfg looks a connection's client id up in it and
// hashes the connection on the cell, so that the devices of one cell reach
// one gridwatch node, where a grid-level (storm) alert sees them all. Ids
// and grid codes hold no spaces (checkID), so each line is "id grid".
func WriteHAProxyMap(w io.Writer, devs []Device) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("# gridwatch devices export --format haproxy-map: MQTT client id (device id) -> grid cell\n")
	for _, d := range devs {
		if d.Grid == "" {
			continue
		}
		bw.WriteString(d.ID)
		bw.WriteByte(' ')
		bw.WriteString(d.Grid)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
