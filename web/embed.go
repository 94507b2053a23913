// Package web is the command-centre console: its source (src/, Preact with
// uPlot, Leaflet and a virtualised list), its esbuild build (build.mjs) and
// the committed build (dist/), which this package embeds and Handler serves
// at /. Building gridwatch needs no Node; bundle_test.go fails when dist/ no
// longer matches its source.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// ContentSecurityPolicy is the policy of every console response: scripts,
// styles and connections of this origin only, no inline script or style
// element, no framing, no plugins. Images may be data: and blob: URLs
// (chart and map renderings, photo previews).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one file of the build with its entity tag.
type asset struct {
	name string
	body []byte
	etag string
}

// Handler serves the console: GET / is its page, GET /assets/… its script,
// style sheet and images; anything else is not its. Every answer carries
// ContentSecurityPolicy and headers that keep the page out of frames and
// its address out of Referer headers. Files are revalidated by ETag (the
// build changes with the binary, not its modification time).
func Handler() http.Handler {
	files := map[string]asset{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "dist")
		files[name] = asset{name: path.Base(p), body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		// The embedded tree is part of the binary: it cannot fail to read.
		panic("web: read embedded build: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		name := r.URL.Path
		if name == "/" {
			name = "/index.html"
		}
		a, ok := files[name]
		if !ok || name == "/build.json" {
			// The API's error body, as every other unknown path gets.
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such console file"}}` + "\n"))
			return
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}
