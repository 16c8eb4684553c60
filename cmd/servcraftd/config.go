package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// byteSize is a flag value in bytes that accepts units: 512MiB, 1GiB, 64k, 1048576.
type byteSize int64

func (b *byteSize) String() string { return formatBytes(int64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"B", 1},
}

// parseBytes reads a non-negative size with an optional unit.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("%q is not a size (use e.g. 512MiB, 1GiB, 65536)", s)
	}
	v := n * float64(mult)
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// config is every setting of the daemon.
type config struct {
	Listen            string
	StateDir          string
	ContainerdAddress string
	Namespace         string
	Image             string
	Pull              bool
	FallbackImage     string
	FallbackArchive   string
	Snapshotter       string
	Runtime           string
	InitPath          string
	ToolchainDir      string
	NodePath          string
	Memory            byteSize
	CPUs              float64
	Pids              int64
	TmpSize           byteSize
	NoFile            uint64
	WorkspaceSize     byteSize
	IdleTimeout       time.Duration
	ReapInterval      time.Duration
	DestroyOnShutdown bool
	PullTimeout       time.Duration
	ExtendBy          time.Duration
	ExecTimeout       time.Duration
	MaxExecTimeout    time.Duration
	OutputLimit       byteSize
	MaxBody           byteSize
	MaxCommand        byteSize
	MaxPathDepth      int
	ExposedPort       int
	TouchInterval     time.Duration
	ShutdownTimeout   time.Duration
	LogFormat         string
	Registry          string
	NpmPath           string
	InstallTimeout    time.Duration
	MaxPackages       int
	MaxSyncFiles      int
	MaxFileSize       byteSize
	ListDepth         int
	ListEntries       int
	ListFileBytes     byteSize
	MaxProcesses      int
	ProcessLogBytes   byteSize
	MinPreviewPort    int
	PreviewTimeout    time.Duration
	MaxPreviewBytes   byteSize
}

func defaultConfig() config {
	return config{
		Listen:            "127.0.0.1:8080",
		StateDir:          "/var/lib/servcraftd",
		ContainerdAddress: "/run/containerd/containerd.sock",
		Namespace:         "servcraft",
		Image:             "docker.io/library/node:20-alpine",
		Pull:              true,
		FallbackImage:     "localhost/servcraft/node:20",
		Snapshotter:       "overlayfs",
		Runtime:           "io.containerd.runc.v2",
		InitPath:          "/usr/bin/tini-static",
		NodePath:          "/usr/local/bin/node",
		Memory:            512 << 20,
		CPUs:              0.5,
		Pids:              256,
		TmpSize:           64 << 20,
		NoFile:            4096,
		WorkspaceSize:     1 << 30,
		IdleTimeout:       30 * time.Minute,
		ReapInterval:      30 * time.Second,
		PullTimeout:       60 * time.Second,
		ExtendBy:          10 * time.Minute,
		ExecTimeout:       10 * time.Second,
		MaxExecTimeout:    60 * time.Second,
		OutputLimit:       1 << 20,
		MaxBody:           10 << 20,
		MaxCommand:        64 << 10,
		MaxPathDepth:      16,
		ExposedPort:       3000,
		TouchInterval:     5 * time.Second,
		ShutdownTimeout:   20 * time.Second,
		LogFormat:         "text",
		NpmPath:           "/usr/local/bin/npm",
		InstallTimeout:    120 * time.Second,
		MaxPackages:       50,
		MaxSyncFiles:      2000,
		MaxFileSize:       5 << 20,
		ListDepth:         4,
		ListEntries:       2000,
		ListFileBytes:     1 << 20,
		MaxProcesses:      8,
		ProcessLogBytes:   256 << 10,
		MinPreviewPort:    1,
		PreviewTimeout:    30 * time.Second,
		MaxPreviewBytes:   100 << 20,
	}
}

