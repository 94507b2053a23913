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

func TestLoadErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, yaml, env, want string
	}{
		{"unknown key in file", "clickhouse:\n  adr: x:1\n", "", "adr"},
		{"negative batch rows", "ingest:\n  batch_rows: -1\n", "", "'ingest.batch_rows' must be > 0"},
		{"bad listen address", "", "GRIDWATCH_MQTT_LISTEN=nonsense", "'mqtt.listen' must be host:port"},
		{"bad duration from env", "", "GRIDWATCH_INGEST_BATCH_AGE=soon", "batch_age"},
		{"bad log level", "log:\n  level: loud\n", "", "'log.level' must be debug, info, warn or error"},
		{"missing devices file", "devices:\n  file: /nonexistent/devices.csv\n", "", "'devices.file' cannot be read"},
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
