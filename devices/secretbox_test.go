package devices_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

// TestSecretBox attacks the promise that RTSP passwords are ciphertext at
// rest and that a node with the wrong key says so clearly.
func TestSecretBox(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", devices.SecretKeyFile)
	if _, err := devices.LoadSecretBox(path); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("load of a missing key: %v: want fs.ErrNotExist naming the file", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadSecretBox made a key file: %v", err)
	}
	box, err := devices.LoadOrCreateSecretBox(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v: want mode 0600", st, err)
	}
	again, err := devices.LoadSecretBox(path)
	if err != nil || again.KeyID() != box.KeyID() {
		t.Fatalf("reloaded key %v, %v: want the same key %s", again, err, box.KeyID())
	}

	const pw = "s3cret-pässword"
	sealed := box.Seal("cam1", pw)
	if !devices.IsSealed(sealed) || strings.Contains(sealed, pw) || devices.SealedKeyID(sealed) != box.KeyID() {
		t.Fatalf("sealed %q", sealed)
	}
	if box.Seal("cam1", pw) != sealed {
		t.Error("sealing is not deterministic: re-imports would count as updates")
	}
	if box.Seal("cam2", pw) == sealed {
		t.Error("two devices with one password share a sealed value")
	}
	if got, err := box.Open("cam1", sealed); err != nil || got != pw {
		t.Fatalf("open: %q, %v", got, err)
	}
	if _, err := box.Open("cam2", sealed); !errors.Is(err, devices.ErrWrongSecretKey) {
		t.Errorf("a value copied to another device opened: %v", err)
	}

	other, err := devices.LoadOrCreateSecretBox(filepath.Join(dir, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Open("cam1", sealed)
	if !errors.Is(err, devices.ErrWrongSecretKey) || !strings.Contains(err.Error(), box.KeyID()) ||
		!strings.Contains(err.Error(), other.KeyID()) || !strings.Contains(err.Error(), "secrets.key_file") {
		t.Errorf("wrong key: %v: want ErrWrongSecretKey naming both key ids and secrets.key_file", err)
	}
	if strings.Contains(err.Error(), sealed) {
		t.Errorf("the error carries the sealed value: %v", err)
	}

	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devices.LoadSecretBox(bad); !errors.Is(err, devices.ErrBadSecretKey) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad key file: %v: want ErrBadSecretKey naming the file", err)
	}
}
