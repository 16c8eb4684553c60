package npmproxy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// makeTgz builds a real npm tarball: package/package.json and package/index.js.
func makeTgz(t *testing.T, name, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	files := map[string]string{
		"package/package.json": fmt.Sprintf(`{"name":%q,"version":%q,"main":"index.js"}`, name, version),
		"package/index.js":     "module.exports = 42;\n",
	}
	for _, n := range []string{"package/package.json", "package/index.js"} {
		body := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(499162500, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sri(b []byte) string {
	s := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(s[:])
}

func sha1hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// fakePkg is one package of the fake registry.
type fakePkg struct {
	name       string
	tarballs   map[string][]byte // version → bytes published (their digests go in the document)
	served     map[string][]byte // version → bytes actually served, if different (tampering)
	shasumOnly bool              // publish no integrity, only the sha1 shasum
	tarballURL string            // if set, the document's tarball URLs point here instead of the registry
}

// registry is a fake upstream under the path prefix /registry. It counts
// every request by path and checks the proxy only ever asks for documents
// and standard tarball paths.
type registry struct {
	t      *testing.T
	srv    *httptest.Server
	pkgs   map[string]*fakePkg
	extra  map[string]http.HandlerFunc // special paths (after the prefix), served first
	mu     sync.Mutex
	hits   map[string]int
	accept []string
}

const prefix = "/registry"

func newRegistry(t *testing.T, pkgs ...*fakePkg) *registry {
	reg := &registry{t: t, pkgs: map[string]*fakePkg{}, extra: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	for _, p := range pkgs {
		reg.pkgs[p.name] = p
	}
	reg.srv = httptest.NewServer(http.HandlerFunc(reg.serve))
	t.Cleanup(reg.srv.Close)
	return reg
}

func (reg *registry) url() *url.URL {
	u, err := url.Parse(reg.srv.URL + prefix + "/")
	if err != nil {
		reg.t.Fatal(err)
	}
	return u
}

func (reg *registry) count(path string) int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.hits[path]
}

func (reg *registry) total() int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := 0
	for _, c := range reg.hits {
		n += c
	}
	return n
}

var upstreamPath = regexp.MustCompile(`^/registry/((@[a-z0-9._-]+%2[fF])?[a-z0-9._-]+|(@[a-z0-9._-]+/)?[a-z0-9._-]+/-/[a-z0-9._-]+-[0-9A-Za-z.+-]+\.tgz)$`)

func (reg *registry) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if r.Method != http.MethodGet || !upstreamPath.MatchString(path) {
		reg.t.Errorf("upstream got a request the proxy must never send: %s %s", r.Method, r.RequestURI)
	}
	reg.mu.Lock()
	reg.hits[path]++
	if !strings.Contains(path, "/-/") {
		reg.accept = append(reg.accept, r.Header.Get("Accept"))
	}
	h := reg.route(strings.TrimPrefix(path, prefix+"/"))
	reg.mu.Unlock()
	h(w, r)
}

// route picks the answer for a path below the prefix; reg.mu is held.
func (reg *registry) route(rest string) http.HandlerFunc {
	if h := reg.extra[rest]; h != nil {
		return h
	}
	for _, p := range reg.pkgs {
		if rest == escapedName(p.name) {
			doc := reg.document(p)
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/vnd.npm.install-v1+json")
				_, _ = w.Write(doc)
			}
		}
		for v, tgz := range p.tarballs {
			if rest == tarballPath(p.name, v) {
				if s, ok := p.served[v]; ok {
					tgz = s
				}
				return func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/octet-stream")
					w.Header().Set("Content-Length", strconv.Itoa(len(tgz)))
					_, _ = w.Write(tgz)
				}
			}
		}
	}
	return http.NotFound
}

// update changes the registry's contents between requests.
func (reg *registry) update(change func()) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	change()
}