// register binds every setting to a flag of fs.
func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "address of the HTTP API")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "folder for the session database, workspaces and FIFOs")
	fs.StringVar(&c.ContainerdAddress, "containerd-address", c.ContainerdAddress, "containerd's socket")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "containerd namespace of every session")
	fs.StringVar(&c.Image, "image", c.Image, "session image")
	fs.BoolVar(&c.Pull, "pull", c.Pull, "pull the session image when it is missing")
	fs.StringVar(&c.FallbackImage, "fallback-image", c.FallbackImage, "offline Node 20 image used when the session image cannot be had (empty: none)")
	fs.StringVar(&c.FallbackArchive, "fallback-archive", c.FallbackArchive, "OCI archive imported when the fallback image is missing (see scripts/build-image.sh)")
	fs.StringVar(&c.Snapshotter, "snapshotter", c.Snapshotter, "containerd snapshotter for root filesystems")
	fs.StringVar(&c.Runtime, "runtime", c.Runtime, "containerd runtime (e.g. io.containerd.runsc.v1 for gVisor)")
	fs.StringVar(&c.InitPath, "init", c.InitPath, "static init bind-mounted as each container's PID 1")
	fs.StringVar(&c.ToolchainDir, "toolchain-dir", c.ToolchainDir, "host folder of the TypeScript toolchain (scripts/build-toolchain.sh); empty: no TypeScript")
	fs.StringVar(&c.NodePath, "node-path", c.NodePath, "node inside the image")
	fs.Var(&c.Memory, "memory", "memory limit per session (swap adds nothing)")
	fs.Float64Var(&c.CPUs, "cpus", c.CPUs, "CPUs per session (CFS quota)")
	fs.Int64Var(&c.Pids, "pids", c.Pids, "most processes per session")
	fs.Var(&c.TmpSize, "tmp-size", "size of each session's /tmp and /home/node tmpfs")
	fs.Uint64Var(&c.NoFile, "nofile", c.NoFile, "open files per process (RLIMIT_NOFILE)")
	fs.Var(&c.WorkspaceSize, "workspace-size", "quota of each session's /workspace volume")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "a session idle this long is destroyed")
	fs.DurationVar(&c.ReapInterval, "reap-interval", c.ReapInterval, "how often expired sessions are looked for")
	fs.BoolVar(&c.DestroyOnShutdown, "destroy-on-shutdown", c.DestroyOnShutdown, "destroy every session at SIGTERM/SIGINT (default: they keep running and are picked up at the next start)")
	fs.DurationVar(&c.PullTimeout, "pull-timeout", c.PullTimeout, "how long pulling the session image may take")
	fs.DurationVar(&c.ExtendBy, "extend-by", c.ExtendBy, "how far PATCH /container moves the deadline (once per session)")
	fs.DurationVar(&c.ExecTimeout, "exec-timeout", c.ExecTimeout, "wall time of a run when the request names none")
	fs.DurationVar(&c.MaxExecTimeout, "max-exec-timeout", c.MaxExecTimeout, "most wall time a request may ask for")
	fs.Var(&c.OutputLimit, "output-limit", "bytes kept of a run's stdout and of its stderr; past it the run is killed")
	fs.Var(&c.MaxBody, "max-body", "largest request body")
	fs.Var(&c.MaxCommand, "max-command", "longest shell command")
	fs.IntVar(&c.MaxPathDepth, "max-path-depth", c.MaxPathDepth, "deepest file path in a workspace")
	fs.IntVar(&c.ExposedPort, "exposed-port", c.ExposedPort, "in-container port reported as exposedPort")
	fs.DurationVar(&c.TouchInterval, "touch-interval", c.TouchInterval, "how often session activity is written to the store")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight requests may finish at shutdown")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.Registry, "registry", c.Registry, "upstream npm registry of the install proxy (empty: the host's `npm config get registry`)")
	fs.StringVar(&c.NpmPath, "npm-path", c.NpmPath, "npm inside the image")
	fs.DurationVar(&c.InstallTimeout, "install-timeout", c.InstallTimeout, "longest npm install; past it the install is stopped (504)")
	fs.IntVar(&c.MaxPackages, "max-packages", c.MaxPackages, "most packages in one install request")
	fs.IntVar(&c.MaxSyncFiles, "max-sync-files", c.MaxSyncFiles, "most files and folders in one sync")
	fs.Var(&c.MaxFileSize, "max-file-size", "largest file in one sync")
	fs.IntVar(&c.ListDepth, "list-depth", c.ListDepth, "deepest level /files lists")
	fs.IntVar(&c.ListEntries, "list-entries", c.ListEntries, "most entries /files returns")
	fs.Var(&c.ListFileBytes, "list-file-bytes", "largest file whose content /files returns")
	fs.IntVar(&c.MaxProcesses, "max-processes", c.MaxProcesses, "running background processes per session")
	fs.Var(&c.ProcessLogBytes, "process-log-bytes", "output kept per background process (a ring buffer)")
	fs.IntVar(&c.MinPreviewPort, "min-preview-port", c.MinPreviewPort, "lowest in-session port a preview may pick with ?port=")
	fs.DurationVar(&c.PreviewTimeout, "preview-timeout", c.PreviewTimeout, "how long a previewed server may take to send headers")
	fs.Var(&c.MaxPreviewBytes, "max-preview-bytes", "largest preview response body")
}

