package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// DepCachePath is where the dependency layers are mounted, read-only, in
// every session. A layer is what `npm install` produced for one package.json
// and list of specs on a workspace without node_modules or lock file.
const DepCachePath = "/opt/servcraft/depcache"

// depLayerKey names the dependency layer of an install: the workspace's
// package.json and the requested specs, with the image and npm that install
// them. "" when the workspace already has a lock file or node_modules (the
// result would depend on them) or no package.json: those always run npm.
// The returned package.json is what the layer's builder starts from.
func (m *Manager) depLayerKey(s store.Session, specs []string) (string, []byte) {
	if m.cfg.DepCacheDir == "" {
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
	return layerKey(pkg, string(m.image.Target().Digest), m.cfg.NpmPath, specs), pkg
}

// layerReady reports whether the layer of key has been built.
func (m *Manager) layerReady(key string) bool {
	_, err := os.Stat(filepath.Join(m.cfg.DepCacheDir, key, "package-lock.json"))
	return err == nil
}

// restoreLayer copies a built layer into the session's workspace, inside the
// session's own sandbox (`cp -a` as the sandbox user from the read-only
// mount): the host never walks anything the session controls.
func (m *Manager) restoreLayer(ctx context.Context, l *liveSession, key string, timeout time.Duration) (ExecResult, error) {
	src := DepCachePath + "/" + key
	return l.exec(ctx, ExecRequest{
		Args: []string{"/bin/cp", "-a", src + "/node_modules", src + "/package-lock.json", src + "/package.json",
			WorkspacePath + "/"},
		Timeout:     timeout,
		OutputLimit: m.cfg.OutputLimit,
	})
}

// buildLayer repeats an install in a private session no client can reach,
// from the same package.json and specs, so that no session's own files
// shape the result; it copies node_modules, the lock file and the updated
// package.json out as the layer of key, and destroys the private session.
// Code that runs during it (the packages' install scripts, the
// package.json's own) is exactly what every install of that key runs.
func (m *Manager) buildLayer(key string, pkg []byte, specs []string) {
	if !m.layerBuilds.TryLock() {
		return // one at a time; a later install builds it if this one was another key
	}
	defer m.layerBuilds.Unlock()
	if m.layerReady(key) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.InstallTimeout+time.Minute)
	defer cancel()
	id := layerBuilderPrefix + key
	start := time.Now()
	err := func() error {
		s, err := m.build(ctx, id, "")
		if err != nil {
			return err
		}
		defer func() { _ = m.Destroy(context.WithoutCancel(ctx), id) }()
		if err := workspace.WriteFile(s.Workspace, "package.json", pkg, 0o644); err != nil {
			return err
		}
		res, err := m.Install(ctx, id, InstallRequest{Packages: specs})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("npm install exited %d", res.ExitCode)
		}
		tmp, err := os.MkdirTemp(m.cfg.DepCacheDir, ".build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		// cp -a copies links as links and never follows them.
		out, err := exec.CommandContext(ctx, "cp", "-a", "--",
			filepath.Join(s.Workspace, "node_modules"), filepath.Join(s.Workspace, "package-lock.json"),
			filepath.Join(s.Workspace, "package.json"), tmp+"/").CombinedOutput()
		if err != nil {
			return fmt.Errorf("copy layer: %w: %s", err, out)
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(m.cfg.DepCacheDir, key)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		return nil
	}()
	if err != nil {
		slog.Warn("build dependency layer", "key", key, "err", err)
		return
	}
	slog.Info("dependency layer built", "key", key, "packages", len(specs), "took", time.Since(start))
}