func (reg *registry) document(p *fakePkg) []byte {
	versions := map[string]any{}
	latest := ""
	for v, tgz := range p.tarballs {
		tarball := reg.srv.URL + prefix + "/" + tarballPath(p.name, v)
		if p.tarballURL != "" {
			tarball = p.tarballURL + "/" + basename(p.name) + "-" + v + ".tgz"
		}
		dist := map[string]any{"tarball": tarball, "shasum": sha1hex(tgz), "fileCount": 2}
		if !p.shasumOnly {
			dist["integrity"] = sri(tgz)
		}
		versions[v] = map[string]any{"name": p.name, "version": v, "dependencies": map[string]string{}, "dist": dist}
		latest = max(latest, v)
	}
	b, err := json.Marshal(map[string]any{"name": p.name, "dist-tags": map[string]string{"latest": latest},
		"versions": versions, "modified": "2024-01-02T03:04:05.000Z"})
	if err != nil {
		reg.t.Fatal(err)
	}
	return b
}

func pkg(t *testing.T, name string, versions ...string) *fakePkg {
	p := &fakePkg{name: name, tarballs: map[string][]byte{}, served: map[string][]byte{}}
	for _, v := range versions {
		p.tarballs[v] = makeTgz(t, name, v)
	}
	return p
}

// front is the proxy as a session sees it: a loopback server whose base URL
// the handler knows.
type front struct {
	srv  *httptest.Server
	base string
	rec  *Recorder
}

