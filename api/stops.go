package api

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"
)

// runIDPattern is what a client may name its run with (execute and shell's
// runId), to stop it with DELETE /api/playground/run.
var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// runStops holds every run in flight that its client named: a DELETE of
// the name stops it (the runtime ends the run at once), and a run started
// with stdinOpen takes what POST /run/stdin sends.
type runStops struct {
	mu   sync.Mutex
	runs map[runKey]*namedRun
}

type runKey struct{ session, run string }

// namedRun is one run a client named.
type namedRun struct {
	stop    chan struct{}
	stopped bool
	stdin   *stdinBuffer // nil: its stdin is closed after the request's
}

func newRunStops() *runStops { return &runStops{runs: map[runKey]*namedRun{}} }

// add names a run of session: its stop channel, its stdin stream (nil
// unless openStdin; at most stdinBytes pending) and the release to call when
// it ends. An empty runID names nothing (no stop; openStdin needs a runID);
// one already running in the session is a conflict.
func (s *runStops) add(session, runID string, openStdin bool, stdinBytes int) (<-chan struct{}, io.Reader, func(), error) {
	if runID == "" {
		if openStdin {
			return nil, nil, nil, invalid("stdinOpen needs a runId to send the input to")
		}
		return nil, nil, func() {}, nil
	}
	if !runIDPattern.MatchString(runID) {
		return nil, nil, nil, invalid("runId %q: use 1 to 64 of A-Z a-z 0-9 . _ -", runID)
	}
	k := runKey{session, runID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.runs[k]; ok {
		return nil, nil, nil, fmt.Errorf("run %s is already running in session %s: %w", runID, session, errdefs.ErrAlreadyExists)
	}
	r := &namedRun{stop: make(chan struct{})}
	var stdin io.Reader
	if openStdin {
		r.stdin = newStdinBuffer(stdinBytes)
		stdin = r.stdin
	}
	s.runs[k] = r
	return r.stop, stdin, func() {
		if r.stdin != nil {
			r.stdin.close()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.runs[k] == r {
			delete(s.runs, k)
		}
	}, nil
}

// stop ends the named run; false when no such run is in flight.
func (s *runStops) stop(session, runID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[runKey{session, runID}]
	if !ok || r.stopped {
		return false
	}
	r.stopped = true
	close(r.stop)
	return true
}

// stdinOf is the stdin stream of the named run, or an error for the client.
func (s *runStops) stdinOf(session, runID string) (*stdinBuffer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[runKey{session, runID}]
	switch {
	case !ok || r.stopped:
		return nil, notFound("no run %s is running in session %s", runID, session)
	case r.stdin == nil:
		return nil, fmt.Errorf("run %s was started without stdinOpen: its stdin is closed: %w", runID, errdefs.ErrFailedPrecondition)
	}
	return r.stdin, nil
}

// stdinBuffer is a run's open stdin: writes never block (what the program
// has not read yet is held, up to max bytes), reads wait for data or EOF.
type stdinBuffer struct {
	mu     sync.Mutex
	more   *sync.Cond
	buf    []byte
	max    int
	eof    bool // the client closed it: EOF once buf is read
	closed bool // the run ended: EOF at once
}

func newStdinBuffer(max int) *stdinBuffer {
	b := &stdinBuffer{max: max}
	b.more = sync.NewCond(&b.mu)
	return b
}

// write adds p (and EOF after it when eof); past max pending bytes nothing
// is added and the error is a 429.
func (b *stdinBuffer) write(p []byte, eof bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return fmt.Errorf("the run has ended: %w", errdefs.ErrNotFound)
	case b.eof:
		return fmt.Errorf("stdin was closed (eof): %w", errdefs.ErrFailedPrecondition)
	case len(b.buf)+len(p) > b.max:
		return fmt.Errorf("the program has not read %d bytes of its stdin yet; at most %d may wait (--stdin-buffer): %w",
			len(b.buf), b.max, errdefs.ErrResourceExhausted)
	}
	b.buf = append(b.buf, p...)
	b.eof = eof
	b.more.Broadcast()
	return nil
}

func (b *stdinBuffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) == 0 && !b.eof && !b.closed {
		b.more.Wait()
	}
	if b.closed || len(b.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// close ends the stream for the reader and refuses writes: the run ended.
func (b *stdinBuffer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.more.Broadcast()
}

// writeStdin is POST /api/playground/run/stdin: {sessionId, runId, data,
// eof}: data goes to the stdin of a run started with stdinOpen; eof closes it.
func writeStdin(stops *runStops) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req stdinRequest
		if !bindSession(c, &req) {
			return
		}
		if !runIDPattern.MatchString(req.RunID) {
			fail(c, invalid("runId %q: use 1 to 64 of A-Z a-z 0-9 . _ -", req.RunID))
			return
		}
		in, err := stops.stdinOf(req.SessionID, req.RunID)
		if err == nil {
			err = in.write([]byte(req.Data), req.EOF)
		}
		if err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusOK, stdinResponse{Success: true, RunID: req.RunID, Bytes: len(req.Data), EOF: req.EOF})
	}
}

// stopRun is DELETE /api/playground/run?sessionId=&runId=: it stops an
// execute or shell its client started with that runId. The run's own answer
// (or stream) then ends with stopped: true and what it printed until then.
func stopRun(stops *runStops) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, runID := c.Query("sessionId"), c.Query("runId")
		if err := validSessionID(id); err != nil {
			fail(c, err)
			return
		}
		if !runIDPattern.MatchString(runID) {
			fail(c, invalid("runId %q: use 1 to 64 of A-Z a-z 0-9 . _ -", runID))
			return
		}
		if !stops.stop(id, runID) {
			fail(c, notFound("no run %s is running in session %s", runID, id))
			return
		}
		c.JSON(http.StatusOK, stopResponse{Success: true, Stopped: true, RunID: runID})
	}
}
