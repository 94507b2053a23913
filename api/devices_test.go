package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"

	"github.com/gridwatch/gridwatch/devices"
)

// fakeRegistry is a Registry whose answers the test sets.
type fakeRegistry struct {
	grids  []devices.Grid
	units  []devices.Unit
	online map[string]time.Time
}

func (f fakeRegistry) Grids() []devices.Grid { return f.grids }
func (f fakeRegistry) Units() []devices.Unit { return f.units }
func (f fakeRegistry) DeviceStatus(id string) (bool, time.Time) {
	since, ok := f.online[id]
	return ok, since
}

func TestDeviceGridAndUnitEndpoints(t *testing.T) {
	square := orb.Polygon{{{116.3, 39.9}, {116.4, 39.9}, {116.4, 40}, {116.3, 39.9}}}
	devs := []devices.Device{
		{ID: "aq-1", Type: "air_quality", Grid: "D01-S01-G01", SecretHash: "$argon2id$hash", Name: "Station 1"},
		{ID: "cam-1", Type: "camera", Grid: "D01-S01-G02", RTSPURL: "rtsp://10.0.0.1/live", RTSPUser: "admin", RTSPPassword: "s3cret-pw"},
		{ID: "wl-1", Type: "water_level", Grid: "D02-S01-G01"},
	}
	reg := devices.NewRegistry(devs)
	viewer, scoped := "viewer-token", "d02-token"
	s := &Server{
		Lookup:  reg.Lookup,
		Devices: reg.All,
		Registry: fakeRegistry{
			grids: []devices.Grid{
				{Code: "D01", Level: devices.LevelDistrict, Geometry: square},
				{Code: "D01-S01", Level: devices.LevelStreet, Parent: "D01", Geometry: square},
				{Code: "D02", Level: devices.LevelDistrict, Geometry: square},
			},
			units: []devices.Unit{
				{Code: "water", Categories: []string{"water"}},
				{Code: "cg-d01", Categories: []string{"municipal"}, Districts: []string{"D01"}},
				{Code: "cg-d02", Categories: []string{"municipal"}, Districts: []string{"D02"}},
			},
			online: map[string]time.Time{"aq-1": time.UnixMilli(1732233600123)},
		},
		Tokens: []Token{
			{Name: "viewer", Role: RoleViewer, Hash: HashToken(viewer)},
			{Name: "d02", Role: RoleViewer, Grid: "D02", Hash: HashToken(scoped)},
		},
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct {
		token, path string
		code        int
		want        []string
		not         []string
	}{
		{viewer, "/api/v1/devices", 200,
			[]string{`"total":3`, `"id":"aq-1","type":"air_quality","grid":"D01-S01-G01","name":"Station 1","category":"environment","status":{"online":true,"since":"2024-11-22T00:00:00.123Z"}`,
				`"id":"wl-1","type":"water_level","grid":"D02-S01-G01","category":"water","status":{"online":false}`}, nil},
		{viewer, "/api/v1/devices?type=camera", 200, []string{`"total":1`, `"rtsp_url":"rtsp://10.0.0.1/live"`}, []string{`"aq-1"`}},
		{viewer, "/api/v1/devices?grid=D01-S01", 200, []string{`"total":2`, `"aq-1"`, `"cam-1"`}, []string{`"wl-1"`}},
		{viewer, "/api/v1/devices?limit=1&offset=1", 200, []string{`"total":3`, `"cam-1"`, `"limit":1,"offset":1`}, []string{`"aq-1"`, `"wl-1"`}},
		{viewer, "/api/v1/devices?offset=9", 200, []string{`"devices":[]`, `"total":3`}, nil},
		{viewer, "/api/v1/devices?limit=0", 400, []string{`'limit'`}, nil},
		{viewer, "/api/v1/devices/cam-1", 200, []string{`"id":"cam-1"`, `"category":"video"`}, nil},
		{viewer, "/api/v1/devices/nope", 404, []string{`not_found`}, nil},
		{scoped, "/api/v1/devices", 200, []string{`"total":1`, `"wl-1"`}, []string{`"aq-1"`, `"cam-1"`}},
		{scoped, "/api/v1/devices/aq-1", 404, []string{`not_found`}, nil}, // outside its scope
		{scoped, "/api/v1/devices/wl-1", 200, []string{`"id":"wl-1"`}, nil},
		{viewer, "/api/v1/devices/export.csv", 200,
			[]string{"id,type,grid,lat,lon,name,install_date,secret,rtsp_url,rtsp_sub_url,sip_password\n", "aq-1,air_quality,D01-S01-G01,,,Station 1,,,,,\n", "cam-1,camera,D01-S01-G02,,,,,,rtsp://10.0.0.1/live,,\n"}, nil},
		{scoped, "/api/v1/devices/export.csv", 200, []string{"wl-1,water_level"}, []string{"aq-1"}},
		{viewer, "/api/v1/grids", 200, []string{`{"code":"D01","level":"district"}`, `{"code":"D01-S01","level":"street","parent":"D01"}`}, []string{`"geometry"`}},
		{viewer, "/api/v1/grids?level=street", 200, []string{`"D01-S01"`}, []string{`"D02"`}},
		{viewer, "/api/v1/grids/D01-S01", 200, []string{`"code":"D01-S01"`, `"geometry":{"type":"Polygon","coordinates":[[[116.3,39.9]`}, nil},
		{scoped, "/api/v1/grids/D01", 404, []string{`not_found`}, nil},
		{scoped, "/api/v1/grids", 200, []string{`"D02"`}, []string{`"D01"`}},
		{viewer, "/api/v1/grids/export.geojson", 200, []string{`"type":"FeatureCollection"`, `"code":"D01-S01"`}, nil},
		{viewer, "/api/v1/units", 200, []string{`"code":"water"`, `"code":"cg-d01"`, `"code":"cg-d02"`}, nil},
		{scoped, "/api/v1/units", 200, []string{`"code":"water"`, `"code":"cg-d02"`}, []string{`"cg-d01"`}},
		{"", "/api/v1/devices", 401, []string{`unauthorized`}, nil},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != c.code {
			t.Errorf("GET %s = %d %s, want %d", c.path, resp.StatusCode, body, c.code)
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s = %s, want it to hold %s", c.path, body, w)
			}
		}
		for _, w := range append(c.not, "s3cret-pw", "admin@", "argon2id") {
			if strings.Contains(body, w) {
				t.Errorf("GET %s = %s, must not hold %s", c.path, body, w)
			}
		}
	}
}

func TestRegistryEndpointsWithoutRegistry(t *testing.T) {
	srv := httptest.NewServer((&Server{Lookup: devices.NewRegistry(nil).Lookup}).Handler())
	defer srv.Close()
	if code, _, _ := do(t, srv, "/api/v1/units", ""); code != http.StatusServiceUnavailable {
		t.Errorf("GET /api/v1/units without a registry = %d, want 503", code)
	}
}
