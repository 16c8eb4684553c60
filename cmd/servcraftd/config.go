package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/store/statedir"
)

// size is a flag value in bytes that accepts units (512MiB, 1GiB, 64k,
// 1048576), bound to a setting's field.
type size[T ~int | ~int64 | ~uint64] struct{ p *T }

func sizeOf[T ~int | ~int64 | ~uint64](p *T) size[T] { return size[T]{p} }

func (s size[T]) String() string {
	if s.p == nil {
		return "0"
	}
	return formatBytes(int64(*s.p))
}

func (s size[T]) Set(v string) error {
	n, err := parseBytes(v)
	if err != nil {
		return err
	}
	*s.p = T(n)
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

// stringList is a comma-separated flag value; setting it replaces the list.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// rateValue is a rate limit flag: RATE/UNIT:BURST, e.g. 30/m:10; 0 is no limit.
type rateValue api.Rate

func (r *rateValue) String() string {
	if r == nil {
		return "0"
	}
	return api.Rate(*r).String()
}

func (r *rateValue) Set(s string) error {
	v, err := parseRate(s)
	if err != nil {
		return err
	}
	*r = rateValue(v)
	return nil
}

// parseRate reads RATE/UNIT[:BURST]: RATE events per UNIT (s, m, h or a Go
// duration such as 10m) in bursts of up to BURST (default: RATE rounded up).
// "0" and "off" are no limit.
func parseRate(s string) (api.Rate, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "off" {
		return api.Rate{}, nil
	}
	bad := fmt.Errorf("%q is not a rate (use e.g. 30/m:10 for 30 a minute in bursts of up to 10, or 0 for no limit)", s)
	events, rest, ok := strings.Cut(s, "/")
	if !ok {
		return api.Rate{}, bad
	}
	unit, burst, hasBurst := strings.Cut(rest, ":")
	n, err := strconv.ParseFloat(strings.TrimSpace(events), 64)
	if err != nil || n <= 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return api.Rate{}, bad
	}
	var per time.Duration
	switch unit = strings.TrimSpace(unit); unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		if per, err = time.ParseDuration(unit); err != nil || per < time.Millisecond {
			return api.Rate{}, bad
		}
	}
	r := api.Rate{Events: n, Per: per, Burst: int(math.Ceil(n))}
	if hasBurst {
		b, err := strconv.Atoi(strings.TrimSpace(burst))
		if err != nil || b < 1 {
			return api.Rate{}, fmt.Errorf("%q: burst must be a whole number of at least 1", s)
		}
		r.Burst = b
	}
	return r, nil
}

// config is every setting of the daemon: the runtime's and the API's own
// settings (whose defaults their packages hold) and the daemon's.
type config struct {
	ConfigFile        string // --config: where the file layer came from (not a setting)
	Listen            string
	StateDir          string
	ContainerdAddress string
	Namespace         string
	CPUs              float64 // becomes Runtime.Limits.CPUQuota over its CPUPeriod
	DestroyOnShutdown bool
	ShutdownTimeout   time.Duration
	LogFormat         string
	AllowNoSeccomp    bool
	RequireDiskFit    bool
	WorkspaceBackend  string // --workspace-backend: auto, image, btrfs or project
	WorkspacePool     int64  // --workspace-pool: size of the btrfs pool file to make (0: none)
	PoolReserve       int64  // --workspace-pool-reserve: free room creates keep in the pool
	Registry          string
	NpmCacheBytes     int64 // budget of the npm tarball cache
	InstallBytes      int64 // most bytes one install may read from the registry
	APITokenFile      string
	PlaygroundPage    bool
	Spawner           string // --spawner: auto, off or a path; becomes Runtime.SpawnerPath

	Runtime runtime.Config
	API     api.Options

	Cluster clusterConfig // cluster.go
}

func defaultConfig() config {
	c := config{
		Listen:            "127.0.0.1:8080",
		StateDir:          "/var/lib/servcraftd",
		ContainerdAddress: "/run/containerd/containerd.sock",
		Namespace:         "servcraft",
		ShutdownTimeout:   20 * time.Second,
		LogFormat:         "text",
		WorkspaceBackend:  "auto",
		PoolReserve:       256 << 20,
		Runtime:           runtime.DefaultConfig(),
		API:               api.DefaultOptions(),
		PlaygroundPage:    true,
		Spawner:           "auto",
		Cluster:           defaultClusterConfig(),
		NpmCacheBytes:     npmproxy.DefaultCacheBytes,
		InstallBytes:      npmproxy.DefaultInstallBytes,
	}
	c.CPUs = float64(c.Runtime.Limits.CPUQuota) / float64(c.Runtime.Limits.CPUPeriod)
	return c
}