// envName is the environment variable of a flag: --idle-timeout is SERVCRAFT_IDLE_TIMEOUT.
func envName(flagName string) string {
	return "SERVCRAFT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig applies defaults, then SERVCRAFT_* variables, then flags, and validates the result.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("servcraftd", flag.ContinueOnError)
	cfg.register(fs)
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Memory >= 32<<20, "memory: %s is below 32MiB", c.Memory.String())
	check(c.CPUs >= 0.01 && c.CPUs <= 64, "cpus: %v is not within 0.01 to 64", c.CPUs)
	check(c.Pids >= 16, "pids: %d is below 16", c.Pids)
	check(c.TmpSize >= 1<<20, "tmp-size: %s is below 1MiB", c.TmpSize.String())
	check(c.NoFile >= 64, "nofile: %d is below 64", c.NoFile)
	check(c.WorkspaceSize >= 8<<20, "workspace-size: %s is below 8MiB", c.WorkspaceSize.String())
	check(c.IdleTimeout >= time.Second, "idle-timeout: %v is below 1s", c.IdleTimeout)
	check(c.ReapInterval >= 100*time.Millisecond, "reap-interval: %v is below 100ms", c.ReapInterval)
	check(c.PullTimeout >= time.Second, "pull-timeout: %v is below 1s", c.PullTimeout)
	check(c.ExtendBy >= 0, "extend-by: %v is negative", c.ExtendBy)
	check(c.ExecTimeout > 0, "exec-timeout: %v must be positive", c.ExecTimeout)
	check(c.MaxExecTimeout >= c.ExecTimeout, "max-exec-timeout: %v is below exec-timeout %v", c.MaxExecTimeout, c.ExecTimeout)
	check(c.OutputLimit >= 1<<10, "output-limit: %s is below 1KiB", c.OutputLimit.String())
	check(c.MaxBody >= 1<<10, "max-body: %s is below 1KiB", c.MaxBody.String())
	check(c.MaxCommand >= 1 && c.MaxCommand <= c.MaxBody, "max-command: %s must be within 1 byte and max-body", c.MaxCommand.String())
	check(c.MaxPathDepth >= 1 && c.MaxPathDepth <= 64, "max-path-depth: %d is not within 1 to 64", c.MaxPathDepth)
	check(c.ExposedPort >= 1 && c.ExposedPort <= 65535, "exposed-port: %d is not a port", c.ExposedPort)
	check(c.TouchInterval >= 10*time.Millisecond, "touch-interval: %v is below 10ms", c.TouchInterval)
	check(c.ShutdownTimeout >= 0, "shutdown-timeout: %v is negative", c.ShutdownTimeout)
	check(c.LogFormat == "text" || c.LogFormat == "json", "log-format: %q is not text or json", c.LogFormat)
	check(c.StateDir != "", "state-dir: empty")
	check(c.InstallTimeout >= time.Second, "install-timeout: %v is below 1s", c.InstallTimeout)
	check(c.MaxPackages >= 1 && c.MaxPackages <= 1000, "max-packages: %d is not within 1 to 1000", c.MaxPackages)
	check(c.MaxSyncFiles >= 1, "max-sync-files: %d is below 1", c.MaxSyncFiles)
	check(c.MaxFileSize >= 1 && c.MaxFileSize <= c.MaxBody, "max-file-size: %s must be within 1 byte and max-body", c.MaxFileSize.String())
	check(c.ListDepth >= 1 && c.ListDepth <= 64, "list-depth: %d is not within 1 to 64", c.ListDepth)
	check(c.ListEntries >= 1, "list-entries: %d is below 1", c.ListEntries)
	check(c.MaxProcesses >= 1 && c.MaxProcesses <= 256, "max-processes: %d is not within 1 to 256", c.MaxProcesses)
	check(c.ProcessLogBytes >= 1<<10, "process-log-bytes: %s is below 1KiB", c.ProcessLogBytes.String())
	check(c.MinPreviewPort >= 1 && c.MinPreviewPort <= 65535, "min-preview-port: %d is not a port", c.MinPreviewPort)
	check(c.PreviewTimeout >= time.Second, "preview-timeout: %v is below 1s", c.PreviewTimeout)
	check(c.MaxPreviewBytes >= 1<<10, "max-preview-bytes: %s is below 1KiB", c.MaxPreviewBytes.String())
	check(c.ListFileBytes >= 1, "list-file-bytes: %s is below 1 byte", c.ListFileBytes.String())
	check(c.Namespace != "", "namespace: empty")
	return errors.Join(errs...)
}

// cpuQuota turns CPUs into a CFS quota over a 100 ms period.
func (c *config) cpuQuota() (quota int64, period uint64) {
	period = 100000
	return int64(c.CPUs * float64(period)), period
}
