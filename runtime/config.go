package runtime

import (
	"errors"
	"fmt"
	"time"

	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/snapshots/disk"
)

// Config is the manager's configuration.
type Config struct {
	Image               ImageConfig
	Runtime             string // containerd runtime, e.g. io.containerd.runc.v2 (or runsc)
	InitPath            string // host path of a static init, bind-mounted as PID 1 of containers made without a spawner
	SpawnerPath         string // host path of the static spawner (cmd/servcraft-spawner): each new container's PID 1, and every run's gate ("": the init is PID 1 and every run a runc exec behind a shell gate)
	ToolchainDir        string // host folder of the TypeScript toolchain ("" : none)
	StateDir            string // FIFOs live here
	Limits              SpecLimits
	IdleTimeout         time.Duration
	ExtendBy            time.Duration
	ExecTimeout         time.Duration   // default per run
	MaxExecTimeout      time.Duration   // most a client may ask for
	OutputLimit         int             // bytes of stdout and of stderr kept per run
	TouchInterval       time.Duration   // how often activity is written to the store
	ReapInterval        time.Duration   // how often expired sessions are looked for
	Registry            *npmproxy.Proxy // npm registry proxy for installs (nil: installs unavailable)
	NpmPath             string          // npm inside the image
	InstallTimeout      time.Duration   // longest npm install
	MaxSessions         int             // sessions at once (0: no limit)
	PoolSize            int             // warm containers kept ready for new sessions
	Runners             bool            // keep pre-started processes per session: node for executes, sh for shell commands
	RunnerIdle          time.Duration   // a session idle this long loses its waiting runner
	RunnerDepth         int             // waiting runners per session for JavaScript and for shell commands (TypeScript: one)
	RunnerBootCPUs      float64         // CPU quota, in CPUs, of each session's runner-boot cgroup, nested in the session's own (0: none; cgroup v1 only)
	NodePath            string          // node inside the image
	DepCacheDir         string          // host folder of dependency layers ("": none)
	DepCacheBytes       int64           // budget of the dependency layers, bytes on disk; least recently used go first
	DepLayerMaxBytes    int64           // largest dependency layer kept, bytes on disk
	StarterDeps         bool            // build the starters' dependency layer at Start, so new sessions come with node_modules
	MaxBackground       int             // running background processes per session
	BackgroundLogBytes  int             // output kept per background process
	KeepEndedBackground int             // ended background processes kept (with their logs) per session
	PoolParallel        int             // warm containers built at once while the pool refills
	DiskReserve         int64           // bytes of the state filesystem a create never takes (for the store, caches, logs)
	SessionsPerShim     int             // sessions that share one containerd shim, on average (1: a shim per session); see shimGroup
}

// DefaultConfig is the runtime's production configuration: every default of
// its settings, in one place. StateDir, ToolchainDir, Registry and
// DepCacheDir are the caller's to set.
func DefaultConfig() Config {
	return Config{
		Image: ImageConfig{
			Ref:         "docker.io/library/node:20-alpine",
			Pull:        true,
			PullTimeout: 60 * time.Second,
			FallbackRef: "localhost/servcraft/node:20",
			Snapshotter: "overlayfs",
		},
		Runtime:  "io.containerd.runc.v2",
		InitPath: "/usr/bin/tini-static",
		Limits: SpecLimits{
			MemoryBytes: 512 << 20,
			CPUQuota:    50000, // half a CPU
			CPUPeriod:   100000,
			Pids:        256,
			TmpBytes:    64 << 20,
			NoFile:      4096,
			FileBytes:   1 << 30, // also the workspace volume's quota
		},
		IdleTimeout:         30 * time.Minute,
		ExtendBy:            10 * time.Minute,
		ExecTimeout:         10 * time.Second,
		MaxExecTimeout:      60 * time.Second,
		OutputLimit:         1 << 20,
		TouchInterval:       5 * time.Second,
		ReapInterval:        30 * time.Second,
		NpmPath:             "/usr/local/bin/npm",
		InstallTimeout:      120 * time.Second,
		MaxSessions:         100,
		SessionsPerShim:     8,
		PoolSize:            2,
		Runners:             true,
		RunnerIdle:          5 * time.Minute,
		RunnerBootCPUs:      0,
		RunnerDepth:         2,
		NodePath:            "/usr/local/bin/node",
		MaxBackground:       8,
		BackgroundLogBytes:  256 << 10,
		DepCacheBytes:       2 << 30,
		DepLayerMaxBytes:    256 << 20,
		StarterDeps:         true,
		KeepEndedBackground: 16,
		PoolParallel:        2,
		DiskReserve:         1 << 30,
	}
}

