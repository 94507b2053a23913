package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/server"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }

// chromium is Debian's browser, which deploy/install-deps.sh installs; the
// browser tests never let a tool download one of its own.
const chromium = "/usr/bin/chromium"

// needBrowser returns node, or skips (fails in CI) when node, chromium or
// web/node_modules (npm ci) is missing.
func needBrowser(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser end-to-end test: skipped under -short")
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(chromium)
	}
	if err == nil {
		_, err = os.Stat("node_modules/playwright-core/package.json")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the browser tests need node, %s and web/node_modules (deploy/install-deps.sh): %v", chromium, err)
		}
		t.Skipf("no browser test: %v (deploy/install-deps.sh installs what it needs)", err)
	}
	return node
}

// artifacts is where the browser tests leave their screenshots:
// $GRIDWATCH_E2E_ARTIFACTS, or web/e2e/artifacts.
func artifacts(t *testing.T) string {
	dir := os.Getenv("GRIDWATCH_E2E_ARTIFACTS")
	if dir == "" {
		abs, err := filepath.Abs("e2e/artifacts")
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// city is a running gridwatch for the browser: its server, the tokens by
// holder name and the devices.
type city struct {
	srv     *server.Server
	tokens  map[string]string
	devices []devices.Device
}

// holders are the console tests' API tokens.
var holders = []api.Token{
	{Name: "dispatcher", Role: api.RoleDispatcher},
	{Name: "grid-d01", Role: api.RoleOperator, Grid: "D01"},
	{Name: "watcher", Role: api.RoleViewer, Grid: "D02"},
	{Name: "crew-d01", Role: api.RoleUnit, Unit: "chengguan-d01"},
	{Name: "patrol-d01", Role: api.RoleReporter, Grid: "D01"},
}

// startCity runs a gridwatch on a fresh ClickHouse database with the
// generated city's devices and areas, plus extra devices, the rules and
// the cameras of farm (nil for none). seed, when set, fills the database
// before the server starts, as a server restarted over its data finds it.
func startCity(t *testing.T, c simulators.City, extra []devices.Device, rules string, farm *simulators.CameraFarm, seed func(addr, db string)) *city {
	t.Helper()
	addr, db := storagetest.Database(t)
	if seed != nil {
		seed(addr, db)
	}
	dir := t.TempDir()
	devs, err := c.Generate()
	if err != nil {
		t.Fatal(err)
	}
	devs = append(devs, extra...)
	if farm != nil {
		cams, err := farm.Devices("cam-", "D01-S01-G01", func(c simulators.Camera) string { return "Camera " + c.Path + " " + string(c.Fault) })
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, cams...)
	}
	areas, err := c.Areas()
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	var tokensYAML strings.Builder
	for _, h := range holders {
		tok, err := api.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[h.Name] = tok
		fmt.Fprintf(&tokensYAML, "- {name: %s, role: %s, grid: %q, unit: %q, token_hash: %s}\n", h.Name, h.Role, h.Grid, h.Unit, api.HashToken(tok))
	}
	write := func(name string, body func(io.Writer) error) string {
		p := filepath.Join(dir, name)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := body(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	cfg := server.Default()
	cfg.DataDir = dir
	cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.MQTT.MessageRate, cfg.MQTT.ByteRate, cfg.MQTT.ConnRatePerIP = -1, -1, -1
	cfg.ClickHouse.Addr, cfg.ClickHouse.Database, cfg.ClickHouse.Password = addr, db, storagetest.Password(t)
	cfg.Ingest.BatchAge = 200 * time.Millisecond
	cfg.Devices.File = write("devices.csv", func(w io.Writer) error { return devices.WriteCSV(w, devs) })
	cfg.Grids.File = write("grids.geojson", func(w io.Writer) error { return devices.WriteGeoJSON(w, areas) })
	// A basemap picture over the city's placed devices, padded.
	south, west, north, east := 90.0, 180.0, -90.0, -180.0
	for _, d := range devs {
		if d.Lat != 0 || d.Lon != 0 {
			south, west, north, east = min(south, d.Lat), min(west, d.Lon), max(north, d.Lat), max(east, d.Lon)
		}
	}
	cfg.Grids.BasemapFile = write("basemap.png", writeBasemap)
	cfg.Grids.BasemapBounds = fmt.Sprintf("%f,%f,%f,%f", south-0.01, west-0.01, north+0.01, east+0.01)
	cfg.Units.File = write("units.yaml", text("- {code: water, name: 水务局 Water, categories: [water, municipal, environment, lighting, sanitation, heating, construction, gas, fire, video]}\n- {code: chengguan-d01, name: 城管 D01, categories: [water], districts: [D01]}\n"))
	cfg.Rules.File = write("rules.yaml", text(rules))
	cfg.API.TokensFile = write("tokens.yaml", text(tokensYAML.String()))
	cfg.Cameras.Enabled = farm != nil
	if farm != nil {
		cfg.Cameras.LivenessInterval, cfg.Cameras.SampleInterval = time.Second, 3*time.Second
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := &server.Server{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start gridwatch: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close gridwatch: %v", err)
		}
	})
	return &city{srv: srv, tokens: tokens, devices: devs}
}

func (c *city) url() string { return "http://" + c.srv.HTTPAddr() }

func (c *city) mqttPort() string {
	_, port, _ := net.SplitHostPort(c.srv.MQTTAddr())
	return port
}

// publish sends payload as device d over MQTT (QoS 1).
func (c *city) publish(t *testing.T, d devices.Device, payload string) {
	t.Helper()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://127.0.0.1:" + c.mqttPort()).
		SetClientID(d.ID).SetUsername(d.ID).SetPassword(d.Secret).SetProtocolVersion(4))
	if tok := cl.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Errorf("connect %s: %v", d.ID, tok.Error())
		return
	}
	defer cl.Disconnect(50)
	if tok := cl.Publish("devices/"+d.ID+"/telemetry", 1, false, payload); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Errorf("publish as %s: %v", d.ID, tok.Error())
	}
}

