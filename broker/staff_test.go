package broker

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// staffTokens are the API tokens of the staff test, by name.
var staffTokens = map[string]struct{ token, scope string }{
	"mgr":   {"tok-mgr", "D01"},
	"chief": {"tok-chief", ""},
}

func staffAuth(name string, password []byte) (string, bool) {
	tk, ok := staffTokens[name]
	return tk.scope, ok && tk.token == string(password)
}

// prefixScope is the scope of hierarchical grid codes (api.PrefixScope).
func prefixScope(scope, grid string) bool {
	rest, ok := strings.CutPrefix(grid, scope)
	return ok && (rest == "" || rest[0] == '-')
}

// topics collects the topics a subscriber received.
type topics struct {
	mu  sync.Mutex
	got []string
}

func (tp *topics) add(_ paho.Client, m paho.Message) {
	tp.mu.Lock()
	tp.got = append(tp.got, m.Topic())
	tp.mu.Unlock()
}

func (tp *topics) snapshot() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.got)
}

// TestStaffSubscribers checks that API token holders subscribe to the alert
// notifications of their scope only, read-only, and never as a device.
func TestStaffSubscribers(t *testing.T) {
	b, _ := startBroker(t, &received{}, func(b *Broker) { b.Staff, b.InScope = staffAuth, prefixScope })
	addr := loopback(b.Addr())
	for _, tc := range []struct{ name, client, user, pass string }{
		{"wrong token", "console-1", "mgr", "tok-chief"},
		{"unknown name", "console-1", "nobody", "tok-mgr"},
		{"a device's client id", "aq-1", "mgr", "tok-mgr"},
	} {
		if _, err := connect(t, addr, tc.client, tc.user, tc.pass); err == nil {
			t.Errorf("%s: connected", tc.name)
		}
	}
	mgr, err := connect(t, addr, "console-mgr", "mgr", "tok-mgr")
	if err != nil {
		t.Fatal(err)
	}
	chief, err := connect(t, addr, "console-chief", "chief", "tok-chief")
	if err != nil {
		t.Fatal(err)
	}
	var mgrGot, chiefGot topics
	for _, sub := range []struct {
		c       paho.Client
		filter  string
		granted bool
		got     *topics
	}{
		{mgr, "alerts/#", true, &mgrGot},
		{mgr, "devices/aq-1/#", false, &mgrGot},
		{chief, "alerts/+/major", true, &chiefGot},
		{chief, "cases/scores/#", true, &chiefGot},
		{mgr, "cases/scores/#", false, &mgrGot},
	} {
		tok := sub.c.Subscribe(sub.filter, 1, sub.got.add)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", sub.filter, tok.Error())
		}
		if qos := tok.(*paho.SubscribeToken).Result()[sub.filter]; (qos < 0x80) != sub.granted {
			t.Errorf("subscribe %s: granted QoS %#x, want granted %v", sub.filter, qos, sub.granted)
		}
	}
	// A staff client may not publish, not even alerts: mochi drops the
	// message and the connection.
	forger, err := connect(t, addr, "console-forger", "mgr", "tok-mgr")
	if err != nil {
		t.Fatal(err)
	}
	forger.Publish("alerts/D01/major", 1, false, "forged").WaitTimeout(time.Second)
	for _, topic := range []string{"alerts/D02-S01/major", "alerts/D01-S01-G01/major", "cases/scores/water"} {
		if err := b.Publish(topic, []byte(`{}`), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both alerts and the score at the unscoped subscriber", func() bool { return len(chiefGot.snapshot()) >= 3 })
	waitFor(t, "the alert of its scope at the scoped subscriber", func() bool { return len(mgrGot.snapshot()) >= 1 })
	if got := chiefGot.snapshot(); !slices.Equal(got, []string{"alerts/D02-S01/major", "alerts/D01-S01-G01/major", "cases/scores/water"}) {
		t.Errorf("unscoped subscriber got %v; want both alerts, the score notice and no forged one", got)
	}
	if got := mgrGot.snapshot(); !slices.Equal(got, []string{"alerts/D01-S01-G01/major"}) {
		t.Errorf("D01 subscriber got %v; want the D01 alert only (no score notice)", got)
	}
}
