package api

import (
	"bufio"
	"encoding/json"
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
	lim := h.opt.SyncLimits
	lim.ListFileBytes = h.opt.ListLimits.MaxFileBytes
	entries, err := flattenTree(req.Files, lim)
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
	release, err := h.listings.hold(c, id)
	if err != nil {
		fail(c, err)
		return
	}
	defer release()
	files, err := h.s.ListFiles(c.Request.Context(), id, sub, h.opt.ListLimits)
	if err != nil {
		fail(c, err)
		return
	}
	writeFiles(c, newFilesResponse(files))
}

// writeFiles writes a listing entry by entry, so that the answer is never
// built whole in the daemon's memory beside the listing itself.
func writeFiles(c *gin.Context, res filesResponse) {
	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(http.StatusOK)
	w := bufio.NewWriterSize(c.Writer, 32<<10)
	_, _ = w.WriteString(`{"success":true,"files":[`)
	for i, f := range res.Files {
		data, _ := json.Marshal(f) // strings, numbers and booleans: it always encodes
		if i > 0 {
			_ = w.WriteByte(',')
		}
		if _, err := w.Write(data); err != nil {
			return // the client went away
		}
	}
	_, _ = w.WriteString("]}")
	_ = w.Flush()
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
	timeout, err := requestTimeout(req.TimeoutMs, h.opt.MaxInstallTimeout)
	if err != nil {
		fail(c, err)
		return
	}
	stop, _, release, err := h.stops.add(req.SessionID, req.RunID, false, 0)
	if err != nil {
		fail(c, err)
		return
	}
	defer release()
	markPhase(c, "parse")
	res, err := h.s.Install(c.Request.Context(), req.SessionID, runtime.InstallRequest{Packages: req.Packages, Timeout: timeout, Stop: stop})
	serverTiming(c)
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
