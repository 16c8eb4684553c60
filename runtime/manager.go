package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/google/uuid"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/snapshots"
	"github.com/servcraft/servcraftd/snapshots/templates"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// Labels on every session container, so `ctr -n servcraft c ls` explains itself.
const (
	LabelSession     = "servcraft.session-id"
	LabelUUID        = "servcraft.uuid"
	LabelCreatedAt   = "servcraft.created-at"
	LabelProjectType = "servcraft.project-type"
	// ContainerPrefix starts every session container's ID.
	ContainerPrefix = "servcraft-playground-"
)

// Store is what the manager needs of the session database.
type Store interface {
	Create(store.Session) error
	Get(sessionID string) (store.Session, error)
	Update(sessionID string, fn func(*store.Session) error) (store.Session, error)
	Delete(sessionID string) error
	List() ([]store.Session, error)
	Touch(lastActive map[string]time.Time, idle time.Duration) error
	Rename(oldID string, fn func(*store.Session) error) (store.Session, error)
}

// Config is the manager's configuration.
type Config struct {
	Image              ImageConfig
	Runtime            string // containerd runtime, e.g. io.containerd.runc.v2 (or runsc)
	InitPath           string // host path of a static init, bind-mounted as PID 1
	ToolchainDir       string // host folder of the TypeScript toolchain ("" : none)
	StateDir           string // FIFOs live here
	Limits             SpecLimits
	IdleTimeout        time.Duration
	ExtendBy           time.Duration
	ExecTimeout        time.Duration   // default per run
	MaxExecTimeout     time.Duration   // most a client may ask for
	OutputLimit        int             // bytes of stdout and of stderr kept per run
	TouchInterval      time.Duration   // how often activity is written to the store
	Registry           *npmproxy.Proxy // npm registry proxy for installs (nil: installs unavailable)
	NpmPath            string          // npm inside the image
	InstallTimeout     time.Duration   // longest npm install
	MaxSessions        int             // sessions at once (0: no limit)
	PoolSize           int             // warm containers kept ready for new sessions
	Runners            bool            // keep a pre-started Node process per session for executes
	RunnerIdle         time.Duration   // a session idle this long loses its waiting runner
	NodePath           string          // node inside the image
	DepCacheDir        string          // host folder of starter-project dependency layers ("": none)
	MaxBackground      int             // running background processes per session
	BackgroundLogBytes int             // output kept per background process
}

// Manager owns every session: its record, container, task and workspace.
type Manager struct {
	client *containerd.Client
	db     Store
	vols   *workspace.Volumes
	cfg    Config
	image  containerd.Image
	locks  keyedLocks

	liveMu sync.Mutex
	live   map[string]*liveSession

	touchMu sync.Mutex
	touched map[string]time.Time

	bgMu sync.Mutex
	bg   map[string]map[string]*background // sessionID -> process ID -> process

	counters counters
	runners  runners
	capMu    sync.Mutex // held while counting sessions and reserving one

	layerBuilds sync.Mutex // one dependency layer built at a time

	poolMu   sync.Mutex
	pool     []string // record IDs of warm containers, oldest first
	poolWake chan struct{}
	poolHeld atomic.Bool // a draining node fills no pool (PausePool)

	stop     chan struct{}
	stopped  sync.WaitGroup
	stopOnce sync.Once
}

// liveSession caches what every exec needs, so a run costs no extra round trips.
type liveSession struct {
	task   containerd.Task
	proc   *specs.Process
	cgroup string
}

// New checks the image (pulling or importing it if needed) and returns a running manager.
func New(ctx context.Context, client *containerd.Client, db Store, vols *workspace.Volumes, cfg Config) (*Manager, error) {
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "fifo"), 0o700); err != nil {
		return nil, fmt.Errorf("create fifo folder: %w", err)
	}
	if _, err := os.Stat(cfg.InitPath); err != nil {
		return nil, fmt.Errorf("init binary: %w", err)
	}
	if cfg.DepCacheDir != "" {
		if err := os.MkdirAll(cfg.DepCacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("dependency layer folder: %w", err)
		}
	}
	if cfg.ToolchainDir != "" {
		if _, err := os.Stat(filepath.Join(cfg.ToolchainDir, "node_modules", "tsx", "dist", "loader.mjs")); err != nil {
			return nil, fmt.Errorf("TypeScript toolchain in %s (scripts/build-toolchain.sh builds it): %w", cfg.ToolchainDir, err)
		}
	}
	cfg.MaxBackground = cmp.Or(cfg.MaxBackground, 8)
	cfg.BackgroundLogBytes = cmp.Or(cfg.BackgroundLogBytes, 256<<10)
	cfg.NpmPath = cmp.Or(cfg.NpmPath, "/usr/local/bin/npm")
	cfg.NodePath = cmp.Or(cfg.NodePath, "/usr/local/bin/node")
	cfg.RunnerIdle = cmp.Or(cfg.RunnerIdle, 5*time.Minute)
	cfg.InstallTimeout = cmp.Or(cfg.InstallTimeout, 120*time.Second)
	img, err := ensureImage(ctx, client, cfg.Image)
	if err != nil {
		return nil, err
	}
	m := &Manager{client: client, db: db, vols: vols, cfg: cfg, image: img,
		live: map[string]*liveSession{}, touched: map[string]time.Time{}, bg: map[string]map[string]*background{},
		stop: make(chan struct{}), poolWake: make(chan struct{}, 1)}
	m.stopped.Add(1)
	go m.flushLoop()
	return m, nil
}

