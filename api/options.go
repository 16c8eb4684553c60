package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// Options are the API's limits and fixed answers.
type Options struct {
	MaxBodyBytes      int64         // largest request body
	MaxCommandBytes   int           // longest shell command
	StdinBufferBytes  int           // input sent to a run's open stdin that its program has not read yet, at most
	MaxExecTimeout    time.Duration // most timeoutMs may ask for (larger values are capped)
	IdleTimeout       time.Duration // reported as "timeout"
	ExposedPort       int           // in-container port the preview proxies to
	NodePath          string        // node inside the image
	TypeScript        bool          // sessions have the tsx toolchain mounted
	PathLimits        workspace.PathLimits
	SyncLimits        SyncLimits           // file tree sizes in /sync
	ListLimits        workspace.ListLimits // what /files reads back
	MaxPackages       int                  // packages in one install
	MaxInstallTimeout time.Duration        // most timeoutMs an install may ask for
	MinPreviewPort    int                  // lowest in-session port a preview may ask for
	PreviewTimeout    time.Duration        // how long a previewed server may take to answer headers
	MaxPreviewBytes   int64                // largest preview response body
	MaxJSONDepth      int                  // deepest nesting of arrays and objects in a request body (raised to fit SyncLimits' trees)

	// Access. With APIToken set, /api/*, /metrics and the previews need
	// "Authorization: Bearer <APIToken>" (the previews not if PreviewPublic);
	// /healthz and /readyz never do.
	APIToken       string
	PreviewPublic  bool
	CORSOrigins    []string // browser origins allowed on /api/* and the terminal, e.g. https://app.example.com; "*" any (only without APIToken)
	TrustedProxies []string // proxies whose X-Forwarded-For names the client (IPs or CIDRs); none by default

	// Origins (DESIGN §9, docs/security.md).
	ListenAddr        string        // the daemon's listen address: its host is an allowed Host
	AllowedHosts      []string      // more Host names the daemon answers (localhost, 127.0.0.1, ::1 always); "*" any
	PreviewDomain     string        // host-form previews at {port}-{sessionId}.<domain> (ParsePreviewDomain); "" path form only
	PreviewKey        []byte        // signs preview links (the daemon keeps it in its state folder)
	PreviewLinkTTL    time.Duration // how long a preview link in previewUrl may be opened
	PreviewCookieTTL  time.Duration // how long the cookie a link turns into lets the browser in
	NoBrowserDefenses bool          // test switch: no Host, Origin and form-type checks, no path-preview sandbox

	// Limits per client address and per session (a zero Rate is no limit).
	CreateRate            Rate // session creates per client
	ClientExecRate        Rate // execute, shell and install per client
	ExecRate              Rate // execute and shell per session
	InstallRate           Rate // install per session
	MaxConcurrentExecs    int  // execute, shell and install at once per session; 0 no limit
	LookupRate            Rate // session lookups (GET container, files) per client
	MaxTerminals          int  // terminals open at once per session; 0 no limit
	TerminalRate          Rate // terminal opens per session
	MaxHeldPerClient      int  // previews in flight, log followers and terminals one client holds at once; 0 no limit
	MaxHeldPerSession     int  // the same, per session from all clients; 0 no limit
	MaxConcurrentListings int  // file listings (GET files) in progress at once per client and per session; 0 no limit

	PreviewIdleTimeout time.Duration // a preview exchange (page, stream, WebSocket) on which nothing moves this long is closed

	Metrics MetricsSource // runtime counters for /metrics; nil: HTTP metrics only
	Disk    DiskSource    // the state filesystem's room, for /readyz and /metrics; nil: not reported

	Page http.Handler // the playground page at GET / and /assets/* (web.Handler()); nil: no page

	// Node and cluster (cluster.go, node.go).
	MaxSessions int                                            // reported by /status; 0 no limit
	OnDrain     func(ctx context.Context, draining bool) error // pauses the warm pool, updates the node record
	Cluster     ClusterOptions                                 // nil Placement: single host
}

