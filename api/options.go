package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// Options are the API's limits and fixed answers.
type Options struct {
	MaxBodyBytes      int64         // largest request body
	MaxCommandBytes   int           // longest shell command
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
