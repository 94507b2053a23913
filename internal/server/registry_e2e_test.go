package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestRegistryAndBadInputEndToEnd runs a few devices through a real server
// on an external ClickHouse: readings out of range or of unknown metrics
// land in rejected with their reasons while the good readings of the same
// message are stored; malformed payloads sent with mosquitto_pub land in
// rejected; and devices and units imported into ClickHouse while the server
// runs take effect without a restart.
func TestRegistryAndBadInputEndToEnd(t *testing.T) {
	addr, database := storagetest.Database(t)
	devs := e2eDevices(t, 2)
	unitsFile := filepath.Join(t.TempDir(), "units.yaml")
	if err := os.WriteFile(unitsFile, []byte("- code: sanitation-d01\n  categories: [sanitation]\n  districts: [D01]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, addr, database, devs, func(c *Config) {
		c.Devices.ReloadInterval = 100 * time.Millisecond
		c.Units.File = unitsFile
	})
	t.Run("out of range and unknown metric beside good readings", func(t *testing.T) {
		d := devs[0]
		m := metricNames(d.Type)[0] // tilt_deg or fill_pct: at most 100
		publish(t, srv, d, fmt.Sprintf(`{"ts": 1600000000500, %q: 7, "no_such_metric": 1}`, m))
		publish(t, srv, d, fmt.Sprintf(`[{"ts": 1600000000600, %q: 8}, {"ts": 1600000000700, %[1]q: 100000}]`, m))
		waitCount(t, srv, 2, "SELECT count() FROM {db}.telemetry WHERE device = ?", d.ID)
		waitCount(t, srv, 1, "SELECT count() FROM {db}.rejected WHERE device = ? AND reason = 'unknown_metric'", d.ID)
		waitCount(t, srv, 1, "SELECT count() FROM {db}.rejected WHERE device = ? AND reason = 'out_of_range'", d.ID)
	})
	t.Run("malformed payloads from mosquitto_pub", func(t *testing.T) {
		bin, err := exec.LookPath("mosquitto_pub")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("mosquitto_pub missing (apt-get install mosquitto-clients)")
			}
			t.Skip("mosquitto_pub missing")
		}
		d := devs[1]
		_, port, _ := net.SplitHostPort(srv.MQTTAddr())
		m := metricNames(d.Type)[0]
		for _, msg := range []string{`{"ts": 1600000003000, ` + m + `: 1`, fmt.Sprintf(`{"ts": 1600000003000, %q: "seven", %[1]q: 3}`, m)} {
			out, err := exec.Command(bin, "-V", "5", "-h", "127.0.0.1", "-p", port, "-i", d.ID, "-u", d.ID, "-P", d.Secret,
				"-q", "1", "-t", "devices/"+d.ID+"/telemetry", "-m", msg).CombinedOutput()
			if err != nil {
				t.Logf("mosquitto_pub %s: %v: %s", msg, err, out) // an MQTT 5 PUBACK reason code may fail it
			}
		}
		waitCount(t, srv, 1, "SELECT count() FROM {db}.rejected WHERE device = ? AND reason = 'malformed_json'", d.ID)
		waitCount(t, srv, 1, "SELECT count() FROM {db}.rejected WHERE device = ? AND reason = 'wrong_type'", d.ID)
	})
	t.Run("imports take effect without a restart", func(t *testing.T) {
		if got := srv.UnitFor("sanitation", "D01-S01-G01"); got != "sanitation-d01" {
			t.Errorf("UnitFor(sanitation, D01-S01-G01) from units.file = %q, want sanitation-d01", got)
		}
		secret, err := devices.GenerateSecret()
		if err != nil {
			t.Fatal(err)
		}
		late := devices.Device{ID: "late-1", Type: "noise", Grid: "D09-S01-G01", Secret: secret}
		ctx := context.Background()
		if _, err := ImportDevices(ctx, srv.DB(), []devices.Device{late}); err != nil {
			t.Fatal(err)
		}
		if err := srv.DB().SaveUnits(ctx, []devices.Unit{{Code: "env-city", Categories: []string{"environment"}}}); err != nil {
			t.Fatal(err)
		}
		// A reload swaps in the units and the devices one after the other:
		// wait for both.
		deadline := time.Now().Add(30 * time.Second)
		var body map[string]any
		for srv.UnitFor("environment", late.Grid) != "env-city" || getJSON(t, srv, "/api/v1/devices/late-1", &body) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("an imported unit and device were not in use within 30s: routed to %q, GET /api/v1/devices/late-1 %v",
					srv.UnitFor("environment", late.Grid), body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL(srv)).
			SetClientID(late.ID).SetUsername(late.ID).SetPassword(secret).SetProtocolVersion(4))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("imported device cannot connect: %v", tok.Error())
		}
		c.Disconnect(0)
	})
}
