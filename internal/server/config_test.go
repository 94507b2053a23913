package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	cfgFile := writeFile(t, "gw.yaml", `
clickhouse:
  addr: file-host:9000
  database: fromfile
mqtt:
  listen: ":1999"
ingest:
  batch_age: 250ms
data_dir: /var/lib/gw
`)
	t.Setenv("GRIDWATCH_CLICKHOUSE_ADDR", "env-host:9000")
	t.Setenv("GRIDWATCH_DATA_DIR", "/from/env")
	t.Setenv("GRIDWATCH_INGEST_BATCH_ROWS", "1234")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--config", cfgFile, "--data_dir", "/from/flag", "--http.listen", "127.0.0.1:9999"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"clickhouse.addr (env beats file)", cfg.ClickHouse.Addr, "env-host:9000"},
		{"clickhouse.database (file beats default)", cfg.ClickHouse.Database, "fromfile"},
		{"data_dir (flag beats env)", cfg.DataDir, "/from/flag"},
		{"mqtt.listen (file)", cfg.MQTT.Listen, ":1999"},
		{"http.listen (flag)", cfg.HTTP.Listen, "127.0.0.1:9999"},
		{"ingest.batch_age (duration from file)", cfg.Ingest.BatchAge, 250 * time.Millisecond},
		{"ingest.batch_rows (int from env)", cfg.Ingest.BatchRows, 1234},
		{"ingest.max_pending (default)", cfg.Ingest.MaxPending, Default().Ingest.MaxPending},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
}