// register binds every setting to a flag of fs.
func (c *config) register(fs *flag.FlagSet) {
	rt, lim, o := &c.Runtime, &c.Runtime.Limits, &c.API
	fs.StringVar(&c.Listen, "listen", c.Listen, "address of the HTTP API")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "folder for the session database, workspaces and FIFOs")
	fs.StringVar(&c.ContainerdAddress, "containerd-address", c.ContainerdAddress, "containerd's socket")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "containerd namespace of every session")
	fs.StringVar(&rt.Image.Ref, "image", rt.Image.Ref, "session image")
	fs.BoolVar(&rt.Image.Pull, "pull", rt.Image.Pull, "pull the session image when it is missing")
	fs.StringVar(&rt.Image.FallbackRef, "fallback-image", rt.Image.FallbackRef, "offline Node 20 image used when the session image cannot be had (empty: none)")
	fs.StringVar(&rt.Image.FallbackArchive, "fallback-archive", rt.Image.FallbackArchive, "OCI archive imported when the fallback image is missing (see scripts/build-image.sh)")
	fs.StringVar(&rt.Image.Snapshotter, "snapshotter", rt.Image.Snapshotter, "containerd snapshotter for root filesystems")
	fs.StringVar(&rt.Runtime, "runtime", rt.Runtime, "containerd runtime (e.g. io.containerd.runsc.v1 for gVisor)")
	fs.StringVar(&rt.InitPath, "init", rt.InitPath, "static init bind-mounted as the PID 1 of each container made without a spawner")
	fs.StringVar(&c.Spawner, "spawner", c.Spawner, "static spawner (cmd/servcraft-spawner) each new container runs to start its runs without a runc exec: a path, "+
		"auto (servcraft-spawner beside the servcraftd binary, if there) or off")
	fs.StringVar(&rt.ToolchainDir, "toolchain-dir", rt.ToolchainDir, "host folder of the TypeScript toolchain (scripts/build-toolchain.sh); empty: no TypeScript")
	fs.StringVar(&rt.NodePath, "node-path", rt.NodePath, "node inside the image")
	fs.Var(sizeOf(&lim.MemoryBytes), "memory", "memory limit per session, a `size` (swap adds nothing)")
	fs.Float64Var(&c.CPUs, "cpus", c.CPUs, "CPUs per session (CFS quota)")
	fs.Int64Var(&lim.Pids, "pids", lim.Pids, "most processes per session")
	fs.Var(sizeOf(&lim.TmpBytes), "tmp-size", "`size` of each session's /tmp and /home/node tmpfs")
	fs.Uint64Var(&lim.NoFile, "nofile", lim.NoFile, "open files per process (RLIMIT_NOFILE)")
	fs.Var(sizeOf(&lim.FileBytes), "workspace-size", "quota of each session's /workspace volume, a `size`")
	fs.DurationVar(&rt.IdleTimeout, "idle-timeout", rt.IdleTimeout, "a session idle this long is destroyed")
	fs.DurationVar(&rt.ReapInterval, "reap-interval", rt.ReapInterval, "how often expired sessions are looked for")
	fs.BoolVar(&c.DestroyOnShutdown, "destroy-on-shutdown", c.DestroyOnShutdown, "destroy every session at SIGTERM/SIGINT (default: they keep running and are picked up at the next start)")
	fs.DurationVar(&rt.Image.PullTimeout, "pull-timeout", rt.Image.PullTimeout, "how long pulling the session image may take")
	fs.DurationVar(&rt.ExtendBy, "extend-by", rt.ExtendBy, "how far PATCH /container moves the deadline (once per session)")
	fs.DurationVar(&rt.ExecTimeout, "exec-timeout", rt.ExecTimeout, "wall time of a run when the request names none")
	fs.DurationVar(&rt.MaxExecTimeout, "max-exec-timeout", rt.MaxExecTimeout, "most wall time a request may ask for")
	fs.Var(sizeOf(&rt.OutputLimit), "output-limit", "`size` kept of a run's stdout and of its stderr; past it the run is killed")
	fs.Var(sizeOf(&o.MaxBodyBytes), "max-body", "largest request body, a `size`")
	fs.Var(sizeOf(&o.MaxCommandBytes), "max-command", "longest shell command, a `size`")
	fs.Var(sizeOf(&o.StdinBufferBytes), "stdin-buffer", "input sent to a run's open stdin (POST /run/stdin) that its program has not read yet, at most, a `size`; more answers 429")
	fs.IntVar(&o.PathLimits.MaxDepth, "max-path-depth", o.PathLimits.MaxDepth, "deepest file path in a workspace")
	fs.IntVar(&o.ExposedPort, "exposed-port", o.ExposedPort, "in-container port reported as exposedPort")
	fs.DurationVar(&rt.TouchInterval, "touch-interval", rt.TouchInterval, "how often session activity is written to the store")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight requests may finish at shutdown")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.BoolVar(&c.AllowNoSeccomp, "allow-no-seccomp", c.AllowNoSeccomp, "start even when the host cannot filter system calls (unsafe; for hosts that only run trusted code)")
	fs.StringVar(&c.Registry, "registry", c.Registry, "upstream npm registry of the install proxy (empty: what the host's \"npm config get registry\" answers)")
	fs.StringVar(&rt.NpmPath, "npm-path", rt.NpmPath, "npm inside the image")
	fs.Var(sizeOf(&c.NpmCacheBytes), "npm-cache-size", "budget of the shared npm tarball cache, a `size` on disk; the least recently used tarballs are deleted past it")
	fs.Var(sizeOf(&c.InstallBytes), "install-upstream-bytes", "most an install may read from the registry, a `size`; past it the proxy refuses it (npm prints why) and the install answers 429")
	fs.Var(sizeOf(&rt.DepCacheBytes), "dep-cache-size", "budget of the dependency layers (a starter's or a repeated install's node_modules), a `size` on disk; the least recently used go first")
	fs.BoolVar(&rt.StarterDeps, "starter-deps", rt.StarterDeps, "build the starter projects' dependency layer at start (through the registry, in the background), so new sessions come with node_modules")
	fs.Var(sizeOf(&rt.DepLayerMaxBytes), "dep-layer-max-size", "largest dependency layer kept, a `size` on disk; a larger install is not cached")
	fs.DurationVar(&rt.InstallTimeout, "install-timeout", rt.InstallTimeout, "longest npm install; past it the install is stopped (504)")
	fs.IntVar(&o.MaxPackages, "max-packages", o.MaxPackages, "most packages in one install request")
	fs.IntVar(&o.SyncLimits.MaxFiles, "max-sync-files", o.SyncLimits.MaxFiles, "most files and folders in one sync")
	fs.Var(sizeOf(&o.SyncLimits.MaxFileBytes), "max-file-size", "largest file in one sync, a `size`")
	fs.IntVar(&o.ListLimits.MaxDepth, "list-depth", o.ListLimits.MaxDepth, "deepest level /files lists")
	fs.IntVar(&o.ListLimits.MaxEntries, "list-entries", o.ListLimits.MaxEntries, "most entries /files returns")
	fs.Var(sizeOf(&o.ListLimits.MaxFileBytes), "list-file-bytes", "largest file whose content /files returns, a `size`")
	fs.IntVar(&rt.MaxBackground, "max-processes", rt.MaxBackground, "running background processes per session")
	fs.IntVar(&rt.MaxSessions, "max-sessions", rt.MaxSessions, "sessions at once, warm containers included; a create past it answers 503")
	fs.IntVar(&rt.SessionsPerShim, "sessions-per-shim", rt.SessionsPerShim, "sessions that share one containerd shim (runc v2 shim groups; 1: a shim per session): "+
		"a shim costs about 2.5 MiB, and one that dies takes its group's tasks with it")
	fs.Var(sizeOf(&rt.DiskReserve), "disk-reserve", "free `size` the state filesystem keeps: a create that would cut into it answers 507 host_disk_full")
	fs.StringVar(&c.WorkspaceBackend, "workspace-backend", c.WorkspaceBackend, "how workspaces are made: auto (btrfs when the state folder is on btrfs or a pool exists; project when its ext4 or XFS enforces project quotas; btrfs when a pool is set; image otherwise), "+
		"image (an ext4 image per session, allocated in full), btrfs (a subvolume per session with a qgroup limit; takes what the session writes) "+
		"or project (a folder per session with a project quota, on ext4 or XFS mounted with prjquota; takes what the session writes)")
	fs.Var(sizeOf(&c.WorkspacePool), "workspace-pool", "`size` of a btrfs pool file (state-dir/workspace-pool.btrfs) allocated in full once and mounted for the workspaces when the state folder is not on btrfs (0: none); an existing pool is used whatever its size")
	fs.Var(sizeOf(&c.PoolReserve), "workspace-pool-reserve", "free `size` the btrfs workspace pool keeps: a create that would cut into it answers 507 host_disk_full")
	fs.BoolVar(&c.RequireDiskFit, "require-disk-fit", c.RequireDiskFit, "refuse to start when max-sessions × workspace-size, the caches' budgets and disk-reserve do not fit the state filesystem (default: a warning)")
	fs.IntVar(&rt.PoolSize, "pool-size", rt.PoolSize, "warm containers kept ready for new sessions (0: none)")
	fs.IntVar(&rt.PoolParallel, "pool-parallel", rt.PoolParallel, "warm containers built at once while the pool refills")
	fs.BoolVar(&rt.Runners, "runners", rt.Runners, "keep pre-started processes per active session (node for execute, sh for shell), so runs skip process start")
	fs.DurationVar(&rt.RunnerIdle, "runner-idle", rt.RunnerIdle, "a session idle this long gives its pre-started processes back")
	fs.IntVar(&rt.RunnerDepth, "runner-depth", rt.RunnerDepth, "pre-started processes a session keeps waiting for JavaScript and for shell commands, so that runs sent back to back find one ready (TypeScript keeps one)")
	fs.Float64Var(&rt.RunnerBootCPUs, "runner-boot-cpus", rt.RunnerBootCPUs, "CPU quota of each session's runner-boot cgroup, nested in (and so never above) the session's own, where pre-started Node processes boot at the least weight (cgroup v1; 0: they boot in the session's CPU cgroup itself)")
	fs.Var(sizeOf(&rt.BackgroundLogBytes), "process-log-bytes", "output kept per background process (a ring buffer), a `size`")
	fs.IntVar(&rt.KeepEndedBackground, "keep-ended-processes", rt.KeepEndedBackground, "ended background processes kept per session, with their logs; older ones are dropped")
	fs.IntVar(&o.MinPreviewPort, "min-preview-port", o.MinPreviewPort, "lowest in-session port a preview may pick with ?port=")
	fs.DurationVar(&o.PreviewTimeout, "preview-timeout", o.PreviewTimeout, "how long a previewed server may take to send headers")
	fs.DurationVar(&o.PreviewIdleTimeout, "preview-idle-timeout", o.PreviewIdleTimeout, "a preview exchange (page, stream, WebSocket) on which no byte moves either way this long is closed")
	fs.Var(sizeOf(&o.MaxPreviewBytes), "max-preview-bytes", "largest preview response body, a `size`")
	fs.BoolVar(&c.PlaygroundPage, "playground-page", c.PlaygroundPage, "serve the playground page (web/) at / (false: the API only)")

	fs.StringVar(&o.APIToken, "api-token", o.APIToken, "bearer `token` that every /api call, /metrics and the previews need (empty: no authentication); visible in ps, prefer --api-token-file")
	fs.StringVar(&c.APITokenFile, "api-token-file", c.APITokenFile, "`file` holding the API token (surrounding white space is trimmed)")
	fs.Var((*stringList)(&o.CORSOrigins), "cors-origins", "comma-separated browser `origins` allowed to call /api and open the terminal, e.g. https://app.example.com (\"*\": any, only without a token)")
	fs.BoolVar(&o.PreviewPublic, "preview-public", o.PreviewPublic, "serve the previews (/p/..., /api/playground/preview/...) without the API token, for iframes")
	fs.Var((*stringList)(&o.AllowedHosts), "allowed-hosts", "comma-separated host `names` the daemon answers besides the listen address, localhost, 127.0.0.1, [::1] and the preview domain; others get 421 (DNS rebinding); \"*\": any")
	fs.StringVar(&o.PreviewDomain, "preview-domain", o.PreviewDomain, "serve each preview on its own origin {port}-{sessionId}.`domain` (needs wildcard DNS and TLS; docs/security.md); http://name:port for local tests; empty: path-form previews only")
	fs.DurationVar(&o.PreviewLinkTTL, "preview-link-ttl", o.PreviewLinkTTL, "how long a signed preview link in previewUrl may be opened (with an API token, without --preview-public)")
	fs.DurationVar(&o.PreviewCookieTTL, "preview-cookie-ttl", o.PreviewCookieTTL, "how long the cookie a preview link turns into lets the browser into that preview")
	fs.BoolVar(&o.NoBrowserDefenses, "insecure-no-browser-defenses", o.NoBrowserDefenses, "UNSAFE, for tests that show the attacks: no Host allow-list, no Origin or form Content-Type checks, no sandbox on path-form previews")
	fs.Var((*stringList)(&o.TrustedProxies), "trusted-proxies", "comma-separated IPs or CIDRs of reverse `proxies` whose X-Forwarded-For names the client (empty: the peer address is the client)")
	fs.Var((*rateValue)(&o.CreateRate), "create-rate", "session creates per client address, a `rate` RATE/UNIT:BURST (UNIT s, m or h; 0: no limit)")
	fs.Var((*rateValue)(&o.ClientExecRate), "client-exec-rate", "execute, shell and install requests per client address, a `rate`")
	fs.Var((*rateValue)(&o.ExecRate), "exec-rate", "execute and shell requests per session, a `rate`")
	fs.Var((*rateValue)(&o.InstallRate), "install-rate", "install requests per session, a `rate`")
	fs.Var((*rateValue)(&o.LookupRate), "lookup-rate", "session lookups (GET container, files) per client address, a `rate`")
	fs.IntVar(&o.MaxTerminals, "max-terminals", o.MaxTerminals, "terminals open at once per session; more answer 429 (0: no limit)")
	fs.IntVar(&o.MaxHeldPerClient, "max-held-per-client", o.MaxHeldPerClient, "previews in flight (pages, streams, WebSockets), log followers and terminals one client holds open at once; more answer 429 (0: no limit)")
	fs.IntVar(&o.MaxConcurrentListings, "max-concurrent-listings", o.MaxConcurrentListings, "file listings (GET files) in progress at once per client and per session; more answer 429 (0: no limit)")
	fs.IntVar(&o.MaxHeldPerSession, "max-held-per-session", o.MaxHeldPerSession, "the same connections held open into one session, from all clients; more answer 429 (0: no limit)")
	fs.Var((*rateValue)(&o.TerminalRate), "terminal-rate", "terminal opens per session, a `rate`")
	fs.IntVar(&o.MaxConcurrentExecs, "max-concurrent-execs", o.MaxConcurrentExecs, "execute, shell and install requests running at once per session; more answer 429 (0: no limit)")
	c.Cluster.register(fs)
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "JSON `file` of settings whose keys are flag names, e.g. {\"idle-timeout\": \"30m\"} (also SERVCRAFT_CONFIG)")
}

