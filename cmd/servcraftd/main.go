// Command servcraftd is the ServCraft runtime daemon: an HTTP API that gives
// every playground session its own Node.js 20 container, driven directly
// through containerd.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
	"github.com/servcraft/servcraftd/store/placement"
	"github.com/servcraft/servcraftd/store/statedir"
	"github.com/servcraft/servcraftd/web"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "sessions":
			os.Exit(sessionsCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
		case "gc":
			os.Exit(gcCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
		case "store":
			os.Exit(storeCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
		case "config-doc": // hidden: writes docs/configuration.md (make config-doc)
			if err := writeConfigDoc(os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, "servcraftd config-doc:", err)
				os.Exit(1)
			}
			os.Exit(0)
		case "env-example": // hidden: writes deploy/servcraftd.env.example (make config-doc)
			if err := writeEnvExample(os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, "servcraftd env-example:", err)
				os.Exit(1)
			}
			os.Exit(0)
		case "drain":
			os.Exit(drainCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
		}
	}
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "servcraftd:", err)
		os.Exit(2)
	}
	setupLogging(cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		slog.Error("servcraftd stopped", "err", err)
		if code, advice := storeRefusal(err); code != 0 {
			fmt.Fprintf(os.Stderr, "servcraftd: %v\n%s\n", err, advice)
			os.Exit(code)
		}
		os.Exit(1)
	}
}

// Exit codes of a daemon that refuses its session database (0 and 1 are
// success and any other failure, 2 a bad configuration).
const (
	exitStoreDamaged = 3 // damaged: `servcraftd store rebuild` replaces it
	exitStoreNewer   = 4 // written by a newer servcraftd: run that build
)

// storeRefusal is the exit code and advice for an error that refuses the
// session database; 0 for any other error.
func storeRefusal(err error) (int, string) {
	switch {
	case errors.Is(err, store.ErrDamaged):
		return exitStoreDamaged, "The session database is damaged; the running sessions are intact in containerd. " +
			"Run `servcraftd store rebuild` (same --state-dir, --containerd-address and --namespace) to rebuild it " +
			"from them, then start servcraftd again (docs/operations.md, Recovery)."
	case errors.Is(err, store.ErrNewerSchema):
		return exitStoreNewer, "The session database was written by a newer servcraftd: run that build, or rebuild " +
			"the database with `servcraftd store rebuild` (docs/operations.md, Recovery)."
	}
	return 0, ""
}

func setupLogging(format string) {
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if format == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	slog.SetDefault(slog.New(h))
}

// The HTTP server's fixed limits (docs/api.md lists them).
const (
	serverReadHeaderTimeout = 10 * time.Second
	serverReadTimeout       = 60 * time.Second
	serverWriteSlack        = 60 * time.Second // beyond the longest run or install
	serverIdleTimeout       = 120 * time.Second
	serverMaxHeaderBytes    = 64 << 10
)

