package runtime

import "time"

// SetClock makes now the manager's time source, so that a test moves
// deadlines instead of sleeping past them.
func SetClock(m *Manager, now func() time.Time) { m.setClock(now) }
