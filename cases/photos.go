package cases

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/gridwatch/gridwatch/internal/secretfile"
)

// Photo bounds.
const (
	// DefaultMaxPhotoBytes is the default of Photos.MaxBytes.
	DefaultMaxPhotoBytes = 8 << 20
	// DefaultMaxPhotoPixels is the default of Photos.MaxPixels: a 50
	// megapixel picture, more than a phone takes.
	DefaultMaxPhotoPixels = 50_000_000
)

// Errors of Photos.
var (
	// ErrBadPhoto means an upload is not a whole JPEG or PNG picture; the
	// error says what it is instead.
	ErrBadPhoto = errors.New("cases: not a JPEG or PNG photo")
	// ErrPhotoTooLarge means an upload exceeds MaxBytes or MaxPixels.
	ErrPhotoTooLarge = errors.New("cases: photo too large")
	// ErrNoPhoto means no photo has the hash.
	ErrNoPhoto = errors.New("cases: no such photo")
)

// Photos keeps the photos of cases (evidence before and after handling)
// under Dir by content hash: the same picture uploaded twice is one file,
// and a case refers to its photos by "sha256:<hex>".
type Photos struct {
	// Dir holds the files (data_dir/photos). Required.
	Dir string
	// MaxBytes bounds an upload. It defaults to DefaultMaxPhotoBytes.
	MaxBytes int64
	// MaxPixels bounds a picture's width × height, read from its header
	// before it is decoded. It defaults to DefaultMaxPhotoPixels.
	MaxPixels int
}

// Put checks and stores a photo read from r and returns its hash. Only
// JPEG and PNG are taken: the type is sniffed from the content (never the
// name or a header the client sent) and the whole picture is decoded, so a
// file that only starts like one is refused. Put returns once the file is
// synced to disk.
func (p *Photos) Put(r io.Reader) (string, error) {
	limit := p.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxPhotoBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return "", fmt.Errorf("cases: read photo: %w", err)
	}
	if int64(len(data)) > limit {
		return "", fmt.Errorf("%w: more than %d bytes", ErrPhotoTooLarge, limit)
	}
	if err := p.check(data); err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	if _, err := secretfile.ReadOrCreate(p.path(hash), func() ([]byte, error) { return data, nil }); err != nil {
		return "", fmt.Errorf("cases: store photo: %w", err)
	}
	return hash, nil
}

// check decodes data as the type its content says.
func (p *Photos) check(data []byte) error {
	decode := map[string]func(io.Reader) (image.Image, error){"image/jpeg": jpeg.Decode, "image/png": png.Decode}
	config := map[string]func(io.Reader) (image.Config, error){"image/jpeg": jpeg.DecodeConfig, "image/png": png.DecodeConfig}
	typ := http.DetectContentType(data)
	if decode[typ] == nil {
		return fmt.Errorf("%w: the content is %s", ErrBadPhoto, typ)
	}
	cfg, err := config[typ](bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s header: %w", ErrBadPhoto, typ, err)
	}
	maxPixels := p.MaxPixels
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPhotoPixels
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxPixels/cfg.Height {
		return fmt.Errorf("%w: %d×%d pixels, at most %d in all", ErrPhotoTooLarge, cfg.Width, cfg.Height, maxPixels)
	}
	if _, err := decode[typ](bytes.NewReader(data)); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadPhoto, typ, err)
	}
	return nil
}

// ValidHash reports whether hash has the form Put returns.
func ValidHash(hash string) bool {
	h, ok := strings.CutPrefix(hash, "sha256:")
	_, err := hex.DecodeString(h)
	return ok && len(h) == 2*sha256.Size && err == nil && strings.ToLower(h) == h
}

// path is where the photo of hash lives: Dir/ab/abcdef….
func (p *Photos) path(hash string) string {
	h := strings.TrimPrefix(hash, "sha256:")
	return filepath.Join(p.Dir, h[:2], h)
}

// Has reports whether the photo of hash is stored.
func (p *Photos) Has(hash string) bool {
	if !ValidHash(hash) {
		return false
	}
	_, err := os.Stat(p.path(hash))
	return err == nil
}

// Open returns the photo of hash and its content type; ErrNoPhoto when
// none is stored.
func (p *Photos) Open(hash string) (*os.File, string, error) {
	if !ValidHash(hash) {
		return nil, "", fmt.Errorf("%w: %q", ErrNoPhoto, hash)
	}
	f, err := os.Open(p.path(hash))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: %q", ErrNoPhoto, hash)
	}
	if err != nil {
		return nil, "", err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, "", err
	}
	return f, http.DetectContentType(head[:n]), nil
}
