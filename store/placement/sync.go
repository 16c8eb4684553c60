package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Local is what Sync reads of this node's own sessions.
type Local interface {
	// SessionIDs lists the sessions this node holds (not its warm pool).
	SessionIDs(ctx context.Context) ([]string, error)
	// Capacity is the number of sessions held and the most allowed (0: no limit).
	Capacity() (sessions, most int)
	// Destroy removes a local session that another node owns.
	Destroy(ctx context.Context, sessionID string) error
	// CreatedAt is when a local session was created.
	CreatedAt(ctx context.Context, sessionID string) (time.Time, error)
}

// ClaimGrace is how long a fresh claim is kept from release while its
// session is being created.
const ClaimGrace = 2 * time.Minute

// Sync brings the records in step with the node's sessions, in one round:
// every local session's record names this node under its current lease (a
// restarted node's sessions come back); a local session another node took
// while this one was gone is destroyed here (one container per id); a record
// of this node's whose session is gone (reaped, destroyed) is released; the
// node record gets the session count, and a draining node with no sessions
// left becomes drained.
func (p *Placement) Sync(ctx context.Context, local Local) error {
	ids, err := local.SessionIDs(ctx)
	if err != nil {
		return fmt.Errorf("placement: list local sessions: %w", err)
	}
	self := p.NodeID()
	held := make(map[string]bool, len(ids))
	var errs []error
	for _, id := range ids {
		r, err := p.reclaim(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Node == self {
			held[id] = true
			continue
		}
		if keep, why := p.keepLocalCopy(ctx, local, id, r); keep {
			slog.Warn("placement: another node's record names a local session; keeping it", "session", id, "owner", r.Node, "why", why)
			continue
		}
		slog.Warn("placement: session now owned by another node, destroying the local copy", "session", id, "owner", r.Node)
		if err := local.Destroy(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("destroy local copy of %s: %w", id, err))
		}
	}
	owned, err := p.Owned(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range owned {
		if held[id] || p.claimFresh(id) {
			continue
		}
		if err := p.Release(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	sessions, most := local.Capacity()
	if err := p.Update(ctx, func(n *Node) {
		n.Sessions, n.Capacity = sessions, most
		n.State = NextState(n.State, sessions)
	}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// keepLocalCopy reports whether a local session stays although a signed
// record names another node: a node never destroys on the word of a
// record alone. The other node must be live (a signed node record) and
// must have claimed the session after this node created its copy (it
// created its own while this node's record had expired); a record older
// than the local copy is an old one played back.
func (p *Placement) keepLocalCopy(ctx context.Context, local Local, id string, r ownerRecord) (bool, string) {
	if _, live, err := p.Node(ctx, r.Node); err != nil || !live {
		return true, "the owner it names is not a live node"
	}
	created, err := local.CreatedAt(ctx, id)
	if err != nil {
		return true, "the local copy's creation time is unknown: " + err.Error()
	}
	if !r.At.After(created) {
		return true, "the record's claim is older than the local copy"
	}
	return false, ""
}

// NextState is a node's state once it holds sessions: draining with none
// left is drained.
func NextState(s State, sessions int) State {
	switch {
	case s == Draining && sessions == 0:
		return Drained
	case s == Drained && sessions > 0:
		return Draining
	}
	return s
}

// claimFresh reports whether sessionID was claimed here within ClaimGrace,
// forgetting older claims.
func (p *Placement) claimFresh(sessionID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.claimed[sessionID]
	if ok && time.Since(at) > ClaimGrace {
		delete(p.claimed, sessionID)
		return false
	}
	return ok
}

// RunSync calls Sync every interval until ctx ends.
func (p *Placement) RunSync(ctx context.Context, local Local, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.Sync(ctx, local); err != nil && ctx.Err() == nil {
			slog.Warn("placement: sync", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
