package gb28181_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/internal/logbuf"
	"github.com/gridwatch/gridwatch/simulators"
)

// TestSecretsNeverLogged registers a device over UDP and TCP, fails one
// with a wrong password, plays a stream and ends one that never answers,
// with the registrar logging at debug level: neither the passwords nor
// any digest answer (Authorization) is in its log, its metrics or its
// device states.
func TestSecretsNeverLogged(t *testing.T) {
	const password, wrong = "never-logged-Zq3", "never-logged-wrong-Zq3"
	ids := []string{simulators.GBDeviceID(realm, 1), simulators.GBDeviceID(realm, 2), simulators.GBDeviceID(realm, 3)}
	var logs logbuf.Buffer
	tr := startRegistrar(t, []devices.Device{camera(ids[0], password), camera(ids[1], password), camera(ids[2], password)},
		func(r *gb28181.Registrar) {
			r.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
	d := startStreamer(t, tr, ids[0], password, simulators.CodecH264, simulators.FaultNone)
	tcp := tr.device(ids[1], password, "tcp")
	if err := tcp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if err := tr.device(ids[2], wrong, "udp").Start(context.Background()); err == nil {
		t.Fatal("the wrong password registered")
	}
	playFrames(t, tr, d, simulators.CodecH264)
	silent := startStreamer(t, tr, ids[2], password, "", simulators.FaultOffline)
	if _, err := tr.Play(context.Background(), silent.ID, func(gb28181.Frame) {}); err == nil {
		t.Fatal("a silent device played")
	}

	states, err := json.Marshal(tr.Devices())
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := tr.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	if !strings.Contains(logs.String(), "gb28181") {
		t.Fatal("nothing logged: the test sees nothing")
	}
	for what, text := range map[string]string{"log": logs.String(), "metrics": metrics.String(), "device states": string(states)} {
		for _, secret := range []string{password, wrong, "Authorization", "response="} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s hold %q", what, secret)
			}
		}
	}
}