func newFront(t *testing.T, p *Proxy) *front {
	srv := httptest.NewUnstartedServer(nil)
	f := &front{srv: srv, base: "http://" + srv.Listener.Addr().String(), rec: new(Recorder)}
	srv.Config.Handler = p.Handler(f.base, f.rec)
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

func (f *front) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(f.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func newProxy(t *testing.T, upstream *url.URL, cacheDir string, mod ...func(*Config)) *Proxy {
	t.Helper()
	cfg := Config{Upstream: upstream, CacheDir: cacheDir, Timeout: 5 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cacheFiles lists the regular files in the cache, temporary ones included.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type docJSON struct {
	Name     string            `json:"name"`
	DistTags map[string]string `json:"dist-tags"`
	Versions map[string]struct {
		Version string `json:"version"`
		Dist    struct {
			Tarball   string `json:"tarball"`
			Integrity string `json:"integrity"`
			Shasum    string `json:"shasum"`
			FileCount int    `json:"fileCount"`
		} `json:"dist"`
	} `json:"versions"`
	Modified string `json:"modified"`
}

func decodeDoc(t *testing.T, b []byte) docJSON {
	t.Helper()
	var d docJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("document: %v: %s", err, b)
	}
	return d
}

func TestDocumentTarballURLsRewritten(t *testing.T) {
	plain := pkg(t, "is-thing", "1.0.0", "1.1.0-beta.1")
	scoped := pkg(t, "@scope/pkg", "2.0.0")
	reg := newRegistry(t, plain, scoped)
	f := newFront(t, newProxy(t, reg.url(), t.TempDir()))

	for _, tc := range []struct {
		path, name string
		want       map[string]string
	}{
		{"/is-thing", "is-thing", map[string]string{
			"1.0.0":        f.base + "/is-thing/-/is-thing-1.0.0.tgz",
			"1.1.0-beta.1": f.base + "/is-thing/-/is-thing-1.1.0-beta.1.tgz"}},
		{"/@scope%2fpkg", "@scope/pkg", map[string]string{"2.0.0": f.base + "/@scope/pkg/-/pkg-2.0.0.tgz"}},
		{"/@scope%2Fpkg", "@scope/pkg", map[string]string{"2.0.0": f.base + "/@scope/pkg/-/pkg-2.0.0.tgz"}},
		{"/@scope/pkg", "@scope/pkg", map[string]string{"2.0.0": f.base + "/@scope/pkg/-/pkg-2.0.0.tgz"}},
	} {
		code, body := f.get(t, tc.path)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", tc.path, code, body)
		}
		d := decodeDoc(t, body)
		if d.Name != tc.name || d.Modified == "" || d.DistTags["latest"] == "" {
			t.Errorf("GET %s: other fields lost: %+v", tc.path, d)
		}
		for v, want := range tc.want {
			got := d.Versions[v]
			if got.Dist.Tarball != want {
				t.Errorf("GET %s: %s tarball = %q, want %q", tc.path, v, got.Dist.Tarball, want)
			}
			src := plain
			if tc.name == scoped.name {
				src = scoped
			}
			if got.Dist.Integrity != sri(src.tarballs[v]) || got.Dist.Shasum != sha1hex(src.tarballs[v]) || got.Dist.FileCount != 2 {
				t.Errorf("GET %s: %s dist changed: %+v", tc.path, v, got.Dist)
			}
		}
	}
	// Documents are remembered: each went upstream once, asking for the abbreviated form.
	if n := reg.count(prefix + "/is-thing"); n != 1 {
		t.Errorf("upstream saw %d document requests for is-thing, want 1", n)
	}
	if n := reg.count(prefix + "/@scope%2fpkg"); n != 1 {
		t.Errorf("upstream saw %d document requests for @scope/pkg, want 1", n)
	}
	for _, a := range reg.accept {
		if !strings.HasPrefix(a, "application/vnd.npm.install-v1+json") {
			t.Errorf("upstream Accept = %q", a)
		}
	}

	resp, err := http.Head(f.base + "/is-thing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.npm.install-v1+json" {
		t.Errorf("HEAD document = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestDocTTL(t *testing.T) {
	reg := newRegistry(t, pkg(t, "is-thing", "1.0.0"))
	f := newFront(t, newProxy(t, reg.url(), t.TempDir(), func(c *Config) { c.DocTTL = time.Nanosecond }))
	f.get(t, "/is-thing")
	f.get(t, "/is-thing")
	if n := reg.count(prefix + "/is-thing"); n != 2 {
		t.Errorf("upstream saw %d document requests with an expired TTL, want 2", n)
	}
}

func TestTarballVerifiedAndCached(t *testing.T) {
	plain := pkg(t, "is-thing", "1.0.0")
	scoped := pkg(t, "@scope/pkg", "2.0.0")
	reg := newRegistry(t, plain, scoped)
	cache := t.TempDir()
	p := newProxy(t, reg.url(), cache)
	first, second := newFront(t, p), newFront(t, p) // two sessions

	for _, tc := range []struct {
		doc, tarball, upstream string
		want                   []byte
	}{
		{"/is-thing", "/is-thing/-/is-thing-1.0.0.tgz", prefix + "/is-thing/-/is-thing-1.0.0.tgz", plain.tarballs["1.0.0"]},
		{"/@scope%2fpkg", "/@scope/pkg/-/pkg-2.0.0.tgz", prefix + "/@scope/pkg/-/pkg-2.0.0.tgz", scoped.tarballs["2.0.0"]},
	} {
		first.get(t, tc.doc)
		code, body := first.get(t, tc.tarball)
		if code != http.StatusOK || !bytes.Equal(body, tc.want) {
			t.Fatalf("GET %s = %d, %d bytes; want 200 and the published tarball", tc.tarball, code, len(body))
		}
		code, body = second.get(t, tc.tarball)
		if code != http.StatusOK || !bytes.Equal(body, tc.want) {
			t.Fatalf("second GET %s = %d, %d bytes", tc.tarball, code, len(body))
		}
		if n := reg.count(tc.upstream); n != 1 {
			t.Errorf("upstream saw %d requests for %s, want 1", n, tc.upstream)
		}
		sum := sha512.Sum512(tc.want)
		if _, err := os.Stat(filepath.Join(cache, "sha512", hex.EncodeToString(sum[:]))); err != nil {
			t.Errorf("cache file: %v", err)
		}
	}
	if first.rec.CacheMisses() != 2 || first.rec.CacheHits() != 0 || second.rec.CacheHits() != 2 || second.rec.CacheMisses() != 0 {
		t.Errorf("first hits/misses %d/%d, second %d/%d; want 0/2 and 2/0",
			first.rec.CacheHits(), first.rec.CacheMisses(), second.rec.CacheHits(), second.rec.CacheMisses())
	}
	if hits, misses, up := p.Stats(); hits != 2 || misses != 2 || up <= 0 || up != first.rec.BytesFromUpstream()+second.rec.BytesFromUpstream() {
		t.Errorf("Stats = %d, %d, %d", hits, misses, up)
	}
	tarBytes := int64(len(plain.tarballs["1.0.0"]) + len(scoped.tarballs["2.0.0"]))
	if got := second.rec.BytesServed(); got != tarBytes {
		t.Errorf("second BytesServed = %d, want %d", got, tarBytes)
	}
	if first.rec.BytesServed() <= tarBytes {
		t.Errorf("first BytesServed = %d, want documents + tarballs", first.rec.BytesServed())
	}
	if files := cacheFiles(t, cache); len(files) != 2 {
		t.Errorf("cache holds %v, want two tarballs and no temporary files", files)
	}

	// A new proxy on the same cache (a daemon restart) fetches only the document.
	restarted := newFront(t, newProxy(t, reg.url(), cache))
	if code, body := restarted.get(t, "/is-thing/-/is-thing-1.0.0.tgz"); code != http.StatusOK || !bytes.Equal(body, plain.tarballs["1.0.0"]) {
		t.Fatalf("after restart: %d, %d bytes", code, len(body))
	}
	if restarted.rec.CacheHits() != 1 || reg.count(prefix+"/is-thing/-/is-thing-1.0.0.tgz") != 1 || reg.count(prefix+"/is-thing") != 2 {
		t.Errorf("after restart: hits %d, upstream tarball %d, document %d", restarted.rec.CacheHits(),
			reg.count(prefix+"/is-thing/-/is-thing-1.0.0.tgz"), reg.count(prefix+"/is-thing"))
	}
}

func TestVersionPublishedSinceDocument(t *testing.T) {
	p := pkg(t, "fresh", "1.0.0")
	reg := newRegistry(t, p)
	f := newFront(t, newProxy(t, reg.url(), t.TempDir()))
	f.get(t, "/fresh")
	newer := makeTgz(t, "fresh", "1.1.0")
	reg.update(func() { p.tarballs["1.1.0"] = newer })
	if code, body := f.get(t, "/fresh/-/fresh-1.1.0.tgz"); code != http.StatusOK || !bytes.Equal(body, newer) {
		t.Errorf("tarball of a version newer than the remembered document = %d", code)
	}
	if n := reg.count(prefix + "/fresh"); n != 2 {
		t.Errorf("upstream saw %d document requests, want 2", n)
	}
}

func TestTarballShasumOnly(t *testing.T) {
	old := pkg(t, "old-thing", "0.1.0")
	old.shasumOnly = true
	reg := newRegistry(t, old)
	cache := t.TempDir()
	f := newFront(t, newProxy(t, reg.url(), cache))
	if code, body := f.get(t, "/old-thing/-/old-thing-0.1.0.tgz"); code != http.StatusOK || !bytes.Equal(body, old.tarballs["0.1.0"]) {
		t.Fatalf("GET = %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(cache, "sha1", sha1hex(old.tarballs["0.1.0"]))); err != nil {
		t.Errorf("cache file: %v", err)
	}
}

func TestTarballIntegrityMismatch(t *testing.T) {
	bad := pkg(t, "tampered", "1.0.0")
	bad.served["1.0.0"] = makeTgz(t, "tampered", "6.6.6")
	reg := newRegistry(t, bad)
	cache := t.TempDir()
	f := newFront(t, newProxy(t, reg.url(), cache))
	for range 2 { // never cached: each try goes upstream and fails again
		if code, body := f.get(t, "/tampered/-/tampered-1.0.0.tgz"); code != http.StatusBadGateway {
			t.Fatalf("GET tampered tarball = %d %s, want 502", code, body)
		}
	}
	errs := f.rec.UpstreamErrors()
	if len(errs) != 2 || !errdefs.IsDataLoss(errs[0]) || !strings.Contains(errs[0].Error(), "tampered@1.0.0") {
		t.Errorf("UpstreamErrors = %v, want DataLoss naming tampered@1.0.0", errs)
	}
	if files := cacheFiles(t, cache); len(files) != 0 {
		t.Errorf("cache holds %v after a failed check", files)
	}
}

func TestUpstreamNotFound(t *testing.T) {
	reg := newRegistry(t, pkg(t, "is-thing", "1.0.0"))
	f := newFront(t, newProxy(t, reg.url(), t.TempDir()))
	for _, path := range []string{"/no-such-thing", "/@scope%2fmissing", "/gone-too/-/gone-too-1.0.0.tgz", "/no-such-thing"} {
		if code, body := f.get(t, path); code != http.StatusNotFound {
			t.Errorf("GET %s = %d %s, want 404", path, code, body)
		}
	}
	if got, want := f.rec.NotFound(), []string{"no-such-thing", "@scope/missing", "gone-too"}; !slices.Equal(got, want) {
		t.Errorf("NotFound = %q, want %q", got, want)
	}
	// A version the document does not list: 404 after one fresh look, not a package 404.
	if code, _ := f.get(t, "/is-thing/-/is-thing-9.9.9.tgz"); code != http.StatusNotFound {
		t.Errorf("unknown version = %d, want 404", code)
	}
	if len(f.rec.UpstreamErrors()) != 0 || len(f.rec.NotFound()) != 3 {
		t.Errorf("recorded %v / %v", f.rec.UpstreamErrors(), f.rec.NotFound())
	}
}

func TestUpstreamFailures(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL, _ := url.Parse(down.URL + "/")
	down.Close()

	reg := newRegistry(t, pkg(t, "is-thing", "1.0.0"))
	reg.extra["broken"] = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusServiceUnavailable) }
	reg.extra["slow"] = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	reg.extra["truncated"] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte(`{"name":"truncated",`))
	}
	reg.extra["not-json"] = func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("<html>")) }

	for _, tc := range []struct {
		desc     string
		upstream *url.URL
		path     string
		is       func(error) bool
	}{
		{"upstream down", downURL, "/is-thing", errdefs.IsUnavailable},
		{"upstream down, tarball", downURL, "/is-thing/-/is-thing-1.0.0.tgz", errdefs.IsUnavailable},
		{"upstream 503", reg.url(), "/broken", errdefs.IsUnavailable},
		{"upstream too slow", reg.url(), "/slow", errdefs.IsDeadlineExceeded},
		{"truncated body", reg.url(), "/truncated", errdefs.IsUnavailable},
		{"not JSON", reg.url(), "/not-json", errdefs.IsUnavailable},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f := newFront(t, newProxy(t, tc.upstream, t.TempDir(), func(c *Config) { c.Timeout = 200 * time.Millisecond }))
			if code, body := f.get(t, tc.path); code != http.StatusBadGateway {
				t.Errorf("GET %s = %d %s, want 502", tc.path, code, body)
			}
			errs := f.rec.UpstreamErrors()
			if len(errs) != 1 || !tc.is(errs[0]) {
				t.Errorf("UpstreamErrors = %v", errs)
			}
			if len(f.rec.NotFound()) != 0 {
				t.Errorf("NotFound = %v", f.rec.NotFound())
			}
		})
	}
}

