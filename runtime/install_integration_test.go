package runtime_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

// hostRegistry is the registry the host's npm uses: the real one, for the happy paths.
// It is asked while the harness's options are built, before runtimetest.Start runs,
// so it makes the same -short skip and missing-tool check first.
func hostRegistry(t *testing.T) *url.URL {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		runtimetest.Unavailable(t, "npm not on PATH (it names the registry the install tests use)")
	}
	out, err := exec.Command("npm", "config", "get", "registry").Output()
	if err != nil {
		t.Fatalf("npm config get registry: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func withRegistry(t *testing.T, upstream *url.URL) func(*runtime.Config) {
	return func(c *runtime.Config) {
		p, err := npmproxy.New(npmproxy.Config{Upstream: upstream, CacheDir: filepath.Join(c.StateDir, "npm-cache"),
			Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.Registry, c.NpmPath, c.InstallTimeout = p, "/usr/local/bin/npm", 120*time.Second
	}
}

func (h *harness) install(t *testing.T, sessionID string, pkgs ...string) (runtime.InstallResult, error) {
	t.Helper()
	return h.m.Install(h.env.Context(t), sessionID, runtime.InstallRequest{Packages: pkgs})
}

func TestInstallThroughTheInNetnsProxy(t *testing.T) {
	h := newHarness(t, withRegistry(t, hostRegistry(t)))
	first := h.session(t, "-first")
	second := h.session(t, "-second")
	// The workspace's own .npmrc cannot send npm anywhere else.
	if err := h.m.WriteFile(h.env.Context(t), first.SessionID, ".npmrc", []byte("registry=http://127.0.0.1:9/\n")); err != nil {
		t.Fatal(err)
	}
	cold, err := h.install(t, first.SessionID, "fastify@4", "is-number@7.0.0")
	if err != nil || cold.ExitCode != 0 {
		t.Fatalf("install: %v\n%+v", err, cold)
	}
	got := map[string]string{}
	for _, p := range cold.Installed {
		got[p.Name] = p.Version
	}
	if got["is-number"] != "7.0.0" || !strings.HasPrefix(got["fastify"], "4.") {
		t.Fatalf("installed %v", cold.Installed)
	}
	if cold.CacheMisses == 0 {
		t.Fatalf("cold install had no cache misses: %+v", cold)
	}
	warm, err := h.install(t, second.SessionID, "fastify@4", "is-number@7.0.0")
	if err != nil || warm.ExitCode != 0 {
		t.Fatalf("second install: %v\n%+v", err, warm)
	}
	if warm.CacheMisses != 0 || warm.CacheHits < cold.CacheMisses || warm.BytesUpstream != 0 {
		t.Fatalf("second session did not install from the cache: hits %d misses %d upstream bytes %d",
			warm.CacheHits, warm.CacheMisses, warm.BytesUpstream)
	}
	t.Logf("fastify@4 + is-number: cold %v (%d tarballs fetched), cached %v (%d from cache): %.2fx",
		cold.Duration, cold.CacheMisses, warm.Duration, warm.CacheHits, float64(warm.Duration)/float64(cold.Duration))

	// package.json and package-lock.json record it, and the code runs.
	res := h.node(t, first, `
const pkg = require("/workspace/package.json");
const lock = require("/workspace/package-lock.json");
console.log(Object.keys(pkg.dependencies).sort().join(","), "node_modules/fastify" in lock.packages);
const app = require("fastify")();
app.get("/hi", async () => ({ hi: require("is-number")(5) }));
app.inject({ method: "GET", url: "/hi" }).then((r) => console.log(r.statusCode, r.body));
`, 20*time.Second)
	if res.Stdout != "fastify,is-number true\n200 {\"hi\":true}\n" {
		t.Fatalf("run after install: %+v", res)
	}
	// A real server on the container's loopback answers a request from inside.
	res = h.node(t, first, `
const app = require("fastify")();
app.get("/api/health", async () => ({ ok: 1 }));
app.listen({ port: 3000, host: "127.0.0.1" }).then(async () => {
  const r = await fetch("http://127.0.0.1:3000/api/health");
  console.log(r.status, await r.text());
  await app.close();
});
`, 20*time.Second)
	if res.Stdout != "200 {\"ok\":1}\n" {
		t.Fatalf("fastify server: %+v", res)
	}
	// Still nothing but lo, and the proxy's listener went with the install.
	res = h.exec(t, first, 0, "/bin/sh", "-c", "ls /sys/class/net; awk '$4 == \"0A\"' /proc/net/tcp | wc -l")
	if res.Stdout != "lo\n0\n" {
		t.Fatalf("after install: %q", res.Stdout)
	}
}

func TestInstallErrors(t *testing.T) {
	// A local upstream: 404 for every package, or hanging, or not there at all.
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hanging.Close()
	defer close(hang)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := &url.URL{Scheme: "http", Host: closed.Addr().String()}
	closed.Close()

	t.Run("unknown package is 404", func(t *testing.T) {
		u, _ := url.Parse(notFound.URL)
		h := newHarness(t, withRegistry(t, u))
		s := h.session(t, "")
		res, err := h.install(t, s.SessionID, "no-such-package-servcraft")
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "no-such-package-servcraft") {
			t.Fatalf("err = %v (%+v)", err, res)
		}
	})
	t.Run("unreachable upstream is 502", func(t *testing.T) {
		h := newHarness(t, withRegistry(t, closedURL))
		s := h.session(t, "")
		res, err := h.install(t, s.SessionID, "is-number")
		if !errors.Is(err, runtime.ErrUpstream) {
			t.Fatalf("err = %v (%+v)", err, res)
		}
	})
	t.Run("slow install is stopped and leaves no npm", func(t *testing.T) {
		u, _ := url.Parse(hanging.URL)
		h := newHarness(t, withRegistry(t, u), func(c *runtime.Config) { c.InstallTimeout = 3 * time.Second })
		s := h.session(t, "")
		start := time.Now()
		_, err := h.install(t, s.SessionID, "is-number")
		if !errdefs.IsDeadlineExceeded(err) {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Fatalf("stopping took %v", d)
		}
		ps := h.exec(t, s, 0, "/bin/sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
		if strings.Contains(ps.Stdout, "npm") {
			t.Fatalf("npm survives the timeout:\n%s", ps.Stdout)
		}
	})
}
