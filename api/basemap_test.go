package api

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBasemap(t *testing.T) {
	const token = "gwt_basemap-test-admin-token-0123456789"
	png := []byte("\x89PNG\r\n\x1a\n fake")
	serve := func(b *Basemap) *httptest.Server {
		srv := httptest.NewServer((&Server{Gatherer: prometheus.NewRegistry(), AdminToken: token, Basemap: b}).Handler())
		t.Cleanup(srv.Close)
		return srv
	}
	none := serve(nil)
	for _, p := range []string{"/api/v1/grids/basemap.json", "/api/v1/grids/basemap"} {
		if code, body, _ := do(t, none, p, token); code != http.StatusNotFound || body["error"] == nil {
			t.Errorf("GET %s without a basemap: %d %v", p, code, body)
		}
	}
	srv := serve(&Basemap{Image: png, Type: "image/png", South: 30.1, West: 120.0, North: 30.4, East: 120.3})
	if code, _, _ := do(t, srv, "/api/v1/grids/basemap.json", ""); code != http.StatusUnauthorized {
		t.Errorf("GET basemap.json without a token: %d", code)
	}
	code, body, raw := do(t, srv, "/api/v1/grids/basemap.json", token)
	if code != http.StatusOK || body["type"] != "image/png" || raw != `{"bounds":[[30.1,120],[30.4,120.3]],"bytes":13,"type":"image/png"}` {
		t.Errorf("basemap.json: %d %s", code, raw)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/grids/basemap", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" || resp.Header.Get("X-Content-Type-Options") != "nosniff" || !bytes.Equal(got, png) {
		t.Errorf("basemap: %d %v %q", resp.StatusCode, resp.Header, got)
	}
}
