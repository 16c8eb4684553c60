package runtime

import (
	"context"
	"fmt"

	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// Files reads and writes the workspaces of running sessions.
type Files struct{ table sessionTable }

// Sync writes entries into the session's workspace; with replace, user files
// absent from entries are removed (node_modules and dot-files never).
func (f *Files) Sync(ctx context.Context, sessionID string, entries []workspace.Entry, replace bool) (workspace.SyncResult, error) {
	var res workspace.SyncResult
	err := f.table.withLive(ctx, sessionID, func(_ *liveSession, s store.Session) (err error) {
		if res, err = workspace.Sync(s.Workspace, entries, replace); err != nil {
			return fmt.Errorf("session %q: sync: %w", sessionID, err)
		}
		return nil
	})
	return res, err
}

// ListFiles lists the session's workspace from sub ("" for the root) in the frontend's flat format.
func (f *Files) ListFiles(ctx context.Context, sessionID, sub string, lim workspace.ListLimits) ([]workspace.FileInfo, error) {
	var files []workspace.FileInfo
	err := f.table.withLive(ctx, sessionID, func(_ *liveSession, s store.Session) (err error) {
		if files, err = workspace.List(s.Workspace, sub, lim); err != nil {
			return fmt.Errorf("session %q: list: %w", sessionID, err)
		}
		return nil
	})
	return files, err
}

// WriteFile writes data to rel (checked with workspace.CleanPath) in the session's workspace.
func (f *Files) WriteFile(ctx context.Context, sessionID, rel string, data []byte) error {
	flush, err := f.WriteFileUnflushed(ctx, sessionID, rel, data)
	if err != nil {
		return err
	}
	return flush()
}

// WriteFileUnflushed writes as WriteFile does and returns the flush that
// puts it on the workspace's disk (see workspace.WriteFileUnflushed): an
// execute overlaps it with the run of the file.
func (f *Files) WriteFileUnflushed(ctx context.Context, sessionID, rel string, data []byte) (flush func() error, err error) {
	err = f.table.withLive(ctx, sessionID, func(_ *liveSession, s store.Session) error {
		fl, err := workspace.WriteFileUnflushed(s.Workspace, rel, data, 0o644)
		if err != nil {
			return fmt.Errorf("session %q: %w", sessionID, err)
		}
		flush = func() error {
			if err := fl(); err != nil {
				return fmt.Errorf("session %q: %w", sessionID, err)
			}
			return nil
		}
		return nil
	})
	return flush, err
}
