package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// transitions collects the alert transitions a notification channel
// delivered.
type transitions struct {
	mu  sync.Mutex
	got []alerts.Transition
}

func (ts *transitions) add(t *testing.T, payload []byte) {
	var tr alerts.Transition
	if err := json.Unmarshal(payload, &tr); err != nil {
		t.Errorf("notification %q: %v", payload, err)
		return
	}
	ts.mu.Lock()
	ts.got = append(ts.got, tr)
	ts.mu.Unlock()
}

// webhookReceiver starts a webhook receiver, closed when t ends, that
// collects the alert transitions POSTed to it.
func webhookReceiver(t *testing.T) (*transitions, *httptest.Server) {
	hook := &transitions{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hook.add(t, b)
	}))
	t.Cleanup(receiver.Close)
	return hook, receiver
}

// count counts the notifications of device's alerts with an event of kind.
func (ts *transitions) count(device string, kind alerts.EventKind) (n int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, tr := range ts.got {
		if tr.Alert.Device == device && tr.Event.Kind == kind {
			n++
		}
	}
	return n
}

func (ts *transitions) devices() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []string
	for _, tr := range ts.got {
		out = append(out, tr.Alert.Device)
	}
	return out
}

// TestSilenceKeepsNotifiersQuietIntegration attacks the README promise "a
// silence lets alerts fire but marks them silenced (notifiers stay quiet)"
// from outside: a silence POSTed to the API, two waste bins overflowing
// over MQTT, a webhook receiver and a staff MQTT subscriber (paho). Only
// the bin no silence covers is notified, on both channels.
func TestSilenceKeepsNotifiersQuietIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; skipped under -short")
	}
	hook, receiver := webhookReceiver(t)
	const token = "admin-token-for-the-notify-test"
	bins := []devices.Device{
		{ID: "bin-quiet", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-quiet-secret-0123456789"},
		{ID: "bin-loud", Type: "waste_bin", Grid: "D01-S01-G02", Secret: "bin-loud-secret-0123456789"},
	}
	addr, database := storagetest.Database(t)
	srv := startServer(t, addr, database, bins, func(c *Config) {
		c.API.AdminToken = token
		c.Notify.WebhookURL, c.Notify.WebhookSecret = receiver.URL+"/robot/send?access_token=abc", "hook-secret-of-the-test"
	})

	var mq transitions
	staff := paho.NewClient(paho.NewClientOptions().AddBroker(mqttURL(srv)).SetClientID("console-1").
		SetUsername("admin").SetPassword(token).SetAutoReconnect(false))
	if tok := staff.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect the staff subscriber: %v", tok.Error())
	}
	defer staff.Disconnect(250)
	if tok := staff.Subscribe("alerts/#", 1, func(_ paho.Client, m paho.Message) { mq.add(t, m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.HTTPAddr()+"/api/v1/silences",
		bytes.NewReader([]byte(`{"device": "bin-quiet", "duration": "1h", "reason": "emptied by hand"}`)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/silences: %s", resp.Status)
	}

	// The silenced bin goes first: notifications go out in order, so once
	// the loud one's arrived, the quiet one's would have too.
	publish(t, srv, bins[0], `{"fill_pct": 99}`)
	waitFor(t, 2*time.Minute, func() bool {
		p, _ := srv.alerting.engine.List(alerts.Filter{Device: "bin-quiet"})
		return len(p.Alerts) == 1
	})
	publish(t, srv, bins[1], `{"fill_pct": 99}`)
	waitFor(t, 2*time.Minute, func() bool { return len(hook.devices()) >= 1 && len(mq.devices()) >= 1 })
	for name, got := range map[string][]string{"webhook": hook.devices(), "mqtt": mq.devices()} {
		for _, dev := range got {
			if dev != "bin-loud" {
				t.Errorf("%s notified an alert of %s (silenced)", name, dev)
			}
		}
	}
}
