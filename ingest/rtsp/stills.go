package rtsp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Defaults of the Stills settings.
const (
	DefaultStillWidth    = 320
	DefaultStillQuality  = 75
	DefaultStillMaxBytes = 64 << 20
)

// ErrNoStill means a camera has no still picture (yet).
var ErrNoStill = errors.New("rtsp: no still picture of the camera")

// Stills keeps the last good picture of every camera — the last one the
// diagnosis found no condition in — as a small JPEG under Dir, one file
// per camera, for the console's camera wall and case pages. A still is
// also the camera's reference across restarts. When the files pass
// MaxBytes, the stills written longest ago are removed. It is safe for
// concurrent use.
type Stills struct {
	// Dir holds the files. Required; created when missing.
	Dir string
	// Width is the widest a still is; wider pictures are scaled down by
	// a whole factor. It defaults to 320.
	Width int
	// Quality is the JPEG quality, 1-100. It defaults to 75.
	Quality int
	// MaxBytes bounds the files in all. It defaults to 64 MiB.
	MaxBytes int64

	mu     sync.Mutex
	loaded bool
	files  map[string]stillFile // by camera
	total  int64
}

// stillFile is the size and time of one camera's still.
type stillFile struct {
	size int64
	at   time.Time
}

// stillExt ends every still's file name; the rest is the camera id in hex,
// so that any id makes a safe name.
const stillExt = ".jpg"

func (s *Stills) path(camera string) string {
	return filepath.Join(s.Dir, hex.EncodeToString([]byte(camera))+stillExt)
}

// load fills in the defaults and reads what Dir holds; s.mu is held.
func (s *Stills) load() error {
	if s.loaded {
		return nil
	}
	if s.Width <= 0 {
		s.Width = DefaultStillWidth
	}
	if s.Quality <= 0 || s.Quality > 100 {
		s.Quality = DefaultStillQuality
	}
	if s.MaxBytes <= 0 {
		s.MaxBytes = DefaultStillMaxBytes
	}
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return fmt.Errorf("rtsp: stills directory: %w", err)
	}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("rtsp: stills directory: %w", err)
	}
	s.files = map[string]stillFile{}
	for _, e := range entries {
		id, err := hex.DecodeString(strings.TrimSuffix(e.Name(), stillExt))
		if err != nil || !strings.HasSuffix(e.Name(), stillExt) || !e.Type().IsRegular() {
			continue // a temporary file of an interrupted write, or not ours
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		s.files[string(id)] = stillFile{size: info.Size(), at: info.ModTime()}
		s.total += info.Size()
	}
	s.loaded = true
	return nil
}

// put stores p as camera's still, then removes the oldest stills while
// the files pass MaxBytes; it returns how many it removed.
func (s *Stills) put(camera string, p *picture, at time.Time) (removed int, err error) {
	var buf bytes.Buffer
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return 0, err
	}
	if err := jpeg.Encode(&buf, stillImage(p, s.Width), &jpeg.Options{Quality: s.Quality}); err != nil {
		return 0, fmt.Errorf("rtsp: encode still of %s: %w", camera, err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".still-*")
	if err != nil {
		return 0, fmt.Errorf("rtsp: write still of %s: %w", camera, err)
	}
	_, err = tmp.Write(buf.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(camera))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, fmt.Errorf("rtsp: write still of %s: %w", camera, err)
	}
	s.total += int64(buf.Len()) - s.files[camera].size
	s.files[camera] = stillFile{size: int64(buf.Len()), at: at}
	for s.total > s.MaxBytes && len(s.files) > 1 {
		oldest := ""
		for id, f := range s.files {
			if id != camera && (oldest == "" || f.at.Before(s.files[oldest].at)) {
				oldest = id
			}
		}
		if err := os.Remove(s.path(oldest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("rtsp: remove still of %s: %w", oldest, err)
		}
		s.total -= s.files[oldest].size
		delete(s.files, oldest)
		removed++
	}
	return removed, nil
}

// Still returns camera's still as JPEG and when it was taken, or
// ErrNoStill.
func (s *Stills) Still(camera string) ([]byte, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return nil, time.Time{}, err
	}
	f, ok := s.files[camera]
	if !ok {
		return nil, time.Time{}, ErrNoStill
	}
	b, err := os.ReadFile(s.path(camera))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, ErrNoStill
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("rtsp: read still of %s: %w", camera, err)
	}
	return b, f.at, nil
}

// reference returns the signature of camera's still, or nil without one.
func (s *Stills) reference(camera string) *signature {
	b, _, err := s.Still(camera)
	if err != nil {
		return nil
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	yc, ok := img.(*image.YCbCr)
	if !ok {
		return nil
	}
	r := yc.Rect
	p := &picture{w: r.Dx(), h: r.Dy(), y: make([]byte, 0, r.Dx()*r.Dy())}
	for y := range p.h {
		p.y = append(p.y, yc.Y[y*yc.YStride:y*yc.YStride+p.w]...)
	}
	return signatureOf(p)
}

// forget removes the stills of cameras not in keep.
func (s *Stills) forget(keep func(camera string) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	var errs []error
	for id, f := range s.files {
		if keep(id) {
			continue
		}
		if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		s.total -= f.size
		delete(s.files, id)
	}
	return errors.Join(errs...)
}

// stillImage is p scaled down by the smallest whole factor that makes it
// at most width wide, as a 4:2:0 image.
func stillImage(p *picture, width int) *image.YCbCr {
	f := max((p.w+width-1)/width, 1)
	w, h := p.w/f&^1, p.h/f&^1
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	box := func(dst []byte, dstStride int, src []byte, srcStride, dw, dh int) {
		for y := range dh {
			for x := range dw {
				sum := 0
				for sy := y * f; sy < (y+1)*f; sy++ {
					for sx := x * f; sx < (x+1)*f; sx++ {
						sum += int(src[sy*srcStride+sx])
					}
				}
				dst[y*dstStride+x] = byte((sum + f*f/2) / (f * f))
			}
		}
	}
	box(img.Y, img.YStride, p.y, p.w, w, h)
	box(img.Cb, img.CStride, p.u, p.w/2, w/2, h/2)
	box(img.Cr, img.CStride, p.v, p.w/2, w/2, h/2)
	return img
}