// TestAdoptAfterOnlyWhereDevicesAreAdopted: consuming an upstream broker,
// the nodes adopt no devices, so cluster.adopt_after, unused, is not held
// to the session timeout as it is with the embedded brokers.
func TestAdoptAfterOnlyWhereDevicesAreAdopted(t *testing.T) {
	t.Setenv("GRIDWATCH_CONFIG", writeFile(t, "c.yaml", "cluster:\n  zookeeper: zk:2181\n  adopt_after: 1s\nclickhouse:\n  addr: ch:9000\n"+
		"upstream:\n  brokers: tcp://mq:1883\n  client_id: node1\n"))
	if _, err := Load(nil); err != nil {
		t.Fatalf("Load with upstream.brokers and a short cluster.adopt_after: %v", err)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, yaml, env, want string
	}{
		{"unknown key in file", "clickhouse:\n  adr: x:1\n", "", "adr"},
		{"negative batch rows", "ingest:\n  batch_rows: -1\n", "", "'ingest.batch_rows' must be > 0"},
		{"bad listen address", "", "GRIDWATCH_MQTT_LISTEN=nonsense", "'mqtt.listen' must be host:port"},
		{"bad duration from env", "", "GRIDWATCH_INGEST_BATCH_AGE=soon", "batch_age"},
		{"bad proxy network", "", "GRIDWATCH_MQTT_PROXY_PROTOCOL_FROM=10.0.0.0/8,haproxy", "'mqtt.proxy_protocol_from' \"haproxy\" is neither a network (10.0.0.0/8) nor an address"},
		{"failover without a cluster", "", "GRIDWATCH_CLICKHOUSE_ADDR=ch1:9000,ch2:9000", "'clickhouse.addr' lists 2 servers: failing over between them needs clickhouse.cluster"},
		{"bad failover address", "clickhouse:\n  cluster: gridwatch\n", "GRIDWATCH_CLICKHOUSE_ADDR=ch1:9000,ch2", "'clickhouse.addr' must be host:port, such as 127.0.0.1:9000, or a comma-separated list"},
		{"adoption before the session ends", "cluster:\n  zookeeper: zk:2181\n  adopt_after: 1s\nclickhouse:\n  addr: ch:9000\n", "", "'cluster.adopt_after' must be >= cluster.session_timeout (10s)"},
		{"bad log level", "log:\n  level: loud\n", "", "'log.level' must be debug, info, warn or error"},
		{"missing devices file", "devices:\n  file: /nonexistent/devices.csv\n", "", "'devices.file' cannot be read"},
		{"open API on all interfaces", "http:\n  listen: 0.0.0.0:8080\n", "", "'http.listen' is 0.0.0.0:8080, not a loopback address, and neither api.admin_token nor api.tokens_file"},
		{"open API on another address", "", "GRIDWATCH_HTTP_LISTEN=192.0.2.2:0", "'http.listen' is 192.0.2.2:0, not a loopback address"},
		{"profiler beyond this host", "http:\n  pprof_listen: 0.0.0.0:6060\n", "", "'http.pprof_listen' must be a loopback address such as 127.0.0.1:6060, not 0.0.0.0:6060"},
		{"zero silence bound", "api:\n  max_silence: 0s\n", "", "'api.max_silence' must be > 0"},
		{"guessable admin token", "", "GRIDWATCH_API_ADMIN_TOKEN=admin", "'api.admin_token' must be at least 16 characters, not 5"},
		{"basemap without bounds", "grids:\n  basemap_file: /nonexistent/city.png\n", "", "'grids.basemap_bounds' must be south,west,north,east"},
		{"basemap bounds upside down", "grids:\n  basemap_file: /nonexistent/city.png\n  basemap_bounds: 30.4,120,30.1,120.3\n", "", "-90 <= south < north <= 90"},
		{"missing basemap", "grids:\n  basemap_file: /nonexistent/city.png\n  basemap_bounds: 30.1,120,30.4,120.3\n", "", "'grids.basemap_file' cannot be read"},
		{"bounds without a basemap", "grids:\n  basemap_bounds: 30.1,120,30.4,120.3\n", "", "'grids.basemap_bounds' is set without grids.basemap_file"},
		{"guessable webhook secret", "notify:\n  webhook_url: https://hooks.example/x\n  webhook_secret: k\n", "", "'notify.webhook_secret' must be at least 16 characters, not 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.yaml != "" {
				t.Setenv("GRIDWATCH_CONFIG", writeFile(t, "c.yaml", tc.yaml))
			}
			if k, v, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(k, v)
			}
			_, err := Load(nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestEveryKeyHasFlagEnvAndHelp(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	def := Default()
	for _, k := range keys(&def) {
		f := fs.Lookup(k.path)
		if f == nil {
			t.Errorf("key %s has no flag", k.path)
			continue
		}
		if k.help == "" || !strings.Contains(f.Usage, k.EnvName()) {
			t.Errorf("flag --%s usage %q lacks help or env name %s", k.path, f.Usage, k.EnvName())
		}
	}
	for _, name := range []string{"GRIDWATCH_CLICKHOUSE_ADDR", "GRIDWATCH_HTTP_LISTEN", "GRIDWATCH_MQTT_LISTEN", "GRIDWATCH_DATA_DIR", "GRIDWATCH_DEVICES_FILE", "GRIDWATCH_API_ADMIN_TOKEN"} {
		if got := UnknownEnv([]string{name + "=x"}); len(got) != 0 {
			t.Errorf("contract env %s is not a config key", name)
		}
	}
	if got := UnknownEnv([]string{"GRIDWATCH_CLICKHOUSE_ADR=x", "HOME=/root"}); len(got) != 1 || got[0] != "GRIDWATCH_CLICKHOUSE_ADR" {
		t.Errorf("UnknownEnv = %v, want the typo reported", got)
	}
}

// TestOpenAPIListensOnLoopbackOnly attacks the promise that without any
// token the API serves loopback only (issue 10 item 8): an explicit
// non-loopback http.listen is refused, naming the keys to set; a loopback
// one is kept; one without a host (the default :8080, all interfaces) is
// narrowed to 127.0.0.1; with a token every address is allowed. A tokens
// file that turns out to hold no token is refused at start.
func TestOpenAPIListensOnLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		open          bool
		want, err     string
	}{
		{"0.0.0.0:0", "", true, "", "http.listen is 0.0.0.0:0, not a loopback address, and neither api.admin_token nor api.tokens_file"},
		{"[::]:0", "", true, "", "not a loopback address"},
		{"192.0.2.2:8080", "", true, "", "not a loopback address"},
		{"gridwatch.example:8080", "", true, "", "not a loopback address"},
		{"127.0.0.1:0", "", true, "127.0.0.1:0", ""},
		{"127.0.0.2:8080", "", true, "127.0.0.2:8080", ""},
		{"[::1]:8080", "", true, "[::1]:8080", ""},
		{"localhost:8080", "", true, "localhost:8080", ""},
		{":8080", "", true, "127.0.0.1:8080", ""},
		{"0.0.0.0:8080", "a-long-enough-admin-token", false, "0.0.0.0:8080", ""},
		{":8080", "a-long-enough-admin-token", false, ":8080", ""},
	} {
		cfg := Default()
		cfg.HTTP.Listen, cfg.API.AdminToken = tc.listen, tc.token
		verr := cfg.Validate()
		got, err := cfg.httpListen(tc.open)
		if tc.err != "" {
			if verr == nil || !strings.Contains(verr.Error(), "'http.listen'") || err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: Validate %v, httpListen %q %v; want errors containing %q", tc.listen, verr, got, err, tc.err)
			}
			continue
		}
		if verr != nil || err != nil || got != tc.want {
			t.Errorf("%s (token %q): Validate %v, httpListen %q %v; want %q", tc.listen, tc.token, verr, got, err, tc.want)
		}
	}
	// A tokens file holding no token passes Validate (it exists) but
	// leaves the API open: the server's start refuses the address.
	cfg := Default()
	cfg.HTTP.Listen, cfg.API.TokensFile = "0.0.0.0:8080", writeFile(t, "tokens.yaml", "")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.httpListen(true); err == nil || !strings.Contains(err.Error(), "api.tokens_file") {
		t.Errorf("empty tokens file on 0.0.0.0: %v, want an error naming api.tokens_file", err)
	}
}

// TestLoadIgnoresCommandFlags keeps `gridwatch demo --devices 20 --rate 10`
// working: a command's own flags beside the config keys' are no config
// keys, and were read as such ("'devices' expected a map").
func TestLoadIgnoresCommandFlags(t *testing.T) {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	AddFlags(fs)
	fs.Int("devices", 300, "devices in the simulated city")
	fs.Float64("rate", 100, "messages per second")
	if err := fs.Parse([]string{"--devices", "20", "--rate", "10", "--http.listen", "127.0.0.1:9"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(fs)
	if err != nil || cfg.HTTP.Listen != "127.0.0.1:9" {
		t.Fatalf("Load = %v, http.listen %q; want the config keys taken and the command's flags left alone", err, cfg.HTTP.Listen)
	}
}
