package broker

import (
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestPublishReachesSubscribers checks that the broker's own messages (alert
// notifications) reach subscribers and are not taken for telemetry.
func TestPublishReachesSubscribers(t *testing.T) {
	rec := &received{}
	b, _ := startBroker(t, rec)
	got := make(chan packets.Packet, 1)
	if err := b.server.Subscribe("alerts/#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		got <- pk
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("alerts/D01-S01-G01/major", []byte(`{"id":"a1"}`), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case pk := <-got:
		if pk.TopicName != "alerts/D01-S01-G01/major" || string(pk.Payload) != `{"id":"a1"}` {
			t.Errorf("got %s %s", pk.TopicName, pk.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber got nothing")
	}
	if msgs := rec.snapshot(); len(msgs) != 0 {
		t.Errorf("ingested %v", msgs)
	}
	if err := b.Publish("alerts/#", nil, false, 0); err == nil {
		t.Error("publishing on a wildcard topic succeeded")
	}
}
