package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

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
	WriteFile(ctx context.Context, sessionID, rel string, data []byte) error
	Sync(ctx context.Context, sessionID string, entries []workspace.Entry, replace bool) (workspace.SyncResult, error)
	ListFiles(ctx context.Context, sessionID, sub string, lim workspace.ListLimits) ([]workspace.FileInfo, error)
	Install(ctx context.Context, sessionID string, req runtime.InstallRequest) (runtime.InstallResult, error)
	DialSession(ctx context.Context, sessionID string, port int) (net.Conn, error)
	StartBackground(ctx context.Context, sessionID, command string) (runtime.Process, error)
	Processes(ctx context.Context, sessionID string) ([]runtime.Process, error)
	Logs(ctx context.Context, sessionID, id string, follow bool) (runtime.ProcessLog, error)
	Kill(ctx context.Context, sessionID, id string) (runtime.Process, error)
	OpenTerminal(ctx context.Context, sessionID string, cols, rows uint32) (*runtime.Terminal, error)
	Touch(sessionID string)
	Ready(ctx context.Context) error
}

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
	CORSOrigins       []string             // browser origins allowed besides the API's own (host patterns)
}

// DefaultOptions are the limits used when none are configured.
var DefaultOptions = Options{
	MaxBodyBytes:      10 << 20,
	MaxCommandBytes:   64 << 10,
	MaxExecTimeout:    60 * time.Second,
	IdleTimeout:       30 * time.Minute,
	ExposedPort:       3000,
	NodePath:          "/usr/local/bin/node",
	PathLimits:        workspace.DefaultPathLimits,
	SyncLimits:        DefaultSyncLimits,
	ListLimits:        workspace.DefaultListLimits,
	MaxPackages:       50,
	MaxInstallTimeout: 120 * time.Second,
	MinPreviewPort:    1,
	PreviewTimeout:    30 * time.Second,
	MaxPreviewBytes:   100 << 20,
}

type handlers struct {
	s   Sessions
	opt Options
}

// NewRouter returns the servcraftd HTTP handler.
func NewRouter(s Sessions, opt Options) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	h := &handlers{s: s, opt: opt}
	r.Use(gin.CustomRecovery(func(c *gin.Context, rec any) {
		if rec == http.ErrAbortHandler { // a proxied stream cut short: drop the connection
			panic(rec)
		}
		c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody{Error: "internal error", Code: "internal"})
	}), errorMiddleware, h.limitBody)
	r.NoRoute(func(c *gin.Context) { fail(c, notFound("no route %s %s", c.Request.Method, c.Request.URL.Path)) })
	r.NoMethod(func(c *gin.Context) {
		c.JSON(http.StatusMethodNotAllowed, errorBody{Error: "method not allowed", Code: "method_not_allowed"})
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"success": true, "status": "ok"}) })
	r.GET("/readyz", h.ready)

	pg := r.Group("/api/playground")
	pg.POST("/container", h.createContainer)
	pg.GET("/container", h.getContainer)
	pg.PATCH("/container", h.extendContainer)
	pg.DELETE("/container", h.deleteContainer)
	pg.POST("/execute", h.execute)
	pg.POST("/shell", h.shell)
	pg.POST("/sync", h.sync)
	pg.GET("/files", h.files)
	pg.POST("/install", h.install)
	pg.GET("/terminal", h.terminal)
	pg.GET("/processes", h.processes)
	pg.GET("/processes/logs", h.processLogs)
	pg.DELETE("/processes", h.killProcess)
	pg.Any("/preview/:sessionId/*path", h.preview)
	pg.Any("/preview/:sessionId", h.preview)
	r.Any("/p/:sessionId/*path", h.preview)
	r.Any("/p/:sessionId", h.preview)
	return r
}

// limitBody caps every request body at MaxBodyBytes.
func (h *handlers) limitBody(c *gin.Context) {
	if c.Request.ContentLength > h.opt.MaxBodyBytes {
		fail(c, errBodyTooLarge)
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, h.opt.MaxBodyBytes)
	c.Next()
}

// decode reads one JSON object into v; anything else is the client's mistake.
func decode(c *gin.Context, v any) error {
	dec := json.NewDecoder(c.Request.Body)
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
