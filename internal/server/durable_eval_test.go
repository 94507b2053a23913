package server

import (
	"fmt"
	"os"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestDurableResendCountsOnce holds the promise of ingest.durable_ack that a
// resend counts once (issue 10): a message whose group commit fails (the
// spool directory is gone) gets no PUBACK and the device sends it again;
// the alert engine must count its readings once, so pm25_high (avg > 75
// over 15 minutes with at least 3 samples) does not fire on two readings
// sent twice, and fires on the third.
func TestDurableResendCountsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; skipped under -short")
	}
	aq := devices.Device{ID: "aq-resend", Type: "air_quality", Grid: "D01-S01-G01", Secret: "aq-resend-secret-0123456789"}
	addr, database := storagetest.Database(t)
	srv := startServer(t, addr, database, []devices.Device{aq}, func(c *Config) { c.Ingest.DurableAck = true })

	c := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL(srv)).SetClientID(aq.ID).
		SetUsername(aq.ID).SetPassword(aq.Secret).SetProtocolVersion(4).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(250)
	// The connect's status row goes through the spool too: once it is
	// replayed, nothing but this test's message touches the directory.
	waitFor(t, 2*time.Minute, func() bool { return srv.spool.Stats().Segments == 0 })

	dir := srv.Config.SpoolDir()
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // Root ignores modes; a file is no directory.
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	twice := fmt.Sprintf(`[{"ts": %d, "pm25": 100}, {"ts": %d, "pm25": 100}]`, now-3000, now-2000)
	lost := c.Publish("devices/"+aq.ID+"/telemetry", 1, false, twice)
	waitFor(t, 2*time.Minute, func() bool {
		return gathered(t, srv, "gridwatch_batcher_write_errors_total", "table", "telemetry") > 0
	})
	if lost.WaitTimeout(100 * time.Millisecond) {
		t.Fatalf("a message whose group commit failed was acknowledged (err %v)", lost.Error())
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}

	send := func(payload string) {
		t.Helper()
		if tok := c.Publish("devices/"+aq.ID+"/telemetry", 1, false, payload); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", payload, tok.Error())
		}
	}
	pm25High := func() int {
		p, err := srv.alerting.engine.List(alerts.Filter{Device: aq.ID, Rule: "pm25_high"})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Alerts)
	}
	// The resend: its PUBACK comes once it is stored and evaluated.
	send(twice)
	if n := pm25High(); n != 0 {
		t.Fatalf("pm25_high fired on two readings, one message resent after a failed group commit: they were counted twice (%d alerts)", n)
	}
	send(fmt.Sprintf(`{"ts": %d, "pm25": 100}`, now-1000))
	waitFor(t, 2*time.Minute, func() bool { return pm25High() == 1 })
}
