package runtime

import (
	"context"
	"fmt"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/servcraft/servcraftd/store"
)

// liveSession caches what every run in a session needs, so a run costs no
// extra round trips: its task, the process spec runs derive from, its cgroup
// and where the run's FIFOs go.
type liveSession struct {
	task    containerd.Task
	proc    *specs.Process
	cgroup  string
	fifoDir string
	// spawner is the socket of the container's spawner as the host reaches
	// it; "" when the container has none (every run is a runc exec).
	spawner string
}

// liveSessions holds the live sessions by record ID.
//
// Lock order: mu is a leaf. It is never held while another lock is taken.
type liveSessions struct {
	mu sync.Mutex
	m  map[string]*liveSession
}

func (ls *liveSessions) get(id string) *liveSession {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.m[id]
}

// add caches l for id unless another call did first; it returns the one cached.
func (ls *liveSessions) add(id string, l *liveSession) *liveSession {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = map[string]*liveSession{}
	}
	if cached := ls.m[id]; cached != nil {
		return cached
	}
	ls.m[id] = l
	return l
}

func (ls *liveSessions) remove(id string) {
	ls.mu.Lock()
	delete(ls.m, id)
	ls.mu.Unlock()
}

// rename moves the cached session of oldID (if any) to newID.
func (ls *liveSessions) rename(oldID, newID string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.m[oldID]; l != nil {
		ls.m[newID] = l
		delete(ls.m, oldID)
	}
}

// withLive runs fn on the running session sessionID under the session's
// shared lock, and counts the call as activity (when it starts and when fn
// returns). errdefs.ErrNotFound when the session is unknown or not running.
func (m *Manager) withLive(ctx context.Context, sessionID string, fn func(*liveSession, store.Session) error) error {
	return m.onLive(ctx, sessionID, true, fn)
}

// readLive is withLive for calls that only look: reading a session's state
// is not activity (a page polling it must not keep it alive).
func (m *Manager) readLive(ctx context.Context, sessionID string, fn func(*liveSession, store.Session) error) error {
	return m.onLive(ctx, sessionID, false, fn)
}

func (m *Manager) onLive(ctx context.Context, sessionID string, active bool, fn func(*liveSession, store.Session) error) error {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	l, s, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return err
	}
	if active {
		m.activity.touch(sessionID)
		defer m.activity.touch(sessionID)
	}
	return fn(l, s)
}

// liveLocked returns the cached handles of a running session, loading them
// from containerd on first use (after a restart). The caller holds the session's lock.
func (m *Manager) liveLocked(ctx context.Context, sessionID string) (*liveSession, store.Session, error) {
	s, err := m.db.Get(sessionID)
	if err != nil {
		return nil, s, err
	}
	if s.State != store.StateRunning {
		return nil, s, fmt.Errorf("session %q is %s: %w", sessionID, s.State, errdefs.ErrNotFound)
	}
	if l := m.live.get(sessionID); l != nil {
		return l, s, nil
	}
	container, err := m.client.LoadContainer(ctx, s.ContainerID)
	if err != nil {
		return nil, s, fmt.Errorf("session %q: load container %s: %w", sessionID, s.ContainerID, err)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		return nil, s, fmt.Errorf("session %q: load task %s: %w", sessionID, s.ContainerID, err)
	}
	spec, err := container.Spec(ctx)
	if err != nil {
		return nil, s, fmt.Errorf("session %q: spec of %s: %w", sessionID, s.ContainerID, err)
	}
	l := newLiveSession(task, spec, m.fifo)
	if cached := m.live.add(sessionID, l); cached != l {
		return cached, s, nil // another call loaded it meanwhile
	}
	// First use since this daemon started: pick up what the last one left running.
	m.bg.restore(ctx, s, l)
	return l, s, nil
}
