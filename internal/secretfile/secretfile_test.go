package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestReadOrCreate attacks the promise that a node's secret is made once,
// readable by its owner alone, and kept across starts: the first call
// creates the file 0600 (its directory 0700), later calls return the same
// text without calling create, of many concurrent first calls all get the
// one text that was written (none sees it empty or half written), and no
// temporary file is left beside it.
func TestReadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret")
	text, err := ReadOrCreate(path, func() ([]byte, error) { return []byte("first\n"), nil })
	if err != nil || string(text) != "first\n" {
		t.Fatalf("create: %q, %v", text, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file %v, %v: want mode 0600", st, err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("directory %v, %v: want mode 0700", st, err)
	}
	again, err := ReadOrCreate(path, func() ([]byte, error) {
		t.Error("create called for an existing file")
		return []byte("second\n"), nil
	})
	if err != nil || string(again) != "first\n" {
		t.Fatalf("read: %q, %v: want the first text", again, err)
	}

	racy := filepath.Join(t.TempDir(), "racy")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := ReadOrCreate(racy, func() ([]byte, error) { return []byte{'a' + byte(i)}, nil })
			if err != nil {
				t.Error(err)
			}
			got[i] = string(b)
		}()
	}
	wg.Wait()
	onDisk, err := os.ReadFile(racy)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g != string(onDisk) {
			t.Errorf("caller %d got %q, the file holds %q", i, g, onDisk)
		}
	}
	if left, err := os.ReadDir(filepath.Dir(racy)); err != nil || len(left) != 1 {
		t.Errorf("directory holds %v, %v: want the secret file alone", left, err)
	}
}

// TestReadOrCreateRefuses attacks the promise that a secret file never
// silently becomes another secret: an empty file is ErrEmpty naming it,
// an unreadable one an error, and a failing create writes nothing.
func TestReadOrCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadOrCreate(empty, func() ([]byte, error) { return []byte("x"), nil }); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty file: %v: want ErrEmpty", err)
	}
	if _, err := ReadOrCreate(dir, func() ([]byte, error) { return []byte("x"), nil }); err == nil {
		t.Error("a directory read as a secret")
	}
	broken := filepath.Join(dir, "broken")
	boom := errors.New("no randomness")
	if _, err := ReadOrCreate(broken, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("failing create: %v: want its error", err)
	}
	if _, err := os.Stat(broken); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failing create left a file: %v", err)
	}
}