// Validate checks every setting against its range; the error names each
// setting that is out of it (by its flag name) and why.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Limits.MemoryBytes >= 32<<20, "memory: %s is below 32MiB", disk.Format(c.Limits.MemoryBytes))
	check(c.Limits.Pids >= 16, "pids: %d is below 16", c.Limits.Pids)
	check(c.Limits.TmpBytes >= 1<<20, "tmp-size: %s is below 1MiB", disk.Format(c.Limits.TmpBytes))
	check(c.Limits.NoFile >= 64, "nofile: %d is below 64", c.Limits.NoFile)
	check(c.Limits.FileBytes >= 8<<20, "workspace-size: %s is below 8MiB", disk.Format(int64(c.Limits.FileBytes)))
	check(c.IdleTimeout >= time.Second, "idle-timeout: %v is below 1s", c.IdleTimeout)
	check(c.ReapInterval >= 100*time.Millisecond, "reap-interval: %v is below 100ms", c.ReapInterval)
	check(c.Image.PullTimeout >= time.Second, "pull-timeout: %v is below 1s", c.Image.PullTimeout)
	check(c.ExtendBy >= 0, "extend-by: %v is negative", c.ExtendBy)
	check(c.ExecTimeout > 0, "exec-timeout: %v must be positive", c.ExecTimeout)
	check(c.MaxExecTimeout >= c.ExecTimeout, "max-exec-timeout: %v is below exec-timeout %v", c.MaxExecTimeout, c.ExecTimeout)
	check(c.OutputLimit >= 1<<10, "output-limit: %s is below 1KiB", disk.Format(int64(c.OutputLimit)))
	check(c.TouchInterval >= 10*time.Millisecond, "touch-interval: %v is below 10ms", c.TouchInterval)
	check(c.InstallTimeout >= time.Second, "install-timeout: %v is below 1s", c.InstallTimeout)
	check(c.DepLayerMaxBytes >= 1<<20, "dep-layer-max-size: %s is below 1MiB", disk.Format(c.DepLayerMaxBytes))
	check(c.DepCacheBytes >= c.DepLayerMaxBytes, "dep-cache-size: %s is below dep-layer-max-size %s", disk.Format(c.DepCacheBytes), disk.Format(c.DepLayerMaxBytes))
	check(c.MaxSessions >= 1, "max-sessions: %d is below 1", c.MaxSessions)
	check(c.SessionsPerShim >= 1 && c.SessionsPerShim <= 64, "sessions-per-shim: %d is not within 1 to 64", c.SessionsPerShim)
	check(c.PoolSize >= 0 && c.PoolSize < c.MaxSessions, "pool-size: %d is not within 0 and max-sessions-1", c.PoolSize)
	check(c.PoolParallel >= 1 && c.PoolParallel <= 16, "pool-parallel: %d is not within 1 and 16", c.PoolParallel)
	check(c.RunnerIdle >= time.Second, "runner-idle: %v is below 1s", c.RunnerIdle)
	check(c.RunnerDepth >= 1 && c.RunnerDepth <= 8, "runner-depth: %d is not within 1 to 8", c.RunnerDepth)
	check(c.RunnerBootCPUs == 0 || c.RunnerBootCPUs >= 0.01 && c.RunnerBootCPUs <= 64, "runner-boot-cpus: %v is neither 0 nor within 0.01 to 64", c.RunnerBootCPUs)
	check(c.MaxBackground >= 1 && c.MaxBackground <= 256, "max-processes: %d is not within 1 to 256", c.MaxBackground)
	check(c.KeepEndedBackground >= 0 && c.KeepEndedBackground <= 1024, "keep-ended-processes: %d is not within 0 to 1024", c.KeepEndedBackground)
	check(c.BackgroundLogBytes >= 1<<10, "process-log-bytes: %s is below 1KiB", disk.Format(int64(c.BackgroundLogBytes)))
	return errors.Join(errs...)
}
