// Package secretfile keeps a secret in a file readable by its owner only:
// the registry's secrets key and the managed ClickHouse's password, both
// made on a node's first start so that it needs no setup.
package secretfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrEmpty means a secret file exists but holds nothing.
var ErrEmpty = errors.New("secret file is empty")

// ReadOrCreate returns the text of the file at path. When there is none, it
// creates it with the text create returns, its directories 0700 and the
// file 0600: written and synced to a temporary file first, then linked to
// path, which (like O_EXCL) fails when path exists, and the directory
// synced. So the file never shows half written, of two processes starting
// at once one writes and the other reads what it wrote, and a crash after
// ReadOrCreate returns does not lose a secret already in use. An existing
// file is read as it is (its mode is the operator's); an empty one is
// ErrEmpty rather than a secret.
func ReadOrCreate(path string, create func() ([]byte, error)) ([]byte, error) {
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		text, err = createFile(path, create)
	}
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(text)) == "" {
		return nil, fmt.Errorf("%s: %w: delete it to have a new one made", path, ErrEmpty)
	}
	return text, nil
}

// createFile writes what create returns to a new file at path, unless
// another process just made it, and returns the file's text.
func createFile(path string, create func() ([]byte, error)) ([]byte, error) {
	text, err := create()
	if err != nil {
		return nil, fmt.Errorf("make a new secret for %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the directory of %s: %w", path, err)
	}
	// CreateTemp opens with O_EXCL and mode 0600.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	err = os.Link(f.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	// The link is durable once its directory is synced.
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("create %s: sync its directory: %w", path, err)
	}
	return text, nil
}

// syncDir flushes the directory entries of dir to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
