package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestBuiltPage(t *testing.T) {
	h := handler(fstest.MapFS{
		"index.html":          {Data: []byte(`<!doctype html><script src="/assets/main-AB12.js"></script>`)},
		"assets/main-AB12.js": {Data: []byte(`console.log(1)`)},
	})
	rec := get(t, h, http.MethodGet, "/")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "main-AB12.js") {
		t.Fatalf("GET /: %d %q", rec.Code, rec.Body)
	}
	if cc, csp := rec.Header().Get("Cache-Control"), rec.Header().Get("Content-Security-Policy"); cc != "no-cache" || !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("GET / headers: Cache-Control %q, CSP %q", cc, csp)
	}
	rec = get(t, h, http.MethodGet, "/assets/main-AB12.js")
	if rec.Code != 200 || rec.Body.String() != "console.log(1)" || !strings.Contains(rec.Header().Get("Content-Type"), "javascript") {
		t.Fatalf("GET asset: %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("asset Cache-Control %q, want immutable", cc)
	}
	if rec := get(t, h, http.MethodHead, "/"); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD /: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	for _, path := range []string{"/assets/", "/assets/missing.js", "/assets/../index.html/x", "/other", "/.gitkeep"} {
		if rec := get(t, h, http.MethodGet, path); rec.Code != 404 {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		}
	}
	if rec := get(t, h, http.MethodPost, "/"); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestPageNotBuilt(t *testing.T) {
	rec := get(t, handler(fstest.MapFS{".gitkeep": {Data: []byte("placeholder")}}), http.MethodGet, "/")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "make web") {
		t.Fatalf("GET / without a build: %d %q", rec.Code, rec.Body)
	}
}

// The embedded page is either built (index.html names its assets, which are
// there) or answers "not built": never half of it.
func TestEmbeddedPage(t *testing.T) {
	h := Handler()
	rec := get(t, h, http.MethodGet, "/")
	sub, _ := fs.Sub(dist, "dist")
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("no index.html embedded, GET / answered %d", rec.Code)
		}
		return
	}
	if rec.Code != 200 {
		t.Fatalf("GET /: %d", rec.Code)
	}
	body := rec.Body.String()
	for _, ref := range strings.Split(body, `"/assets/`)[1:] {
		asset := "/assets/" + ref[:strings.IndexByte(ref, '"')]
		if rec := get(t, h, http.MethodGet, asset); rec.Code != 200 || rec.Body.Len() == 0 {
			t.Errorf("GET %s (named by index.html): %d", asset, rec.Code)
		}
	}
}