// ImageName is the image sessions are created from.
func (m *Manager) ImageName() string { return m.image.Name() }

// Close stops background work and writes pending activity. Containers keep running.
func (m *Manager) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	m.stopped.Wait()
	return m.flushTouches()
}

// Create returns the session of sessionID, creating its container when it
// has none. created is false when it already existed.
func (m *Manager) Create(ctx context.Context, sessionID, projectType string) (_ store.Session, created bool, retErr error) {
	unlock := m.locks.Lock(sessionID)
	defer unlock()
	outcome := "error"
	defer func() { m.counters.inc("creates", outcome) }()
	existing, err := m.db.Get(sessionID)
	switch {
	case err == nil && existing.State == store.StateRunning:
		m.touch(sessionID)
		outcome = "existing"
		return m.withTouch(existing), false, nil
	case err == nil:
		// Left half made or half destroyed by a crash: finish it off, then start afresh.
		if err := m.teardown(ctx, existing); err != nil {
			return store.Session{}, false, err
		}
	case !errdefs.IsNotFound(err):
		return store.Session{}, false, fmt.Errorf("session %q: %w", sessionID, err)
	}

	if s, ok := m.claimPooled(ctx, sessionID, projectType); ok {
		outcome = "pool"
		return s, true, nil
	}
	s, err := m.build(ctx, sessionID, projectType)
	if errors.Is(err, ErrCapacity) {
		outcome = "capacity"
	}
	if err != nil {
		return s, false, err
	}
	outcome = "ok"
	return s, true, nil
}

// build makes a session's workspace (seeded with projectType's starter
// project, none for "") and its running container, recorded under
// sessionID. On failure nothing of it is left.
func (m *Manager) build(ctx context.Context, sessionID, projectType string) (_ store.Session, retErr error) {
	id := uuid.NewString()
	now := time.Now().UTC()
	s := store.Session{
		SessionID:   sessionID,
		UUID:        id,
		ContainerID: ContainerPrefix + id,
		Image:       m.image.Name(),
		ProjectType: projectType,
		Workspace:   m.vols.Dir(id),
		Limits: store.Limits{MemoryBytes: m.cfg.Limits.MemoryBytes, CPUQuota: m.cfg.Limits.CPUQuota,
			CPUPeriod: m.cfg.Limits.CPUPeriod, PidsLimit: m.cfg.Limits.Pids, WorkspaceBytes: m.vols.Size()},
		State:        store.StateCreating,
		CreatedAt:    now,
		LastActiveAt: now,
		ExpiresAt:    now.Add(m.cfg.IdleTimeout),
	}
	if IsPooled(sessionID) {
		s.ExpiresAt = poolNever
	}
	if err := m.reserve(s); err != nil {
		return store.Session{}, err
	}
	defer func() {
		if retErr != nil {
			if err := m.teardown(context.WithoutCancel(ctx), s); err != nil {
				slog.Error("undo half-created session", "session", sessionID, "container", s.ContainerID, "err", err)
			}
		}
	}()
	dir, err := m.vols.Create(ctx, id)
	if err != nil {
		return s, err
	}
	if projectType != "" {
		if err := seed(dir, projectType); err != nil {
			return s, err
		}
	}
	container, err := m.client.NewContainer(ctx, s.ContainerID,
		containerd.WithImage(m.image),
		containerd.WithSnapshotter(m.cfg.Image.Snapshotter),
		snapshots.WithRootFS(s.ContainerID, m.image),
		containerd.WithRuntime(m.cfg.Runtime, nil),
		containerd.WithNewSpec(sessionSpecOpts(m.image, m.cfg.Limits, dir, m.cfg.InitPath, m.cfg.ToolchainDir, m.cfg.DepCacheDir)...),
		containerd.WithContainerLabels(sessionLabels(sessionID, id, projectType, now)),
	)
	if err != nil {
		return s, fmt.Errorf("create container %s: %w", s.ContainerID, err)
	}
	task, err := container.NewTask(ctx, cio.NullIO)
	if err != nil {
		return s, fmt.Errorf("create task %s: %w", s.ContainerID, err)
	}
	if err := task.Start(ctx); err != nil {
		return s, fmt.Errorf("start task %s: %w", s.ContainerID, err)
	}
	spec, err := container.Spec(ctx)
	if err != nil {
		return s, fmt.Errorf("spec of %s: %w", s.ContainerID, err)
	}
	s, err = m.db.Update(sessionID, func(r *store.Session) error {
		r.State = store.StateRunning
		return nil
	})
	if err != nil {
		return s, err
	}
	m.liveMu.Lock()
	m.live[sessionID] = &liveSession{task: task, proc: spec.Process, cgroup: spec.Linux.CgroupsPath}
	m.liveMu.Unlock()
	return s, nil
}