func TestOversize(t *testing.T) {
	big := pkg(t, "big-tarball", "1.0.0")
	big.tarballs["1.0.0"] = append(big.tarballs["1.0.0"], make([]byte, 4096)...)
	chunked := pkg(t, "big-chunked", "1.0.0")
	chunked.tarballs["1.0.0"] = append(chunked.tarballs["1.0.0"], make([]byte, 4096)...)
	reg := newRegistry(t, big, chunked, pkg(t, "small", "1.0.0"))
	pad := strings.Repeat("x", 3000)
	reg.extra["big-doc"] = func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"name":"big-doc","readme":%q}`, pad)
	}
	reg.extra["big-doc-chunked"] = func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"name":"big-doc-chunked",`)
		w.(http.Flusher).Flush()
		_, _ = fmt.Fprintf(w, `"readme":%q}`, pad)
	}
	// Served without a length, so only the read limit can catch it.
	reg.extra[tarballPath("big-chunked", "1.0.0")] = func(w http.ResponseWriter, r *http.Request) {
		b := chunked.tarballs["1.0.0"]
		_, _ = w.Write(b[:100])
		w.(http.Flusher).Flush()
		_, _ = w.Write(b[100:])
	}
	cache := t.TempDir()
	f := newFront(t, newProxy(t, reg.url(), cache, func(c *Config) { c.MaxDocBytes = 2048; c.MaxTarballBytes = 2048 }))
	for _, path := range []string{"/big-doc", "/big-doc-chunked", "/big-tarball/-/big-tarball-1.0.0.tgz", "/big-chunked/-/big-chunked-1.0.0.tgz"} {
		if code, body := f.get(t, path); code != http.StatusBadGateway {
			t.Errorf("GET %s = %d %s, want 502", path, code, body)
		}
	}
	errs := f.rec.UpstreamErrors()
	if len(errs) != 4 {
		t.Fatalf("UpstreamErrors = %v", errs)
	}
	for _, err := range errs {
		if !errdefs.IsResourceExhausted(err) {
			t.Errorf("error %v is not ResourceExhausted", err)
		}
	}
	if files := cacheFiles(t, cache); len(files) != 0 {
		t.Errorf("cache holds %v after oversize downloads", files)
	}
	if code, _ := f.get(t, "/small/-/small-1.0.0.tgz"); code != http.StatusOK {
		t.Errorf("a tarball under the limit = %d", code)
	}
}

