package runtime

import (
	"context"
	"sync"
)

// sessionCalls lets a teardown end the calls in flight in a session that
// may wait on a run (executes, shells, installs): each joins its session
// for its duration, and ending the session cancels every one of them, and
// any that joins before the teardown is done. A cancelled call kills its
// run, and a run's output waits are bounded, so the session's lock is free
// within a bound whatever user code holds open.
//
// Lock order: mu is a leaf.
type sessionCalls struct {
	mu sync.Mutex
	m  map[string]*callSet
}

type callSet struct {
	cancels map[uint64]context.CancelFunc
	next    uint64
	ending  int // teardowns in progress
}

func (c *sessionCalls) set(id string) *callSet {
	if c.m == nil {
		c.m = map[string]*callSet{}
	}
	s := c.m[id]
	if s == nil {
		s = &callSet{cancels: map[uint64]context.CancelFunc{}}
		c.m[id] = s
	}
	return s
}

// drop forgets id's set once nothing is in it. The caller holds mu.
func (c *sessionCalls) drop(id string, s *callSet) {
	if len(s.cancels) == 0 && s.ending == 0 && c.m[id] == s {
		delete(c.m, id)
	}
}

// join returns a context for a call in session id, cancelled when the
// session is ended (at once if it is being ended), and its release.
func (c *sessionCalls) join(ctx context.Context, id string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.set(id)
	if s.ending > 0 {
		cancel()
		return ctx, func() {}
	}
	n := s.next
	s.next++
	s.cancels[n] = cancel
	return ctx, func() {
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(s.cancels, n)
		c.drop(id, s)
	}
}

// end cancels every call in session id, and every call that joins it until
// done is called.
func (c *sessionCalls) end(id string) (done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.set(id)
	s.ending++
	for n, cancel := range s.cancels {
		cancel()
		delete(s.cancels, n)
	}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		s.ending--
		c.drop(id, s)
	}
}
