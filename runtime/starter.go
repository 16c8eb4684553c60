package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/servcraft/servcraftd/snapshots/templates"
)

// starterRetry is how long the daemon waits before it tries again to build
// a starter layer that could not be built (no registry answer, say).
const starterRetry = time.Minute

// starterLayers are the dependency layers of the starter projects: a new
// session's node_modules comes from one, copied in before its container
// starts, so `npm start` works at once and no create waits on a registry.
type starterLayers struct {
	keys      map[string]string // project type → layer key ("": the starter has no dependencies)
	manifests map[string][]byte // layer key → the package.json it is built from
	poolKey   string            // the layer every starter shares, which warm containers get ("": none shared)
}

// starterManifest is the package.json a starter's layer is built from: the
// template's own name, version and dependency fields, and nothing that runs
// (no scripts) or that does not shape node_modules (no "type"): starters
// whose dependencies are the same share one layer, so a warm container
// made before its project type is known already holds them. nil when the
// starter has no dependencies.
func starterManifest(projectType string) ([]byte, error) {
	files, err := templates.Files(projectType)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Path != "package.json" {
			continue
		}
		var pkg struct {
			Name                 string            `json:"name,omitempty"`
			Version              string            `json:"version,omitempty"`
			Private              bool              `json:"private,omitempty"`
			Dependencies         map[string]string `json:"dependencies,omitempty"`
			DevDependencies      map[string]string `json:"devDependencies,omitempty"`
			OptionalDependencies map[string]string `json:"optionalDependencies,omitempty"`
		}
		if err := json.Unmarshal(f.Data, &pkg); err != nil {
			return nil, fmt.Errorf("starter %s: package.json: %w", projectType, err)
		}
		if len(pkg.Dependencies)+len(pkg.DevDependencies)+len(pkg.OptionalDependencies) == 0 {
			return nil, nil
		}
		return json.Marshal(pkg) // maps marshal in key order: the same dependencies, the same bytes
	}
	return nil, nil
}

// newStarterLayers names the layer of every starter project for the image of
// imageDigest and the npm at npmPath.
func newStarterLayers(imageDigest, npmPath string) (*starterLayers, error) {
	st := &starterLayers{keys: map[string]string{}, manifests: map[string][]byte{}}
	shared := true
	for i, pt := range templates.Types() {
		manifest, err := starterManifest(pt)
		if err != nil {
			return nil, err
		}
		key := ""
		if manifest != nil {
			key = layerKey(manifest, imageDigest, npmPath, nil)
			st.manifests[key] = manifest
		}
		st.keys[pt] = key
		if i == 0 {
			st.poolKey = key
		} else if key != st.poolKey {
			shared = false
		}
	}
	if !shared {
		st.poolKey = ""
	}
	return st, nil
}

// Notices of a session whose starter project lacks its dependencies.
const (
	noticeNoLayers   = "the dependency cache is off: run `npm install` before `npm start`"
	noticeNoRegistry = "no package registry is configured: the starter's dependencies are not installed and `npm install` cannot fetch them"
	noticePreparing  = "the starter's dependencies are still being prepared: run `npm install` before `npm start`"
	noticeFailed     = "the starter's dependencies could not be restored: run `npm install` before `npm start`"
)

// hasStarterDeps reports whether the workspace folder holds a complete copy
// of a starter layer (the lock file is copied last).
func hasStarterDeps(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, "package-lock.json"))
	return err == nil
}

// seedStarter copies the starter layer of key into a workspace folder no
// session has touched yet, unless it holds it already. It answers what the
// session lacks ("" for nothing): the layer may be off, not built yet, or
// unbuildable without a registry. keyHeld is the layer the folder may hold
// already (a warm container's); a different one is replaced.
func (d *depLayers) seedStarter(dir, key, keyHeld string) string {
	if key == "" {
		return ""
	}
	if d.cache == nil || d.starters == nil {
		return noticeNoLayers
	}
	if hasStarterDeps(dir) {
		if key == keyHeld {
			return ""
		}
		if err := removeStarterDeps(dir); err != nil {
			slog.Error("replace a warm container's dependencies", "dir", dir, "err", err)
			return noticeFailed
		}
	}
	if !d.cache.ready(key) {
		if d.cfg.Registry == nil {
			return noticeNoRegistry
		}
		return noticePreparing
	}
	start := time.Now()
	if err := d.cache.copyInto(key, dir); err != nil {
		slog.Error("restore starter dependencies", "key", key, "err", err)
		if err := removeStarterDeps(dir); err != nil {
			slog.Error("remove half-restored starter dependencies", "dir", dir, "err", err)
		}
		return noticeFailed
	}
	slog.Debug("starter dependencies restored", "key", key, "took", time.Since(start))
	return ""
}

// removeStarterDeps removes what a starter layer put in a workspace folder
// no session has touched.
func removeStarterDeps(dir string) error {
	var errs []error
	for _, name := range starterLayerFiles {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keepStarters builds every starter layer that is missing, one after
// the other, then completes the warm containers made before it was there;
// it tries again every starterRetry until all are built or the manager
// stops. Without a registry (or with StarterDeps off) it does nothing:
// creates then say what the session lacks.
func (d *depLayers) keepStarters() {
	defer close(d.startersEnd)
	if d.starters == nil || d.cache == nil || d.cfg.Registry == nil || !d.cfg.StarterDeps {
		return
	}
	for {
		missing := 0
		for key, manifest := range d.starters.manifests {
			if d.ready(key) {
				continue
			}
			if !d.build(key, manifest, nil, true) {
				missing++
				continue
			}
			if key == d.starters.poolKey {
				d.completeWarm(key)
			}
		}
		if missing == 0 {
			return
		}
		select {
		case <-d.stop:
			return
		case <-time.After(starterRetry):
		}
	}
}

// completeWarm copies the starter layer of key into the warm containers made
// before it was built. Each is taken out of the pool while its workspace is
// written (no client can claim it then; no user code ever ran in it) and
// put back after.
func (d *depLayers) completeWarm(key string) {
	for range d.cfg.PoolSize {
		id, ok := d.pool.pop()
		if !ok {
			return
		}
		if rec, err := d.db.Get(id); err == nil && !hasStarterDeps(rec.Workspace) {
			if notice := d.seedStarter(rec.Workspace, key, ""); notice != "" {
				slog.Warn("complete a warm container", "pool", id, "notice", notice)
			} else if err := flushWorkspace(rec.Workspace); err != nil {
				slog.Warn("complete a warm container", "pool", id, "err", err)
			}
		}
		d.pool.push(id)
	}
}