func sessionLabels(sessionID, uuid, projectType string, created time.Time) map[string]string {
	return map[string]string{
		LabelSession:     sessionID,
		LabelUUID:        uuid,
		LabelCreatedAt:   created.Format(time.RFC3339),
		LabelProjectType: projectType,
	}
}

// seed writes the starter project of projectType into a new workspace.
func seed(dir, projectType string) error {
	files, err := templates.Files(projectType)
	if err != nil {
		return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	for _, f := range files {
		if err := workspace.WriteFile(dir, f.Path, f.Data, 0o644); err != nil {
			return fmt.Errorf("seed %s project: %w", projectType, err)
		}
	}
	return nil
}

// HasToolchain reports whether sessions can run TypeScript.
func (m *Manager) HasToolchain() bool { return m.cfg.ToolchainDir != "" }

// Info is a session's record with its live state read from containerd.
type Info struct {
	store.Session
	Status string // containerd's task status: running, stopped, paused, unknown
	Usage  Usage
}

// Usage is what a session consumes now.
type Usage struct {
	MemoryBytes         uint64  `json:"memoryBytes"`
	MemoryLimitBytes    uint64  `json:"memoryLimitBytes"`
	CPUSeconds          float64 `json:"cpuSeconds"`
	Pids                uint64  `json:"pids"`
	WorkspaceBytes      int64   `json:"workspaceBytes"`
	WorkspaceLimitBytes int64   `json:"workspaceLimitBytes"`
}

// Get returns the session of sessionID with live status and usage. It does
// not count as activity.
func (m *Manager) Get(ctx context.Context, sessionID string) (Info, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	l, s, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return Info{}, err
	}
	// Reading a session's state is not activity: a page polling it must not keep it alive.
	info := Info{Session: m.withTouch(s), Status: "unknown"}
	if st, err := l.task.Status(ctx); err == nil {
		info.Status = string(st.Status)
	}
	if u, err := taskUsage(ctx, l.task); err == nil {
		info.Usage = u
	} else {
		slog.Warn("read usage", "session", sessionID, "container", s.ContainerID, "err", err)
	}
	info.Usage.WorkspaceBytes, info.Usage.WorkspaceLimitBytes, _ = m.vols.Usage(s.UUID)
	return info, nil
}

// Extend pushes the session's deadline out by ExtendBy, once per session:
// errdefs.ErrFailedPrecondition the second time.
func (m *Manager) Extend(ctx context.Context, sessionID string) (store.Session, error) {
	unlock := m.locks.Lock(sessionID)
	defer unlock()
	if err := m.flushTouches(); err != nil {
		return store.Session{}, err
	}
	s, err := m.db.Update(sessionID, func(s *store.Session) error {
		if s.State != store.StateRunning {
			return fmt.Errorf("session %q is %s: %w", sessionID, s.State, errdefs.ErrNotFound)
		}
		if s.Extended {
			return fmt.Errorf("session %q was extended already: %w", sessionID, errdefs.ErrFailedPrecondition)
		}
		s.Extended = true
		s.ExpiresAt = s.ExpiresAt.Add(m.cfg.ExtendBy)
		return nil
	})
	return s, err
}

