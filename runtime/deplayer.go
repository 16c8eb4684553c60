package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/servcraft/servcraftd/runtime/lrubudget"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// layerFiles are what a dependency layer holds, at the top of a workspace.
// A starter project's layer has no package.json: the starter brings its own.
var layerFiles = []string{"node_modules", "package-lock.json", "package.json"}

// layerCache is the host folder of dependency layers, one folder per key,
// held to a byte budget with least-recently-used eviction. A layer is what
// `npm install` produced for one package.json and list of specs on a
// workspace without node_modules or lock file. The folder is 0700 and owned
// by root; every file in it is root's, 0644 or 0755: a layer is copied out
// of its builder by copyTree, which drops setuid, setgid and sticky bits and
// refuses devices, FIFOs and sockets, and a layer found at start with any of
// them is deleted. No session ever sees the folder: a layer reaches a
// session as a copy of its own match.
type layerCache struct {
	dir      string
	maxLayer int64 // largest layer kept, in bytes on disk
	index    *lrubudget.Index
}

// openLayerCache prepares dir, deletes what a crash or an older daemon left
// there (unfinished builds, layers with bits that have no place in one) and
// indexes the layers it keeps, oldest use first, within budget.
func openLayerCache(dir string, budget, maxLayer int64) (*layerCache, error) {
	if budget < maxLayer {
		return nil, fmt.Errorf("dependency layer budget %d is less than the largest layer %d", budget, maxLayer)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dependency layer folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // an older daemon made it 0755
		return nil, fmt.Errorf("dependency layer folder: %w", err)
	}
	c := &layerCache{dir: dir, maxLayer: maxLayer, index: lrubudget.New(budget)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dependency layer folder: %w", err)
	}
	var layers []lrubudget.Found
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		size, clean, err := treeDiskBytes(p)
		_, lockErr := os.Lstat(filepath.Join(p, "package-lock.json"))
		info, infoErr := e.Info()
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() || err != nil || !clean || lockErr != nil || infoErr != nil || size > maxLayer {
			slog.Info("dependency layer removed at start", "key", e.Name(), "clean", clean, "err", errors.Join(err, lockErr, infoErr))
			if err := os.RemoveAll(p); err != nil {
				return nil, fmt.Errorf("remove dependency layer %s: %w", e.Name(), err)
			}
			continue
		}
		layers = append(layers, lrubudget.Found{Key: e.Name(), Size: size, Used: info.ModTime()})
	}
	c.evict(c.index.Load(layers))
	return c, nil
}

func (c *layerCache) path(key string) string { return filepath.Join(c.dir, key) }

// ready reports whether the layer of key is built.
func (c *layerCache) ready(key string) bool { return c.index.Has(key) }

// use marks the layer of key as just used, here and on disk (its folder's
// modification time orders the layers again after a restart).
func (c *layerCache) use(key string) {
	if c.index.Touch(key) {
		now := time.Now()
		_ = os.Chtimes(c.path(key), now, now)
	}
}

// add moves the finished layer in the folder tmp (in c.dir) in as key and
// evicts the least recently used layers past the budget.
func (c *layerCache) add(key, tmp string) error {
	size, clean, err := treeDiskBytes(tmp)
	switch {
	case err != nil:
		return err
	case !clean:
		return fmt.Errorf("layer %s holds a setuid, setgid or sticky bit or a special file", key)
	case size > c.maxLayer:
		return fmt.Errorf("%w: %d bytes on disk, the most is %d", errLayerTooLarge, size, c.maxLayer)
	}
	if err := os.Rename(tmp, c.path(key)); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, os.ErrExist) {
			return nil // built twice; the first one stays
		}
		return err
	}
	c.evict(c.index.Add(key, size))
	return nil
}

func (c *layerCache) evict(keys []string) {
	for _, k := range keys {
		if err := os.RemoveAll(c.path(k)); err != nil {
			slog.Error("evict dependency layer", "key", k, "err", err)
			continue
		}
		slog.Info("dependency layer evicted", "key", k)
	}
}

// starterLayerFiles are what a starter project takes from its layer.
var starterLayerFiles = []string{"node_modules", "package-lock.json"}

// copyInto copies the starter layer of key into a workspace folder that no session
// has touched yet (a container is not running on it), owned by the sandbox
// user. Only ever for a fresh workspace: the host never writes into a folder
// user code could have shaped.
func (c *layerCache) copyInto(key, workspaceDir string) error {
	c.use(key)
	_, err := copyTree(c.path(key), workspaceDir, starterLayerFiles, SandboxUID, SandboxUID, c.maxLayer)
	return err
}

// depLayers owns the dependency layers: the cache of built ones, their
// builds, and the starter projects' layers seeded into new workspaces.
//
// Lock order: builds is the outermost lock of the runtime (a build makes,
// installs into and destroys a private session under it).
type depLayers struct {
	cfg         Config
	imageDigest string
	cache       *layerCache    // nil: no dependency layers
	starters    *starterLayers // nil: starters get no dependencies
	sessions    privateSessions
	db          Store
	pool        *warmPool
	stop        <-chan struct{} // closed when the manager stops: builds end

	builds      sync.Mutex     // one dependency layer built at a time
	running     sync.WaitGroup // layer builds started by installs; Close waits for them
	startersEnd chan struct{}  // closed when keepStarters ends
}