// rawRequest sends the bytes of one request line on a fresh connection and
// returns the status, so no client library tidies the target first.
func rawRequest(t *testing.T, addr, method, target string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRejections(t *testing.T) {
	reg := newRegistry(t, pkg(t, "is-thing", "1.0.0"), pkg(t, "@scope/pkg", "2.0.0"))
	f := newFront(t, newProxy(t, reg.url(), t.TempDir()))
	addr := f.srv.Listener.Addr().String()
	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{"POST", "/is-thing", 405},
		{"PUT", "/is-thing", 405},
		{"DELETE", "/is-thing", 405},
		{"PATCH", "/is-thing", 405},
		{"OPTIONS", "/is-thing", 405},
		{"POST", "/-/npm/v1/security/advisories/bulk", 405},
		{"CONNECT", "other.example:443", 405},
		{"CONNECT", "/is-thing", 405},

		{"GET", "http://other.example/x", 400},
		{"GET", "http://" + addr + "/is-thing", 400}, // absolute-form even when naming the proxy itself
		{"GET", "other.example:80", 400},
		{"GET", "*", 400},

		{"GET", "/../etc/passwd", 400},
		{"GET", "/is-thing/../is-thing", 400},
		{"GET", "/is-thing/-/../../x.tgz", 400},
		{"GET", "/%2e%2e/x", 400},
		{"GET", "/%2E%2E%2Fetc%2Fpasswd", 400},
		{"GET", "/is-thing%2f..%2fx", 400},
		{"GET", "/is-thing%2f-%2fis-thing-1.0.0.tgz", 400},
		{"GET", "/@scope%2fpkg%2f-%2fpkg-2.0.0.tgz", 400},
		{"GET", "/@scope%2f%2e%2e", 400},
		{"GET", "/@scope%252fpkg", 400},
		{"GET", "/is%2dthing", 400},
		{"GET", `/is-thing\..\x`, 400},
		{"GET", `/is\thing`, 400},
		{"GET", "/%5cis-thing", 400},
		{"GET", "/is-thing%00", 400},
		{"GET", "/is-thing\x00", 400},
		{"GET", "//is-thing", 400},
		{"GET", "/is-thing//-/is-thing-1.0.0.tgz", 400},
		{"GET", "/is-thing/", 400},
		{"GET", "/./is-thing", 400},
		{"GET", "/@Scope/thing", 400},
		{"GET", "/.hidden", 400},
		{"GET", "/_private", 400},
		{"GET", "/node_modules", 400},
		{"GET", "/a%20b", 400},
		{"GET", "/tilde~x", 400},
		{"GET", "/" + strings.Repeat("a", 215), 400},
		{"GET", "/@scope", 400},
		{"GET", "/@/pkg", 400},
		{"GET", "/@scope/Pkg", 400},
		{"HEAD", "/../x", 400},

		{"GET", "/", 404},
		{"GET", "/-/ping", 404},
		{"GET", "/-/v1/search?text=x", 404},
		{"GET", "/-/all", 404},
		{"GET", "/is-thing/1.0.0", 404},
		{"GET", "/is-thing/latest", 404},
		{"GET", "/is-thing/-/is-thing-1.0.0.zip", 404},
		{"GET", "/is-thing/-/other-1.0.0.tgz", 404},
		{"GET", "/is-thing/-/x/is-thing-1.0.0.tgz", 404},
		{"GET", "/@scope/pkg/extra", 404},
		{"GET", "/@scope/pkg/-/scope-pkg-2.0.0.tgz", 404},
	} {
		if got := rawRequest(t, addr, tc.method, tc.target); got != tc.want {
			t.Errorf("%s %q = %d, want %d", tc.method, tc.target, got, tc.want)
		}
	}
	if n := reg.total(); n != 0 {
		t.Errorf("rejected requests reached upstream %d times", n)
	}
	if len(f.rec.UpstreamErrors())+len(f.rec.NotFound())+len(f.rec.LocalErrors()) != 0 {
		t.Errorf("rejections were recorded as failures: %v %v", f.rec.UpstreamErrors(), f.rec.NotFound())
	}
	// The same paths, well-formed, work.
	for _, target := range []string{"/is-thing", "/@scope%2fpkg", "/is-thing/-/is-thing-1.0.0.tgz", "/is-thing?write=true"} {
		if got := rawRequest(t, addr, "GET", target); got != 200 {
			t.Errorf("GET %q = %d", target, got)
		}
	}
}

