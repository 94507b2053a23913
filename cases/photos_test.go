package cases_test

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"testing"

	"github.com/gridwatch/gridwatch/cases"
)

func picture(t testing.TB, enc func(io.Writer, image.Image) error, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var b bytes.Buffer
	if err := enc(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestPhotos checks that JPEG and PNG pictures are stored by content hash
// and read back, and that anything else is refused with its reason.
func TestPhotos(t *testing.T) {
	p := &cases.Photos{Dir: t.TempDir(), MaxBytes: 64 << 10, MaxPixels: 1 << 20}
	jpg := picture(t, func(w io.Writer, m image.Image) error { return jpeg.Encode(w, m, nil) }, 64, 48)
	pngData := picture(t, png.Encode, 64, 48)
	for name, data := range map[string][]byte{"jpeg": jpg, "png": pngData} {
		hash, err := p.Put(bytes.NewReader(data))
		if err != nil || !cases.ValidHash(hash) || !p.Has(hash) {
			t.Fatalf("%s: %q %v", name, hash, err)
		}
		again, err := p.Put(bytes.NewReader(data))
		if err != nil || again != hash {
			t.Fatalf("%s again: %q %v", name, again, err)
		}
		f, typ, err := p.Open(hash)
		if err != nil || typ != "image/"+name {
			t.Fatalf("%s: open %q %v", name, typ, err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: read back %d bytes, stored %d", name, len(got), len(data))
		}
	}
	truncated := pngData[:len(pngData)-20]
	big := picture(t, png.Encode, 2048, 1024) // 2 Mpx, compresses below 64 KiB
	refused := map[string]struct {
		data []byte
		err  error
	}{
		"text":         {[]byte("hello, this is not a picture"), cases.ErrBadPhoto},
		"gif":          {[]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), cases.ErrBadPhoto},
		"truncated":    {truncated, cases.ErrBadPhoto},
		"too many px":  {big, cases.ErrPhotoTooLarge},
		"too many kib": {append(bytes.Clone(jpg), make([]byte, 64<<10)...), cases.ErrPhotoTooLarge},
	}
	for name, tc := range refused {
		if _, err := p.Put(bytes.NewReader(tc.data)); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", name, err, tc.err)
		}
	}
	for _, h := range []string{"", "sha256:../../etc/passwd", "md5:00", "sha256:" + string(bytes.Repeat([]byte("0"), 64))} {
		if _, _, err := p.Open(h); !errors.Is(err, cases.ErrNoPhoto) {
			t.Errorf("open %q: %v", h, err)
		}
	}
}

// FuzzPhotoPut feeds Put arbitrary bytes: it must store a picture it can
// decode and refuse anything else as ErrBadPhoto or ErrPhotoTooLarge,
// never panic or fail otherwise.
func FuzzPhotoPut(f *testing.F) {
	f.Add(picture(f, func(w io.Writer, m image.Image) error { return jpeg.Encode(w, m, nil) }, 16, 16))
	f.Add(picture(f, png.Encode, 16, 16))
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte("\xff\xd8\xff\xe0"))
	f.Add([]byte("GIF89a"))
	p := &cases.Photos{Dir: f.TempDir(), MaxBytes: 64 << 10, MaxPixels: 1 << 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		hash, err := p.Put(bytes.NewReader(data))
		switch {
		case err == nil:
			if !p.Has(hash) {
				t.Fatalf("stored %q, but Has says no", hash)
			}
		case !errors.Is(err, cases.ErrBadPhoto) && !errors.Is(err, cases.ErrPhotoTooLarge):
			t.Fatalf("Put: %v", err)
		}
	})
}