// privateSessions is how a layer is built: in a session no client can
// reach, made, installed into and destroyed through it.
type privateSessions interface {
	create(ctx context.Context, id string) (store.Session, error)
	install(ctx context.Context, id string, req InstallRequest) (InstallResult, error)
	destroy(ctx context.Context, id string) error
}

// starterKey is the dependency layer of projectType's starter ("": none).
func (d *depLayers) starterKey(projectType string) string {
	if d.starters == nil {
		return ""
	}
	return d.starters.keys[projectType]
}

// reserveBytes is what the running daemon keeps free of workspaces: the
// caches as they are now, through workspaceRoom.
func (d *depLayers) reserveBytes() int64 {
	var caches []disk.Reservation
	if d.cache != nil {
		caches = append(caches, layerReservation(d.cache.index.Budget(), d.cache.index.Used()))
	}
	if d.cfg.Registry != nil {
		caches = append(caches, npmReservation(d.cfg.Registry.CacheBytes()))
	}
	return workspaceRoom(d.cfg.DiskReserve, caches)
}

// key names the dependency layer of an install: the workspace's
// package.json and the requested specs, with the image and npm that install
// them. "" when the workspace already has a lock file or node_modules (the
// result would depend on them) or no package.json: those always run npm.
// The returned package.json is what the layer's builder starts from.
func (d *depLayers) key(s store.Session, specs []string) (string, []byte) {
	if d.cache == nil {
		return "", nil
	}
	current, err := workspace.List(s.Workspace, "package.json", workspace.ListLimits{MaxDepth: 1, MaxEntries: 1})
	if err != nil || len(current) != 1 || current[0].Type != workspace.TypeFile || current[0].Truncated || current[0].Binary {
		return "", nil
	}
	for _, other := range []string{"package-lock.json", "node_modules"} {
		if _, err := workspace.List(s.Workspace, other, workspace.ListLimits{MaxDepth: 1, MaxEntries: 1}); err == nil {
			return "", nil
		}
	}
	pkg := []byte(current[0].Content)
	return layerKey(pkg, d.imageDigest, d.cfg.NpmPath, specs), pkg
}

// ready reports whether the layer of key has been built.
func (d *depLayers) ready(key string) bool { return d.cache != nil && d.cache.ready(key) }

// restore extracts a built layer into the session's workspace, inside
// the session's own sandbox: the host streams the layer (its own files, of
// this key only) as a tar archive into `tar -x` run as the sandbox user, so
// the host never walks anything the session controls and the session never
// sees any other layer.
func (d *depLayers) restore(ctx context.Context, l *liveSession, key string, timeout time.Duration) (ExecResult, error) {
	d.cache.use(key)
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() { pw.CloseWithError(writeLayerTar(pw, d.cache.path(key), layerFiles)) }()
	out := newRunOutput(ExecRequest{OutputLimit: d.cfg.OutputLimit})
	r, err := l.start(ctx, runSpec{id: "run-" + randomHex(6), args: []string{"/bin/tar", "-x", "-f", "-", "-C", WorkspacePath},
		stdin: pr, stdout: out.stdout, stderr: out.stderr})
	if err != nil {
		return ExecResult{}, err
	}
	return waitRun(ctx, r, out, timeout, nil)
}

// build repeats an install in a private session no client can reach,
// from the same package.json and specs, so that no session's own files
// shape the result; it copies node_modules, the lock file and the updated
// package.json out as the layer of key (stripped of setuid/setgid bits,
// refused if it holds a special file or is larger than the per-layer cap),
// and destroys the private session. Code that runs during it (the packages'
// install scripts, the package.json's own) is exactly what every install of
// that key runs. With wait, it waits for another build to end first;
// without, it gives up when one is running. It reports whether the layer is
// there at the end.
func (d *depLayers) build(key string, pkg []byte, specs []string, wait bool) bool {
	if wait {
		d.builds.Lock()
	} else if !d.builds.TryLock() {
		return false // one at a time; a later install builds it if this one was another key
	}
	defer d.builds.Unlock()
	if d.ready(key) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.InstallTimeout+time.Minute)
	defer cancel()
	go func() { // a stopping manager ends the build; the builder is still torn down
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	id := layerBuilderPrefix + key
	start := time.Now()
	err := func() error {
		s, err := d.sessions.create(ctx, id)
		if err != nil {
			return err
		}
		defer func() { _ = d.sessions.destroy(context.WithoutCancel(ctx), id) }()
		if err := workspace.WriteFile(s.Workspace, "package.json", pkg, 0o644); err != nil {
			return err
		}
		res, err := d.sessions.install(ctx, id, InstallRequest{Packages: specs})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("npm install exited %d: %s", res.ExitCode, lastLine(res.Stderr))
		}
		tmp, err := os.MkdirTemp(d.cache.dir, ".build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		// The install has ended and nothing of it runs (its run cgroup was
		// killed): the builder's workspace holds still while it is copied.
		if _, err := copyTree(s.Workspace, tmp, layerFiles, 0, 0, d.cache.maxLayer); err != nil {
			return fmt.Errorf("copy layer: %w", err)
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return err
		}
		return d.cache.add(key, tmp)
	}()
	if err != nil {
		slog.Warn("build dependency layer", "key", key, "err", err)
		return false
	}
	slog.Info("dependency layer built", "key", key, "packages", len(specs), "took", time.Since(start),
		"cache_bytes", d.cache.index.Used(), "cache_layers", d.cache.index.Len())
	return true
}

// lastLine is the last non-empty line of s, to name a failure in a log.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