// envName is the environment variable of a flag: --idle-timeout is SERVCRAFT_IDLE_TIMEOUT.
func envName(flagName string) string {
	return "SERVCRAFT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// usageHeader starts `servcraftd --help`.
const usageHeader = `servcraftd: one Node.js 20 sandbox per playground session, on containerd, behind an HTTP API.

Usage:
  servcraftd [flags]               serve the API
  servcraftd sessions ls [flags]   list the stored sessions (works while the daemon runs)
  servcraftd gc --yes [flags]      remove every session container, snapshot and workspace and the session database
  servcraftd store rebuild [flags] rebuild a damaged session database from containerd and the workspaces
  servcraftd drain [--wait]        stop taking new sessions, keep serving the ones here (--undo: take them again)

Every flag is also a key of the --config file (JSON, keys are flag names) and an environment
variable SERVCRAFT_<NAME> (--idle-timeout is SERVCRAFT_IDLE_TIMEOUT). Flags win over the
environment, the environment over the file, the file over the defaults. Sizes take B, KiB, MiB,
GiB (KB, MB, GB are powers of 1000); durations are like 90s, 30m, 1h; rates are RATE/UNIT:BURST,
e.g. 30/m:10 for 30 a minute in bursts of up to 10.

Flags:
`

// loadConfig applies defaults, then the config file, then SERVCRAFT_*
// variables, then flags, reads the token file, and validates the result.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("servcraftd", flag.ContinueOnError)
	cfg.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	if err := parseLayered(fs, args, getenv); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := cfg.readTokenFile(); err != nil {
		return cfg, err
	}
	if err := cfg.resolveSpawner(); err != nil {
		return cfg, err
	}
	if err := cfg.absPaths(); err != nil {
		return cfg, err
	}
	if err := cfg.Cluster.load(); err != nil {
		return cfg, err
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	cfg.derive()
	for i, o := range cfg.API.CORSOrigins { // as browsers send them: https://app.example.com
		if u, err := url.Parse(o); err == nil && o != "*" {
			cfg.API.CORSOrigins[i] = strings.ToLower(u.Scheme + "://" + u.Host)
		}
	}
	return cfg, nil
}

// settingNames are the daemon's settings: its flags but --config.
func settingNames() map[string]bool {
	fs := defaultFlags()
	names := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { names[f.Name] = f.Name != "config" })
	return names
}

