package api

import (
	"net/http"

	"github.com/gridwatch/gridwatch/ingest/gb28181"
)

// gbDeviceJSON is a device registered over GB/T 28181 with its grid.
type gbDeviceJSON struct {
	gb28181.DeviceState
	Grid string `json:"grid"`
}

// gb28181Routes registers the GB/T 28181 endpoint; without GB28181 it
// answers 503.
func (s *Server) gb28181Routes(v1 *routes) {
	v1.HandleFunc("GET /api/v1/gb28181/devices", func(w http.ResponseWriter, r *http.Request) {
		if s.GB28181 == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the GB/T 28181 registrar is off (gb28181.udp_listen and gb28181.tcp_listen are empty)")
			return
		}
		s.listGB28181(w, r)
	})
}

// listGB28181 serves GET /api/v1/gb28181/devices: the devices registered
// with the registrar in the caller's scope, ordered by id, with their
// registration, keepalive, DeviceInfo and catalog.
func (s *Server) listGB28181(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	out := []gbDeviceJSON{}
	for _, st := range s.GB28181() {
		d, ok := s.Lookup(st.ID)
		if !ok || !p.sees(d.Grid) {
			continue
		}
		out = append(out, gbDeviceJSON{DeviceState: st, Grid: d.Grid})
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}