// Destroy removes the session and everything it had; errdefs.ErrNotFound if unknown.
func (m *Manager) Destroy(ctx context.Context, sessionID string) error {
	unlock := m.locks.Lock(sessionID)
	defer unlock()
	s, err := m.db.Get(sessionID)
	if err != nil {
		return err
	}
	err = m.teardown(ctx, s)
	m.counters.inc("destroys", map[bool]string{true: "ok", false: "error"}[err == nil])
	return err
}

// ErrCapacity is the cause of a create refused because the server runs as
// many sessions as it may.
var ErrCapacity = fmt.Errorf("at capacity: %w", errdefs.ErrUnavailable)

// reserve writes the record of a session about to be built, unless the
// server is at capacity. Counting and writing happen under one lock, so
// concurrent creates cannot all pass the check.
func (m *Manager) reserve(s store.Session) error {
	m.capMu.Lock()
	defer m.capMu.Unlock()
	if m.cfg.MaxSessions > 0 {
		n, err := m.count()
		if err != nil {
			return err
		}
		if n >= m.cfg.MaxSessions {
			return fmt.Errorf("%w: %d sessions, the most this server runs; try again later", ErrCapacity, n)
		}
	}
	return m.db.Create(s)
}

// count is the number of sessions, live or being made or destroyed.
func (m *Manager) count() (int, error) {
	list, err := m.db.List()
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return len(list), nil
}

// teardown removes container, task, snapshot, workspace and record of s, in
// that order, tolerating any of them being gone already. The record goes last,
// so a crash midway leaves something for the next start to finish.
func (m *Manager) teardown(ctx context.Context, s store.Session) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	m.liveMu.Lock()
	delete(m.live, s.SessionID)
	m.liveMu.Unlock()
	m.forgetBackground(s.SessionID)
	if rn := m.runners.take(s.SessionID); rn != nil {
		rn.stop()
	}
	if s.State != store.StateDestroying {
		if _, err := m.db.Update(s.SessionID, func(r *store.Session) error { r.State = store.StateDestroying; return nil }); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := m.removeContainer(ctx, s.ContainerID); err != nil {
		return err
	}
	if err := m.vols.Remove(ctx, s.UUID); err != nil {
		return err
	}
	if err := m.db.Delete(s.SessionID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	m.touchMu.Lock()
	delete(m.touched, s.SessionID)
	m.touchMu.Unlock()
	return nil
}

// removeContainer kills the task and deletes it, the container and its rootfs snapshot.
func (m *Manager) removeContainer(ctx context.Context, containerID string) error {
	container, err := m.client.LoadContainer(ctx, containerID)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("load container %s: %w", containerID, err)
	}
	task, err := container.Task(ctx, nil)
	switch {
	case err == nil:
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", containerID, err)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("load task %s: %w", containerID, err)
	}
	if err := container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", containerID, err)
	}
	return nil
}

// Exec runs req in the session's container. A program that fails is a
// result, not an error; errors are the service's own (or an unknown session).
func (m *Manager) Exec(ctx context.Context, sessionID string, req ExecRequest) (ExecResult, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	l, _, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return ExecResult{}, err
	}
	m.touch(sessionID)
	if req.Timeout <= 0 {
		req.Timeout = m.cfg.ExecTimeout
	}
	req.Timeout = min(req.Timeout, m.cfg.MaxExecTimeout)
	if req.OutputLimit <= 0 || req.OutputLimit > m.cfg.OutputLimit {
		req.OutputLimit = m.cfg.OutputLimit
	}
	var res ExecResult
	if req.Script != "" {
		res, err = m.runScript(ctx, sessionID, l, req)
	} else {
		res, err = runExec(ctx, l.task, l.proc, l.cgroup, m.fifoDir(), req)
	}
	m.touch(sessionID)
	m.counters.inc("exec", execOutcome(res, err))
	return res, err
}

func (m *Manager) fifoDir() string { return filepath.Join(m.cfg.StateDir, "fifo") }

