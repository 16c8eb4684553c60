package runtime

import "time"

// SetClock makes now the manager's time source, so that a test moves
// deadlines instead of sleeping past them.
func SetClock(m *Manager, now func() time.Time) { m.setClock(now) }

// WarmReady is how many warm containers the pool can hand out now.
func WarmReady(m *Manager) int {
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	return len(m.pool.ids)
}
