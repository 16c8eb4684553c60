package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// ErrUpstream is the cause of an install that failed because the upstream
// registry could not be reached or answered wrongly.
var ErrUpstream = errors.New("package registry upstream failed")

// InstallRequest is one `npm install` in a session. Packages were validated
// by the caller (names, versions, ranges, dist-tags only); none means the
// workspace's package.json.
type InstallRequest struct {
	Packages []string
	Timeout  time.Duration
	Stop     <-chan struct{} // closed: npm is ended at once, and the install fails as stopped
}

// Package is one top-level package and the version npm resolved.
type Package struct {
	Name    string
	Version string
}

// InstallResult is npm's run and what it installed.
type InstallResult struct {
	ExecResult
	Installed      []Package
	CacheHits      int64
	CacheMisses    int64
	BytesUpstream  int64
	NotFound       []string
	UpstreamErrors []string
	FromLayer      bool // restored from the starter project's dependency layer, npm not run
}

// npmArgs runs npm against the session's own proxy and nothing else: the
// registry comes from the command line, which outranks every .npmrc and
// environment variable user code can set.
func npmArgs(npm, registry string, packages []string) []string {
	args := []string{npm, "install", "--registry", registry, "--no-audit", "--no-fund",
		"--update-notifier=false", "--loglevel=warn", "--foreground-scripts",
		// The proxy is local and answers at once: retry once, quickly, not for minutes.
		"--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=3000"}
	return append(args, packages...)
}

// Install runs `npm install` inside the session's container. npm reaches
// the registry only through a proxy listening on 127.0.0.1 inside the
// session's own network namespace; the container gains no interface.
func (runs *Runs) Install(ctx context.Context, sessionID string, req InstallRequest) (InstallResult, error) {
	var res InstallResult
	if runs.cfg.Registry == nil {
		return res, fmt.Errorf("no package registry is configured: %w", errdefs.ErrUnavailable)
	}
	ctx, release := runs.calls.join(ctx, sessionID)
	defer release()
	err := runs.table.withLive(ctx, sessionID, func(l *liveSession, s store.Session) (err error) {
		res, err = runs.install(ctx, l, s, req)
		return err
	})
	return res, err
}

