package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
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
			latest: []storage.CameraHealth{{Camera: "cam1", Grid: "g1", Status: "ok", TS: time.UnixMilli(1), FPS: 25,
				Picture: &storage.PictureHealth{TS: time.UnixMilli(2), Pictures: 3, Conditions: []string{"blur"}, Sharpness: 12.5, FrameDiff: -1}}},
			avail: []storage.Availability{{Key: "cam1", Day: time.Date(2024, 11, 22, 0, 0, 0, 0, time.UTC), Probes: 4, Up: 3, Pct: 75}},
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
		{"/api/v1/cameras/cam1/health", `"picture":{"time":"1970-01-01T00:00:00.002Z","pictures":3,"conditions":["blur"],"luma":0,"contrast":0,"sharpness":12.5,`, 200},
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

// fakeStills holds one camera's still.
type fakeStills struct {
	camera string
	jpeg   []byte
	at     time.Time
	err    error
}

func (f fakeStills) Still(camera string) ([]byte, time.Time, error) {
	if f.err != nil {
		return nil, time.Time{}, f.err
	}
	if camera != f.camera {
		return nil, time.Time{}, rtsp.ErrNoStill
	}
	return f.jpeg, f.at, nil
}

// TestCameraStill attacks the README's promise that a camera's still is
// served as JPEG to the tokens that see the camera, and to no other.
func TestCameraStill(t *testing.T) {
	devs := []devices.Device{
		{ID: "cam1", Type: "camera", Grid: "D01-S01-G01"},
		{ID: "cam2", Type: "camera", Grid: "D02-S01-G01"},
		{ID: "m1", Type: "manhole_cover", Grid: "D01-S01-G01"},
	}
	lookup := func(id string) (devices.Device, bool) {
		i := slices.IndexFunc(devs, func(d devices.Device) bool { return d.ID == id })
		if i < 0 {
			return devices.Device{}, false
		}
		return devs[i], true
	}
	jpeg := []byte("\xff\xd8\xff\xe0 a still \xff\xd9")
	at := time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC)
	const viewer, scoped = "tok-viewer-0123456789", "tok-d02-0123456789"
	s := &Server{
		Lookup:  lookup,
		Devices: func() []devices.Device { return devs },
		Cameras: fakeCameras{},
		Stills:  fakeStills{camera: "cam1", jpeg: jpeg, at: at},
		Tokens: []Token{
			{Name: "viewer", Role: RoleViewer, Hash: HashToken(viewer)},
			{Name: "d02", Role: RoleViewer, Grid: "D02", Hash: HashToken(scoped)},
		},
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(token, path string) (*http.Response, []byte) {
		resp, body, err := getExport(t, srv, path, token) // any GET, for its status, headers and body
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	resp, body := get(viewer, "/api/v1/cameras/cam1/still")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || !bytes.Equal(body, jpeg) ||
		resp.Header.Get("Last-Modified") != "Wed, 02 Dec 2026 01:02:03 GMT" || !strings.Contains(resp.Header.Get("Cache-Control"), "private") {
		t.Errorf("still of cam1 = %d %v %q", resp.StatusCode, resp.Header, body)
	}
	for _, c := range []struct {
		token, path string
		code        int
		want        string
	}{
		{scoped, "/api/v1/cameras/cam1/still", 404, "not registered"}, // outside the token's scope
		{viewer, "/api/v1/cameras/cam2/still", 404, "no still yet"},
		{scoped, "/api/v1/cameras/cam2/still", 404, "no still yet"},
		{viewer, "/api/v1/cameras/m1/still", 404, "not registered"},
		{"", "/api/v1/cameras/cam1/still", 401, ""},
	} {
		resp, body := get(c.token, c.path)
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.want) || bytes.Contains(body, jpeg) {
			t.Errorf("GET %s = %d %s, want %d with %q", c.path, resp.StatusCode, body, c.code, c.want)
		}
	}
	s.Stills = fakeStills{err: errors.New("disk gone")}
	if resp, body := get(viewer, "/api/v1/cameras/cam1/still"); resp.StatusCode != 503 || strings.Contains(string(body), "disk gone") {
		t.Errorf("failing stills = %d %s, want 503 without the cause", resp.StatusCode, body)
	}
}
