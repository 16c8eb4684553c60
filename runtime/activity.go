package runtime

import (
	"fmt"
	"sync"
	"time"

	"github.com/servcraft/servcraftd/store"
)

// activity is when each session was last used, kept in memory and written
// to the store in batches (every TouchInterval, and before any decision
// that reads deadlines from the store): a kill -9 loses at most one
// interval of it.
//
// Lock order: mu is a leaf. It is never held while another lock is taken
// or the store is called. flushMu is held across a whole flush (taking the
// batch and writing it), so that once a flush returns, every touch taken
// before it, by it or by a flush that ran at the same time (the reaper's),
// is in the store: the label round that follows reads no older record.
type activity struct {
	now  func() time.Time
	idle time.Duration

	flushMu sync.Mutex

	mu      sync.Mutex
	touched map[string]time.Time // not yet written to the store
	stale   map[string]bool      // sessions whose container labels lag their record
}

func newActivity(now func() time.Time, idle time.Duration) *activity {
	return &activity{now: now, idle: idle, touched: map[string]time.Time{}, stale: map[string]bool{}}
}

// touch records that sessionID was used now.
func (a *activity) touch(sessionID string) {
	at := a.now().UTC()
	a.mu.Lock()
	a.touched[sessionID] = at
	a.stale[sessionID] = true
	a.mu.Unlock()
}

// relabel marks sessionID's container labels as behind its record (its
// deadline changed).
func (a *activity) relabel(sessionID string) {
	a.mu.Lock()
	a.stale[sessionID] = true
	a.mu.Unlock()
}

// takeStale hands over the sessions whose labels lag their record.
func (a *activity) takeStale() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.stale))
	for id := range a.stale {
		out = append(out, id)
	}
	a.stale = map[string]bool{}
	return out
}

// last is sessionID's activity not yet written to the store, if any.
func (a *activity) last(sessionID string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.touched[sessionID]
	return at, ok
}

// view shows s with its not yet written activity.
func (a *activity) view(s store.Session) store.Session {
	if at, ok := a.last(s.SessionID); ok {
		return withActivity(s, at, a.idle)
	}
	return s
}

// forget drops what is pending for sessionID (it is gone).
func (a *activity) forget(sessionID string) {
	a.mu.Lock()
	delete(a.touched, sessionID)
	delete(a.stale, sessionID)
	a.mu.Unlock()
}

// take hands over the pending activity and starts a new batch.
func (a *activity) take() map[string]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	batch := a.touched
	a.touched = map[string]time.Time{}
	return batch
}

// flush writes the pending activity to db.
func (a *activity) flush(db Store) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	batch := a.take()
	if err := db.Touch(batch, a.idle); err != nil {
		return fmt.Errorf("write activity of %d sessions: %w", len(batch), err)
	}
	return nil
}
