package npmproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

// The tarball cache stays within its budget in bytes on disk: the least
// recently used tarballs go first, a hit counts as a use, and a restarted
// proxy finds the same order and budget.
func TestTarballCacheBudget(t *testing.T) {
	const n = 40
	var pkgs []*fakePkg
	for i := range n {
		p := pkg(t, fmt.Sprintf("p%02d", i), "1.0.0")
		p.tarballs["1.0.0"] = append(p.tarballs["1.0.0"], make([]byte, 5000)...) // two 4 KiB blocks or more each
		pkgs = append(pkgs, p)
	}
	reg := newRegistry(t, pkgs...)
	cache := t.TempDir()
	const budget = 64 << 10
	withBudget := func(c *Config) { c.CacheBytes = budget; c.MaxTarballBytes = 16 << 10 }
	p := newProxy(t, reg.url(), cache, withBudget)
	f := newFront(t, p)
	get := func(i int) {
		t.Helper()
		name := fmt.Sprintf("p%02d", i)
		if code, body := f.get(t, "/"+name+"/-/"+name+"-1.0.0.tgz"); code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", name, code, body)
		}
	}
	for i := range n {
		get(i)
		get(0) // p00 is always the most recently used: never evicted
		used, _ := p.CacheBytes()
		if used > budget || onDisk(t, cache) > budget {
			t.Fatalf("after %d tarballs: index %d, on disk %d, budget %d", i+1, used, onDisk(t, cache), budget)
		}
	}
	if reg.count(prefix+"/p00/-/p00-1.0.0.tgz") != 1 {
		t.Errorf("p00 fetched %d times: a hit did not count as a use", reg.count(prefix+"/p00/-/p00-1.0.0.tgz"))
	}
	if n1 := len(cacheFiles(t, cache)); n1 >= n || n1 < 2 {
		t.Fatalf("cache holds %d of %d tarballs", n1, n)
	}
	// A restart with a smaller budget trims the cache at once, oldest first.
	small := newProxy(t, reg.url(), cache, func(c *Config) { c.CacheBytes = 32 << 10; c.MaxTarballBytes = 16 << 10 })
	if used, _ := small.CacheBytes(); used > 32<<10 || onDisk(t, cache) > 32<<10 {
		t.Fatalf("after restart: index %d, on disk %d", used, onDisk(t, cache))
	}
	if code, _ := newFront(t, small).get(t, "/p00/-/p00-1.0.0.tgz"); code != http.StatusOK || reg.count(prefix+"/p00/-/p00-1.0.0.tgz") != 1 {
		t.Error("the most recently used tarball did not survive the restart")
	}
	if info, err := os.Stat(cache); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("cache folder mode %v (%v), want 0700", info.Mode(), err)
	}
	if _, err := New(Config{Upstream: reg.url(), CacheDir: t.TempDir(), CacheBytes: 1 << 10, MaxTarballBytes: 2 << 10}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a budget below the largest tarball: %v", err)
	}
}

// onDisk is what the cache's files take on disk.
func onDisk(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	for _, f := range cacheFiles(t, dir) {
		info, err := os.Lstat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		total += diskSize(info)
	}
	return total
}

// One install (one handler) reads at most InstallBytes from upstream: the
// request that would pass it answers 403 with a JSON error npm prints, and
// nothing more reaches upstream. Another install has its own budget; cached
// tarballs cost nothing.
func TestInstallBudget(t *testing.T) {
	a, b, c := pkg(t, "aa", "1.0.0"), pkg(t, "bb", "1.0.0"), pkg(t, "cc", "1.0.0")
	b.tarballs["1.0.0"] = append(b.tarballs["1.0.0"], make([]byte, 3000)...)
	reg := newRegistry(t, a, b, c)
	p := newProxy(t, reg.url(), t.TempDir(), func(c *Config) { c.InstallBytes = 2000 })
	f := newFront(t, p)
	if code, body := f.get(t, "/aa/-/aa-1.0.0.tgz"); code != http.StatusOK {
		t.Fatalf("first tarball within budget = %d %s", code, body)
	}
	code, body := f.get(t, "/bb/-/bb-1.0.0.tgz") // crosses the budget while downloading
	var msg struct{ Error string }
	if code != http.StatusForbidden || json.Unmarshal(body, &msg) != nil || msg.Error == "" {
		t.Fatalf("tarball past the budget = %d %s, want 403 with a JSON error", code, body)
	}
	if !f.rec.BudgetExceeded() {
		t.Error("the recorder does not say the budget was exceeded")
	}
	before := reg.total()
	for _, path := range []string{"/cc", "/cc/-/cc-1.0.0.tgz"} {
		if code, _ := f.get(t, path); code != http.StatusForbidden {
			t.Errorf("GET %s after the budget = %d, want 403", path, code)
		}
	}
	if reg.total() != before {
		t.Errorf("upstream was asked %d more times after the budget was spent", reg.total()-before)
	}
	if code, _ := f.get(t, "/aa/-/aa-1.0.0.tgz"); code != http.StatusOK {
		t.Errorf("a cached tarball after the budget = %d, want 200 (it costs no upstream bytes)", code)
	}
	if code, _ := newFront(t, p).get(t, "/cc/-/cc-1.0.0.tgz"); code != http.StatusOK {
		t.Errorf("another install's own budget = %d", code)
	}
}
