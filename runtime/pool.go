package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/phases"
	"github.com/servcraft/servcraftd/snapshots/disk"
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

	mu       sync.Mutex
	ids      []string
	seedType string // the starter project new warm containers get: the type the latest claim asked for
}

func newWarmPool(size int) *warmPool {
	p := &warmPool{size: size, wake: make(chan struct{}, 1)}
	if types := templates.Types(); len(types) > 0 {
		p.seedType = types[0]
	}
	return p
}

// starterType is the starter project a new warm container is seeded with.
func (p *warmPool) starterType() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seedType
}

// asked notes the project type a claim asked for: the warm containers made
// from now on hold its starter project, so the next claim of that type has
// nothing to write.
func (p *warmPool) asked(projectType string) {
	p.mu.Lock()
	p.seedType = projectType
	p.mu.Unlock()
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
// renames its record, the container's labels are updated while it commits,
// and the starter project is written unless the warm container holds it
// already. A session made this way is the same as a cold one.
func (m *Manager) claimPooled(ctx context.Context, sessionID, projectType string) (store.Session, bool) {
	if m.cfg.PoolSize <= 0 {
		return store.Session{}, false
	}
	m.pool.asked(projectType)
	defer m.pool.refill()
	for {
		poolID, ok := m.pool.pop()
		if !ok {
			return store.Session{}, false
		}
		s, err := m.adopt(ctx, poolID, sessionID, projectType)
		if err == nil {
			phases.Mark(ctx, "adopt") // a warm container renamed, relabelled and seeded
			return s, true
		}
		slog.Warn("warm container unusable; trying the next", "pool", poolID, "err", err)
		dropAdopted(ctx, m, sessionID, poolID)
	}
}

// dropAdopted tears down a warm container whose adoption failed: its
// record is the session's if the rename went through (the caller holds
// sessionID's lock and found no record of it).
func dropAdopted(ctx context.Context, m *Manager, sessionID, poolID string) {
	for _, id := range []string{sessionID, poolID} {
		if rec, err := m.db.Get(id); err == nil {
			_ = m.teardown(ctx, rec)
		}
	}
}

// forkPooled makes a warm container sessionID's fork of src: a snapshot of
// src's workspace takes the place of the warm one's, the container's
// /workspace is moved onto it, and the record becomes sessionID's. Only
// where a fork is a snapshot: elsewhere, with the pool empty, or when the
// warm container fails, ok is false and the fork gets a container of its
// own. A fork refused for its own sake (the source's workspace gone, the
// pool full) is err.
func forkPooled(ctx context.Context, m *Manager, sessionID string, src store.Session) (_ store.Session, ok bool, _ error) {
	if m.cfg.PoolSize <= 0 || !m.vols.ForksInPlace() {
		return store.Session{}, false, nil
	}
	if _, err := os.Stat(m.vols.Dir(src.UUID)); err != nil {
		return store.Session{}, false, fmt.Errorf("fork from session %q: its workspace is gone: %w", src.SessionID, errdefs.ErrNotFound)
	}
	defer m.pool.refill()
	poolID, ok := m.pool.pop()
	if !ok {
		return store.Session{}, false, nil
	}
	s, err := adoptFork(ctx, m, poolID, sessionID, src)
	if err == nil {
		return s, true, nil
	}
	dropAdopted(context.WithoutCancel(ctx), m, sessionID, poolID)
	if errors.Is(err, disk.ErrHostFull) {
		return store.Session{}, false, err
	}
	slog.Warn("fork onto a warm container failed; making its own", "pool", poolID, "err", err)
	return store.Session{}, false, nil
}

// adopt makes the warm container of poolID sessionID's. Its labels are
// written while the store commits the rename; both are done before it
// returns.
func (m *Manager) adopt(ctx context.Context, poolID, sessionID, projectType string) (store.Session, error) {
	now := m.clock.read().UTC()
	held := "" // the starter project the warm workspace holds
	labelled := make(chan error, 1)
	labelling := false
	s, err := m.db.Rename(poolID, func(s *store.Session) error {
		held = s.ProjectType
		if err := adoptRecord(s, sessionID, projectType, now, m.cfg.IdleTimeout); err != nil {
			return err
		}
		labelling = true
		go func(s store.Session) { labelled <- relabelAdopted(ctx, m.client, s) }(*s)
		return nil
	})
	if err == nil {
		m.live.rename(poolID, sessionID)
		s, err = m.deps.seedAdopted(s, held)
	}
	if labelling {
		err = errors.Join(err, <-labelled)
	}
	if err != nil {
		return s, err
	}
	m.previews.add(sessionID, s.UUID)
	return s, nil
}

// adoptFork makes the warm container of poolID sessionID's, holding a copy
// of src's workspace. The record is renamed first, still creating: a crash
// before the new workspace is mounted leaves a half-made session that is
// torn down, never a warm container holding another session's files.
func adoptFork(ctx context.Context, m *Manager, poolID, sessionID string, src store.Session) (store.Session, error) {
	l := m.live.get(poolID)
	if l == nil {
		return store.Session{}, fmt.Errorf("warm container %s: not live", poolID)
	}
	now := m.clock.read().UTC()
	s, err := m.db.Rename(poolID, func(s *store.Session) error {
		if err := adoptRecord(s, sessionID, src.ProjectType, now, m.cfg.IdleTimeout); err != nil {
			return err
		}
		s.State = store.StateCreating
		return nil
	})
	if err != nil {
		return s, err
	}
	m.live.rename(poolID, sessionID)
	labelled := make(chan error, 1)
	go func() { labelled <- relabelAdopted(ctx, m.client, s) }()
	err = mountFork(ctx, m, l, s, src)
	if err == nil {
		s, err = m.db.Update(sessionID, func(r *store.Session) error { r.State = store.StateRunning; return nil })
	}
	if err = errors.Join(err, <-labelled); err != nil {
		return s, err
	}
	m.previews.add(sessionID, s.UUID)
	return s, nil
}

// mountFork puts a snapshot of src's workspace in the place of s's and
// moves s's container onto it, then deletes the warm workspace it held
// (a teardown after a failure deletes it instead).
func mountFork(ctx context.Context, m *Manager, l *liveSession, s, src store.Session) error {
	discard, err := m.vols.ForkInPlace(ctx, src.UUID, s.UUID)
	if err != nil {
		return err
	}
	phases.Mark(ctx, "snapshot") // the source's workspace snapshotted in the warm one's place
	alive := func() error {
		st, err := l.task.Status(ctx)
		if err == nil && st.Status != containerd.Running {
			err = fmt.Errorf("warm container's task is %s", st.Status)
		}
		return err
	}
	if err := remountWorkspace(l.task.Pid(), s.Workspace, alive); err != nil {
		return err
	}
	phases.Mark(ctx, "remount")
	if err := discard(context.WithoutCancel(ctx)); err != nil {
		slog.Error("delete the warm workspace a fork replaced", "session", s.SessionID, "err", err)
	}
	phases.Mark(ctx, "discard")
	return nil
}

// relabelAdopted gives an adopted container the labels of its session, in
// one round trip (what Container.SetLabels does, without loading it first).
func relabelAdopted(ctx context.Context, client *containerd.Client, s store.Session) error {
	labels := sessionLabels(s)
	paths := make([]string, 0, len(labels))
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	if _, err := client.ContainerService().Update(ctx, containers.Container{ID: s.ContainerID, Labels: labels}, paths...); err != nil {
		return fmt.Errorf("label adopted container %s: %w", s.ContainerID, err)
	}
	return nil
}

// seedAdopted gives an adopted session's workspace its starter project
// (unless the warm container holds it already: held) and its dependencies.
func (d *depLayers) seedAdopted(s store.Session, held string) (store.Session, error) {
	if held != s.ProjectType {
		if held != "" {
			if err := unseed(s.Workspace, held); err != nil {
				return s, err
			}
		}
		if err := templates.Seed(s.Workspace, s.ProjectType); err != nil {
			return s, err
		}
	}
	if d.starters == nil {
		return s, nil
	}
	// Normally already there: the warm container was made with them.
	lacks := d.seedStarter(s.Workspace, d.starterKey(s.ProjectType), d.starters.poolKey)
	if lacks == "" {
		return s, nil
	}
	return d.db.Update(s.SessionID, func(r *store.Session) error { r.DependenciesMissing = lacks; return nil })
}

// unseed removes the starter project of projectType from a warm container's
// workspace (no user code ever ran in it): its files, then the folders
// they leave empty.
func unseed(dir, projectType string) error {
	files, err := templates.Files(projectType)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	defer root.Close()
	var folders []string
	for _, f := range files {
		if err := root.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s starter file %s: %w", projectType, f.Path, err)
		}
		for p := path.Dir(f.Path); p != "."; p = path.Dir(p) {
			folders = append(folders, p)
		}
	}
	// Deepest first; a folder still holding something stays.
	slices.SortFunc(folders, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	for _, p := range slices.Compact(folders) {
		if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("remove %s starter folder %s: %w", projectType, p, err)
		}
	}
	return nil
}

// keep fills the pool to its size whenever it is woken, until stop is
// closed, building up to parallel containers at once with build (so a
// steady stream of creates stays on the pool). Warm containers count
// against capacity.
func (p *warmPool) keep(stop <-chan struct{}, parallel int, build func(ctx context.Context, id, projectType string) error) {
	ctx := context.Background()
	warmOne := func(ctx context.Context) error {
		id := poolPrefix + randomHex(8)
		start := time.Now()
		if err := build(ctx, id, p.starterType()); err != nil {
			if !errors.Is(err, ErrCapacity) {
				slog.Error("warm a container", "err", err)
			}
			return err
		}
		p.push(id)
		slog.Debug("warm container ready", "pool", id, "took", time.Since(start))
		return nil
	}
	for {
		for p.short() {
			if p.fill(ctx, parallel, warmOne) != nil {
				break
			}
		}
		select {
		case <-stop:
			return
		case <-p.wake:
		case <-time.After(time.Minute): // retry after failures
		}
	}
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

// flushWorkspace writes what a workspace's filesystem holds in memory to its
// disk (syncfs: one flush however many files changed).
func flushWorkspace(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open workspace: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("flush workspace %s to disk: %w", dir, err)
	}
	return nil
}
