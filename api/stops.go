package api

import (
	"fmt"
	"net/http"
	"regexp"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"
)

// runIDPattern is what a client may name its run with (execute and shell's
// runId), to stop it with DELETE /api/playground/run.
var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// runStops holds a stop for every run in flight that its client named: a
// DELETE of the name closes it, and the runtime ends the run at once.
type runStops struct {
	mu    sync.Mutex
	stops map[runKey]chan struct{}
}

type runKey struct{ session, run string }

func newRunStops() *runStops { return &runStops{stops: map[runKey]chan struct{}{}} }

// add names a run of session: its stop channel and the release to call when
// it ends. An empty runID names nothing (nil channel, no stop); one already
// running in the session is a conflict.
func (s *runStops) add(session, runID string) (<-chan struct{}, func(), error) {
	if runID == "" {
		return nil, func() {}, nil
	}
	if !runIDPattern.MatchString(runID) {
		return nil, nil, invalid("runId %q: use 1 to 64 of A-Z a-z 0-9 . _ -", runID)
	}
	k := runKey{session, runID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.stops[k]; ok {
		return nil, nil, fmt.Errorf("run %s is already running in session %s: %w", runID, session, errdefs.ErrAlreadyExists)
	}
	ch := make(chan struct{})
	s.stops[k] = ch
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.stops[k] == ch {
			delete(s.stops, k)
		}
	}, nil
}

// stop ends the named run; false when no such run is in flight.
func (s *runStops) stop(session, runID string) bool {
	k := runKey{session, runID}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.stops[k]
	if ok {
		close(ch)
		delete(s.stops, k)
	}
	return ok
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
