// Package npmproxy is a read-only npm registry proxy for sessions without a
// network: it serves package documents and tarballs from one upstream
// registry, rewrites tarball URLs to itself, bounds size and time, and keeps a
// content-addressed tarball cache on the host, checked against the integrity
// hashes the registry publishes.
//
// The proxy only ever fetches two kinds of upstream URL, both built from a
// validated package name: Upstream + "/" + <escaped name> (the package
// document) and Upstream + "/" + <name> + "/-/" + <basename>-<version>.tgz (a
// tarball of a version listed in that document). Nothing a client sends is
// forwarded: no headers, no query, no host.
package npmproxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/lrubudget"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxDocBytes     = 32 << 20
	DefaultMaxTarballBytes = 64 << 20
	DefaultTimeout         = 60 * time.Second
	DefaultDocTTL          = 5 * time.Minute
	DefaultDocCacheBytes   = 256 << 20
	DefaultCacheBytes      = 2 << 30
	DefaultInstallBytes    = 256 << 20
)

// maxRedirects bounds the same-host redirects an upstream may answer with.
const maxRedirects = 5

// docAccept asks for the abbreviated ("corgi") document, which holds all an
// install needs and is much smaller than the full one.
const docAccept = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"

// Config configures a Proxy. Zero fields take the defaults above.
type Config struct {
	Upstream        *url.URL          // registry base URL, http or https, may carry a path prefix
	CacheDir        string            // host folder of the content-addressed tarball cache, shared by all sessions
	MaxDocBytes     int64             // largest package document accepted from upstream
	MaxTarballBytes int64             // largest tarball accepted from upstream
	Timeout         time.Duration     // bound on each upstream request, body included
	DocTTL          time.Duration     // how long a package document stays in memory
	DocCacheBytes   int64             // bound on the memory held by remembered documents
	CacheBytes      int64             // budget of the tarball cache, bytes on disk; least recently used go first
	InstallBytes    int64             // most body bytes one install (one Handler) may read from upstream
	Transport       http.RoundTripper // optional; a clone of http.DefaultTransport otherwise
}

// Proxy holds what all sessions share: the upstream client, the document
// memory and the tarball cache. Handler gives one session's view of it.
type Proxy struct {
	upstream   *url.URL
	base       string // upstream URL without query and trailing slash; every fetch starts with it
	cacheDir   string
	maxDoc     int64
	maxTarball int64
	install    int64 // upstream bytes per handler
	tarballs   *lrubudget.Index
	timeout    time.Duration
	client     *http.Client
	docs       *docCache
	token      string // stands for a handler's base URL in remembered documents

	hits, misses, bytesUp atomic.Int64
}

// New checks cfg, prepares the cache folder and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	u := cfg.Upstream
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("npm proxy upstream %v: need an http(s) URL with a host and no user info: %w",
			redacted(u), errdefs.ErrInvalidArgument)
	}
	if cfg.CacheDir == "" {
		return nil, fmt.Errorf("npm proxy cache dir: empty: %w", errdefs.ErrInvalidArgument)
	}
	up := *u
	up.RawQuery, up.ForceQuery, up.Fragment, up.RawFragment = "", false, "", ""
	p := &Proxy{
		upstream:   &up,
		base:       strings.TrimSuffix(up.String(), "/"),
		cacheDir:   cfg.CacheDir,
		maxDoc:     orDefault(cfg.MaxDocBytes, DefaultMaxDocBytes),
		maxTarball: orDefault(cfg.MaxTarballBytes, DefaultMaxTarballBytes),
		install:    orDefault(cfg.InstallBytes, DefaultInstallBytes),
		tarballs:   lrubudget.New(orDefault(cfg.CacheBytes, DefaultCacheBytes)),
		timeout:    orDefault(cfg.Timeout, DefaultTimeout),
		docs:       newDocCache(orDefault(cfg.DocTTL, DefaultDocTTL), orDefault(cfg.DocCacheBytes, DefaultDocCacheBytes)),
		token:      "npmproxy-base-" + randomHex(16),
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32 // npm fetches up to 16 things at once
		tr = t
	}
	p.client = &http.Client{Transport: tr, CheckRedirect: p.checkRedirect}
	if p.tarballs.Budget() < p.maxTarball {
		return nil, fmt.Errorf("npm proxy cache budget %d is less than the largest tarball %d: %w",
			p.tarballs.Budget(), p.maxTarball, errdefs.ErrInvalidArgument)
	}
	// Only the daemon reads the cache: no other host user may list or read it.
	if err := os.MkdirAll(p.tmpDir(), 0o700); err != nil {
		return nil, fmt.Errorf("npm proxy cache dir %s: %w", cfg.CacheDir, err)
	}
	for _, dir := range []string{cfg.CacheDir, p.tmpDir()} {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("npm proxy cache dir %s: %w", dir, err)
		}
	}
	removeStaleTemps(p.tmpDir(), time.Hour)
	if err := p.indexTarballs(); err != nil {
		return nil, fmt.Errorf("npm proxy cache dir %s: %w", cfg.CacheDir, err)
	}
	return p, nil
}

// CacheBytes is what the tarball cache takes on disk now, and its budget.
func (p *Proxy) CacheBytes() (used, budget int64) { return p.tarballs.Used(), p.tarballs.Budget() }

// Stats returns lifetime totals over all handlers: tarball cache hits and
// misses, and body bytes read from upstream.
func (p *Proxy) Stats() (hits, misses, bytesUpstream int64) {
	return p.hits.Load(), p.misses.Load(), p.bytesUp.Load()
}

// checkRedirect refuses any redirect that leaves the upstream's scheme and host.
func (p *Proxy) checkRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != p.upstream.Scheme || !strings.EqualFold(req.URL.Host, p.upstream.Host) {
		return fmt.Errorf("redirect to %s refused, it is not the upstream: %w", req.URL.Redacted(), errdefs.ErrPermissionDenied)
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects: %w", len(via), errdefs.ErrUnavailable)
	}
	return nil
}

func (p *Proxy) tmpDir() string { return filepath.Join(p.cacheDir, "tmp") }

// removeStaleTemps deletes downloads a crash left behind.
func removeStaleTemps(dir string, age time.Duration) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > age {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func orDefault[T int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func redacted(u *url.URL) string {
	if u == nil {
		return "<nil>"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errorf wraps err with a message; it keeps err's class for errors.Is.
func errorf(err error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}
