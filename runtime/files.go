package runtime

import (
	"context"
	"fmt"

	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// Sync writes entries into the session's workspace; with replace, user files
// absent from entries are removed (node_modules and dot-files never).
func (m *Manager) Sync(ctx context.Context, sessionID string, entries []workspace.Entry, replace bool) (workspace.SyncResult, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	_, s, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return workspace.SyncResult{}, err
	}
	m.touch(sessionID)
	res, err := workspace.Sync(s.Workspace, entries, replace)
	if err != nil {
		return res, fmt.Errorf("session %q: sync: %w", sessionID, err)
	}
	return res, nil
}

// ListFiles lists the session's workspace from sub ("" for the root) in the frontend's flat format.
func (m *Manager) ListFiles(ctx context.Context, sessionID, sub string, lim workspace.ListLimits) ([]workspace.FileInfo, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	_, s, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	m.touch(sessionID)
	files, err := workspace.List(s.Workspace, sub, lim)
	if err != nil {
		return nil, fmt.Errorf("session %q: list: %w", sessionID, err)
	}
	return files, nil
}

// WriteFile writes data to rel (checked with workspace.CleanPath) in the session's workspace.
func (m *Manager) WriteFile(ctx context.Context, sessionID, rel string, data []byte) error {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	_, s, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return err
	}
	m.touch(sessionID)
	if err := workspace.WriteFile(s.Workspace, rel, data, 0o644); err != nil {
		return fmt.Errorf("session %q: %w", sessionID, err)
	}
	return nil
}