// DefaultOptions are the API's limits when none are configured. The
// settings it shares with the runtime (timeouts, node) are the runtime's
// defaults.
func DefaultOptions() Options {
	rt := runtime.DefaultConfig()
	const maxBody = 10 << 20
	return Options{
		MaxBodyBytes:      maxBody,
		MaxCommandBytes:   64 << 10,
		StdinBufferBytes:  1 << 20,
		MaxExecTimeout:    rt.MaxExecTimeout,
		IdleTimeout:       rt.IdleTimeout,
		ExposedPort:       3000,
		NodePath:          rt.NodePath,
		PathLimits:        workspace.DefaultPathLimits,
		SyncLimits:        SyncLimits{MaxFiles: 2000, MaxFileBytes: 5 << 20, MaxTotalBytes: maxBody, Path: workspace.DefaultPathLimits},
		ListLimits:        workspace.DefaultListLimits,
		MaxPackages:       50,
		MaxInstallTimeout: rt.InstallTimeout,
		MinPreviewPort:    1,
		PreviewTimeout:    30 * time.Second,
		MaxPreviewBytes:   100 << 20,
		MaxJSONDepth:      64,

		CreateRate:            Rate{Events: 30, Per: time.Minute, Burst: 10},
		ClientExecRate:        Rate{Events: 30, Per: time.Second, Burst: 60},
		ExecRate:              Rate{Events: 10, Per: time.Second, Burst: 20},
		InstallRate:           Rate{Events: 6, Per: time.Minute, Burst: 3},
		MaxConcurrentExecs:    4,
		LookupRate:            Rate{Events: 20, Per: time.Second, Burst: 60},
		MaxTerminals:          4,
		TerminalRate:          Rate{Events: 10, Per: time.Minute, Burst: 8},
		MaxHeldPerClient:      256,
		MaxHeldPerSession:     256,
		MaxConcurrentListings: 4,
		PreviewIdleTimeout:    10 * time.Minute,

		PreviewLinkTTL:   10 * time.Minute,
		PreviewCookieTTL: 12 * time.Hour,
	}
}

// Rate is a token bucket: Events per Per on average, in bursts of up to
// Burst. A Rate with no Events (the zero Rate) is no limit.
type Rate struct {
	Events float64
	Per    time.Duration
	Burst  int
}

// Off reports whether r limits nothing.
func (r Rate) Off() bool { return r.Events <= 0 || r.Per <= 0 }

func (r Rate) limit() rate.Limit { return rate.Limit(r.Events / r.Per.Seconds()) }

func (r Rate) burst() int { return max(r.Burst, 1) }

