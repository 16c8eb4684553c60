// Package runtimetest gives integration tests a real containerd (started by
// the project's own script when none is named) and the real session image.
// Without root or containerd a test fails when CI=true and is skipped with
// the reason elsewhere.
package runtimetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

// ImageRef is the offline Node 20 image the tests run: the runtime's fallback.
var ImageRef = runtime.DefaultConfig().Image.FallbackRef

// Env is a containerd ready for integration tests.
type Env struct {
	Client    *containerd.Client
	Address   string
	Namespace string
	RepoRoot  string
	Image     runtime.ImageConfig
	InitPath  string
	// SpawnerPath is cmd/servcraft-spawner, built for this test process.
	SpawnerPath string
	// ToolchainDir is the shared TypeScript toolchain (scripts/build-toolchain.sh).
	ToolchainDir string
}

// Unavailable fails the test under CI (where everything must be there) and skips it elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	testneeds.Unavailable(t, format, args...)
}

// Start returns a client of a real containerd in namespace (one per test
// package, so packages running in parallel never see each other's containers).
func Start(t testing.TB, namespace string) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (containerd, mounts, cgroups)")
	}
	root := repoRoot(t)
	for _, bin := range []string{"containerd", "runc", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			Unavailable(t, "%s not installed (make deps installs it)", bin)
		}
	}
	defaults := runtime.DefaultConfig()
	initPath := defaults.InitPath
	if _, err := os.Stat(initPath); err != nil {
		Unavailable(t, "%s missing (apt-get install tini)", initPath)
	}
	address := os.Getenv("SERVCRAFT_TEST_CONTAINERD")
	if address == "" {
		address = locked(t, root, "containerd", filepath.Join(root, "scripts", "dev-containerd.sh"), "start")
	}
	archive := os.Getenv("SERVCRAFT_TEST_IMAGE_ARCHIVE")
	if archive == "" {
		archive = filepath.Join(root, ".servcraft", "image", "node20.tar")
		if _, err := os.Stat(archive); err != nil {
			locked(t, root, "image", filepath.Join(root, "scripts", "build-image.sh"))
		}
	}
	toolchain := os.Getenv("SERVCRAFT_TEST_TOOLCHAIN")
	if toolchain == "" {
		toolchain = locked(t, root, "toolchain", filepath.Join(root, "scripts", "build-toolchain.sh"))
	}
	spawner := buildSpawner(t, root)
	client, err := containerd.New(address, containerd.WithDefaultNamespace(namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		Unavailable(t, "containerd at %s: %v", address, err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, err := client.IsServing(ctx); err != nil || !ok {
		Unavailable(t, "containerd at %s not serving: %v", address, err)
	}
	return &Env{
		Client:       client,
		Address:      address,
		Namespace:    namespace,
		RepoRoot:     root,
		InitPath:     initPath,
		SpawnerPath:  spawner,
		ToolchainDir: toolchain,
		Image: runtime.ImageConfig{Ref: ImageRef, FallbackRef: ImageRef, FallbackArchive: archive,
			Snapshotter: defaults.Image.Snapshotter},
	}
}

// Context is a context in the env's namespace, bounded by two minutes times
// Slowdown.
func (e *Env) Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), e.Namespace), 2*time.Minute*time.Duration(Slowdown(t)))
	t.Cleanup(cancel)
	return ctx
}

// Containers lists the IDs of every container in the env's namespace.
func (e *Env) Containers(t testing.TB) []string {
	t.Helper()
	cs, err := e.Client.Containers(e.Context(t))
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("list containers: %v", err)
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.ID())
	}
	return ids
}

var (
	spawnerOnce  sync.Once
	spawnerBuilt string
	spawnerErr   error
)

// buildSpawner builds cmd/servcraft-spawner (static, as make build does)
// once per test process and returns its path; SERVCRAFT_TEST_SPAWNER names
// one built already (a machine without Go: the cgroup v2 guest).
func buildSpawner(t testing.TB, root string) string {
	t.Helper()
	if prebuilt := os.Getenv("SERVCRAFT_TEST_SPAWNER"); prebuilt != "" {
		return prebuilt
	}
	spawnerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "servcraft-spawner")
		if err != nil {
			spawnerErr = err
			return
		}
		out := filepath.Join(dir, "servcraft-spawner")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/servcraft-spawner")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			spawnerErr = fmt.Errorf("build the spawner: %v\n%s", err, msg)
			return
		}
		spawnerBuilt = out
	})
	if spawnerErr != nil {
		t.Fatal(spawnerErr)
	}
	return spawnerBuilt
}

// locked runs a project script under a file lock shared by all test
// packages and returns the last line it printed.
func locked(t testing.TB, root, name string, argv ...string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, ".servcraft"), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(root, ".servcraft", "test-"+name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = root
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		Unavailable(t, "%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's folder")
		}
		dir = parent
	}
}

// Config is the production configuration of the runtime
// (runtime.DefaultConfig) with the env's image, init and toolchain, a
// private state folder, a quick activity flush and no warm pool, runners or
// session cap; tests change what they exercise.
func (e *Env) Config(state string) runtime.Config {
	cfg := runtime.DefaultConfig()
	cfg.Image = e.Image
	cfg.InitPath = e.InitPath
	cfg.SpawnerPath = e.SpawnerPath
	cfg.ToolchainDir = e.ToolchainDir
	cfg.StateDir = state
	cfg.TouchInterval = 50 * time.Millisecond
	cfg.MaxSessions, cfg.PoolSize, cfg.Runners = 0, 0, false
	return cfg
}

// Slowdown is how many times slower than a real host this machine runs
// (SERVCRAFT_TEST_SLOWDOWN, a whole number, 1 when unset): the cgroup v2
// guest runs under software emulation, where a cold TypeScript start takes
// 15-28 s instead of 0.5 s. Only test contexts stretch by it; no limit under
// test does.
func Slowdown(t testing.TB) int {
	v := os.Getenv("SERVCRAFT_TEST_SLOWDOWN")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		t.Fatalf("SERVCRAFT_TEST_SLOWDOWN=%q: want a whole number from 1 to 100", v)
	}
	return n
}
