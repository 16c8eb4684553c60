package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/store"
)

// poolPrefix starts the record ID of a warm container waiting for a
// session. '~' is outside the sessionId alphabet, so no client can name one.
const poolPrefix = "~pool-"

// IsPooled reports whether a record is a warm container, not a session.
func IsPooled(sessionID string) bool { return strings.HasPrefix(sessionID, poolPrefix) }

// poolNever is the deadline of a pooled container: it is not idle, it waits.
var poolNever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// claimPooled hands a warm container to sessionID: one store transaction
// renames its record, the starter project is written and the container's
// labels are updated. A session made this way is the same as a cold one.
func (m *Manager) claimPooled(ctx context.Context, sessionID, projectType string) (store.Session, bool) {
	if m.cfg.PoolSize <= 0 {
		return store.Session{}, false
	}
	defer m.refillPool()
	for {
		m.poolMu.Lock()
		if len(m.pool) == 0 {
			m.poolMu.Unlock()
			return store.Session{}, false
		}
		poolID := m.pool[0]
		m.pool = m.pool[1:]
		m.poolMu.Unlock()
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
	now := time.Now().UTC()
	s, err := m.db.Rename(poolID, func(s *store.Session) error {
		if s.State != store.StateRunning {
			return fmt.Errorf("pooled %s is %s: %w", poolID, s.State, errdefs.ErrFailedPrecondition)
		}
		s.SessionID, s.ProjectType = sessionID, projectType
		s.CreatedAt, s.LastActiveAt, s.ExpiresAt = now, now, now.Add(m.cfg.IdleTimeout)
		return nil
	})
	if err != nil {
		return s, err
	}
	m.liveMu.Lock()
	if l := m.live[poolID]; l != nil {
		m.live[sessionID] = l
		delete(m.live, poolID)
	}
	m.liveMu.Unlock()
	if err := seed(s.Workspace, projectType); err != nil {
		return s, err
	}
	c, err := m.client.LoadContainer(ctx, s.ContainerID)
	if err == nil {
		_, err = c.SetLabels(ctx, sessionLabels(sessionID, s.UUID, projectType, now))
	}
	if err != nil {
		return s, fmt.Errorf("label adopted container %s: %w", s.ContainerID, err)
	}
	return s, nil
}

// refillPool asks the pool keeper to top the pool up.
func (m *Manager) refillPool() {
	select {
	case m.poolWake <- struct{}{}:
	default:
	}
}

// keepPool fills the pool to PoolSize, one container at a time, whenever it
// is woken, until the manager stops. Warm containers count against capacity.
func (m *Manager) keepPool() {
	defer m.stopped.Done()
	ctx := context.Background()
	for {
		for m.poolShort() {
			id := poolPrefix + randomHex(8)
			start := time.Now()
			if _, err := m.build(ctx, id, ""); err != nil {
				if !errors.Is(err, ErrCapacity) {
					slog.Error("warm a container", "err", err)
				}
				break
			}
			m.poolMu.Lock()
			m.pool = append(m.pool, id)
			m.poolMu.Unlock()
			slog.Debug("warm container ready", "pool", id, "took", time.Since(start))
		}
		select {
		case <-m.stop:
			return
		case <-m.poolWake:
		case <-time.After(time.Minute): // retry after failures
		}
	}
}

func (m *Manager) poolShort() bool {
	if m.poolHeld.Load() {
		return false
	}
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	return len(m.pool) < m.cfg.PoolSize
}

// PausePool stops (true) or resumes (false) filling the warm pool: a
// draining node makes no new containers. The warm ones it has stay.
func (m *Manager) PausePool(paused bool) {
	m.poolHeld.Store(paused)
	if !paused {
		m.refillPool()
	}
}

// IsInternal reports whether a stored record is the manager's own (a warm
// container or a dependency-layer builder), not a client's session.
func IsInternal(sessionID string) bool { return IsPooled(sessionID) || isLayerBuilder(sessionID) }

// adoptPoolRecords makes the warm containers a restarted daemon finds in the
// store (kept by Reconcile) available again.
func (m *Manager) adoptPoolRecords(records []store.Session) {
	m.poolMu.Lock()
	defer m.poolMu.Unlock()
	for _, s := range records {
		if IsPooled(s.SessionID) && s.State == store.StateRunning && len(m.pool) < m.cfg.PoolSize {
			m.pool = append(m.pool, s.SessionID)
		}
	}
}

// StartPool adopts the warm containers the store holds (call it after
// Reconcile) and keeps the pool full from now on.
func (m *Manager) StartPool() error {
	if m.cfg.PoolSize <= 0 {
		return nil
	}
	records, err := m.db.List()
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	m.adoptPoolRecords(records)
	m.stopped.Add(1)
	go m.keepPool()
	m.refillPool()
	return nil
}
