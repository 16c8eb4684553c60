package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

type syncRequest struct {
	SessionID string     `json:"sessionId"`
	Files     []FileNode `json:"files"`
	Mode      string     `json:"mode"`
}

type syncResponse struct {
	Success bool  `json:"success"`
	Written int   `json:"written"`
	Deleted int   `json:"deleted"`
	Bytes   int64 `json:"bytes"`
}

type filesResponse struct {
	Success bool                 `json:"success"`
	Files   []workspace.FileInfo `json:"files"`
}

func (h *handlers) sync(c *gin.Context) {
	var req syncRequest
	if !bindSession(c, &req) {
		return
	}
	var replace bool
	switch req.Mode {
	case "", "merge":
	case "replace":
		replace = true
	default:
		fail(c, invalid("mode %q: want \"merge\" (the default) or \"replace\"", req.Mode))
		return
	}
	entries, err := flattenTree(req.Files, h.opt.SyncLimits)
	if err != nil {
		fail(c, err)
		return
	}
	res, err := h.s.Sync(c.Request.Context(), req.SessionID, entries, replace)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, syncResponse{Success: true, Written: res.Written, Deleted: res.Deleted, Bytes: res.Bytes})
}

// files answers GET /files and GET /container?action=getFiles.
func (h *handlers) files(c *gin.Context) {
	id := c.Query("sessionId")
	if err := validSessionID(id); err != nil {
		fail(c, err)
		return
	}
	sub := c.Query("path")
	if sub != "" {
		var err error
		if sub, err = workspace.CleanPath(sub, h.opt.PathLimits); err != nil {
			fail(c, err)
			return
		}
	}
	files, err := h.s.ListFiles(c.Request.Context(), id, sub, h.opt.ListLimits)
	if err != nil {
		fail(c, err)
		return
	}
	if files == nil {
		files = []workspace.FileInfo{}
	}
	c.JSON(http.StatusOK, filesResponse{Success: true, Files: files})
}

type installRequest struct {
	SessionID string   `json:"sessionId"`
	Packages  []string `json:"packages"`
	TimeoutMs *int64   `json:"timeoutMs"`
}

type installResponse struct {
	Success     bool              `json:"success"`
	Output      string            `json:"output"`
	Error       string            `json:"error"`
	ExitCode    int               `json:"exitCode"`
	TimedOut    bool              `json:"timedOut"`
	Truncated   bool              `json:"truncated"`
	Installed   []runtime.Package `json:"installed"`
	DurationMs  int64             `json:"durationMs"`
	CacheHits   int64             `json:"cacheHits"`
	CacheMisses int64             `json:"cacheMisses"`
	FromLayer   bool              `json:"fromLayer"` // the starter's dependencies were restored, npm did not run
}

// installError is an install the service could not complete: error is the
// message the frontend prints; npm's own output rides along.
type installError struct {
	errorBody
	Output   string   `json:"output"`
	NpmError string   `json:"npmError"`
	NotFound []string `json:"notFound,omitempty"`
}

func (h *handlers) install(c *gin.Context) {
	var req installRequest
	if !bindSession(c, &req) {
		return
	}
	if len(req.Packages) > h.opt.MaxPackages {
		fail(c, invalid("%d packages in one install: at most %d", len(req.Packages), h.opt.MaxPackages))
		return
	}
	for _, spec := range req.Packages {
		if err := validPackageSpec(spec); err != nil {
			fail(c, err)
			return
		}
	}
	timeout, err := h.timeout(req.TimeoutMs, h.opt.MaxInstallTimeout)
	if err != nil {
		fail(c, err)
		return
	}
	res, err := h.s.Install(c.Request.Context(), req.SessionID, runtime.InstallRequest{Packages: req.Packages, Timeout: timeout})
	if err != nil {
		status, code := ToHTTP(err)
		if res.Duration == 0 {
			fail(c, err) // npm never ran
			return
		}
		c.JSON(status, installError{errorBody: errorBody{Error: err.Error(), Code: code},
			Output: res.Stdout, NpmError: res.Stderr, NotFound: res.NotFound})
		return
	}
	if res.Installed == nil {
		res.Installed = []runtime.Package{}
	}
	c.JSON(http.StatusOK, installResponse{
		Success:     res.ExitCode == 0,
		Output:      res.Stdout,
		Error:       res.Stderr,
		ExitCode:    res.ExitCode,
		TimedOut:    res.TimedOut,
		Truncated:   res.Truncated,
		Installed:   res.Installed,
		DurationMs:  res.Duration.Milliseconds(),
		CacheHits:   res.CacheHits,
		CacheMisses: res.CacheMisses,
		FromLayer:   res.FromLayer,
	})
}
