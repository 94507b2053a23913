package notify

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/broker"
	"github.com/gridwatch/gridwatch/devices"
)

// dispatchRules fire at once, one alert per device.
const dispatchRules = `
rules:
  - name: gas_high
    match: {types: [gas]}
    metric: ch4_ppm
    condition: value > 5000
    severity: major
    no_group: true
`

// mqttSubscriber connects to addr as the staff token holder "op" and
// collects the transitions published under alerts/#.
type mqttSubscriber struct {
	mu  sync.Mutex
	got []alerts.Transition
}

func (s *mqttSubscriber) snapshot() []alerts.Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]alerts.Transition(nil), s.got...)
}

func subscribeAlerts(t *testing.T, addr string) *mqttSubscriber {
	t.Helper()
	s := &mqttSubscriber{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("console-1").
		SetUsername("op").SetPassword("tok-op").SetAutoReconnect(false).SetConnectRetry(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect the staff subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("alerts/#", 1, func(_ paho.Client, m paho.Message) {
		var tr alerts.Transition
		if err := json.Unmarshal(m.Payload(), &tr); err != nil {
			t.Errorf("payload on %s: %v", m.Topic(), err)
			return
		}
		s.mu.Lock()
		s.got = append(s.got, tr)
		s.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe alerts/#: %v", tok.Error())
	}
	return s
}

// TestSilencedAlertsReachNoNotifier attacks the README promise "a silence
// lets alerts fire but marks them silenced (notifiers stay quiet)" with a
// real engine, a real broker with a staff MQTT subscriber (paho) and a real
// webhook receiver: the silenced device's alert fires but is neither
// published nor POSTed, and is counted; the other device's alert reaches
// both.
func TestSilencedAlertsReachNoNotifier(t *testing.T) {
	rules, err := alerts.ParseRules([]byte(dispatchRules))
	if err != nil {
		t.Fatal(err)
	}
	reg := devices.NewRegistry([]devices.Device{{ID: "gas-1", Type: "gas", Grid: "G1"}, {ID: "gas-2", Type: "gas", Grid: "G2"}})
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if _, err := e.AddSilence(t.Context(), alerts.Silence{Device: "gas-1", Ends: time.Now().Add(time.Hour), Actor: "op", Reason: "known leak, crew on site"}); err != nil {
		t.Fatal(err)
	}

	b := &broker.Broker{Listen: "127.0.0.1:0", Lookup: reg.Lookup, Logger: quiet,
		Ingest: func(context.Context, string, string, []byte, bool) (broker.Stored, error) { return nil, nil },
		Staff:  func(name string, pw []byte) (string, bool) { return "", name == "op" && string(pw) == "tok-op" }}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	mq := subscribeAlerts(t, b.Addr())

	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	m := NewMetrics(nil)
	w := &Webhook{URL: srv.URL, Secret: []byte("k"), Logger: quiet, Metrics: m}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	d := &Dispatcher{Targets: []Notifier{&MQTT{Publish: b.Publish, QoS: 1, Logger: quiet, Metrics: m}, w}, Metrics: m}
	sub := e.Subscribe(64)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(sub.C) }()
	t.Cleanup(func() { sub.Close(); <-done })

	// The silenced device's alert goes first: delivery is in order, so once
	// the other one arrived, the silenced one would have too.
	for _, dev := range []string{"gas-1", "gas-2"} {
		e.Observe(alerts.Observation{Device: dev, Metric: "ch4_ppm", Value: 9000, TS: time.Now().UnixMilli()})
	}
	poll(t, "gas-2's alert on mqtt", func() bool { return len(mq.snapshot()) >= 1 })
	poll(t, "gas-2's alert at the webhook", func() bool { return rc.count() >= 1 })
	for _, tr := range mq.snapshot() {
		if tr.Alert.Device != "gas-2" {
			t.Errorf("published on mqtt: %s of %s (silenced %v)", tr.Event.Kind, tr.Alert.Device, tr.Silenced)
		}
	}
	rc.mu.Lock()
	for _, body := range rc.bodies {
		var tr alerts.Transition
		if err := json.Unmarshal(body, &tr); err != nil || tr.Alert.Device != "gas-2" {
			t.Errorf("POSTed to the webhook: %s (%v)", body, err)
		}
	}
	rc.mu.Unlock()
	if n := testutil.ToFloat64(m.silenced); n != 1 {
		t.Errorf("gridwatch_notify_silenced_total = %v, want 1", n)
	}
	if p, _ := e.List(alerts.Filter{Device: "gas-1"}); len(p.Alerts) != 1 {
		t.Errorf("the silenced alert must still fire and be listed: %+v", p.Alerts)
	}
}
