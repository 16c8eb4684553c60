package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
)

var timeZero time.Time

// sseWriteTimeout bounds how long one event may wait for a slow reader.
const sseWriteTimeout = 30 * time.Second

// wantsStream reports whether the client asked for server-sent events.
func wantsStream(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "text/event-stream")
}

// sseHeartbeat is how often a log follower that has nothing to send sends
// a comment: a client that has gone, or stopped reading, fails its write
// within sseWriteTimeout and frees what it held.
const sseHeartbeat = 15 * time.Second

// sseEvent writes one server-sent event whose data is v as JSON; an error
// means the client is gone or stopped reading.
func sseEvent(c *gin.Context, event string, v any) error {
	data, _ := json.Marshal(v)
	return sseWrite(c, fmt.Sprintf("event: %s\ndata: %s\n\n", event, data))
}

// sseWrite writes raw event-stream text within sseWriteTimeout.
func sseWrite(c *gin.Context, text string) error {
	rc := httpResponseController(c)
	// A client that stops reading is dropped instead of holding the run's output.
	_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	if _, err := c.Writer.WriteString(text); err != nil {
		return err
	}
	return rc.Flush()
}

func startStream(c *gin.Context) {
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-store")
	c.Header("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	_ = httpResponseController(c).SetWriteDeadline(timeZero)
	c.Writer.Flush()
}

func (h *handlers) startBackground(c *gin.Context, sessionID, command string) {
	p, err := h.s.StartBackground(c.Request.Context(), sessionID, command)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, backgroundResponse{Success: true, Background: true, PID: p.ID, Process: newProcess(p),
		Output: fmt.Sprintf("started %s in the background: %s", p.ID, command), Error: "", ExitCode: 0})
}

func (h *handlers) processes(c *gin.Context) {
	id := c.Query("sessionId")
	if err := validSessionID(id); err != nil {
		fail(c, err)
		return
	}
	list, err := h.s.Processes(c.Request.Context(), id)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, processesResponse{Success: true, Processes: newProcesses(list)})
}

func processID(c *gin.Context) (string, string, error) {
	sid, pid := c.Query("sessionId"), c.Query("id")
	if err := validSessionID(sid); err != nil {
		return "", "", err
	}
	if pid == "" || len(pid) > maxIDLen {
		return "", "", invalid("id is required (a process id from /processes)")
	}
	return sid, pid, nil
}

// processLogs returns a background process's output; with Accept:
// text/event-stream it streams: an "output" event with what is kept, then
// one per chunk, then "exit" with the process when it ends.
func (h *handlers) processLogs(c *gin.Context) {
	sid, pid, err := processID(c)
	if err != nil {
		fail(c, err)
		return
	}
	stream := wantsStream(c)
	if stream {
		release, err := h.held.hold(c, sid)
		if err != nil {
			fail(c, err)
			return
		}
		defer release()
	}
	pl, err := h.s.Logs(c.Request.Context(), sid, pid, stream)
	if err != nil {
		fail(c, err)
		return
	}
	if !stream {
		c.JSON(http.StatusOK, processLogResponse{Success: true, Process: newProcess(pl.Process), Output: string(pl.Output), Truncated: pl.Truncated})
		return
	}
	startStream(c)
	if sseEvent(c, "output", outputEvent{Data: string(pl.Output), Truncated: &pl.Truncated}) != nil {
		return
	}
	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	for follow := pl.Follow; follow != nil; { // nil when the process has already ended
		select {
		case chunk, ok := <-follow:
			if !ok {
				follow = nil
				continue
			}
			if sseEvent(c, "output", outputEvent{Data: string(chunk)}) != nil {
				return
			}
		case <-heartbeat.C:
			if sseWrite(c, ": ping\n\n") != nil {
				return
			}
		}
	}
	if c.Request.Context().Err() != nil {
		return
	}
	procs, err := h.s.Processes(c.Request.Context(), sid)
	final := pl.Process
	if err == nil {
		for _, p := range procs {
			if p.ID == pid {
				final = p
			}
		}
	}
	sseEvent(c, "exit", newProcess(final))
}

func (h *handlers) killProcess(c *gin.Context) {
	sid, pid, err := processID(c)
	if err != nil {
		fail(c, err)
		return
	}
	p, err := h.s.Kill(c.Request.Context(), sid, pid)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, processResponse{Success: true, Process: newProcess(p)})
}

// streamRun runs req, sending stdout and stderr chunks as events as they
// come, and ends with an "exit" event carrying the same fields as the JSON answer.
func (h *handlers) streamRun(c *gin.Context, sessionID string, req runtime.ExecRequest) {
	chunks := make(chan [2]string, 256)
	req.OnOutput = func(stream string, p []byte) { chunks <- [2]string{stream, string(p)} }
	type outcome struct {
		res runtime.ExecResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := h.s.Exec(c.Request.Context(), sessionID, req)
		done <- outcome{res, err}
	}()
	started := false
	for {
		select {
		case ch := <-chunks:
			if !started {
				startStream(c)
				started = true
			}
			sseEvent(c, ch[0], outputEvent{Data: ch[1]})
		case o := <-done:
			for len(chunks) > 0 {
				ch := <-chunks
				if !started {
					startStream(c)
					started = true
				}
				sseEvent(c, ch[0], outputEvent{Data: ch[1]})
			}
			if o.err != nil && !started {
				fail(c, o.err)
				return
			}
			if !started {
				startStream(c)
			}
			if o.err != nil {
				status, code := ToHTTP(o.err)
				sseEvent(c, "error", streamErrorEvent{errorBody: newErrorBody(o.err.Error(), code), Status: status})
				return
			}
			sseEvent(c, "exit", newRunResponse(o.res))
			return
		}
	}
}

func httpResponseController(c *gin.Context) *http.ResponseController {
	return http.NewResponseController(c.Writer)
}
