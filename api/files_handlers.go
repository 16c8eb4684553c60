package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

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
	c.JSON(http.StatusOK, newSyncResponse(res))
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
	c.JSON(http.StatusOK, newFilesResponse(files))
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
		c.JSON(status, newInstallError(err, code, res))
		return
	}
	c.JSON(http.StatusOK, newInstallResponse(res))
}