// other counts requests to a host the proxy must never contact.
func other(t *testing.T) (*httptest.Server, *int64) {
	var mu sync.Mutex
	var n int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		_, _ = w.Write([]byte("you should not be here"))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestForeignTarballURLNotFollowed(t *testing.T) {
	foreign, hits := other(t)
	p := pkg(t, "elsewhere", "1.0.0")
	p.tarballURL = foreign.URL + "/evil"
	reg := newRegistry(t, p)
	f := newFront(t, newProxy(t, reg.url(), t.TempDir()))

	code, body := f.get(t, "/elsewhere")
	if code != http.StatusOK {
		t.Fatalf("document = %d", code)
	}
	if got := decodeDoc(t, body).Versions["1.0.0"].Dist.Tarball; got != f.base+"/elsewhere/-/elsewhere-1.0.0.tgz" {
		t.Errorf("tarball URL = %q", got)
	}
	if code, body := f.get(t, "/elsewhere/-/elsewhere-1.0.0.tgz"); code != http.StatusOK || !bytes.Equal(body, p.tarballs["1.0.0"]) {
		t.Errorf("tarball = %d %d bytes", code, len(body))
	}
	if reg.count(prefix+"/elsewhere/-/elsewhere-1.0.0.tgz") != 1 || *hits != 0 {
		t.Errorf("upstream tarball requests %d, other host %d; want 1 and 0", reg.count(prefix+"/elsewhere/-/elsewhere-1.0.0.tgz"), *hits)
	}
}

func TestRedirects(t *testing.T) {
	foreign, hits := other(t)
	moved := pkg(t, "moved", "1.0.0")
	reg := newRegistry(t, pkg(t, "hop", "1.0.0"), moved)
	reg.extra["hop"] = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, foreign.URL+"/hop", http.StatusFound)
	}
	reg.extra[tarballPath("hop", "1.0.0")] = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, foreign.URL+"/hop-1.0.0.tgz", http.StatusTemporaryRedirect)
	}
	// A redirect within the upstream host is fine.
	reg.extra[tarballPath("moved", "1.0.0")] = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, prefix+"/moved-here/-/moved-1.0.0.tgz", http.StatusFound)
	}
	reg.extra["moved-here/-/moved-1.0.0.tgz"] = func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(moved.tarballs["1.0.0"])
	}
	f := newFront(t, newProxy(t, reg.url(), t.TempDir()))

	if code, _ := f.get(t, "/hop"); code != http.StatusBadGateway {
		t.Errorf("document redirected off-host = %d, want 502", code)
	}
	// The document is fine now; the tarball is redirected away.
	reg.update(func() { delete(reg.extra, "hop") })
	if code, _ := f.get(t, "/hop/-/hop-1.0.0.tgz"); code != http.StatusBadGateway {
		t.Errorf("tarball redirected off-host = %d, want 502", code)
	}
	errs := f.rec.UpstreamErrors()
	if len(errs) != 2 || !errdefs.IsPermissionDenied(errs[0]) || !errdefs.IsPermissionDenied(errs[1]) {
		t.Errorf("UpstreamErrors = %v", errs)
	}
	if *hits != 0 {
		t.Errorf("the other host was contacted %d times", *hits)
	}
	if code, body := f.get(t, "/moved/-/moved-1.0.0.tgz"); code != http.StatusOK || !bytes.Equal(body, moved.tarballs["1.0.0"]) {
		t.Errorf("same-host redirect = %d", code)
	}
}