// openAlerts returns how many alerts the dispatcher's list holds, up to 1000.
func (c *city) openAlerts(t *testing.T, query string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.url()+"/api/v1/alerts?limit=1000&"+query, nil)
	req.Header.Set("Authorization", "Bearer "+c.tokens["dispatcher"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Alerts []json.RawMessage `json:"alerts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return len(page.Alerts)
}

// waitFor polls cond every 100 ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runNode runs a node:test file of e2e/ against the city with env.
func runNode(t *testing.T, node, file string, c *city, env map[string]any) {
	t.Helper()
	raw, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "--test", "--test-reporter=spec", file)
	cmd.Env = append(os.Environ(),
		"GW_URL="+c.url(), "GW_MQTT_PORT="+c.mqttPort(), "GW_CHROMIUM="+chromium,
		"GW_ARTIFACTS="+artifacts(t), "GW_ENV="+string(raw))
	for name, tok := range c.tokens {
		cmd.Env = append(cmd.Env, "GW_TOKEN_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+tok)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node --test %s:\n%s", file, out.String())
	if err != nil {
		t.Fatalf("browser tests %s failed: %v", file, err)
	}
	t.Logf("screenshots in %s", artifacts(t))
}

// writePhoto writes a small PNG, a patrol's photo, and returns its path.
func writePhoto(t *testing.T) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for x := range 64 {
		for y := range 48 {
			img.Set(x, y, color.RGBA{R: uint8(x * 4), G: 120, B: uint8(y * 5), A: 255})
		}
	}
	p := filepath.Join(t.TempDir(), "pothole.png")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeBasemap writes a city's basemap, a PNG of blocks and streets.
func writeBasemap(w io.Writer) error {
	img := image.NewRGBA(image.Rect(0, 0, 512, 512))
	for x := range 512 {
		for y := range 512 {
			c := color.RGBA{R: 232, G: 228, B: 216, A: 255}
			if x%64 < 6 || y%64 < 6 {
				c = color.RGBA{R: 255, G: 255, B: 255, A: 255} // a street
			} else if (x/64+y/64)%5 == 0 {
				c = color.RGBA{R: 196, G: 222, B: 180, A: 255} // a park
			}
			img.Set(x, y, c)
		}
	}
	return png.Encode(w, img)
}

// asJS is a device as the browser tests get it, with its secret, which
// devices.Device's JSON leaves out.
func asJS(d devices.Device) map[string]string {
	return map[string]string{"id": d.ID, "secret": d.Secret, "grid": d.Grid, "name": d.Name,
		"lat": strconv.FormatFloat(d.Lat, 'f', -1, 64), "lon": strconv.FormatFloat(d.Lon, 'f', -1, 64)}
}

// floodRules raise an alert for an underpass gauge above 30 cm at once,
// one per device.
const floodRules = `rules:
  - name: underpass_flooded
    description: Water stands in the underpass.
    match: {types: [water_level]}
    metric: level_cm
    condition: value > 30
    severity: major
    no_group: true
`

// cityRules are floodRules and a camera's: an unreachable camera raises a
// case at once, whose page shows the camera's health.
const cityRules = floodRules + `  - name: camera_unreachable
    description: The camera does not answer RTSP.
    match: {types: [camera]}
    metric: up
    condition: value < 1
    severity: major
    no_group: true
`

// TestConsoleInBrowser drives the console in headless Chromium against a
// real gridwatch on a real ClickHouse (e2e/console.test.mjs): sign-in and
// the token kept out of the address and of localStorage, a breach appearing
// in the alert queue without a reload and as a case worked to its close
// with its timeline, the queue's filters, bulk dispatch and sign-for, an
// offline camera's case with the camera's health, the alert's page linking
// to its case, a scoped token on a wall screen seeing only its grid, a
// device named as HTML staying text, zh ↔ en, the phone, and a screenshot
// of every view.
func TestConsoleInBrowser(t *testing.T) {
	node := needBrowser(t)
	farm := &simulators.CameraFarm{Cameras: []simulators.Camera{{Path: "gate"}, {Path: "bridge", Fault: simulators.FaultOffline}, {Path: "market", Fault: simulators.FaultLowFPS}}}
	if err := farm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	gen := simulators.City{Devices: 80, Grids: 8, Seed: 12}
	devs, err := gen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var in01 devices.Device
	for _, d := range devs {
		if strings.HasPrefix(d.Grid, "D01-") {
			in01 = d
			break
		}
	}
	// Three gauges: one to breach under the browser's eyes (D01), one
	// flooded before (D02, outside the scoped token's grid), and one whose
	// name is HTML (D01).
	live := devices.Device{ID: "wl-live", Type: "water_level", Grid: in01.Grid, Lat: in01.Lat, Lon: in01.Lon, Name: "Underpass gauge, Jiefang Rd", Secret: "live-secret-0123456789"}
	other := devices.Device{ID: "wl-d02", Type: "water_level", Grid: "D02-S01-G01", Name: "Gauge D02", Secret: "d02-secret-0123456789"}
	xss := devices.Device{ID: "wl-xss", Type: "water_level", Grid: in01.Grid, Lat: in01.Lat + 0.0005, Lon: in01.Lon, Name: `<img src=x onerror=alert(1)>`, Secret: "xss-secret-0123456789"}
	c := startCity(t, gen, []devices.Device{live, other, xss}, cityRules, farm, nil)
	c.publish(t, other, `{"level_cm": 45}`)
	c.publish(t, xss, `{"level_cm": 12}`)
	waitFor(t, time.Minute, "the D02 alert", func() bool { return c.openAlerts(t, "device=wl-d02") == 1 })
	// Some history for the charts, in one message (a device reconnecting
	// at once over and over would be banned for flapping).
	now := time.Now().UnixMilli()
	var history []string
	for i := range 60 {
		history = append(history, fmt.Sprintf(`{"ts": %d, "level_cm": %d}`, now-int64(60-i)*30_000, 5+i%7))
	}
	c.publish(t, live, "["+strings.Join(history, ",")+"]")
	runNode(t, node, "e2e/console.test.mjs", c, map[string]any{
		"live": asJS(live), "other": asJS(other), "xss": asJS(xss), "photo": writePhoto(t),
	})
}
