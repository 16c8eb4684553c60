package runtime

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/snapshots/templates"
)

// A layer copy never carries a setuid, setgid or sticky bit, refuses devices
// and FIFOs, keeps links as links, and stops past its size limit.
func TestCopyTreeStripsAndRefuses(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"node_modules/a/run": "#!/bin/sh\n", "node_modules/a/data": "x", "package-lock.json": "{}"})
	mustChmod(t, filepath.Join(src, "node_modules/a/run"), 0o4755|fs.ModeSetuid)
	mustChmod(t, filepath.Join(src, "node_modules/a/data"), 0o666|fs.ModeSetgid)
	mustChmod(t, filepath.Join(src, "node_modules/a"), 0o777|fs.ModeSetgid|fs.ModeSticky)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "node_modules/link")); err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	if _, err := copyTree(src, dst, layerFiles, uid, uid, 1<<20); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]fs.FileMode{"node_modules/a/run": 0o755, "node_modules/a/data": 0o644, "node_modules/a": fs.ModeDir | 0o755} {
		info, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil || info.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", rel, info.Mode(), err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "node_modules/link")); err != nil || target != "/etc/passwd" {
		t.Errorf("link copied as %q, %v", target, err)
	}
	if _, clean, err := treeDiskBytes(dst); err != nil || !clean {
		t.Errorf("copy not clean: %v", err)
	}
	if _, clean, _ := treeDiskBytes(src); clean {
		t.Error("treeDiskBytes missed a setuid file")
	}
	if _, err := copyTree(src, t.TempDir(), layerFiles, uid, uid, 4096); !errors.Is(err, errLayerTooLarge) {
		t.Errorf("over the limit: %v", err)
	}

	if err := unix.Mkfifo(filepath.Join(src, "node_modules/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := copyTree(src, t.TempDir(), layerFiles, uid, uid, 1<<20); err == nil {
		t.Error("a FIFO was copied into a layer")
	}
	if os.Getuid() == 0 {
		_ = os.Remove(filepath.Join(src, "node_modules/fifo"))
		if err := unix.Mknod(filepath.Join(src, "node_modules/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if _, err := copyTree(src, t.TempDir(), layerFiles, uid, uid, 1<<20); err == nil {
			t.Error("a device was copied into a layer")
		}
	}
}

func mustChmod(t *testing.T, p string, m fs.FileMode) {
	t.Helper()
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

// smallLayer makes a finished layer build of a few files in a folder of the
// cache, as depLayers.build leaves it.
func smallLayer(t *testing.T, c *layerCache, i int) string {
	t.Helper()
	tmp, err := os.MkdirTemp(c.dir, ".build-")
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, tmp, map[string]string{
		"package-lock.json":                     fmt.Sprintf(`{"n":%d}`, i),
		"node_modules/pkg/index.js":             strings.Repeat("x", 5000+i),
		fmt.Sprintf("node_modules/p%d/a.js", i): "1",
	})
	return tmp
}

// 200 distinct layer builds keep the dependency layer cache within its
// budget in bytes on disk, evicting the least recently used; a layer in use
// is kept; a restart with a smaller budget trims the cache; what has no
// place in a layer (a setuid file, a half-made build) is deleted at start.
// The builds themselves are the integration tests' (TestLayerCacheBounded
// and the install tests): this is the accounting, at the speed of files.
func TestLayerCacheBudget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "depcache")
	const budget = 200 << 10
	c, err := openLayerCache(dir, budget, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := c.add(fmt.Sprintf("k%03d", i), smallLayer(t, c, i)); err != nil {
			t.Fatal(err)
		}
		c.use("k000") // the starter layer every create uses
		if used, _, _ := treeDiskBytes(dir); c.index.Used() > budget || used > budget+4096 {
			t.Fatalf("after %d layers: index %d, on disk %d, budget %d", i+1, c.index.Used(), used, budget)
		}
	}
	if !c.ready("k000") || !c.ready("k199") || c.ready("k001") || c.index.Len() >= 200 {
		t.Fatalf("kept the wrong layers: %d held", c.index.Len())
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("cache folder mode %v (%v), want 0700", info.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != c.index.Len() {
		t.Fatalf("%d folders on disk, %d in the index", len(entries), c.index.Len())
	}

	big := smallLayer(t, c, 1000)
	writeFiles(t, big, map[string]string{"node_modules/big": strings.Repeat("y", 80<<10)})
	if err := c.add("big", big); !errors.Is(err, errLayerTooLarge) || c.ready("big") {
		t.Fatalf("a layer over the per-layer cap: %v", err)
	}

	// What an older daemon or a crash left: a setuid file, a half-made build.
	writeFiles(t, filepath.Join(dir, "k199"), map[string]string{"node_modules/suid": "x"})
	mustChmod(t, filepath.Join(dir, "k199/node_modules/suid"), 0o755|fs.ModeSetuid)
	_ = smallLayer(t, c, 2000)
	again, err := openLayerCache(dir, 60<<10, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	if used, _, _ := treeDiskBytes(dir); again.index.Used() > 60<<10 || used > 60<<10+4096 {
		t.Fatalf("after restart with a smaller budget: index %d, on disk %d", again.index.Used(), used)
	}
	if again.ready("k199") {
		t.Error("a layer with a setuid file survived the start")
	}
	if !again.ready("k000") {
		t.Error("the most recently used layer did not survive the restart")
	}
	entries, _ = os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("%s survived the start", e.Name())
		}
	}
	if _, err := openLayerCache(dir, 1<<10, 2<<10); err == nil {
		t.Error("a budget below the per-layer cap was accepted")
	}
}

