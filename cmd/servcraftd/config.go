package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/servcraft/servcraftd/api"
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

// config is every setting of the daemon.
type config struct {
	ConfigFile        string // --config: where the file layer came from (not a setting)
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
	AllowNoSeccomp    bool
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
	MaxSessions       int
	PoolSize          int
	Runners           bool
	RunnerIdle        time.Duration
	ProcessLogBytes   byteSize
	MinPreviewPort    int
	PreviewTimeout    time.Duration
	MaxPreviewBytes   byteSize

	APIToken           string
	APITokenFile       string
	CORSOrigins        stringList
	PreviewPublic      bool
	TrustedProxies     stringList
	CreateRate         api.Rate
	ClientExecRate     api.Rate
	ExecRate           api.Rate
	InstallRate        api.Rate
	MaxConcurrentExecs int

	Cluster clusterConfig // cluster.go
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
		MaxSessions:       100,
		PoolSize:          2,
		Runners:           true,
		RunnerIdle:        5 * time.Minute,
		ProcessLogBytes:   256 << 10,
		MinPreviewPort:    1,
		PreviewTimeout:    30 * time.Second,
		MaxPreviewBytes:   100 << 20,

		CreateRate:         api.DefaultOptions.CreateRate,
		ClientExecRate:     api.DefaultOptions.ClientExecRate,
		ExecRate:           api.DefaultOptions.ExecRate,
		InstallRate:        api.DefaultOptions.InstallRate,
		MaxConcurrentExecs: api.DefaultOptions.MaxConcurrentExecs,
		Cluster:            defaultClusterConfig(),
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
	fs.Var(&c.Memory, "memory", "memory limit per session, a `size` (swap adds nothing)")
	fs.Float64Var(&c.CPUs, "cpus", c.CPUs, "CPUs per session (CFS quota)")
	fs.Int64Var(&c.Pids, "pids", c.Pids, "most processes per session")
	fs.Var(&c.TmpSize, "tmp-size", "`size` of each session's /tmp and /home/node tmpfs")
	fs.Uint64Var(&c.NoFile, "nofile", c.NoFile, "open files per process (RLIMIT_NOFILE)")
	fs.Var(&c.WorkspaceSize, "workspace-size", "quota of each session's /workspace volume, a `size`")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "a session idle this long is destroyed")
	fs.DurationVar(&c.ReapInterval, "reap-interval", c.ReapInterval, "how often expired sessions are looked for")
	fs.BoolVar(&c.DestroyOnShutdown, "destroy-on-shutdown", c.DestroyOnShutdown, "destroy every session at SIGTERM/SIGINT (default: they keep running and are picked up at the next start)")
	fs.DurationVar(&c.PullTimeout, "pull-timeout", c.PullTimeout, "how long pulling the session image may take")
	fs.DurationVar(&c.ExtendBy, "extend-by", c.ExtendBy, "how far PATCH /container moves the deadline (once per session)")
	fs.DurationVar(&c.ExecTimeout, "exec-timeout", c.ExecTimeout, "wall time of a run when the request names none")
	fs.DurationVar(&c.MaxExecTimeout, "max-exec-timeout", c.MaxExecTimeout, "most wall time a request may ask for")
	fs.Var(&c.OutputLimit, "output-limit", "`size` kept of a run's stdout and of its stderr; past it the run is killed")
	fs.Var(&c.MaxBody, "max-body", "largest request body, a `size`")
	fs.Var(&c.MaxCommand, "max-command", "longest shell command, a `size`")
	fs.IntVar(&c.MaxPathDepth, "max-path-depth", c.MaxPathDepth, "deepest file path in a workspace")
	fs.IntVar(&c.ExposedPort, "exposed-port", c.ExposedPort, "in-container port reported as exposedPort")
	fs.DurationVar(&c.TouchInterval, "touch-interval", c.TouchInterval, "how often session activity is written to the store")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight requests may finish at shutdown")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.BoolVar(&c.AllowNoSeccomp, "allow-no-seccomp", c.AllowNoSeccomp, "start even when the host cannot filter system calls (unsafe; for hosts that only run trusted code)")
	fs.StringVar(&c.Registry, "registry", c.Registry, "upstream npm registry of the install proxy (empty: what the host's \"npm config get registry\" answers)")
	fs.StringVar(&c.NpmPath, "npm-path", c.NpmPath, "npm inside the image")
	fs.DurationVar(&c.InstallTimeout, "install-timeout", c.InstallTimeout, "longest npm install; past it the install is stopped (504)")
	fs.IntVar(&c.MaxPackages, "max-packages", c.MaxPackages, "most packages in one install request")
	fs.IntVar(&c.MaxSyncFiles, "max-sync-files", c.MaxSyncFiles, "most files and folders in one sync")
	fs.Var(&c.MaxFileSize, "max-file-size", "largest file in one sync, a `size`")
	fs.IntVar(&c.ListDepth, "list-depth", c.ListDepth, "deepest level /files lists")
	fs.IntVar(&c.ListEntries, "list-entries", c.ListEntries, "most entries /files returns")
	fs.Var(&c.ListFileBytes, "list-file-bytes", "largest file whose content /files returns, a `size`")
	fs.IntVar(&c.MaxProcesses, "max-processes", c.MaxProcesses, "running background processes per session")
	fs.IntVar(&c.MaxSessions, "max-sessions", c.MaxSessions, "sessions at once, warm containers included; a create past it answers 503")
	fs.IntVar(&c.PoolSize, "pool-size", c.PoolSize, "warm containers kept ready for new sessions (0: none)")
	fs.BoolVar(&c.Runners, "runners", c.Runners, "keep a pre-started Node process per active session, so execute skips process start")
	fs.DurationVar(&c.RunnerIdle, "runner-idle", c.RunnerIdle, "a session idle this long gives its pre-started Node process back")
	fs.Var(&c.ProcessLogBytes, "process-log-bytes", "output kept per background process (a ring buffer), a `size`")
	fs.IntVar(&c.MinPreviewPort, "min-preview-port", c.MinPreviewPort, "lowest in-session port a preview may pick with ?port=")
	fs.DurationVar(&c.PreviewTimeout, "preview-timeout", c.PreviewTimeout, "how long a previewed server may take to send headers")
	fs.Var(&c.MaxPreviewBytes, "max-preview-bytes", "largest preview response body, a `size`")

	fs.StringVar(&c.APIToken, "api-token", c.APIToken, "bearer `token` that every /api call, /metrics and the previews need (empty: no authentication); visible in ps, prefer --api-token-file")
	fs.StringVar(&c.APITokenFile, "api-token-file", c.APITokenFile, "`file` holding the API token (surrounding white space is trimmed)")
	fs.Var(&c.CORSOrigins, "cors-origins", "comma-separated browser `origins` allowed to call /api and open the terminal, e.g. https://app.example.com (\"*\": any, only without a token)")
	fs.BoolVar(&c.PreviewPublic, "preview-public", c.PreviewPublic, "serve the previews (/p/..., /api/playground/preview/...) without the API token, for iframes")
	fs.Var(&c.TrustedProxies, "trusted-proxies", "comma-separated IPs or CIDRs of reverse `proxies` whose X-Forwarded-For names the client (empty: the peer address is the client)")
	fs.Var((*rateValue)(&c.CreateRate), "create-rate", "session creates per client address, a `rate` RATE/UNIT:BURST (UNIT s, m or h; 0: no limit)")
	fs.Var((*rateValue)(&c.ClientExecRate), "client-exec-rate", "execute, shell and install requests per client address, a `rate`")
	fs.Var((*rateValue)(&c.ExecRate), "exec-rate", "execute and shell requests per session, a `rate`")
	fs.Var((*rateValue)(&c.InstallRate), "install-rate", "install requests per session, a `rate`")
	fs.IntVar(&c.MaxConcurrentExecs, "max-concurrent-execs", c.MaxConcurrentExecs, "execute, shell and install requests running at once per session; more answer 429 (0: no limit)")
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
	if err := cfg.Cluster.load(); err != nil {
		return cfg, err
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	for i, o := range cfg.CORSOrigins { // as browsers send them: https://app.example.com
		if u, err := url.Parse(o); err == nil && o != "*" {
			cfg.CORSOrigins[i] = strings.ToLower(u.Scheme + "://" + u.Host)
		}
	}
	return cfg, nil
}