// String is the rate as the flags write it: 30/m:10.
func (r Rate) String() string {
	if r.Off() {
		return "0"
	}
	unit := r.Per.String()
	switch r.Per {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return strconv.FormatFloat(r.Events, 'g', -1, 64) + "/" + unit + ":" + strconv.Itoa(r.burst())
}

// human is the rate in words, for error messages: "30 per minute (bursts of 10)".
func (r Rate) human() string {
	per := "per " + r.Per.String()
	switch r.Per {
	case time.Second:
		per = "per second"
	case time.Minute:
		per = "per minute"
	case time.Hour:
		per = "per hour"
	}
	return fmt.Sprintf("%s %s (bursts of %d)", strconv.FormatFloat(r.Events, 'g', -1, 64), per, r.burst())
}

// Validate checks every option against its range; the error names each
// option that is out of it (by its flag name) and why.
func (o Options) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.MaxBodyBytes >= 1<<10, "max-body: %s is below 1KiB", disk.Format(o.MaxBodyBytes))
	check(o.StdinBufferBytes >= 1<<10 && o.StdinBufferBytes <= 64<<20, "stdin-buffer: %s is not within 1KiB and 64MiB", disk.Format(int64(o.StdinBufferBytes)))
	check(o.MaxCommandBytes >= 1 && int64(o.MaxCommandBytes) <= o.MaxBodyBytes, "max-command: %s must be within 1 byte and max-body", disk.Format(int64(o.MaxCommandBytes)))
	check(o.PathLimits.MaxDepth >= 1 && o.PathLimits.MaxDepth <= 64, "max-path-depth: %d is not within 1 to 64", o.PathLimits.MaxDepth)
	check(o.ExposedPort >= 1 && o.ExposedPort <= 65535, "exposed-port: %d is not a port", o.ExposedPort)
	check(o.MaxPackages >= 1 && o.MaxPackages <= 1000, "max-packages: %d is not within 1 to 1000", o.MaxPackages)
	check(o.SyncLimits.MaxFiles >= 1, "max-sync-files: %d is below 1", o.SyncLimits.MaxFiles)
	check(o.SyncLimits.MaxFileBytes >= 1 && o.SyncLimits.MaxFileBytes <= o.MaxBodyBytes, "max-file-size: %s must be within 1 byte and max-body", disk.Format(o.SyncLimits.MaxFileBytes))
	check(o.ListLimits.MaxDepth >= 1 && o.ListLimits.MaxDepth <= 64, "list-depth: %d is not within 1 to 64", o.ListLimits.MaxDepth)
	check(o.ListLimits.MaxEntries >= 1, "list-entries: %d is below 1", o.ListLimits.MaxEntries)
	check(o.MinPreviewPort >= 1 && o.MinPreviewPort <= 65535, "min-preview-port: %d is not a port", o.MinPreviewPort)
	check(o.PreviewTimeout >= time.Second, "preview-timeout: %v is below 1s", o.PreviewTimeout)
	check(o.PreviewIdleTimeout >= time.Second && o.PreviewIdleTimeout <= 24*time.Hour, "preview-idle-timeout: %v is not within 1s to 24h", o.PreviewIdleTimeout)
	check(o.MaxPreviewBytes >= 1<<10, "max-preview-bytes: %s is below 1KiB", disk.Format(o.MaxPreviewBytes))
	check(o.ListLimits.MaxFileBytes >= 1, "list-file-bytes: %s is below 1 byte", disk.Format(o.ListLimits.MaxFileBytes))
	check(len(o.APIToken) >= 16 || o.APIToken == "", "api-token: %d characters; use at least 16 (e.g. openssl rand -hex 32)", len(o.APIToken))
	check(!strings.ContainsFunc(o.APIToken, func(r rune) bool { return r <= ' ' || r == 0x7f }), "api-token: holds white space or control characters")
	check(!slices.Contains(o.CORSOrigins, "*") || o.APIToken == "", "cors-origins: \"*\" is not allowed with an API token; list the origins")
	check(o.PreviewLinkTTL >= 10*time.Second, "preview-link-ttl: %v is below 10s", o.PreviewLinkTTL)
	check(o.PreviewCookieTTL >= time.Minute, "preview-cookie-ttl: %v is below 1m", o.PreviewCookieTTL)
	check(o.MaxTerminals >= 0 && o.MaxTerminals <= 1000, "max-terminals: %d is not within 0 to 1000", o.MaxTerminals)
	check(o.MaxHeldPerClient >= 0 && o.MaxHeldPerClient <= 100000, "max-held-per-client: %d is not within 0 to 100000", o.MaxHeldPerClient)
	check(o.MaxConcurrentListings >= 0 && o.MaxConcurrentListings <= 1000, "max-concurrent-listings: %d is not within 0 to 1000", o.MaxConcurrentListings)
	check(o.MaxHeldPerSession >= 0 && o.MaxHeldPerSession <= 100000, "max-held-per-session: %d is not within 0 to 100000", o.MaxHeldPerSession)
	check(o.MaxConcurrentExecs >= 0 && o.MaxConcurrentExecs <= 1000, "max-concurrent-execs: %d is not within 0 to 1000", o.MaxConcurrentExecs)
	for _, origin := range o.CORSOrigins {
		if origin != "*" {
			if err := validOrigin(origin); err != nil {
				errs = append(errs, fmt.Errorf("cors-origins: %w", err))
			}
		}
	}
	for _, p := range o.TrustedProxies {
		_, _, cidrErr := net.ParseCIDR(p)
		check(cidrErr == nil || net.ParseIP(p) != nil, "trusted-proxies: %q is not an IP or CIDR", p)
	}
	_, domainErr := ParsePreviewDomain(o.PreviewDomain)
	check(domainErr == nil, "preview-domain: %v", domainErr)
	return errors.Join(errs...)
}

// validOrigin reports whether o is an origin: scheme and host, nothing else.
func validOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an origin like https://app.example.com", o)
	}
	return nil
}
