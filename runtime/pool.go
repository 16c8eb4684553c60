package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servcraft/servcraftd/snapshots/templates"
	"github.com/servcraft/servcraftd/store"
)

// warmPool is the record IDs of warm containers ready to become sessions,
// oldest first, at most size of them.
//
// Lock order: mu is a leaf. It is never held while another lock is taken.
type warmPool struct {
	size int
	wake chan struct{} // asks the keeper to top the pool up
	held atomic.Bool   // a draining node fills no pool (PausePool)

	mu  sync.Mutex
	ids []string
}

func newWarmPool(size int) *warmPool {
	return &warmPool{size: size, wake: make(chan struct{}, 1)}
}

// pop takes the oldest warm container.
func (p *warmPool) pop() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return "", false
	}
	id := p.ids[0]
	p.ids = p.ids[1:]
	return id, true
}

func (p *warmPool) push(id string) {
	p.mu.Lock()
	p.ids = append(p.ids, id)
	p.mu.Unlock()
}

// short reports whether the pool holds fewer than size.
func (p *warmPool) short() bool {
	if p.held.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids) < p.size
}

// adopt takes in the running warm containers among records (what a
// restarted daemon finds in the store), up to size.
func (p *warmPool) adopt(records []store.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range records {
		if KindOf(s.SessionID) == KindPool && s.State == store.StateRunning && len(p.ids) < p.size {
			p.ids = append(p.ids, s.SessionID)
		}
	}
}

// refill asks the pool keeper to top the pool up.
func (p *warmPool) refill() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// PausePool stops (true) or resumes (false) filling the warm pool: a
// draining node makes no new containers. The warm ones it has stay.
func (m *Manager) PausePool(paused bool) {
	m.pool.held.Store(paused)
	if !paused {
		m.pool.refill()
	}
}

// IsInternal reports whether a stored record is the manager's own (a warm
// container or a dependency-layer builder), not a client's session.
func IsInternal(recordID string) bool { return KindOf(recordID) != KindSession }

// claimPooled hands a warm container to sessionID: one store transaction
// renames its record, the starter project is written and the container's
// labels are updated. A session made this way is the same as a cold one.
func (m *Manager) claimPooled(ctx context.Context, sessionID, projectType string) (store.Session, bool) {
	if m.cfg.PoolSize <= 0 {
		return store.Session{}, false
	}
	defer m.pool.refill()
	for {
		poolID, ok := m.pool.pop()
		if !ok {
			return store.Session{}, false
		}
		s, err := m.adopt(ctx, poolID, sessionID, projectType)
		if err == nil {
			return s, true
		}
		slog.Warn("warm container unusable; trying the next", "pool", poolID, "err", err)
		if rec, gerr := m.db.Get(poolID); gerr == nil {
			_ = m.teardown(ctx, rec)
		}
	}
}

func (m *Manager) adopt(ctx context.Context, poolID, sessionID, projectType string) (store.Session, error) {
	now := m.now().UTC()
	s, err := m.db.Rename(poolID, func(s *store.Session) error {
		return adoptRecord(s, sessionID, projectType, now, m.cfg.IdleTimeout)
	})
	if err != nil {
		return s, err
	}
	m.live.rename(poolID, sessionID)
	if err := templates.Seed(s.Workspace, projectType); err != nil {
		return s, err
	}
	if m.starters != nil {
		// Normally already there: the warm container was made with them.
		if lacks := m.seedStarterDeps(s.Workspace, m.starterKey(projectType), m.starters.poolKey); lacks != "" {
			if s, err = m.db.Update(sessionID, func(r *store.Session) error { r.DependenciesMissing = lacks; return nil }); err != nil {
				return s, err
			}
		}
	}
	c, err := m.client.LoadContainer(ctx, s.ContainerID)
	if err == nil {
		_, err = c.SetLabels(ctx, sessionLabels(s))
	}
	if err != nil {
		return s, fmt.Errorf("label adopted container %s: %w", s.ContainerID, err)
	}
	m.previews.add(sessionID)
	return s, nil
}

// keepPool fills the pool to PoolSize whenever it is woken, until the
// manager stops, building up to PoolParallel containers at once so a steady
// stream of creates stays on the pool. Warm containers count against capacity.
func (m *Manager) keepPool() {
	defer m.stopped.Done()
	ctx := context.Background()
	for {
		for m.pool.short() {
			if m.pool.fill(ctx, m.cfg.PoolParallel, m.warmOne) != nil {
				break
			}
		}
		select {
		case <-m.stop:
			return
		case <-m.pool.wake:
		case <-time.After(time.Minute): // retry after failures
		}
	}
}

// warmOne builds one warm container and adds it to the pool.
func (m *Manager) warmOne(ctx context.Context) error {
	id := poolPrefix + randomHex(8)
	start := time.Now()
	if _, err := m.build(ctx, id, ""); err != nil {
		if !errors.Is(err, ErrCapacity) {
			slog.Error("warm a container", "err", err)
		}
		return err
	}
	m.pool.push(id)
	slog.Debug("warm container ready", "pool", id, "took", time.Since(start))
	return nil
}

// fill runs build for as many containers as the pool lacks, at most parallel
// at once, and returns the first error.
func (p *warmPool) fill(ctx context.Context, parallel int, build func(context.Context) error) error {
	p.mu.Lock()
	n := p.size - len(p.ids)
	p.mu.Unlock()
	n = min(n, max(parallel, 1))
	errs := make(chan error, n)
	for range n {
		go func() { errs <- build(ctx) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// startPool adopts the warm containers the store holds (after Reconcile
// kept them) and keeps the pool full from now on.
func (m *Manager) startPool() error {
	if m.cfg.PoolSize <= 0 {
		return nil
	}
	records, err := m.db.List()
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	m.pool.adopt(records)
	m.stopped.Add(1)
	go m.keepPool()
	m.pool.refill()
	return nil
}