// parseLayered sets fs's flags from the config file (--config, else
// SERVCRAFT_CONFIG), then from SERVCRAFT_* variables, then from args. The
// file must name only daemon settings; those fs does not have (a
// subcommand's smaller set) are skipped.
func parseLayered(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	settings := settingNames()
	path, err := configFlag(fs, args)
	if err != nil {
		return err
	}
	if path == "" {
		if path = getenv(envName("config")); path != "" {
			if err := fs.Set("config", path); err != nil {
				return err
			}
		}
	}
	if path != "" {
		if err := applyConfigFile(fs, path, settings); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if !settings[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return fs.Parse(args)
}

// anyValue stands in for a flag while args are scanned for --config.
type anyValue struct{ isBool bool }

func (anyValue) String() string     { return "" }
func (anyValue) Set(string) error   { return nil }
func (a anyValue) IsBoolFlag() bool { return a.isBool }

// configFlag finds --config in args, parsing them with fs's flag names the
// way fs will. Errors in args are fs's own (and -h prints fs's usage).
func configFlag(fs *flag.FlagSet, args []string) (string, error) {
	scan := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	scan.SetOutput(io.Discard)
	var path string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			scan.StringVar(&path, f.Name, "", "")
			return
		}
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		scan.Var(anyValue{isBool: ok && b.IsBoolFlag()}, f.Name, "")
	})
	if err := scan.Parse(args); err != nil {
		if perr := fs.Parse(args); perr != nil {
			return "", perr
		}
		return "", err
	}
	return path, nil
}