// run wires the daemon together and serves until ctx ends, then drains.
func run(ctx context.Context, cfg config) error {
	state := statedir.Dir(cfg.StateDir)
	client, err := containerd.New(cfg.ContainerdAddress,
		containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", cfg.ContainerdAddress, err)
	}
	defer client.Close()
	if v, err := client.Version(ctx); err == nil {
		slog.Info("containerd connected", "address", cfg.ContainerdAddress, "version", v.Version, "namespace", cfg.Namespace)
		host, err := runtime.CheckHost(ctx, cfg.AllowNoSeccomp)
		slog.Info("host", "cgroup", host.Cgroup, "runc", host.Runc, "libseccomp", host.Libseccomp, "seccomp", host.Seccomp, "runtime", cfg.Runtime.Runtime)
		if err != nil {
			return err
		}
	} else {
		return fmt.Errorf("containerd at %s: %w", cfg.ContainerdAddress, err)
	}

	db, err := store.Open(state.DB())
	if err != nil {
		return err
	}
	defer db.Close()
	vols, err := openVolumes(ctx, cfg, state)
	if err != nil {
		return err
	}
	logWorkspaces(vols)
	registry, err := newRegistryProxy(ctx, cfg, state)
	if err != nil {
		return err
	}
	rtCfg := cfg.Runtime
	rtCfg.Registry = registry
	if err := runtime.CheckDisk(rtCfg, vols); err != nil {
		if cfg.RequireDiskFit {
			return fmt.Errorf("disk plan (--require-disk-fit): %w", err)
		}
		slog.Warn("disk plan: not every session can have its workspace; creates past the room answer 507 host_disk_full (--require-disk-fit refuses to start)", "err", err)
	}
	if rtCfg.SpawnerPath == "" {
		slog.Warn("no spawner (--spawner): every run of a new session is a runc exec, about 150 ms more CPU each", "spawner", cfg.Spawner)
	}
	mgr, err := runtime.New(ctx, client, db, vols, rtCfg)
	if err != nil {
		return err
	}
	defer mgr.Close()
	if err := mgr.Start(ctx); err != nil {
		return err
	}

	opts := cfg.API
	opts.TypeScript = mgr.HasToolchain()
	opts.Metrics = mgr
	opts.Disk = mgr
	if cfg.PlaygroundPage {
		opts.Page = web.Handler()
	}
	opts.MaxSessions = cfg.Runtime.MaxSessions
	if opts.PreviewKey, err = previewKey(state, cfg.Cluster.secret); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	opts.ListenAddr = ln.Addr().String()
	var pl *placement.Placement
	if cfg.Cluster.on() {
		nodeID, err := resolveNodeID(state, cfg.Cluster.NodeID)
		if err != nil {
			return err
		}
		copts, p, leave, err := joinCluster(ctx, cfg.Cluster, nodeID, ln.Addr().String(), localSessions{db: db, mgr: mgr.Manager, maxSessions: cfg.Runtime.MaxSessions})
		if err != nil {
			return err
		}
		defer leave()
		opts.Cluster, pl = copts, p
	}
	opts.OnDrain = drainHook(mgr.Manager, pl)
	srv := &http.Server{
		Handler:           api.NewRouter(mgr, opts),
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadTimeout,
		// The longest answer is a run or an install at its timeout; streams lift this per request.
		WriteTimeout:   max(cfg.Runtime.MaxExecTimeout, cfg.Runtime.InstallTimeout) + serverWriteSlack,
		IdleTimeout:    serverIdleTimeout,
		MaxHeaderBytes: serverMaxHeaderBytes,
	}
	slog.Info("servcraftd serving", "listen", ln.Addr().String(), "image", mgr.ImageName(), "state", state,
		"auth", cfg.API.APIToken != "", "config", cfg.ConfigFile)
	if cfg.API.APIToken == "" && !loopback(ln.Addr()) {
		slog.Warn("the API listens beyond this host without a token: anyone who reaches it runs code here (set --api-token-file)",
			"listen", ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	slog.Info("shutting down: draining requests", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		slog.Warn("shutdown did not drain", "err", err)
	}
	if cfg.DestroyOnShutdown {
		slog.Info("destroying every session (--destroy-on-shutdown)")
		if err := mgr.DestroyAll(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("destroy on shutdown: %w", err)
		}
	}
	slog.Info("servcraftd stopped cleanly")
	return nil
}

// newRegistryProxy builds the npm registry proxy for installs. Its upstream is
// --registry, else what the host's npm is configured with; without either,
// installs answer 503 and everything else works.
func newRegistryProxy(ctx context.Context, cfg config, state statedir.Dir) (*npmproxy.Proxy, error) {
	upstream := cfg.Registry
	if upstream == "" {
		out, err := exec.CommandContext(ctx, "npm", "config", "get", "registry").Output()
		if err != nil {
			slog.Warn("no npm registry: installs are unavailable (set --registry)", "err", err)
			return nil, nil
		}
		upstream = strings.TrimSpace(string(out))
	}
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("registry %q: not an http(s) URL", upstream)
	}
	p, err := npmproxy.New(npmproxy.Config{Upstream: u, CacheDir: state.NpmCache(),
		CacheBytes: cfg.NpmCacheBytes, InstallBytes: cfg.InstallBytes})
	if err != nil {
		return nil, fmt.Errorf("registry proxy: %w", err)
	}
	slog.Info("npm registry proxy ready", "upstream", u.Redacted())
	return p, nil
}

// loopback reports whether addr only accepts connections from this host.
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// previewKey is the key preview links are signed with: in cluster mode one
// derived from the cluster secret (every node verifies every node's links),
// else 32 random bytes kept in the state folder (made on first start, 0600),
// so links outlive a restart.
func previewKey(state statedir.Dir, clusterSecret []byte) ([]byte, error) {
	if len(clusterSecret) > 0 {
		m := hmac.New(sha256.New, clusterSecret)
		m.Write([]byte("servcraftd preview links"))
		return m.Sum(nil), nil
	}
	file := state.PreviewKey()
	key, err := os.ReadFile(file)
	if err == nil && len(key) == 32 {
		return key, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read preview key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make preview key: %w", err)
	}
	if err := os.WriteFile(file, key, 0o600); err != nil {
		return nil, fmt.Errorf("write preview key: %w", err)
	}
	return key, nil
}

// logWorkspaces says at start which backend makes the workspaces and why,
// and the room they have: its size and free bytes, what the workspaces
// there hold and how many there are.
func logWorkspaces(vols *workspace.Volumes) {
	attrs := []any{"backend", vols.Backend(), "why", vols.Reason(), "quota", disk.Format(vols.Size())}
	if sp, _, err := vols.Space(); err == nil {
		attrs = append(attrs, "size", disk.Format(sp.Total), "free", disk.Format(sp.Free))
	}
	if written, n, err := vols.Written(); err == nil {
		attrs = append(attrs, "workspaces", n, "written", disk.Format(written))
	}
	slog.Info("workspaces", attrs...)
}

// openVolumes opens the workspace volumes with the backend cfg and the host pick.
func openVolumes(ctx context.Context, cfg config, state statedir.Dir) (*workspace.Volumes, error) {
	return workspace.NewVolumes(ctx, state.Workspaces(), int64(cfg.Runtime.Limits.FileBytes),
		workspace.WithBackend(cfg.WorkspaceBackend),
		workspace.WithPool(state.WorkspacePool(), cfg.WorkspacePool, cfg.PoolReserve))
}