// The tar stream a restore sends holds only the layer's own files, with
// layer modes and no owners, links as links.
func TestWriteLayerTar(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"node_modules/a/index.js": "1", "package-lock.json": "{}", "elsewhere": "no"})
	if err := os.Symlink("a/index.js", filepath.Join(dir, "node_modules/l")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeLayerTar(&buf, dir, layerFiles); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Mode&^0o777 != 0 {
			t.Errorf("%s: uid %d gid %d mode %o", h.Name, h.Uid, h.Gid, h.Mode)
		}
		got[h.Name] = fmt.Sprintf("%c %o %s", h.Typeflag, h.Mode, h.Linkname)
	}
	want := map[string]string{"node_modules/": "5 755 ", "node_modules/a/": "5 755 ", "node_modules/a/index.js": "0 644 ",
		"node_modules/l": "2 755 a/index.js", "package-lock.json": "0 644 "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tar holds %v, want %v", got, want)
	}
}

// Starters with the same dependencies share one layer (so a warm container
// made before its project type is known holds them), and a starter's layer
// is built from its dependency fields only, never its scripts.
func TestStarterLayersShared(t *testing.T) {
	st, err := newStarterLayers("sha256:a", "/npm")
	if err != nil {
		t.Fatal(err)
	}
	if st.poolKey == "" || len(st.manifests) != 1 {
		t.Fatalf("the starters (%v) do not share one layer: %v", templates.Types(), st.keys)
	}
	for pt, key := range st.keys {
		if key != st.poolKey {
			t.Errorf("%s: layer %q, want the shared %q", pt, key, st.poolKey)
		}
	}
	manifest := string(st.manifests[st.poolKey])
	if !strings.Contains(manifest, `"fastify"`) || strings.Contains(manifest, "scripts") || strings.Contains(manifest, `"type"`) {
		t.Errorf("manifest %s", manifest)
	}
}

// A fresh workspace gets the starter layer's node_modules and lock file,
// owned by the sandbox user; without a built layer it gets nothing and the
// session is told what it lacks.
func TestSeedStarterDeps(t *testing.T) {
	testneeds.Root(t) // restored files are given to the sandbox user
	m, _, _ := unitManager(t, func(c *Config) { c.DepCacheDir = filepath.Join(t.TempDir(), "deps") })
	var err error
	if m.deps.cache, err = openLayerCache(m.cfg.DepCacheDir, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	if m.deps.starters, err = newStarterLayers("sha256:a", "/npm"); err != nil {
		t.Fatal(err)
	}
	key := m.deps.starterKey("js")
	ws := t.TempDir()
	if lacks := m.deps.seedStarter(ws, key, ""); lacks != noticeNoRegistry || hasStarterDeps(ws) {
		t.Fatalf("no layer, no registry: %q", lacks)
	}
	tmp := smallLayer(t, m.deps.cache, 0)
	if err := m.deps.cache.add(key, tmp); err != nil {
		t.Fatal(err)
	}
	if lacks := m.deps.seedStarter(ws, key, ""); lacks != "" || !hasStarterDeps(ws) {
		t.Fatalf("layer built: %q", lacks)
	}
	info, err := os.Lstat(filepath.Join(ws, "node_modules/pkg/index.js"))
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); st.Uid != SandboxUID {
		t.Errorf("restored file owned by %d, want %d", st.Uid, SandboxUID)
	}
	if lacks := m.deps.seedStarter(ws, key, key); lacks != "" {
		t.Fatalf("already there: %q", lacks)
	}
	m.deps.cache = nil
	if lacks := m.deps.seedStarter(t.TempDir(), key, ""); lacks != noticeNoLayers {
		t.Fatalf("no layer cache: %q", lacks)
	}
}
