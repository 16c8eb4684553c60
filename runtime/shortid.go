package runtime

import (
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/store"
)

// ShortID is the last "-"-separated segment of a sessionId: the frontend
// opens /p/<ShortID> (for "session-1796051266938-t3ow5gbl26b", "t3ow5gbl26b").
func ShortID(sessionID string) string {
	return sessionID[strings.LastIndexByte(sessionID, '-')+1:]
}

// previewIndex knows the live client sessions by full ID and by ShortID, so
// a preview address resolves without reading the store. It follows the
// sessions' lives: a session enters when it runs (build, adoption of a warm
// container, a restart's Start) and leaves when its teardown begins
// (destroy, reap, reconcile). The manager's own records never enter.
//
// Lock order: mu is a leaf. It is never held while another lock is taken.
type previewIndex struct {
	mu    sync.Mutex
	full  map[string]string              // live sessionIds -> their instance (UUID)
	short map[string]map[string]struct{} // ShortID -> the sessionIds ending with it
}

// add indexes a live session and its instance (its UUID: another session
// of the same id later is another instance); records that are not a
// client's are ignored.
func (p *previewIndex) add(sessionID, instance string) {
	if KindOf(sessionID) != KindSession {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.full == nil {
		p.full, p.short = map[string]string{}, map[string]map[string]struct{}{}
	}
	p.full[sessionID] = instance
	s := ShortID(sessionID)
	if p.short[s] == nil {
		p.short[s] = map[string]struct{}{}
	}
	p.short[s][sessionID] = struct{}{}
}

// remove forgets a session; unknown IDs are fine.
func (p *previewIndex) remove(sessionID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.full[sessionID]; !ok {
		return
	}
	delete(p.full, sessionID)
	s := ShortID(sessionID)
	delete(p.short[s], sessionID)
	if len(p.short[s]) == 0 {
		delete(p.short, s)
	}
}

// reset makes the index hold exactly the running client sessions among records.
func (p *previewIndex) reset(records []store.Session) {
	p.mu.Lock()
	p.full, p.short = nil, nil
	p.mu.Unlock()
	for _, s := range records {
		if s.State == store.StateRunning {
			p.add(s.SessionID, s.UUID)
		}
	}
}

// resolve returns the live session id names: itself when it is one, else the
// live session whose ShortID it is when there is exactly one. n is 1 for a
// full id, else how many live sessions end with id.
func (p *previewIndex) resolve(id string) (sessionID string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.full[id]; ok {
		return id, 1
	}
	matches := p.short[id]
	for full := range matches {
		sessionID = full
	}
	return sessionID, len(matches)
}

// ErrAmbiguousPreview is the cause when a short preview id ends more than
// one live sessionId; it is an errdefs.ErrNotFound.
var ErrAmbiguousPreview = fmt.Errorf("ambiguous short preview id: %w", errdefs.ErrNotFound)

// PreviewSession finds the session a preview address names: a live
// sessionId itself, or the last "-"-separated segment of exactly one live
// sessionId (the frontend's /p/${sessionId.split('-').pop()}). A full id
// always wins over a short one. An id the index does not know comes back
// unchanged, for the call that uses it to find (or not find) in the store;
// an id that ends several live sessionIds is ErrAmbiguousPreview. It reads
// only memory: every preview request calls it.
func (p *previewIndex) PreviewSession(id string) (string, error) {
	sessionID, n := p.resolve(id)
	switch {
	case n == 0:
		return id, nil
	case n > 1:
		return "", fmt.Errorf("preview id %q ends %d live sessionIds: use the full sessionId: %w", id, n, ErrAmbiguousPreview)
	}
	return sessionID, nil
}

// PreviewInstance is the instance (UUID) of the live session a preview
// address names, as PreviewSession resolves it; false when no live session
// of this host has that name. A preview credential carries the instance it
// was made for, so that it opens nothing of a later session of the same id.
func (p *previewIndex) PreviewInstance(id string) (string, bool) {
	sessionID, n := p.resolve(id)
	if n != 1 {
		return "", false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	instance, ok := p.full[sessionID]
	return instance, ok
}

// load rebuilds the index from the store, as at start.
func (p *previewIndex) load(db Store) error {
	records, err := db.List()
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	p.reset(records)
	return nil
}
