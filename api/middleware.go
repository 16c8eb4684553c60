package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime/phases"
)

// errUnauthorized is the cause of every 401: ToHTTP maps it (errdefs'
// Unauthenticated class) to the code "unauthorized". WWW-Authenticate goes with it.
var errUnauthorized = fmt.Errorf("missing or wrong API token: send Authorization: Bearer <token>: %w", errdefs.ErrUnauthenticated)

// Context keys of the request middleware.
const (
	requestIDKey = "servcraft.requestId"
	sessionKey   = "sessionId"
)

// requestIDHeader carries a request's ID both ways.
const requestIDHeader = "X-Request-ID"

// serverTimingHeader carries a run's phases (see serverTiming).
const serverTimingHeader = "Server-Timing"

// setSession names the session a handler works on, for the request's log
// line, and applies the per-session limits of execute, shell and install
// (rate and runs at once). Call it right after the sessionId is validated.
// When it returns false the request was refused (429, Retry-After) and
// answered: the handler must return.
func setSession(c *gin.Context, id string) bool {
	c.Set(sessionKey, id)
	if l, ok := c.Get(limitsKey); ok {
		return l.(*limits).admit(c, id)
	}
	return true
}

// maxIDLen is the longest request ID and process ID.
const maxIDLen = 64

// requestID is the ID of the request: the client's X-Request-ID when it is
// [A-Za-z0-9._-]{1,64}, else one made up here.
func requestID(c *gin.Context) string { return c.GetString(requestIDKey) }

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for _, r := range []byte(id) {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe gives every request an ID (echoed in X-Request-ID), and when it
// ends writes its log line and its metrics. The line has method, route,
// status, duration, client address and the session when the request names
// one; never a body, code or file contents. Errors are logged with their
// cause by errorMiddleware, not here.
func observe(m *metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		id := c.GetHeader(requestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Set(requestIDKey, id)
		c.Header(requestIDHeader, id)
		rec := phases.New(start)
		c.Set(phasesKey, rec)
		c.Request = c.Request.WithContext(phases.With(c.Request.Context(), rec))
		defer func() { // deferred: a proxied stream cut short panics through here
			elapsed := time.Since(start)
			route, status := c.FullPath(), c.Writer.Status()
			method := methodLabel(c.Request.Method)
			m.observe(method, route, c.GetString(operationKey), status, elapsed)
			attrs := []any{"requestId", id, "method", method, "route", route, "status", status,
				"durationMs", float64(elapsed.Microseconds()) / 1000, "client", c.ClientIP()}
			if route == "" {
				attrs = append(attrs, "path", truncate(c.Request.URL.Path, 200))
			}
			if sid := requestSession(c); sid != "" {
				attrs = append(attrs, "sessionId", sid)
			}
			if timing := rec.LogValue(); timing != "" {
				attrs = append(attrs, "phases", timing)
			}
			slog.Info("request", attrs...)
		}()
		c.Next()
	}
}

// phasesKey holds the request's phases.Recorder.
const phasesKey = "servcraft.phases"

// markPhase ends the request's phase called name now (see phases.Mark).
func markPhase(c *gin.Context, name string) { phases.Mark(c.Request.Context(), name) }

// serverTiming ends the request's last phase, "answer" (the result made
// into its answer), and sets the Server-Timing header from its phases: a
// run's parse, write, lock, runner or start, run, finish and answer, and
// their total since the request arrived.
func serverTiming(c *gin.Context) {
	if rec, ok := c.Value(phasesKey).(*phases.Recorder); ok {
		rec.MarkAt("answer", time.Now())
		c.Header(serverTimingHeader, rec.Header())
	}
}

// requestSession is the session a request names: set by its handler, or in
// the query or the path. Invalid IDs are not logged.
func requestSession(c *gin.Context) string {
	for _, id := range []string{c.GetString(sessionKey), c.Param("sessionId"), c.Query("sessionId")} {
		if id != "" && validSessionID(id) == nil {
			return id
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// auth requires the API token, when there is one; it is attached to the
// routes that need it (the API, /metrics, the previews unless they are public;
// see routes.go). The token is compared in constant time (over its SHA-256,
// so its length does not show either).
func auth(token string) gin.HandlerFunc {
	if token == "" {
		return func(c *gin.Context) { c.Next() }
	}
	want := sha256.Sum256([]byte(token))
	return func(c *gin.Context) {
		if c.GetBool(hopKey) { // verified by acceptHop: the first node checked the token
			c.Next()
			return
		}
		got, ok := bearerToken(c.GetHeader("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			c.Header("WWW-Authenticate", `Bearer realm="servcraftd"`)
			fail(c, errUnauthorized)
			return
		}
		c.Next()
	}
}

// bearerToken takes the token out of an Authorization header.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// CORS answers for browsers on /api/* (not on the previews, whose answers
// are the session's own).
const (
	corsMethods = "GET, POST, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type, Accept, X-Request-ID"
	corsExpose  = "X-Request-ID, Retry-After"
	corsMaxAge  = "600"
)

// cors lets the listed browser origins (full origins: https://app.example.com)
// call /api/*: they get Access-Control-Allow-* headers, and preflight
// OPTIONS requests are answered 204 here. "*" allows every origin, but only
// when there is no API token. Other origins get no CORS headers, so browsers
// keep them out.
func cors(origins []string, token string) gin.HandlerFunc {
	any := slices.Contains(origins, "*") && token == ""
	allowed := map[string]bool{}
	for _, o := range origins {
		allowed[strings.TrimSuffix(o, "/")] = o != "*"
	}
	return func(c *gin.Context) {
		origin := c.GetHeader("Origin")
		ok := origin != "" && (any || allowed[origin])
		h := c.Writer.Header()
		if len(origins) > 0 {
			h.Add("Vary", "Origin")
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", corsExpose)
		}
		if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
			if ok {
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsHeaders)
				h.Set("Access-Control-Max-Age", corsMaxAge)
			}
			c.AbortWithStatus(http.StatusNoContent)
			return
		}
		c.Next()
	}
}

// wsOriginPatterns turns CORS origins into coder/websocket OriginPatterns:
// a pattern with "://" is matched against the request's scheme://host, so
// full origins work as they are once path.Match's special characters (the
// brackets of an IPv6 host) are escaped. "*" stays a wildcard.
func wsOriginPatterns(origins []string) []string {
	out := make([]string, 0, len(origins))
	for _, o := range origins {
		if o == "*" {
			out = append(out, o)
			continue
		}
		var b strings.Builder
		for _, r := range strings.TrimSuffix(o, "/") {
			if strings.ContainsRune(`*?[]\`, r) {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		out = append(out, b.String())
	}
	return out
}
