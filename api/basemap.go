package api

import (
	"net/http"
	"strconv"
)

// Basemap is the picture the console's maps lay under the grid polygons
// (grids.basemap_file): a PNG or JPEG of the city and the box of latitudes
// and longitudes it covers. The maps need no tile server either way.
type Basemap struct {
	Image []byte
	// Type is the image's content type: image/png or image/jpeg.
	Type                     string
	South, West, North, East float64
}

// basemapRoutes registers the basemap endpoints; without a Basemap they
// answer 404.
func (s *Server) basemapRoutes(v1 *routes) {
	v1.HandleFunc("GET /api/v1/grids/basemap.json", s.basemapInfo)
	v1.HandleFunc("GET /api/v1/grids/basemap", s.basemapImage)
}

// basemapInfo serves GET /api/v1/grids/basemap.json: the basemap's type
// and bounds, [[south, west], [north, east]].
func (s *Server) basemapInfo(w http.ResponseWriter, r *http.Request) {
	b := s.Basemap
	if b == nil {
		writeError(w, http.StatusNotFound, "not_found", "no basemap is configured (grids.basemap_file)")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"type": b.Type, "bytes": len(b.Image), "bounds": [2][2]float64{{b.South, b.West}, {b.North, b.East}}})
}

// basemapImage serves GET /api/v1/grids/basemap: the picture, with its
// content type and no sniffing.
func (s *Server) basemapImage(w http.ResponseWriter, r *http.Request) {
	b := s.Basemap
	if b == nil {
		writeError(w, http.StatusNotFound, "not_found", "no basemap is configured (grids.basemap_file)")
		return
	}
	w.Header().Set("Content-Type", b.Type)
	w.Header().Set("Content-Length", strconv.Itoa(len(b.Image)))
	w.Header().Set("Cache-Control", "private, no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b.Image)
}
