package runtime_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/store"
)

// withDepCache turns the dependency layers on, held to budget bytes on disk
// and layers of at most maxLayer.
func withDepCache(budget, maxLayer int64) func(*runtime.Config) {
	return func(c *runtime.Config) {
		c.DepCacheDir, c.DepCacheBytes, c.DepLayerMaxBytes = filepath.Join(c.StateDir, "depcache"), budget, maxLayer
	}
}

// layerPkg is a package.json with no dependencies whose own postinstall
// writes kib KiB into node_modules and leaves a setuid file in a setgid folder.
func layerPkg(name string, kib int) []byte {
	script := fmt.Sprintf("mkdir -p node_modules/blob && head -c %d /dev/urandom >node_modules/blob/data && "+
		"touch node_modules/blob/suid && chmod 4755 node_modules/blob/suid && chmod 2755 node_modules/blob", kib<<10)
	return []byte(fmt.Sprintf(`{"name":%q,"version":"1.0.0","scripts":{"postinstall":%q}}`, name, script))
}

// layers lists the layer folders of the cache and what they take on disk,
// and fails the test on any setuid, setgid or sticky bit or special file.
func layers(t *testing.T, dir string) (keys []string, bytes int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m := info.Mode()
		if m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 || !(m.IsDir() || m.IsRegular() || m&fs.ModeSymlink != 0) {
			t.Errorf("%s in the layer cache: mode %v", p, m)
		}
		bytes += info.Size()
		if filepath.Dir(p) == dir && d.IsDir() {
			keys = append(keys, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, bytes
}

// Real layer builds (each one a private builder session running npm):
// three distinct ones in a cache with room for two keep it within its
// budget; one over the per-layer cap is not kept; no setuid bit or special
// file reaches the cache, whose folder only root can read; no session sees
// the cache, and one whose install matches a layer gets that layer only,
// without the bits. The accounting over many more builds is
// TestLayerCacheBudget's (200 of them, at the speed of files).
func TestLayerCacheBoundedPrivateAndClean(t *testing.T) {
	const budget, maxLayer = 1 << 20, 600 << 10
	h := newHarness(t, withRegistry(t, hostRegistry(t)), withDepCache(budget, maxLayer))
	ctx := h.env.Context(t)
	dir := filepath.Join(h.state, "depcache")
	install := func(suffix string, pkg []byte) (store.Session, runtime.InstallResult) {
		t.Helper()
		s := h.session(t, suffix)
		if err := h.m.WriteFile(ctx, s.SessionID, "package.json", pkg); err != nil {
			t.Fatal(err)
		}
		res, err := h.install(t, s.SessionID)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("install %s: %v\n%+v", suffix, err, res)
		}
		runtime.WaitLayerBuilds(h.m)
		return s, res
	}
	for i := range 3 {
		install(fmt.Sprintf("-build%d", i), layerPkg(fmt.Sprintf("layer-%d", i), 400))
		keys, size := layers(t, dir)
		t.Logf("after build %d: %d layers, %d bytes", i, len(keys), size)
		if len(keys) != min(i+1, 2) || size > budget {
			t.Fatalf("after build %d: layers %v of %d bytes, budget %d", i, keys, size, budget)
		}
	}
	before, _ := layers(t, dir)
	install("-huge", layerPkg("layer-huge", 700))
	if after, _ := layers(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("a layer over the per-layer cap changed the cache: %v → %v", before, after)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("layer folder mode %v (%v), want 0700", info.Mode(), err)
	}

	// The same package.json again: restored from its own layer, bits stripped.
	again, res := install("-again", layerPkg("layer-2", 400))
	if !res.FromLayer {
		t.Fatalf("an install matching a layer ran npm: %+v", res)
	}
	if out := h.sh(t, again, 10*time.Second, "stat -c '%a %u' node_modules/blob node_modules/blob/suid package-lock.json"); out.Stdout != "755 1000\n755 1000\n644 1000\n" {
		t.Fatalf("restored layer: %q %q", out.Stdout, out.Stderr)
	}
	// No session sees the cache folder, or another install's layer.
	for _, s := range []store.Session{again, h.session(t, "-other")} {
		out := h.sh(t, s, 10*time.Second, "grep -c depcache /proc/self/mountinfo; ls /opt/servcraft; ls -a /workspace/node_modules 2>/dev/null")
		if strings.Contains(out.Stdout, "depcache") || !strings.HasPrefix(out.Stdout, "0\n") || strings.Contains(out.Stdout, "layer-") {
			t.Fatalf("%s sees more than its own layer: %q", s.SessionID, out.Stdout)
		}
	}
}

// A session's starter project is ready to run when the create answers: the
// starter layer is built once (at start, here waited for), a cold create
// copies it in, a warm container already holds it, and `npm start` and
// `npm run dev` work with no registry on the way. Without a registry a
// create still works and says what the session lacks.
func TestStarterReadyAtCreate(t *testing.T) {
	h := newHarness(t, withRegistry(t, hostRegistry(t)), withDepCache(1<<30, 256<<20),
		func(c *runtime.Config) { c.PoolSize, c.MaxSessions, c.ReapInterval = 1, 4, time.Hour })
	ctx := h.env.Context(t)
	if err := h.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !runtime.WaitStarterLayers(h.m) {
		t.Fatal("the starter layer was not built")
	}
	deadline := time.Now().Add(60 * time.Second)
	for h.m.Stats().Pooled != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the pool was not refilled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Back to back: the first from the pool, the second cold (the refill takes longer).
	var sessions []store.Session
	for _, pt := range []string{"ts", "js"} {
		start := time.Now()
		s, _, err := h.m.Create(ctx, "starter-"+pt, pt)
		took := time.Since(start)
		if err != nil || s.DependenciesMissing != "" {
			t.Fatalf("%s create: %v, lacks %q", pt, err, s.DependenciesMissing)
		}
		t.Logf("%s create with the starter's dependencies: %v (creates so far %v)", pt, took, h.m.Stats().Creates)
		sessions = append(sessions, s)
	}
	if st := h.m.Stats(); st.Creates["pool"] != 1 || st.Creates["ok"] != 1 {
		t.Fatalf("creates %v, want one from the pool and one cold", st.Creates)
	}
	for _, s := range sessions {
		for _, script := range []string{"start", "run dev"} {
			out := h.sh(t, s, 30*time.Second, "timeout -s INT 8 npm "+script+" 2>&1 | grep -m1 -o 'Server listening at [^\"]*'; stat -c %u node_modules/fastify/package.json")
			if !strings.Contains(out.Stdout, "Server listening at") || !strings.HasSuffix(out.Stdout, "1000\n") {
				t.Fatalf("%s npm %s: %q %q", s.ProjectType, script, out.Stdout, out.Stderr)
			}
		}
	}

	bare := newHarness(t, withDepCache(1<<30, 256<<20))
	s := bare.session(t, "-no-registry")
	if !strings.Contains(s.DependenciesMissing, "registry") {
		t.Fatalf("a create without a registry says it lacks %q", s.DependenciesMissing)
	}
}

// diskBytes is what the files and folders below dir (not dir itself) take
// on disk, counted in blocks as the cache's budget is.
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var used int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		used += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// Many real distinct layer builds keep the cache within its budget in bytes
// on disk, sampled after every build, with the oldest layers evicted. Each
// build is real: a private builder session running `npm install` on a
// package.json whose postinstall writes 64 KiB into node_modules, copied
// into the cache. Measured here (2 shared cores), an install that builds a
// layer costs 3.5 s (1.5 s of npm in the session, then the builder), a build
// alone 2.4 s (create the builder, npm, copy, destroy): 200 would take 12
// minutes through installs, 8 with builds alone. The test makes 50 builds
// directly (about 2 minutes) with a budget that holds 12 layers, the first
// and the last through a session's install to show that installs name the
// same layers. The accounting over 200 is TestLayerCacheBudget's, at file
// level.
func TestManyLayerBuildsStayWithinBudget(t *testing.T) {
	const builds, budget, maxLayer, kib = 50, 1 << 20, 256 << 10, 64
	h := newHarness(t, withRegistry(t, hostRegistry(t)), withDepCache(budget, maxLayer))
	ctx := h.env.Context(t)
	dir := filepath.Join(h.state, "depcache")
	s := h.session(t, "")
	pkg := func(i int) []byte { return layerPkg(fmt.Sprintf("many-%d", i), kib) }
	install := func(i int) runtime.InstallResult {
		t.Helper()
		if out := h.sh(t, s, 10*time.Second, "rm -rf node_modules package-lock.json"); out.ExitCode != 0 {
			t.Fatalf("clean the workspace: %+v", out) // a lock file or node_modules would make the install skip the layers
		}
		if err := h.m.WriteFile(ctx, s.SessionID, "package.json", pkg(i)); err != nil {
			t.Fatal(err)
		}
		res, err := h.install(t, s.SessionID)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("install %d: %v\n%+v", i, err, res)
		}
		runtime.WaitLayerBuilds(h.m)
		return res
	}
	start, peak, seen := time.Now(), int64(0), map[string]bool{}
	var first []string
	for i := range builds {
		if i == 0 {
			install(i)
		} else if !runtime.BuildLayer(h.m, pkg(i)) {
			t.Fatalf("layer build %d failed", i)
		}
		keys, _ := layers(t, dir)
		used := diskBytes(t, dir)
		peak = max(peak, used)
		if used > budget {
			t.Fatalf("after build %d: %d layers take %d bytes on disk, budget %d", i, len(keys), used, budget)
		}
		for _, k := range keys {
			seen[k] = true
		}
		if i == 0 {
			first = keys
		}
	}
	keys, _ := layers(t, dir)
	took := time.Since(start)
	t.Logf("%d layer builds in %v (%v each); cache peak %d bytes on disk of %d, %d layers kept, %d seen",
		builds, took.Round(time.Millisecond), (took / builds).Round(time.Millisecond), peak, budget, len(keys), len(seen))
	if len(first) != 1 || len(seen) != builds || len(keys) >= builds/2 || len(keys) < 2 || slices.Contains(keys, first[0]) {
		t.Fatalf("first build %v, %d distinct layers seen, %d kept: a build was not kept, or nothing was evicted", first, len(seen), len(keys))
	}
	if res := install(builds - 1); !res.FromLayer {
		t.Fatalf("an install of the last build's package.json ran npm: %+v", res)
	}
	if res := install(0); res.FromLayer {
		t.Fatalf("an install of the evicted first build's package.json was restored: %+v", res)
	}
	if used := diskBytes(t, dir); used > budget {
		t.Fatalf("after the installs: %d bytes on disk, budget %d", used, budget)
	}
}
