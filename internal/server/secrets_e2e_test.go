package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/internal/logbuf"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestRTSPPasswordsSealedAtRest attacks the README's promise that RTSP
// passwords are encrypted at rest and never printed. A camera imported with
// its password and one stored in plain text by an earlier version are both
// probed successfully against farm cameras requiring that password; the
// raw registry rows in ClickHouse, the API, the metrics and the logs never
// hold it; and a node with another secrets key reports the cameras
// auth_failed with an error that names the key mismatch.
func TestRTSPPasswordsSealedAtRest(t *testing.T) {
	addr, database := storagetest.Database(t)
	ctx := context.Background()
	secret, err := devices.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	password := "Pw-" + secret
	farm := &simulators.CameraFarm{User: "admin", Password: password, Cameras: []simulators.Camera{
		{Path: "cam-new", Fault: simulators.FaultAuth}, {Path: "cam-legacy", Fault: simulators.FaultAuth}}}
	if err := farm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Close() })
	camera := func(i int) devices.Device {
		return devices.Device{ID: farm.Cameras[i].Path, Type: "camera", Grid: "D01-S01-G01", RTSPURL: farm.URL(i)}
	}

	// An earlier version stored cam-legacy's password in plain text.
	db, err := storage.Open(ctx, storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(farm.URL(1))
	u.User = nil
	legacy := `{"id":"cam-legacy","type":"camera","grid":"D01-S01-G01","rtsp_url":"` + u.String() +
		`","rtsp_user":"admin","rtsp_password":"` + password + `"}`
	batch, err := db.Conn().PrepareBatch(ctx, "INSERT INTO "+database+".registry (kind, key, doc, updated)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append("device", "cam-legacy", legacy, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	dir := t.TempDir()
	var logs logbuf.Buffer
	start := func(keyFile string, devs []devices.Device) *Server {
		cfg := Default()
		cfg.DataDir = dir
		cfg.Secrets.KeyFile = keyFile
		cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
		cfg.ClickHouse.Addr, cfg.ClickHouse.Database = addr, database
		cfg.ClickHouse.Password = storagetest.Password(t)
		cfg.Ingest.BatchAge = 200 * time.Millisecond
		cfg.Devices.ReloadInterval = 100 * time.Millisecond
		cfg.Cameras.LivenessInterval = 300 * time.Millisecond
		if devs != nil {
			cfg.Devices.File = writeDevicesFile(t, t.TempDir(), devs)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		srv := &Server{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: time.Now}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := srv.Start(sctx); err != nil {
			t.Fatalf("start server: %v", err)
		}
		return srv
	}
	waitProbe := func(srv *Server, cam, cond string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for count(t, srv, "SELECT count() FROM {db}.camera_health WHERE camera = ? AND "+cond, cam) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no probe of %s with %s within 60s", cam, cond)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	srv := start("", []devices.Device{camera(0)})
	if st, err := os.Stat(filepath.Join(dir, devices.SecretKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("data_dir/secret.key: %v, %v: want it created with mode 0600", st, err)
	}
	for _, cam := range []string{"cam-new", "cam-legacy"} {
		waitProbe(srv, cam, "status = 'ok'")
	}
	// Every row of the registry, replaced versions included.
	rows, err := srv.DB().Conn().Query(ctx, "SELECT key, doc FROM "+database+".registry")
	if err != nil {
		t.Fatal(err)
	}
	sealed := 0
	for rows.Next() {
		var key, doc string
		if err := rows.Scan(&key, &doc); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(doc, password) || strings.Contains(doc, url.QueryEscape(password)) {
			t.Errorf("registry row %s holds the RTSP password: %s", key, doc)
		}
		sealed += strings.Count(doc, `"rtsp_password":"gwsec1:`)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if sealed != 2 {
		t.Errorf("%d sealed RTSP passwords in the registry rows, want 2 (cam-new, cam-legacy)", sealed)
	}
	// Sealing is deterministic: importing the same camera again changes nothing.
	again, rejected, err := ReadDevicesFile(ctx, srv.DB(), srv.Config.Devices.File, nil)
	if err != nil || len(rejected) > 0 {
		t.Fatalf("read devices.file: %v %v", err, rejected)
	}
	if st, err := ImportDevices(ctx, srv.DB(), again); err != nil || st.Unchanged != 1 {
		t.Errorf("re-import: %+v, %v: want 1 unchanged", st, err)
	}
	for _, path := range []string{"/api/v1/devices/cam-new", "/api/v1/devices/cam-legacy", "/api/v1/cameras", "/metrics"} {
		resp, err := http.Get("http://" + srv.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), password) || strings.Contains(string(body), "gwsec1:") {
			t.Errorf("GET %s shows the RTSP password or its sealed form: %s", path, body)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// A node with another key cannot open them, and says why.
	other := start(filepath.Join(t.TempDir(), "other.key"), nil)
	t.Cleanup(func() { other.Close() })
	for _, cam := range []string{"cam-new", "cam-legacy"} {
		waitProbe(other, cam, "status = 'auth_failed' AND position(error, 'secrets.key_file') > 0")
	}
	if !strings.Contains(logs.String(), "RTSP passwords sealed under another secrets key") {
		t.Errorf("the key mismatch was not logged at load")
	}
	if strings.Contains(logs.String(), password) {
		t.Errorf("the logs hold the RTSP password")
	}
}

// TestOnlyServeCreatesTheSecretsKey attacks the README's promise that every
// node sharing a registry seals RTSP passwords under one key: an admin
// command on a host without the key (here `devices import`, with
// clickhouse.addr set) must not make a new one and seal passwords no server
// can open. It fails naming secrets.key_file and data_dir and writes
// nothing, while a device without an RTSP password, which needs no key,
// still imports; the first `gridwatch serve` creates the key, the second
// keeps it, and the admin import then succeeds under the servers' key.
func TestOnlyServeCreatesTheSecretsKey(t *testing.T) {
	addr, database := storagetest.Database(t)
	ctx := context.Background()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, devices.SecretKeyFile)
	cfg := Default()
	cfg.DataDir = dir
	cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ClickHouse.Addr, cfg.ClickHouse.Database = addr, database
	cfg.ClickHouse.Password = storagetest.Password(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	camera := devices.Device{ID: "cam-1", Type: "camera", Grid: "D01-S01-G01", RTSPURL: "rtsp://admin:Pw-0123456789@127.0.0.1:1/cam-1"}
	meter := devices.Device{ID: "bin-1", Type: "waste_bin", Grid: "D01-S01-G01", Secret: "bin-1-secret-0123456789"}
	importFile := func(devs ...devices.Device) (ImportStats, error) {
		t.Helper()
		db, closeDB, err := OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		defer closeDB()
		read, rejected, err := ReadDevicesFile(ctx, db, writeDevicesFile(t, t.TempDir(), devs), nil)
		if err != nil || len(rejected) > 0 {
			t.Fatalf("read devices file: %v %v", err, rejected)
		}
		return ImportDevices(ctx, db, read)
	}
	stored := func() []devices.Device {
		t.Helper()
		db, closeDB, err := OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		defer closeDB()
		devs, err := db.LoadDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return devs
	}

	_, err := importFile(camera)
	if !errors.Is(err, storage.ErrNoSecretKey) || !strings.Contains(err.Error(), "secrets.key_file") ||
		!strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("admin import of a camera without a key: %v: want ErrNoSecretKey naming secrets.key_file, %s and data_dir", err, keyFile)
	}
	if strings.Contains(err.Error(), "Pw-0123456789") {
		t.Errorf("the error holds the RTSP password: %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the admin command made a key file: %v", err)
	}
	if devs := stored(); len(devs) != 0 {
		t.Fatalf("the refused import stored %d devices", len(devs))
	}
	if st, err := importFile(meter); err != nil || st.Added != 1 {
		t.Fatalf("admin import of a device without an RTSP password: %+v, %v: want it added without a key", st, err)
	}

	serve := func() string {
		t.Helper()
		srv := &Server{Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: time.Now}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := srv.Start(sctx); err != nil {
			t.Fatalf("start server: %v", err)
		}
		id := srv.secrets.KeyID()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := serve()
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("serve made no key: %v", err)
	}
	if second := serve(); second != first {
		t.Fatalf("the second start used key %s, the first %s", second, first)
	}
	if again, err := os.ReadFile(keyFile); err != nil || !bytes.Equal(again, key) {
		t.Fatalf("the key file changed across starts: %v", err)
	}
	if st, err := importFile(camera); err != nil || st.Added != 1 {
		t.Fatalf("admin import with the servers' key: %+v, %v", st, err)
	}
	for _, d := range stored() {
		if d.ID == camera.ID && (!devices.IsSealed(d.RTSPPassword) || devices.SealedKeyID(d.RTSPPassword) != first) {
			t.Errorf("camera stored with password sealed under %q, want the servers' key %s", devices.SealedKeyID(d.RTSPPassword), first)
		}
	}
}

// TestSecretsKeyCheckedBeforeClickHouse attacks the promise that a node
// with an unusable secrets key fails at once: the key is read before the
// managed ClickHouse starts, so none is started for a command that cannot
// run, be it a server or an admin command.
func TestSecretsKeyCheckedBeforeClickHouse(t *testing.T) {
	dir := t.TempDir()
	cfg := Default()
	cfg.DataDir = dir
	cfg.Secrets.KeyFile = filepath.Join(dir, "bad.key")
	if err := os.WriteFile(cfg.Secrets.KeyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	srv := &Server{Config: cfg, Logger: logger}
	if err := srv.Start(context.Background()); !errors.Is(err, devices.ErrBadSecretKey) {
		t.Errorf("serve with a bad key: %v: want ErrBadSecretKey", err)
	}
	if _, _, err := OpenStore(context.Background(), cfg, logger); !errors.Is(err, devices.ErrBadSecretKey) {
		t.Errorf("admin command with a bad key: %v: want ErrBadSecretKey", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "clickhouse")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a managed ClickHouse was set up despite the bad key: %v", err)
	}
}

// TestSecretsKeyReadableByOthersRefused attacks the secrecy of
// secrets.key_file: a key file its group or other users may read or write
// (a copy made with the umask's 0644, a shared mount) is refused by the
// server and the admin commands alike, with an error naming the key, the
// mode and the fix but not the key, before any ClickHouse is started; the
// owner-only modes pass.
func TestSecretsKeyReadableByOthersRefused(t *testing.T) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes, base64
	logger := slog.New(slog.DiscardHandler)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o620, 0o601} {
		dir := t.TempDir()
		cfg := Default()
		cfg.DataDir = dir
		cfg.Secrets.KeyFile = filepath.Join(dir, "shared.key")
		if err := os.WriteFile(cfg.Secrets.KeyFile, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(cfg.Secrets.KeyFile, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		srv := &Server{Config: cfg, Logger: logger}
		serveErr := srv.Start(context.Background())
		_, _, adminErr := OpenStore(context.Background(), cfg, logger)
		for name, err := range map[string]error{"serve": serveErr, "admin command": adminErr} {
			msg := fmt.Sprint(err)
			if err == nil || !strings.Contains(msg, "secrets.key_file "+cfg.Secrets.KeyFile) ||
				!strings.Contains(msg, fmt.Sprintf("mode %04o", mode)) || !strings.Contains(msg, "chmod 600") {
				t.Errorf("%s with a key file of mode %04o: %v; want a refusal naming secrets.key_file, the mode and chmod 600", name, mode, err)
			}
			if strings.Contains(msg, key) {
				t.Errorf("%s: the refusal carries the key: %s", name, msg)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "clickhouse")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("mode %04o: a managed ClickHouse was set up despite the refused key: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		cfg := Default()
		cfg.Secrets.KeyFile = filepath.Join(t.TempDir(), "shared.key")
		if err := os.WriteFile(cfg.Secrets.KeyFile, []byte(key+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := cfg.checkSecretKeyMode(); err != nil {
			t.Errorf("a key file of mode %04o refused: %v", mode, err)
		}
	}
}
