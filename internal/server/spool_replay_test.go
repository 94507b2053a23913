package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/api"
)

// TestSpoolReplayWhileServing: `gridwatch spool replay` works while
// gridwatch serves on its managed ClickHouse, which the server holds (it
// said "stop gridwatch first"): a batch refused while the telemetry table
// was renamed away is quarantined, the table comes back, and the CLI asks
// the running server to replay it. The attack first: without an admin
// token the server replays nothing and the CLI says what to give.
func TestSpoolReplayWhileServing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; skipped under -short")
	}
	const token = "admin-token-of-the-replay-test"
	bin := buildGridwatch(t, t.TempDir())
	devs := e2eDevices(t, 1)
	srv := startServer(t, "", "gridwatch", devs, func(c *Config) { c.API.AdminToken = token })
	ctx := context.Background()
	conn := srv.DB().Conn()
	if err := conn.Exec(ctx, "RENAME TABLE gridwatch.telemetry TO gridwatch.telemetry_away"); err != nil {
		t.Fatal(err)
	}
	const ts = 1600000009000
	publish(t, srv, devs[0], fmt.Sprintf(`{"ts": %d, "%s": 1}`, ts, metricNames(devs[0].Type)[0]))
	waitFor(t, 60*time.Second, func() bool { return srv.spool.Quarantined() == 1 })
	if err := conn.Exec(ctx, "RENAME TABLE gridwatch.telemetry_away TO gridwatch.telemetry"); err != nil {
		t.Fatal(err)
	}

	replay := func(env ...string) (string, error) {
		cmd := exec.Command(bin, "spool", "replay", "--all", "--data_dir", srv.Config.DataDir, "--http.listen", srv.HTTPAddr())
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, EnvPrefix) {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := replay("GRIDWATCH_TOKEN=not-the-admin-token")
	if err == nil || !strings.Contains(out, "admin token") {
		t.Errorf("spool replay with a wrong token: %v, want a failure asking for an admin token:\n%s", err, out)
	}
	if n := srv.spool.Quarantined(); n != 1 {
		t.Fatalf("%d segments quarantined after a replay without the admin token, want 1 (kept)", n)
	}
	out, err = replay(EnvPrefix + "API_ADMIN_TOKEN=" + token)
	if err != nil || !strings.Contains(out, "1 rows stored") {
		t.Fatalf("spool replay while serving on the managed ClickHouse: %v\n%s", err, out)
	}
	if n := srv.spool.Quarantined(); n != 0 {
		t.Errorf("%d segments quarantined after the replay, want 0", n)
	}
	if n := count(t, srv, "SELECT count() FROM {db}.telemetry WHERE device = ? AND ts = ?", devs[0].ID, int64(ts)); n != 1 {
		t.Errorf("%d rows of the replayed reading in telemetry, want 1", n)
	}
}

// TestReplayQuarantinedStaysInTheQuarantine: a name that is no quarantined
// segment, a path out of the quarantine included, is refused before any
// file is read or deleted.
func TestReplayQuarantinedStaysInTheQuarantine(t *testing.T) {
	cfg := Default()
	cfg.DataDir = t.TempDir()
	secret := filepath.Join(cfg.DataDir, "secret.key")
	if err := os.MkdirAll(filepath.Join(cfg.SpoolDir(), "quarantine"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"../../secret.key", "../secret.key", "00000000000000000001.seg"} {
		if _, err := ReplayQuarantined(context.Background(), &cfg, nil, file); !errors.Is(err, api.ErrNotQuarantined) {
			t.Errorf("ReplayQuarantined(%q) = %v, want ErrNotQuarantined", file, err)
		}
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("data_dir/secret.key after the replays: %v", err)
	}
}