func TestConcurrentMisses(t *testing.T) {
	p := pkg(t, "popular", "1.0.0")
	reg := newRegistry(t, p)
	var gate sync.WaitGroup
	gate.Add(1)
	reg.extra[tarballPath("popular", "1.0.0")] = func(w http.ResponseWriter, r *http.Request) {
		gate.Wait() // hold every download until all have started
		_, _ = w.Write(p.tarballs["1.0.0"])
	}
	cache := t.TempDir()
	proxy := newProxy(t, reg.url(), cache)
	const n = 6
	fronts := make([]*front, n)
	for i := range fronts {
		fronts[i] = newFront(t, proxy)
	}
	fronts[0].get(t, "/popular") // remember the document, so all misses go for the tarball at once
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, f := range fronts {
		wg.Go(func() {
			resp, err := http.Get(f.base + "/popular/-/popular-1.0.0.tgz")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !bytes.Equal(b, p.tarballs["1.0.0"]) {
				errs <- fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(b))
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for reg.count(prefix+"/"+tarballPath("popular", "1.0.0")) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	gate.Done()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if files := cacheFiles(t, cache); len(files) != 1 {
		t.Errorf("cache holds %v, want one tarball", files)
	}
	if _, misses, _ := proxy.Stats(); misses != n {
		t.Errorf("misses = %d, want %d", misses, n)
	}
}

func TestNewChecksConfig(t *testing.T) {
	good, _ := url.Parse("http://127.0.0.1:1/")
	for _, tc := range []struct {
		desc string
		cfg  Config
	}{
		{"no upstream", Config{CacheDir: t.TempDir()}},
		{"not http", Config{Upstream: &url.URL{Scheme: "file", Path: "/etc"}, CacheDir: t.TempDir()}},
		{"no host", Config{Upstream: &url.URL{Scheme: "http", Path: "/x"}, CacheDir: t.TempDir()}},
		{"user info", Config{Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1", User: url.UserPassword("a", "b")}, CacheDir: t.TempDir()}},
		{"no cache dir", Config{Upstream: good}},
	} {
		if _, err := New(tc.cfg); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: New = %v, want InvalidArgument", tc.desc, err)
		}
	}
	dir := t.TempDir()
	stale := filepath.Join(dir, "tmp", "dl-stale")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Upstream: good, CacheDir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary download survived New: %v", err)
	}
}