// liveLocked returns the cached handles of a running session, loading them
// from containerd on first use (after a restart). The caller holds the session's lock.
func (m *Manager) liveLocked(ctx context.Context, sessionID string) (*liveSession, store.Session, error) {
	s, err := m.db.Get(sessionID)
	if err != nil {
		return nil, s, err
	}
	if s.State != store.StateRunning {
		return nil, s, fmt.Errorf("session %q is %s: %w", sessionID, s.State, errdefs.ErrNotFound)
	}
	m.liveMu.Lock()
	l := m.live[sessionID]
	m.liveMu.Unlock()
	if l != nil {
		return l, s, nil
	}
	container, err := m.client.LoadContainer(ctx, s.ContainerID)
	if err != nil {
		return nil, s, fmt.Errorf("session %q: load container %s: %w", sessionID, s.ContainerID, err)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		return nil, s, fmt.Errorf("session %q: load task %s: %w", sessionID, s.ContainerID, err)
	}
	spec, err := container.Spec(ctx)
	if err != nil {
		return nil, s, fmt.Errorf("session %q: spec of %s: %w", sessionID, s.ContainerID, err)
	}
	l = &liveSession{task: task, proc: spec.Process, cgroup: spec.Linux.CgroupsPath}
	m.liveMu.Lock()
	if cached := m.live[sessionID]; cached != nil {
		m.liveMu.Unlock()
		return cached, s, nil // another call loaded it meanwhile
	}
	m.live[sessionID] = l
	m.liveMu.Unlock()
	// First use since this daemon started: pick up what the last one left running.
	m.restoreBackground(ctx, s, l)
	return l, s, nil
}

// readyTimeout bounds a readiness check.
const readyTimeout = 2 * time.Second

// Ready reports whether containerd answers and the image is there.
func (m *Manager) Ready(ctx context.Context) error {
	// gRPC waits for a containerd that is down; readiness must answer now.
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	ok, err := m.client.IsServing(ctx)
	if err != nil || !ok {
		return fmt.Errorf("containerd not serving: %w", errors.Join(err, errdefs.ErrUnavailable))
	}
	if _, err := m.client.GetImage(ctx, m.image.Name()); err != nil {
		return fmt.Errorf("session image %s: %w", m.image.Name(), err)
	}
	if _, err := m.db.List(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// touch records activity; it reaches the store at the next flush.
func (m *Manager) touch(sessionID string) {
	m.touchMu.Lock()
	m.touched[sessionID] = time.Now().UTC()
	m.touchMu.Unlock()
}

// withTouch shows s with its not yet flushed activity.
func (m *Manager) withTouch(s store.Session) store.Session {
	m.touchMu.Lock()
	at, ok := m.touched[s.SessionID]
	m.touchMu.Unlock()
	if ok && at.After(s.LastActiveAt) {
		s.LastActiveAt = at
		if exp := at.Add(m.cfg.IdleTimeout); exp.After(s.ExpiresAt) {
			s.ExpiresAt = exp
		}
	}
	return s
}

func (m *Manager) flushTouches() error {
	m.touchMu.Lock()
	batch := m.touched
	m.touched = map[string]time.Time{}
	m.touchMu.Unlock()
	if err := m.db.Touch(batch, m.cfg.IdleTimeout); err != nil {
		return fmt.Errorf("write activity of %d sessions: %w", len(batch), err)
	}
	return nil
}

func (m *Manager) flushLoop() {
	defer m.stopped.Done()
	t := time.NewTicker(m.cfg.TouchInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if err := m.flushTouches(); err != nil {
				slog.Error("flush activity", "err", err)
			}
		}
	}
}

// taskUsage reads memory, CPU and pids of a task's cgroup from containerd.
func taskUsage(ctx context.Context, task containerd.Task) (Usage, error) {
	metric, err := task.Metrics(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("metrics of %s: %w", task.ID(), err)
	}
	data, err := typeurl.UnmarshalAny(metric.Data)
	if err != nil {
		return Usage{}, fmt.Errorf("decode metrics of %s: %w", task.ID(), err)
	}
	var u Usage
	switch st := data.(type) {
	case *v1.Metrics:
		if st.Memory != nil && st.Memory.Usage != nil {
			u.MemoryBytes, u.MemoryLimitBytes = st.Memory.Usage.Usage, st.Memory.Usage.Limit
		}
		if st.CPU != nil && st.CPU.Usage != nil {
			u.CPUSeconds = float64(st.CPU.Usage.Total) / 1e9
		}
		if st.Pids != nil {
			u.Pids = st.Pids.Current
		}
	case *v2.Metrics:
		if st.Memory != nil {
			u.MemoryBytes, u.MemoryLimitBytes = st.Memory.Usage, st.Memory.UsageLimit
		}
		if st.CPU != nil {
			u.CPUSeconds = float64(st.CPU.UsageUsec) / 1e6
		}
		if st.Pids != nil {
			u.Pids = st.Pids.Current
		}
	default:
		return Usage{}, fmt.Errorf("metrics of %s: unexpected type %T", task.ID(), data)
	}
	return u, nil
}

// Touch records activity on a session from outside a call (an open terminal's keystrokes).
func (m *Manager) Touch(sessionID string) { m.touch(sessionID) }