// settingNames are the daemon's settings: its flags but --config.
func settingNames() map[string]bool {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c := defaultConfig()
	c.register(fs)
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
	if c.APIToken != "" {
		return errors.New("api-token and api-token-file: set only one of them")
	}
	data, err := os.ReadFile(c.APITokenFile)
	if err != nil {
		return fmt.Errorf("api-token-file: %w", err)
	}
	if c.APIToken = strings.TrimSpace(string(data)); c.APIToken == "" {
		return fmt.Errorf("api-token-file: %s is empty", c.APITokenFile)
	}
	return nil
}

// validOrigin checks a browser origin: scheme://host[:port] and nothing more.
func validOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an origin like https://app.example.com", o)
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
	check(c.MaxSessions >= 1, "max-sessions: %d is below 1", c.MaxSessions)
	check(c.PoolSize >= 0 && c.PoolSize < c.MaxSessions, "pool-size: %d is not within 0 and max-sessions-1", c.PoolSize)
	check(c.RunnerIdle >= time.Second, "runner-idle: %v is below 1s", c.RunnerIdle)
	check(c.MaxProcesses >= 1 && c.MaxProcesses <= 256, "max-processes: %d is not within 1 to 256", c.MaxProcesses)
	check(c.ProcessLogBytes >= 1<<10, "process-log-bytes: %s is below 1KiB", c.ProcessLogBytes.String())
	check(c.MinPreviewPort >= 1 && c.MinPreviewPort <= 65535, "min-preview-port: %d is not a port", c.MinPreviewPort)
	check(c.PreviewTimeout >= time.Second, "preview-timeout: %v is below 1s", c.PreviewTimeout)
	check(c.MaxPreviewBytes >= 1<<10, "max-preview-bytes: %s is below 1KiB", c.MaxPreviewBytes.String())
	check(c.ListFileBytes >= 1, "list-file-bytes: %s is below 1 byte", c.ListFileBytes.String())
	check(c.Namespace != "", "namespace: empty")
	check(len(c.APIToken) >= 16 || c.APIToken == "", "api-token: %d characters; use at least 16 (e.g. openssl rand -hex 32)", len(c.APIToken))
	check(!strings.ContainsFunc(c.APIToken, func(r rune) bool { return r <= ' ' || r == 0x7f }), "api-token: holds white space or control characters")
	for _, o := range c.CORSOrigins {
		if o != "*" {
			if err := validOrigin(o); err != nil {
				errs = append(errs, fmt.Errorf("cors-origins: %w", err))
			}
		}
	}
	check(!slices.Contains(c.CORSOrigins, "*") || c.APIToken == "", "cors-origins: \"*\" is not allowed with an API token; list the origins")
	for _, p := range c.TrustedProxies {
		_, _, cidrErr := net.ParseCIDR(p)
		check(cidrErr == nil || net.ParseIP(p) != nil, "trusted-proxies: %q is not an IP or CIDR", p)
	}
	check(c.MaxConcurrentExecs >= 0 && c.MaxConcurrentExecs <= 1000, "max-concurrent-execs: %d is not within 0 to 1000", c.MaxConcurrentExecs)
	return errors.Join(errs...)
}

// cpuQuota turns CPUs into a CFS quota over a 100 ms period.
func (c *config) cpuQuota() (quota int64, period uint64) {
	period = 100000
	return int64(c.CPUs * float64(period)), period
}