// applyConfigFile sets fs's flags from a JSON object whose keys are flag
// names and whose values are strings, numbers, booleans or lists of strings
// (joined with commas). Unknown keys are errors, all named at once.
func applyConfigFile(fs *flag.FlagSet, path string, settings map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("config %s: want a JSON object of settings: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("config %s: trailing data after the JSON object", path)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unknown []string
	for _, k := range keys {
		if !settings[k] {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("config %s: unknown key %s (keys are flag names without dashes in front; see servcraftd --help)",
			path, strings.Join(unknown, ", "))
	}
	for _, k := range keys {
		if fs.Lookup(k) == nil {
			continue
		}
		v, err := configValue(m[k])
		if err == nil {
			err = fs.Set(k, v)
		}
		if err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// configValue is a config file value as flag text.
func configValue(raw json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", errors.New("a list must hold strings only")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("want a string, number, boolean or list of strings")
}

// readTokenFile loads --api-token-file into APIToken.
func (c *config) readTokenFile() error {
	if c.APITokenFile == "" {
		return nil
	}
	if c.API.APIToken != "" {
		return errors.New("api-token and api-token-file: set only one of them")
	}
	data, err := os.ReadFile(c.APITokenFile)
	if err != nil {
		return fmt.Errorf("api-token-file: %w", err)
	}
	if c.API.APIToken = strings.TrimSpace(string(data)); c.API.APIToken == "" {
		return fmt.Errorf("api-token-file: %s is empty", c.APITokenFile)
	}
	return nil
}

func (c *config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	// The daemon's own settings; the runtime's and the API's check themselves.
	check(c.CPUs >= 0.01 && c.CPUs <= 64, "cpus: %v is not within 0.01 to 64", c.CPUs)
	check(c.ShutdownTimeout >= 0, "shutdown-timeout: %v is negative", c.ShutdownTimeout)
	check(c.LogFormat == "text" || c.LogFormat == "json", "log-format: %q is not text or json", c.LogFormat)
	check(c.StateDir != "", "state-dir: empty")
	check(c.InstallBytes >= 1<<20, "install-upstream-bytes: %s is below 1MiB", formatBytes(c.InstallBytes))
	check(c.NpmCacheBytes >= npmproxy.DefaultMaxTarballBytes, "npm-cache-size: %s is below the largest tarball, %s", formatBytes(c.NpmCacheBytes), formatBytes(npmproxy.DefaultMaxTarballBytes))
	check(c.Namespace != "", "namespace: empty")
	return errors.Join(append(errs, c.Runtime.Validate(), c.API.Validate())...)
}

// cpuQuota turns CPUs into a CFS quota over the runtime's period.
func (c *config) cpuQuota() (quota int64, period uint64) {
	period = c.Runtime.Limits.CPUPeriod
	return int64(c.CPUs * float64(period)), period
}

// derive sets the values that follow from other settings; this is the one
// place each is computed.
func (c *config) derive() {
	c.Runtime.Limits.CPUQuota, c.Runtime.Limits.CPUPeriod = c.cpuQuota()
	c.Runtime.StateDir = c.StateDir
	c.Runtime.DepCacheDir = statedir.Dir(c.StateDir).DepCache()
	// Settings both the runtime and the API need: the runtime's flag sets them.
	c.API.IdleTimeout = c.Runtime.IdleTimeout
	c.API.MaxExecTimeout = c.Runtime.MaxExecTimeout
	c.API.MaxInstallTimeout = c.Runtime.InstallTimeout
	c.API.NodePath = c.Runtime.NodePath
	c.API.ListenAddr = c.Listen
	// A sync is one request body; every path obeys max-path-depth.
	c.API.SyncLimits.MaxTotalBytes = c.API.MaxBodyBytes
	c.API.SyncLimits.Path = c.API.PathLimits
	c.API.ListLimits.Path = c.API.PathLimits
}

// spawnerName is the spawner's file name beside servcraftd (make build, deploy/install.sh).
const spawnerName = "servcraft-spawner"

// resolveSpawner sets Runtime.SpawnerPath from --spawner: off is none, auto
// is spawnerName beside this executable when it is there (none otherwise),
// anything else a path that must exist.
func (c *config) resolveSpawner() error {
	switch c.Spawner {
	case "off", "":
		c.Runtime.SpawnerPath = ""
	case "auto":
		c.Runtime.SpawnerPath = ""
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), spawnerName); fileExists(p) {
				c.Runtime.SpawnerPath = p
			}
		}
	default:
		if !fileExists(c.Spawner) {
			return fmt.Errorf("spawner: %s: no such file", c.Spawner)
		}
		c.Runtime.SpawnerPath = c.Spawner
	}
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// absPaths makes the host paths among the settings absolute, resolved
// against the working directory: they go into OCI specs that runc resolves
// elsewhere, and containerd's client turns a relative socket path into a
// URL whose first folder gRPC reads as a host name ("invalid (non-empty)
// authority").
func (c *config) absPaths() error {
	for _, p := range []*string{&c.StateDir, &c.ContainerdAddress, &c.Runtime.ToolchainDir, &c.Runtime.InitPath, &c.Runtime.SpawnerPath, &c.Runtime.Image.FallbackArchive} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("path %q: %w", *p, err)
		}
		*p = abs
	}
	return nil
}

