package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// manifest is dist/build.json, which build.mjs writes.
type manifest struct {
	Sources string   `json:"sources"`
	Outputs string   `json:"outputs"`
	Files   []string `json:"files"`
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	raw, err := dist.ReadFile("dist/build.json")
	if err != nil {
		t.Fatalf("dist/build.json: %v (build the console: cd web && npm ci && npm run build)", err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("dist/build.json: %v", err)
	}
	return m
}

// digest is build.mjs's digest: sha256 over "path\0sha256(content)\n" of
// each file, in order.
func digest(t *testing.T, read func(string) ([]byte, error), files []string) string {
	t.Helper()
	h := sha256.New()
	for _, f := range files {
		body, err := read(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		h.Write([]byte(f + "\x00" + hex.EncodeToString(sum[:]) + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sourceFiles lists what build.mjs reads besides node_modules, as it does.
func sourceFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"build.mjs", "package.json", "package-lock.json"}
	err := filepath.WalkDir("src", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.ToSlash(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// TestBundleMatchesSource fails when the committed build (dist/) was not
// made from the sources beside it, or was edited after the build: the
// hashes build.mjs recorded must be those of the files now.
func TestBundleMatchesSource(t *testing.T) {
	m := readManifest(t)
	if got := digest(t, os.ReadFile, sourceFiles(t)); got != m.Sources {
		t.Errorf("web/src, build.mjs or the package files changed since dist/ was built (sources %s, built from %s): run cd web && npm ci && npm run build, and commit dist/", got, m.Sources)
	}
	var outputs []string
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != "dist/build.json" {
			outputs = append(outputs, strings.TrimPrefix(p, "dist/"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(outputs)
	if strings.Join(outputs, ",") != strings.Join(without(m.Files, "build.json"), ",") {
		t.Errorf("dist/ holds %v, the build made %v", outputs, m.Files)
	}
	read := func(f string) ([]byte, error) { return dist.ReadFile("dist/" + f) }
	if got := digest(t, read, without(m.Files, "build.json")); got != m.Outputs {
		t.Errorf("dist/ was changed after the build (outputs %s, built %s): rebuild it", got, m.Outputs)
	}
}

func without(files []string, drop string) []string {
	var out []string
	for _, f := range files {
		if f != drop {
			out = append(out, f)
		}
	}
	return out
}

// maxGzipBytes bounds the console's download: page, script and styles,
// gzipped.
const maxGzipBytes = 300 << 10

// TestBundleSize keeps the console small: at most 300 KB gzipped.
func TestBundleSize(t *testing.T) {
	total := 0
	for _, f := range without(readManifest(t).Files, "build.json") {
		body, err := dist.ReadFile("dist/" + f)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		t.Logf("%s: %d bytes, %d gzipped", f, len(body), buf.Len())
		total += buf.Len()
	}
	t.Logf("console: %d bytes gzipped (bound %d)", total, maxGzipBytes)
	if total > maxGzipBytes {
		t.Errorf("the console is %d bytes gzipped, over the %d bound", total, maxGzipBytes)
	}
}

// TestRebuildIsIdentical builds the console again from its sources with the
// locked packages (npm ci) and compares every file with dist/ byte for
// byte: the recorded hashes of TestBundleMatchesSource can only say the
// sources are those of the build, this says the build is what they make.
func TestRebuildIsIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with Node")
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat("node_modules/esbuild/package.json")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node and web/node_modules are needed (deploy/install-deps.sh runs npm ci): %v", err)
		}
		t.Skipf("no node or web/node_modules (deploy/install-deps.sh): %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs", "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, b)
	}
	for _, f := range readManifest(t).Files {
		want, err := dist.ReadFile("dist/" + f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatalf("the rebuild made no %s: %v", f, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the rebuild (%d bytes) differs from dist/ (%d bytes): run cd web && npm ci && npm run build, and commit dist/", f, len(got), len(want))
		}
	}
}

// TestHandler checks what the console's answers promise: the page and its
// assets with their types, the CSP on every answer, revalidation by ETag,
// and a page without inline script, inline handlers or style elements,
// which that CSP would refuse anyway.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	get := func(path string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for path, ctype := range map[string]string{"/": "text/html", "/assets/app.js": "text/javascript", "/assets/app.css": "text/css"} {
		resp := get(path)
		body := new(bytes.Buffer)
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("GET %s: CSP %q", path, got)
		}
		for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("GET %s: %s %q, want %q", path, h, got, want)
			}
		}
		if path == "/" {
			page := body.String()
			for _, bad := range []*regexp.Regexp{regexp.MustCompile(`<script[^>]*>\s*[^<\s]`), regexp.MustCompile(`(?i)\son[a-z]+=`), regexp.MustCompile(`(?i)<style`)} {
				if bad.MatchString(page) {
					t.Errorf("the page has inline code (%s): %s", bad, page)
				}
			}
			for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
				if !strings.Contains(tag, " src=") {
					t.Errorf("the page has an inline script: %s", tag)
				}
			}
			if !strings.Contains(page, `<script type="module" src="/assets/app.js"></script>`) {
				t.Errorf("the page does not load /assets/app.js: %s", page)
			}
		}
		etag := resp.Header.Get("ETag")
		if again := get(path, "If-None-Match", etag); etag == "" || again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s: %d, want 304", path, etag, again.StatusCode)
		}
	}
	for _, path := range []string{"/assets/nothing.js", "/build.json", "/assets/../build.json"} {
		if resp := get(path); resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s, want a JSON 404", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}