// install runs an install in the live session s.
func (runs *Runs) install(ctx context.Context, l *liveSession, s store.Session, req InstallRequest) (InstallResult, error) {
	var res InstallResult
	sessionID := s.SessionID
	timeout := installBound(req.Timeout, runs.cfg.InstallTimeout)
	layer, pkg := runs.deps.key(s, req.Packages)
	if layer != "" && runs.deps.ready(layer) {
		run, err := runs.deps.restore(ctx, l, layer, timeout)
		if err == nil && run.ExitCode == 0 {
			res.ExecResult, res.FromLayer = run, true
			res.ExecResult.Stdout = "restored from the dependency layer of an identical earlier install\n"
			res.Installed = installed(s.Workspace, req.Packages)
			runs.counters.inc("installs", "layer")
			return res, nil
		}
		slog.Warn("restore dependency layer; installing instead", "session", sessionID, "err", err, "exit", run.ExitCode, "stderr", run.Stderr)
	}
	ln, err := listenInNetns(l.task.Pid())
	if err != nil {
		return res, fmt.Errorf("session %q: registry proxy: %w", sessionID, err)
	}
	base := "http://" + ln.Addr().String()
	rec := &npmproxy.Recorder{}
	srv := &http.Server{Handler: runs.cfg.Registry.Handler(base, rec), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	run, err := l.exec(ctx, ExecRequest{
		Args:        npmArgs(runs.cfg.NpmPath, base+"/", req.Packages),
		Timeout:     timeout,
		OutputLimit: runs.cfg.OutputLimit,
		Stop:        req.Stop,
	})
	res.ExecResult = run
	res.CacheHits, res.CacheMisses, res.BytesUpstream = rec.CacheHits(), rec.CacheMisses(), rec.BytesFromUpstream()
	res.NotFound = rec.NotFound()
	for _, e := range rec.UpstreamErrors() {
		res.UpstreamErrors = append(res.UpstreamErrors, e.Error())
	}
	if err != nil {
		runs.counters.inc("installs", "error")
		return res, err
	}
	switch {
	case run.Stopped: // the client's own doing: an answer, not an error
		runs.counters.inc("installs", "stopped")
		return res, nil
	case run.TimedOut:
		runs.counters.inc("installs", "timeout")
		return res, fmt.Errorf("npm install ran longer than %v and was stopped: %w", timeout, context.DeadlineExceeded)
	case run.ExitCode != 0 && rec.BudgetExceeded():
		runs.counters.inc("installs", "budget")
		return res, fmt.Errorf("npm install read more than its budget from the registry (%s): %w",
			strings.Join(res.UpstreamErrors, "; "), errdefs.ErrResourceExhausted)
	case run.ExitCode != 0 && len(res.NotFound) > 0:
		runs.counters.inc("installs", "not_found")
		return res, fmt.Errorf("not found in the registry: %s: %w", strings.Join(res.NotFound, ", "), errdefs.ErrNotFound)
	case run.ExitCode != 0 && len(res.UpstreamErrors) > 0:
		runs.counters.inc("installs", "upstream")
		return res, fmt.Errorf("%w: %s", ErrUpstream, res.UpstreamErrors[0])
	}
	runs.counters.inc("installs", map[bool]string{true: "ok", false: "failed"}[run.ExitCode == 0])
	res.Installed = installed(s.Workspace, req.Packages)
	if layer != "" && run.ExitCode == 0 && buildsLayer(sessionID) {
		runs.deps.running.Add(1)
		go func() { // from a private session, never from this one's files
			defer runs.deps.running.Done()
			runs.deps.build(layer, pkg, slices.Clone(req.Packages), false)
		}()
	}
	slog.Info("npm install", "session", sessionID, "exit", run.ExitCode, "packages", len(req.Packages),
		"duration", run.Duration, "cache_hits", res.CacheHits, "cache_misses", res.CacheMisses)
	return res, nil
}

// installed reads the versions npm resolved for the requested packages (for
// none: every dependency in package.json) from the workspace, never
// following links. Packages it cannot read are left out.
func installed(dir string, requested []string) []Package {
	names := make([]string, 0, len(requested))
	for _, spec := range requested {
		names = append(names, PackageName(spec))
	}
	if len(names) == 0 {
		var pkg struct {
			Dependencies    map[string]string `json:"dependencies"`
			DevDependencies map[string]string `json:"devDependencies"`
		}
		if readJSON(dir, "package.json", &pkg) == nil {
			for n := range pkg.Dependencies {
				names = append(names, n)
			}
			for n := range pkg.DevDependencies {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	out := []Package{}
	for _, n := range slices.Compact(names) {
		var pkg struct {
			Version string `json:"version"`
		}
		if readJSON(dir, path.Join("node_modules", n, "package.json"), &pkg) == nil && pkg.Version != "" {
			out = append(out, Package{Name: n, Version: pkg.Version})
		}
	}
	return out
}

func readJSON(dir, rel string, v any) error {
	files, err := workspace.List(dir, rel, workspace.ListLimits{MaxDepth: 1, MaxEntries: 1})
	if err != nil {
		return err
	}
	if len(files) != 1 || files[0].Type != workspace.TypeFile || files[0].Truncated || files[0].Binary {
		return fmt.Errorf("%s: not a readable file", rel)
	}
	return json.Unmarshal([]byte(files[0].Content), v)
}

// PackageName is the name part of a validated spec: "@scope/x" of "@scope/x@^1".
func PackageName(spec string) string {
	at := strings.LastIndexByte(spec, '@')
	if at <= 0 {
		return spec
	}
	return spec[:at]
}