// defaultFlags is every flag of the daemon at its default, on a flag set of
// its own (the docs, the env example and the checks read it).
func defaultFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c := defaultConfig()
	c.register(fs)
	return fs
}

// settingGroups orders docs/configuration.md and deploy/servcraftd.env.example;
// every flag is in exactly one group (a test checks).
var settingGroups = []struct {
	title string
	names []string
}{
	{"Config file", []string{"config"}},
	{"API and access", []string{"listen", "playground-page", "api-token", "api-token-file", "cors-origins", "allowed-hosts", "trusted-proxies",
		"max-body", "max-command", "stdin-buffer", "log-format"}},
	{"Previews and origins (docs/security.md)", []string{"preview-domain", "preview-public", "preview-link-ttl", "preview-cookie-ttl",
		"insecure-no-browser-defenses"}},
	{"Request limits", []string{"max-concurrent-execs", "create-rate", "client-exec-rate", "exec-rate", "install-rate",
		"lookup-rate", "max-terminals", "terminal-rate", "max-held-per-client", "max-held-per-session", "max-concurrent-listings"}},
	{"Sessions", []string{"idle-timeout", "extend-by", "reap-interval", "max-sessions", "pool-size", "pool-parallel", "runners", "runner-idle", "runner-depth",
		"runner-boot-cpus", "destroy-on-shutdown", "shutdown-timeout", "touch-interval"}},
	{"Limits per session", []string{"memory", "cpus", "pids", "workspace-size", "tmp-size", "nofile", "exec-timeout",
		"max-exec-timeout", "output-limit"}},
	{"Files, background processes, previews", []string{"max-path-depth", "max-sync-files", "max-file-size", "list-depth",
		"list-entries", "list-file-bytes", "max-processes", "process-log-bytes", "keep-ended-processes", "exposed-port", "min-preview-port",
		"preview-timeout", "preview-idle-timeout", "max-preview-bytes"}},
	{"npm install", []string{"registry", "install-timeout", "max-packages", "npm-path", "install-upstream-bytes",
		"npm-cache-size", "dep-cache-size", "dep-layer-max-size", "starter-deps"}},
	{"Image and runtime", []string{"image", "pull", "pull-timeout", "fallback-image", "fallback-archive", "runtime",
		"allow-no-seccomp", "snapshotter", "namespace", "init", "spawner", "node-path", "toolchain-dir", "sessions-per-shim"}},
	{"Cluster (docs/cluster.md)", []string{"cluster-etcd", "cluster-secret-file", "node-id", "advertise-addr",
		"cluster-prefix", "cluster-lease-ttl", "cluster-sync-interval",
		"etcd-ca-file", "etcd-cert-file", "etcd-key-file", "etcd-user", "etcd-password-file"}},
	{"Paths", []string{"state-dir", "containerd-address"}},
	{"State disk", []string{"disk-reserve", "require-disk-fit", "workspace-backend", "workspace-pool", "workspace-pool-reserve"}},
}

