package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/paulmach/orb/geojson"

	"github.com/gridwatch/gridwatch/devices"
)

// Registry answers what the API shows of the registry beside the devices
// (Server.Devices); *server.Server is one.
type Registry interface {
	// Grids returns the grid hierarchy.
	Grids() []devices.Grid
	// Units returns the units (departments) alerts are routed to.
	Units() []devices.Unit
	// DeviceStatus tells whether a device is online and since when.
	DeviceStatus(id string) (online bool, since time.Time)
}

// Paging of the device list.
const (
	defaultDeviceLimit = 100
	maxDeviceLimit     = 10000
)

// deviceJSON is a device as the API shows it: devices.Device's JSON form,
// which leaves out secrets, their hashes and RTSP credentials, with its
// category and status.
type deviceJSON struct {
	devices.Device
	Category string     `json:"category"`
	Status   statusJSON `json:"status"`
}

// statusJSON is whether a device is online and since when; a device never
// seen is offline with no since.
type statusJSON struct {
	Online bool   `json:"online"`
	Since  string `json:"since,omitempty"`
}

// gridJSON is a grid; its geometry only when one grid is asked for.
type gridJSON struct {
	devices.Grid
	Geometry *geojson.Geometry `json:"geometry,omitempty"`
}

// deviceRoutes registers the device, grid and unit endpoints; without
// Devices and Registry they answer 503.
func (s *Server) deviceRoutes(v1 *routes) {
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /api/v1/devices":              s.listDevices,
		"GET /api/v1/devices/{id}":         s.getDevice,
		"GET /api/v1/devices/export.csv":   s.exportDevices,
		"GET /api/v1/grids":                s.listGrids,
		"GET /api/v1/grids/{code}":         s.getGrid,
		"GET /api/v1/grids/export.geojson": s.exportGrids,
		"GET /api/v1/units":                s.listUnits,
	} {
		v1.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if s.Devices == nil || s.Registry == nil {
				writeError(w, http.StatusServiceUnavailable, "unavailable", "the registry is not configured")
				return
			}
			h(w, r)
		})
	}
}

// selectDevices returns the devices in the caller's scope that the type
// and grid (a subtree root) query parameters select, ordered by id.
func (s *Server) selectDevices(r *http.Request) []devices.Device {
	p := principalFrom(r.Context())
	typ, grid := r.URL.Query().Get("type"), r.URL.Query().Get("grid")
	var out []devices.Device
	for _, d := range s.Devices() {
		if p.sees(d.Grid) && (typ == "" || d.Type == typ) && (grid == "" || s.InScope(grid, d.Grid)) {
			out = append(out, d)
		}
	}
	return out
}

// toDeviceJSON adds category and status to d.
func (s *Server) toDeviceJSON(d devices.Device) deviceJSON {
	typ, _ := devices.LookupType(d.Type)
	out := deviceJSON{Device: d, Category: typ.Category}
	online, since := s.Registry.DeviceStatus(d.ID)
	out.Status.Online = online
	if !since.IsZero() {
		out.Status.Since = since.UTC().Format(time.RFC3339Nano)
	}
	return out
}

// listDevices serves GET /api/v1/devices?type=&grid=&limit=&offset=: a
// page of the selected devices, ordered by id, and how many there are.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	limit, ok := intParam(w, r, "limit", defaultDeviceLimit, 1, maxDeviceLimit)
	if !ok {
		return
	}
	offset, ok := intParam(w, r, "offset", 0, 0, 1<<31-1)
	if !ok {
		return
	}
	sel := s.selectDevices(r)
	page := sel[min(offset, len(sel)):min(offset+limit, len(sel))]
	out := make([]deviceJSON, len(page))
	for i, d := range page {
		out[i] = s.toDeviceJSON(d)
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out, "total": len(sel), "limit": limit, "offset": offset})
}

// intParam parses the query parameter name as an integer in [lo, hi],
// writing the error response when it is bad.
func intParam(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("'%s' must be %d..%d, not %q", name, lo, hi, v))
		return 0, false
	}
	return n, true
}

// getDevice serves GET /api/v1/devices/{id}; a device outside the
// caller's scope is as unknown as one never registered.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, ok := s.Lookup(id)
	if !ok || !principalFrom(r.Context()).sees(d.Grid) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("device %q is not registered", id))
		return
	}
	writeJSON(w, http.StatusOK, s.toDeviceJSON(d))
}

// exportDevices serves GET /api/v1/devices/export.csv?type=&grid=: the
// selected devices in the registry CSV format that `gridwatch devices
// import` reads. The secret column is always empty and RTSP URLs carry no
// credentials: secrets never leave over the API. A name a spreadsheet would
// run as a formula is defused (cell); the other columns are ids, numbers,
// dates and URLs, which the import checks.
func (s *Server) exportDevices(w http.ResponseWriter, r *http.Request) {
	sel := s.selectDevices(r)
	for i := range sel {
		sel[i].Secret, sel[i].RTSPUser, sel[i].RTSPPassword, sel[i].SIPPassword = "", "", "", ""
		sel[i].Name = cell(sel[i].Name)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="devices.csv"`)
	if err := devices.WriteCSV(w, sel); err != nil {
		s.Logger.Warn("device export cut short", "err", err)
	}
}

// selectGrids returns the grids in the caller's scope that the level and
// grid (a subtree root) query parameters select.
func (s *Server) selectGrids(r *http.Request) []devices.Grid {
	p := principalFrom(r.Context())
	level, root := r.URL.Query().Get("level"), r.URL.Query().Get("grid")
	var out []devices.Grid
	for _, g := range s.Registry.Grids() {
		if p.sees(g.Code) && (level == "" || g.Level == level) && (root == "" || s.InScope(root, g.Code)) {
			out = append(out, g)
		}
	}
	return out
}

// listGrids serves GET /api/v1/grids?level=&grid=: the selected grids,
// without their geometry.
func (s *Server) listGrids(w http.ResponseWriter, r *http.Request) {
	sel := s.selectGrids(r)
	out := make([]gridJSON, len(sel))
	for i, g := range sel {
		out[i] = gridJSON{Grid: g}
	}
	writeJSON(w, http.StatusOK, map[string]any{"grids": out})
}

// getGrid serves GET /api/v1/grids/{code}: one grid with its geometry.
func (s *Server) getGrid(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	if principalFrom(r.Context()).sees(code) {
		for _, g := range s.Registry.Grids() {
			if g.Code == code {
				out := gridJSON{Grid: g}
				if g.Geometry != nil {
					out.Geometry = geojson.NewGeometry(g.Geometry)
				}
				writeJSON(w, http.StatusOK, out)
				return
			}
		}
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("grid %q is not registered", code))
}

// exportGrids serves GET /api/v1/grids/export.geojson?level=&grid=: the
// selected grids as the GeoJSON FeatureCollection `gridwatch grids import`
// reads.
func (s *Server) exportGrids(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/geo+json")
	w.Header().Set("Content-Disposition", `attachment; filename="grids.geojson"`)
	if err := devices.WriteGeoJSON(w, s.selectGrids(r)); err != nil {
		s.Logger.Warn("grid export cut short", "err", err)
	}
}

// listUnits serves GET /api/v1/units: the units that may handle alerts in
// the caller's scope, those of the whole city included.
func (s *Server) listUnits(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	out := []devices.Unit{}
	for _, u := range s.Registry.Units() {
		if p.scope == "" || len(u.Districts) == 0 || slices.ContainsFunc(u.Districts, func(d string) bool {
			return p.sees(d) || s.InScope(d, p.scope)
		}) {
			out = append(out, u)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"units": out})
}
