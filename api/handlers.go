package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/store"
)

// bindSession decodes the JSON body into req, checks its sessionId and
// applies the session's limits; false when it has answered the client.
func bindSession(c *gin.Context, req sessionBody) bool {
	if err := decode(c, req); err != nil {
		fail(c, err)
		return false
	}
	if err := validSessionID(req.session()); err != nil {
		fail(c, err)
		return false
	}
	return setSession(c, req.session())
}

func notFound(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrNotFound)...)
}

func (h *handlers) createContainer(c *gin.Context) {
	var req createRequest
	if !bindSession(c, &req) {
		return
	}
	projectType, err := validProjectType(req.ProjectType)
	if err != nil {
		fail(c, err)
		return
	}
	var s store.Session
	var created bool
	markPhase(c, "parse")
	if req.From != "" {
		s, created, err = fork(c.Request.Context(), h.s, req.SessionID, req.From)
	} else {
		s, created, err = h.s.Create(c.Request.Context(), req.SessionID, projectType)
	}
	if err != nil {
		fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	res := newContainerResponse(s, !created, h.opt)
	res.PreviewURL = h.previewURL(req.SessionID, s.UUID)
	serverTiming(c)
	c.JSON(status, res)
}

// Forker is what a Sessions that can fork has.
type Forker interface {
	Fork(ctx context.Context, sessionID, from string) (store.Session, bool, error)
}

// fork makes sessionID a copy of the session from (see runtime.Manager.Fork).
func fork(ctx context.Context, sessions Sessions, sessionID, from string) (store.Session, bool, error) {
	if err := validSessionID(from); err != nil {
		return store.Session{}, false, invalid("from: %v", err)
	}
	if from == sessionID {
		return store.Session{}, false, invalid("from: a session cannot be forked into itself")
	}
	f, ok := sessions.(Forker)
	if !ok {
		return store.Session{}, false, invalid("from: this server cannot fork sessions")
	}
	return f.Fork(ctx, sessionID, from)
}

func (h *handlers) getContainer(c *gin.Context) {
	id := c.Query("sessionId")
	if err := validSessionID(id); err != nil {
		fail(c, err)
		return
	}
	switch action := c.Query("action"); action {
	case "":
	case "getFiles":
		h.files(c)
		return
	default:
		fail(c, invalid("action %q: the only action is getFiles", action))
		return
	}
	info, err := h.s.Get(c.Request.Context(), id)
	if errdefs.IsNotFound(err) {
		c.JSON(http.StatusNotFound, containerMissing{errorBody: newErrorBody(err.Error(), codeNotFound), Exists: false})
		return
	} else if err != nil {
		fail(c, err)
		return
	}
	res := newContainerInfoResponse(info, h.opt)
	res.PreviewURL = h.previewURL(id, info.UUID)
	c.JSON(http.StatusOK, res)

}

func (h *handlers) extendContainer(c *gin.Context) {
	var req sessionRequest
	if !bindSession(c, &req) {
		return
	}
	s, err := h.s.Extend(c.Request.Context(), req.SessionID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, newExtendResponse(s))
}

func (h *handlers) deleteContainer(c *gin.Context) {
	id := c.Query("sessionId")
	if err := validSessionID(id); err != nil {
		fail(c, err)
		return
	}
	if err := h.s.Destroy(c.Request.Context(), id); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, successResponse{Success: true})
}

// requestTimeout turns the optional timeoutMs into a duration: 0 means the default,
// anything over most is capped.
func requestTimeout(ms *int64, most time.Duration) (time.Duration, error) {
	if ms == nil {
		return 0, nil
	}
	if *ms <= 0 {
		return 0, invalid("timeoutMs must be positive")
	}
	if *ms > most.Milliseconds() {
		return most, nil
	}
	return time.Duration(*ms) * time.Millisecond, nil
}

func (h *handlers) execute(c *gin.Context) {
	var req executeRequest
	if !bindSession(c, &req) {
		return
	}
	filename, err := validFilename(req.Filename, h.opt.PathLimits, h.opt.TypeScript)
	if err != nil {
		fail(c, err)
		return
	}
	timeout, err := requestTimeout(req.TimeoutMs, h.opt.MaxExecTimeout)
	if err != nil {
		fail(c, err)
		return
	}
	stop, stdin, release, err := h.stops.add(req.SessionID, req.RunID, req.StdinOpen, h.opt.StdinBufferBytes)
	if err != nil {
		fail(c, err)
		return
	}
	defer release()
	ctx := c.Request.Context()
	markPhase(c, "parse")
	flush, err := h.s.WriteFileUnflushed(ctx, req.SessionID, filename, []byte(req.Code))
	if err != nil {
		fail(c, err)
		return
	}
	markPhase(c, "write")
	// The file goes to the workspace's disk while it runs; the answer waits for both.
	flushed := make(chan error, 1)
	go func() { flushed <- flush() }()
	// As `node <file>` (TypeScript: `node --import <tsx loader> <file>`), on a
	// pre-started runner when one waits.
	run := runtime.ExecRequest{Timeout: timeout, Stdin: []byte(req.Stdin), Script: filename, Stop: stop, StdinStream: stdin}
	if wantsStream(c) {
		if err := <-flushed; err != nil {
			fail(c, err)
			return
		}
		h.streamRun(c, req.SessionID, run)
		return
	}
	res, err := h.s.Exec(ctx, req.SessionID, run)
	flushErr := <-flushed
	markPhase(c, "flush") // what the flush took beyond the run: usually nothing
	if err = errors.Join(err, flushErr); err != nil {
		fail(c, err)
		return
	}
	serverTiming(c)
	c.JSON(http.StatusOK, newRunResponse(res))
}

func (h *handlers) shell(c *gin.Context) {
	var req shellRequest
	if !bindSession(c, &req) {
		return
	}
	switch {
	case strings.TrimSpace(req.Command) == "":
		fail(c, invalid("command is required"))
		return
	case len(req.Command) > h.opt.MaxCommandBytes:
		fail(c, invalid("command is longer than %d bytes", h.opt.MaxCommandBytes))
		return
	case strings.ContainsRune(req.Command, 0):
		fail(c, invalid("command contains a NUL byte"))
		return
	case req.Background:
		h.startBackground(c, req.SessionID, req.Command)
		return
	}
	timeout, err := requestTimeout(req.TimeoutMs, h.opt.MaxExecTimeout)
	if err != nil {
		fail(c, err)
		return
	}
	// As `/bin/sh -c <command>`, on a waiting shell runner when there is one.
	stop, stdin, release, err := h.stops.add(req.SessionID, req.RunID, req.StdinOpen, h.opt.StdinBufferBytes)
	if err != nil {
		fail(c, err)
		return
	}
	defer release()
	run := runtime.ExecRequest{Shell: req.Command, Timeout: timeout, Stdin: []byte(req.Stdin), Stop: stop, StdinStream: stdin}
	if wantsStream(c) {
		h.streamRun(c, req.SessionID, run)
		return
	}
	markPhase(c, "parse")
	res, err := h.s.Exec(c.Request.Context(), req.SessionID, run)
	if err != nil {
		fail(c, err)
		return
	}
	serverTiming(c)
	c.JSON(http.StatusOK, newRunResponse(res))
}
