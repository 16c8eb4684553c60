package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// Sessions is what the handlers need of the runtime.
type Sessions interface {
	Create(ctx context.Context, sessionID, projectType string) (store.Session, bool, error)
	Get(ctx context.Context, sessionID string) (runtime.Info, error)
	Extend(ctx context.Context, sessionID string) (store.Session, error)
	Destroy(ctx context.Context, sessionID string) error
	Exec(ctx context.Context, sessionID string, req runtime.ExecRequest) (runtime.ExecResult, error)
	WriteFileUnflushed(ctx context.Context, sessionID, rel string, data []byte) (flush func() error, err error)
	Sync(ctx context.Context, sessionID string, entries []workspace.Entry, replace bool) (workspace.SyncResult, error)
	ListFiles(ctx context.Context, sessionID, sub string, lim workspace.ListLimits) ([]workspace.FileInfo, error)
	Install(ctx context.Context, sessionID string, req runtime.InstallRequest) (runtime.InstallResult, error)
	DialSession(ctx context.Context, sessionID string, port int) (net.Conn, error)
	PreviewSession(id string) (sessionID string, err error)
	PreviewInstance(id string) (instance string, here bool)
	StartBackground(ctx context.Context, sessionID, command string) (runtime.Process, error)
	Processes(ctx context.Context, sessionID string) ([]runtime.Process, error)
	Logs(ctx context.Context, sessionID, id string, follow bool) (runtime.ProcessLog, error)
	Kill(ctx context.Context, sessionID, id string) (runtime.Process, error)
	OpenTerminal(ctx context.Context, sessionID string, cols, rows uint32) (*runtime.Terminal, error)
	Touch(sessionID string)
	Ready(ctx context.Context) error
}

type handlers struct {
	s        Sessions
	opt      Options
	node     *nodeState
	cluster  *cluster
	held     *heldConns // previews, log followers and terminals held open
	listings *heldConns // file listings in progress
	stops    *runStops  // runs a client named, to stop them
}

// NewRouter returns the servcraftd HTTP handler.
func NewRouter(s Sessions, opt Options) http.Handler {
	domain, err := ParsePreviewDomain(opt.PreviewDomain)
	if err != nil {
		slog.Error("preview domain ignored: previews are in path form only", "err", err)
		opt.PreviewDomain, domain = "", PreviewDomain{}
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	if err := r.SetTrustedProxies(opt.TrustedProxies); err != nil {
		slog.Error("trusted proxies ignored: the client is the peer address", "err", err)
		_ = r.SetTrustedProxies(nil)
	}
	h := &handlers{s: s, opt: opt, stops: newRunStops(), node: &nodeState{onDrain: opt.OnDrain, maxSessions: opt.MaxSessions, token: opt.APIToken != ""}}
	h.cluster = newCluster(opt.Cluster, &h.node.draining, func(ctx context.Context, id string) bool {
		_, err := s.Get(ctx, id)
		return err == nil
	})
	m := newMetrics(opt.Metrics, opt.Disk)
	lim := newLimits(opt, m.rateLimited)
	h.held = newHeldConns(opt, m.rateLimited)
	h.listings = newListings(opt, m.rateLimited)
	global := []gin.HandlerFunc{refuseUnknownMethods, observe(m)}
	if !opt.NoBrowserDefenses {
		global = append(global, checkHost(newHostPolicy(opt)))
	}
	r.Use(append(global, gin.CustomRecovery(func(c *gin.Context, rec any) {
		if rec == http.ErrAbortHandler { // a proxied stream cut short: drop the connection
			panic(rec)
		}
		renderError(c, http.StatusInternalServerError, codeInternal, "internal error")
	}), errorMiddleware, h.limitBody)...)
	a := access{opt: opt, lim: lim, acceptHop: h.cluster.acceptHop, cluster: h.cluster.middleware, preview: h.previewAccess}
	a.register(r, h.routes(m.handler()))
	// Unmatched requests are treated as API calls: CORS (preflights are
	// answered there), the token, then 404 or 405.
	r.NoRoute(append(a.chain(classAPI), func(c *gin.Context) {
		fail(c, notFound("no route %s %s", c.Request.Method, c.Request.URL.Path))
	})...)
	r.NoMethod(append(a.chain(classAPI), func(c *gin.Context) {
		renderError(c, http.StatusMethodNotAllowed, codeMethodNotAllowed, "method not allowed")
	})...)
	return previewHosts(domain, r)
}

// limitBody caps every request body at MaxBodyBytes, and the nesting of its
// JSON at MaxJSONDepth, raised to what the deepest file tree /sync accepts
// needs (two levels per folder: an object and its children array).
func (h *handlers) limitBody(c *gin.Context) {
	if c.Request.ContentLength > h.opt.MaxBodyBytes {
		fail(c, errBodyTooLarge)
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, h.opt.MaxBodyBytes)
	c.Set(jsonDepthKey, max(h.opt.MaxJSONDepth, 2*h.opt.SyncLimits.Path.MaxDepth+4))
	c.Next()
}

// jsonDepthKey holds the request's JSON nesting limit.
const jsonDepthKey = "servcraft.jsonDepth"

// decode reads one JSON object into v; anything else is the client's mistake.
func decode(c *gin.Context, v any) error {
	data, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return err
		}
		return invalid("read request body: %v", err)
	}
	depth := c.GetInt(jsonDepthKey)
	if depth <= 0 {
		depth = DefaultOptions().MaxJSONDepth
	}
	if tooDeep(data, depth) {
		return invalid("JSON nested deeper than %d levels", depth)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var maxBytes *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &maxBytes):
			return err
		case errors.Is(err, io.EOF):
			return invalid("request body is empty: want a JSON object")
		case errors.As(err, &syntax):
			return invalid("malformed JSON at byte %d", syntax.Offset)
		case errors.As(err, &typ):
			return invalid("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
		}
		return invalid("malformed JSON: %v", err)
	}
	if dec.More() {
		return invalid("trailing data after the JSON object")
	}
	return nil
}

// tooDeep reports whether data nests arrays and objects deeper than limit,
// counting brackets outside strings; it runs before the decoder so that a
// hostile body costs one pass and no recursion. Malformed JSON is left to the
// decoder to report.
func tooDeep(data []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, b := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case '"':
			inString = true
		case '[', '{':
			if depth++; depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}
