package server

import (
	"strings"
	"testing"
)

// TestUpstreamConfigErrors checks the upstream.* keys: each mistake is
// named by its key, and a password written into a broker URL is refused
// without being repeated.
func TestUpstreamConfigErrors(t *testing.T) {
	const pw = "hunter2-in-the-url"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" for valid
	}{
		{"valid", map[string]string{"BROKERS": "tcp://mq1:1883, ssl://mq2:8883", "CLIENT_ID": "gw-1"}, ""},
		{"no client id", map[string]string{"BROKERS": "tcp://mq1:1883"}, "'upstream.client_id' must be set"},
		{"credentials in the URL", map[string]string{"BROKERS": "tcp://gw:" + pw + "@mq1:1883", "CLIENT_ID": "gw-1"},
			"'upstream.brokers' must not carry credentials in a URL (tcp://mq1:1883)"},
		{"not MQTT", map[string]string{"BROKERS": "http://mq1:1883", "CLIENT_ID": "gw-1"}, "'upstream.brokers' must be tcp://"},
		{"partial wildcard", map[string]string{"BROKERS": "tcp://mq1:1883", "CLIENT_ID": "gw-1", "TOPICS": "devices/+x/telemetry"},
			"'upstream.topics' \"devices/+x/telemetry\": + and # must fill a whole level"},
		{"share without group", map[string]string{"BROKERS": "tcp://mq1:1883", "CLIENT_ID": "gw-1", "TOPICS": "$share//devices/+/telemetry"},
			"a shared subscription is $share/{group}/{filter}"},
		{"certificate without key", map[string]string{"BROKERS": "ssl://mq1:8883", "CLIENT_ID": "gw-1", "TLS_CERT": "/etc/gw.pem"},
			"'upstream.tls_cert' and upstream.tls_key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(EnvPrefix+"UPSTREAM_"+k, v)
			}
			cfg, err := Load(nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load error = %v, want one containing %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), pw):
				t.Fatalf("the error repeats the password: %v", err)
			}
			if tc.name == "valid" {
				if got := split(cfg.Upstream.Brokers); len(got) != 2 || got[1] != "ssl://mq2:8883" {
					t.Errorf("brokers %q, want the two URLs", got)
				}
			}
		})
	}
}