// configDocHeader starts docs/configuration.md.
const configDocHeader = `# Configuration

<!-- Generated from the daemon's flags by ` + "`make config-doc`" + ` (servcraftd config-doc); do not edit. -->

Every setting of servcraftd is a flag, an environment variable and a key of the config file:
` + "`--idle-timeout 45m`, `SERVCRAFT_IDLE_TIMEOUT=45m` and `{\"idle-timeout\": \"45m\"}`" + ` are the same.
Flags win over the environment, the environment over the config file (` + "`--config` or `SERVCRAFT_CONFIG`" + `),
the file over the defaults below. The file is a JSON object whose keys are flag names; an unknown
key is an error, and so is any invalid value (the daemon exits with status 2 and names it).

Sizes take B, KiB, MiB, GiB (KB, MB, GB are powers of 1000) or plain bytes; durations are Go
durations (90s, 30m, 1h); rates are RATE/UNIT:BURST with UNIT s, m, h or a duration, e.g. 30/m:10
for 30 a minute in bursts of up to 10; 0 is no limit. Host paths (state-dir, containerd-address,
init, spawner, toolchain-dir, fallback-archive) may be relative to the working directory.

Some values follow from others: the CPU quota is cpus × the CFS period; a sync may carry up to
max-body in all; max-path-depth bounds the paths of syncs and listings; the session database,
workspaces, FIFOs, dependency layers and npm cache live under state-dir. ` + "`servcraftd sessions ls` and\n`servcraftd gc`" + ` read state-dir, containerd-address, namespace and snapshotter the same way.

On a systemd host the settings go in /etc/servcraftd/servcraftd.env
([deploy/servcraftd.env.example](../deploy/servcraftd.env.example)); see [operations](operations.md).
`

// writeConfigDoc writes docs/configuration.md from the flag set: every
// setting with its variable, default and meaning, grouped as settingGroups.
func writeConfigDoc(w io.Writer) error {
	fs := defaultFlags()
	var b strings.Builder
	b.WriteString(configDocHeader)
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, g := range settingGroups {
		fmt.Fprintf(&b, "\n## %s\n\n| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			if f == nil {
				return fmt.Errorf("config doc: group %q names %q, which is no flag", g.title, name)
			}
			kind, usage := flag.UnquoteUsage(f)
			def := "*(empty)*"
			if f.DefValue != "" {
				def = "`" + f.DefValue + "`"
			}
			flagCell := "`--" + name + "`"
			if kind != "" {
				flagCell = "`--" + name + " " + kind + "`"
			}
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", flagCell, envName(name), def, cell(usage))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
