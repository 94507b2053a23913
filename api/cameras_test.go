package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage"
)

// fakeCameras answers camera queries from fixed rows.
type fakeCameras struct {
	latest []storage.CameraHealth
	avail  []storage.Availability
}

func (f fakeCameras) LatestCameraHealth(context.Context) ([]storage.CameraHealth, error) {
	return f.latest, nil
}

func (f fakeCameras) CameraHistory(_ context.Context, camera string, _, _ time.Time, _ int) ([]storage.CameraHealth, error) {
	return f.latest[:1], nil
}

func (f fakeCameras) CameraAvailability(context.Context, time.Time, time.Time, bool) ([]storage.Availability, error) {
	return f.avail, nil
}

func TestCameraEndpoints(t *testing.T) {
	devs := []devices.Device{
		{ID: "cam1", Type: "camera", Grid: "g1", RTSPURL: "rtsp://10.0.0.1/live", RTSPUser: "admin", RTSPPassword: "s3cret-pw"},
		{ID: "cam2", Type: "camera", Grid: "g2", RTSPURL: "rtsp://10.0.0.2/live"},
		{ID: "m1", Type: "manhole_cover", Grid: "g1"},
	}
	lookup := func(id string) (devices.Device, bool) {
		for _, d := range devs {
			if d.ID == id {
				return d, true
			}
		}
		return devices.Device{}, false
	}
	s := &Server{
		Lookup:  lookup,
		Devices: func() []devices.Device { return devs },
		Cameras: fakeCameras{
			latest: []storage.CameraHealth{{Camera: "cam1", Grid: "g1", Status: "ok", TS: time.UnixMilli(1), FPS: 25}},
			avail:  []storage.Availability{{Key: "cam1", Day: time.Date(2024, 11, 22, 0, 0, 0, 0, time.UTC), Probes: 4, Up: 3, Pct: 75}},
		},
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct {
		path, want string
		code       int
	}{
		{"/api/v1/cameras", `"id":"cam1","grid":"g1","rtsp_url":"rtsp://10.0.0.1/live","health":{"time"`, 200},
		{"/api/v1/cameras", `"id":"cam2","grid":"g2","rtsp_url":"rtsp://10.0.0.2/live","health":null`, 200},
		{"/api/v1/cameras/cam1/health", `"status":"ok"`, 200},
		{"/api/v1/cameras/m1/health", `not_found`, 404},
		{"/api/v1/cameras/cam1/health?limit=0", `'limit'`, 400},
		{"/api/v1/cameras/availability", `"key":"cam1","day":"2024-11-22","probes":4,"up":3,"availability_pct":75`, 200},
		{"/api/v1/cameras/availability?by=street", `'by'`, 400},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s = %d %s, want %d with %s", c.path, resp.StatusCode, body, c.code, c.want)
		}
		if strings.Contains(string(body), "s3cret-pw") || strings.Contains(string(body), "admin@") {
			t.Errorf("GET %s leaks RTSP credentials: %s", c.path, body)
		}
	}
}
