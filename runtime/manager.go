package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/google/uuid"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/runtime/phases"
	"github.com/servcraft/servcraftd/snapshots"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/templates"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
	"github.com/servcraft/servcraftd/store/statedir"
)

// Labels on every session container, so `ctr -n servcraft c ls` explains itself.
const (
	LabelSession     = "servcraft.session-id"
	LabelUUID        = "servcraft.uuid"
	LabelCreatedAt   = "servcraft.created-at"
	LabelProjectType = "servcraft.project-type"
	// The session's activity, as the store had it at the last flush (at
	// most one TouchInterval behind it): what `servcraftd store rebuild`
	// restores deadlines from.
	LabelLastActive = "servcraft.last-active-at"
	LabelExpiresAt  = "servcraft.expires-at"
	LabelExtended   = "servcraft.extended"
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
	Count() (int, error)
	Touch(lastActive map[string]time.Time, idle time.Duration) error
	Rename(oldID string, fn func(*store.Session) error) (store.Session, error)
}

// Manager is the session table and its lifecycle: it creates, looks up,
// extends, destroys, reconciles and reaps sessions (record, container,
// task and workspace). What happens inside a session belongs to owners
// that share its table (see Runtime): Runs (executions, installs,
// terminals, background processes), Files and Previews. Its own state sits
// in small owners, each with its own mutex: live (cached task handles),
// previews (live sessions by preview id), activity (touches and their
// flush), pool (warm containers), deps (dependency layers), bg (background
// processes) and runners (pre-started Node processes). Terminals are owned
// by whoever opened them.
//
// Lock order, outermost first (every mutex of the package is named here):
//
//	deps.builds → locks (one session's RWMutex) → capMu
//
// Every other mutex is a leaf: it is never held while another lock is
// taken, the store is called or containerd is asked. They are locks.mu
// (inside keyedLocks' get and put only), activity.mu, live.mu, previews.mu,
// pool.mu, runners.mu, calls.mu, reaping.mu, counters.mu, a run output's
// cappedBuffer.mu and Reap's own result mutex; bg.mu, the one exception,
// takes a background's own mu inside it. activity.flushMu is held across a
// whole flush, which takes activity.mu and calls the store but takes no
// session lock. A teardown (Destroy, a reap) cancels the session's calls
// through calls.mu and lets go of it before it takes the session's lock.
type Manager struct {
	client *containerd.Client
	db     Store
	vols   *workspace.Volumes
	cfg    Config
	image  containerd.Image
	clock  *clock
	fifo   string // where the FIFOs of runc exec runs go

	locks keyedLocks
	calls *sessionCalls // calls in flight that a teardown cancels first
	capMu sync.Mutex    // held while counting sessions and reserving one

	live     liveSessions
	previews *previewIndex
	activity *activity
	pool     *warmPool
	bg       *backgrounds
	runners  *runners
	boot     *cgroup.Boot
	counters *counters

	deps *depLayers

	reaping  reapings       // sessions whose reap is under way
	reapRuns sync.WaitGroup // reaps still under way; Close waits for them

	stop     chan struct{}
	stopped  sync.WaitGroup
	stopOnce sync.Once
}

// New checks the image (pulling or importing it if needed) and returns a
// manager ready for calls; Start brings its background work into service.
// It makes vols keep cfg.DiskReserve free beside what the caches may still
// grow by (workspaceRoom).
func New(ctx context.Context, client *containerd.Client, db Store, vols *workspace.Volumes, cfg Config) (*Runtime, error) {
	state := statedir.Dir(cfg.StateDir)
	if err := os.MkdirAll(state.FIFOs(), 0o700); err != nil {
		return nil, fmt.Errorf("create fifo folder: %w", err)
	}
	if cfg.SpawnerPath == "" { // a spawner is its containers' PID 1: no init then
		if _, err := os.Stat(cfg.InitPath); err != nil {
			return nil, fmt.Errorf("init binary: %w", err)
		}
	}
	if cfg.SpawnerPath != "" {
		staged, err := stageSpawner(state.Spawner(), cfg.SpawnerPath)
		if err != nil {
			return nil, err
		}
		cfg.SpawnerPath = staged
	}
	var layers *layerCache
	if cfg.DepCacheDir != "" {
		var err error
		if layers, err = openLayerCache(cfg.DepCacheDir, cfg.DepCacheBytes, cfg.DepLayerMaxBytes); err != nil {
			return nil, err
		}
	}
	if cfg.ToolchainDir != "" {
		if _, err := os.Stat(filepath.Join(cfg.ToolchainDir, "node_modules", "tsx", "dist", "loader.mjs")); err != nil {
			return nil, fmt.Errorf("TypeScript toolchain in %s (scripts/build-toolchain.sh builds it): %w", cfg.ToolchainDir, err)
		}
	}
	img, err := ensureImage(ctx, client, cfg.Image)
	if err != nil {
		return nil, err
	}
	m := newManager(client, db, vols, cfg, img)
	m.runners.nodeVersion = imageNodeVersion(ctx, img)
	if layers != nil {
		m.deps.cache = layers
		if m.deps.starters, err = newStarterLayers(m.deps.imageDigest, cfg.NpmPath); err != nil {
			return nil, err
		}
	}
	vols.SetReserve(m.deps.reserveBytes)
	return newRuntime(m), nil
}

// newManager wires a manager's state; it starts nothing.
func newManager(client *containerd.Client, db Store, vols *workspace.Volumes, cfg Config, img containerd.Image) *Manager {
	m := &Manager{client: client, db: db, vols: vols, cfg: cfg, image: img,
		pool: newWarmPool(cfg.PoolSize), boot: cgroup.NewBoot(cfg.RunnerBootCPUs, cfg.Limits.CPUPeriod), clock: newClock(), fifo: statedir.Dir(cfg.StateDir).FIFOs(), stop: make(chan struct{})}
	m.activity = newActivity(m.clock.read, cfg.IdleTimeout)
	m.runners = &runners{cfg: cfg, boot: m.boot}
	m.calls, m.counters, m.previews = &sessionCalls{}, &counters{}, &previewIndex{}
	m.bg = &backgrounds{cfg: cfg, db: db, clock: m.clock}
	m.deps = &depLayers{cfg: cfg, db: db, pool: m.pool, stop: m.stop, startersEnd: make(chan struct{})}
	if img != nil {
		m.deps.imageDigest = string(img.Target().Digest)
	}
	return m
}

// ImageName is the image sessions are created from.
func (m *Manager) ImageName() string { return m.image.Name() }

// Create returns the session of sessionID, creating its container when it
// has none. created is false when it already existed.
func (m *Manager) Create(ctx context.Context, sessionID, projectType string) (store.Session, bool, error) {
	return createOnce(ctx, m, sessionID, func(outcome *string) (store.Session, bool, error) {
		if s, ok := m.claimPooled(ctx, sessionID, projectType); ok {
			*outcome = "pool"
			return s, true, nil
		}
		s, err := m.build(ctx, sessionID, projectType, nil)
		return built(s, err, outcome)
	})
}

// Fork returns the session of sessionID, creating it when it has none as
// a copy of the running session from: its workspace as it is at that
// moment (a snapshot on btrfs, a copy of the files otherwise), not its
// processes, and its project type. created is false when sessionID
// already existed (nothing is copied then). A from that is not a running
// session here is not found.
func (m *Manager) Fork(ctx context.Context, sessionID, from string) (store.Session, bool, error) {
	if from == sessionID {
		return store.Session{}, false, fmt.Errorf("fork %s from itself: %w", sessionID, errdefs.ErrInvalidArgument)
	}
	return createOnce(ctx, m, sessionID, func(outcome *string) (store.Session, bool, error) {
		src, err := m.db.Get(from)
		if err != nil || src.State != store.StateRunning || KindOf(from) == KindPool {
			return store.Session{}, false, fmt.Errorf("fork from session %q: no running session of that id: %w", from, errdefs.ErrNotFound)
		}
		m.activity.touch(from)
		switch s, ok, err := forkPooled(ctx, m, sessionID, src); {
		case ok:
			*outcome = "pool"
			return s, true, nil
		case err != nil:
			return built(s, err, outcome)
		}
		s, err := m.build(ctx, sessionID, src.ProjectType, &src)
		return built(s, err, outcome)
	})
}

// createOnce is a create of sessionID under its lock: the running session
// when there is one (created false), else what makeOne makes, after a record
// left half made or half destroyed by a crash is finished off. makeOne sets
// the outcome the creates counter gets ("error" unless it says otherwise).
func createOnce(ctx context.Context, m *Manager, sessionID string, makeOne func(outcome *string) (store.Session, bool, error)) (store.Session, bool, error) {
	unlock := m.locks.Lock(sessionID)
	defer unlock()
	outcome := "error"
	defer func() { m.counters.inc("creates", outcome) }()
	if existing, ok, err := runningOrCleared(ctx, m, sessionID); ok || err != nil {
		if ok {
			outcome = "existing"
		}
		return existing, false, err
	}
	return makeOne(&outcome)
}

// runningOrCleared is the running session of sessionID (ok) for a create
// to answer with; a record left half made or half destroyed by a crash is
// finished off so the create starts afresh. The caller holds its lock.
func runningOrCleared(ctx context.Context, m *Manager, sessionID string) (_ store.Session, ok bool, _ error) {
	existing, err := m.db.Get(sessionID)
	switch {
	case err == nil && existing.State == store.StateRunning:
		m.activity.touch(sessionID)
		return m.activity.view(existing), true, nil
	case err == nil:
		if err := m.teardown(ctx, existing); err != nil {
			return store.Session{}, false, err
		}
	case !errdefs.IsNotFound(err):
		return store.Session{}, false, fmt.Errorf("session %q: %w", sessionID, err)
	}
	return store.Session{}, false, nil
}

// built sets a create's outcome from build's answer.
func built(s store.Session, err error, outcome *string) (store.Session, bool, error) {
	switch {
	case errors.Is(err, ErrCapacity):
		*outcome = "capacity"
	case errors.Is(err, disk.ErrHostFull):
		*outcome = "host_disk_full"
	}
	if err != nil {
		return s, false, err
	}
	*outcome = "ok"
	return s, true, nil
}

// build makes a session's workspace (a copy of from's when from is not
// nil, else seeded with projectType's starter project, none for "") and
// its running container, recorded under sessionID. On failure nothing of
// it is left.
func (m *Manager) build(ctx context.Context, sessionID, projectType string, from *store.Session) (_ store.Session, retErr error) {
	id := uuid.NewString()
	now := m.clock.read().UTC()
	limits := store.Limits{MemoryBytes: m.cfg.Limits.MemoryBytes, CPUQuota: m.cfg.Limits.CPUQuota,
		CPUPeriod: m.cfg.Limits.CPUPeriod, PidsLimit: m.cfg.Limits.Pids, WorkspaceBytes: m.vols.Size()}
	s := newRecord(sessionID, id, m.image.Name(), projectType, m.vols.Dir(id), limits, now, m.cfg.IdleTimeout)
	if err := m.reserve(s); err != nil {
		return store.Session{}, err
	}
	phases.Mark(ctx, "reserve") // capacity checked, the record written
	defer func() {
		if retErr != nil {
			if err := m.teardown(context.WithoutCancel(ctx), s); err != nil {
				slog.Error("undo half-created session", "session", sessionID, "container", s.ContainerID, "err", err)
			}
		}
	}()
	var dir string
	var err error
	if from != nil {
		dir, err = m.vols.Fork(ctx, from.UUID, id)
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("fork from session %q: its workspace is gone: %w", from.SessionID, errdefs.ErrNotFound)
		}
	} else {
		dir, err = m.vols.Create(ctx, id)
	}
	if err != nil {
		return s, err
	}
	if projectType != "" && from == nil {
		if err := templates.Seed(dir, projectType); err != nil {
			return s, err
		}
	}
	phases.Mark(ctx, "workspace") // made (or forked) and seeded with the starter's files
	// The starter's dependencies are copied in while the container starts
	// (no user code runs before the create answers); a failed build waits
	// for the copy before it removes the workspace.
	depsKey := m.deps.starterKey(projectType)
	if from != nil {
		depsKey = "" // the fork has what its source installed
	}
	if KindOf(sessionID) == KindPool && m.deps.starters != nil {
		depsKey = m.deps.starters.poolKey // every starter's; the project type is only known when it is claimed
	}
	depsDone := make(chan string, 1)
	go func() { depsDone <- m.deps.seedStarter(dir, depsKey, "") }()
	lacks := sync.OnceValue(func() string { return <-depsDone }) // what of its starter project the session lacks
	defer func() {
		if retErr != nil {
			lacks()
		}
	}()
	container, err := m.client.NewContainer(ctx, s.ContainerID,
		containerd.WithImage(m.image),
		containerd.WithSnapshotter(m.cfg.Image.Snapshotter),
		snapshots.WithRootFS(s.ContainerID, m.image),
		containerd.WithRuntime(m.cfg.Runtime, nil),
		containerd.WithNewSpec(append(sessionSpecOpts(m.image, m.cfg.Limits, dir, m.cfg.InitPath, m.cfg.SpawnerPath, m.cfg.ToolchainDir),
			withShimGroup(shimGroup(s.ContainerID, m.cfg.MaxSessions, m.cfg.SessionsPerShim)))...),
		containerd.WithContainerLabels(sessionLabels(s)),
	)
	if err != nil {
		return s, fmt.Errorf("create container %s: %w", s.ContainerID, err)
	}
	phases.Mark(ctx, "container") // containerd's record and rootfs snapshot
	task, err := container.NewTask(ctx, cio.NullIO)
	if err != nil {
		return s, fmt.Errorf("create task %s: %w", s.ContainerID, err)
	}
	phases.Mark(ctx, "task") // runc create, through the shim
	if err := task.Start(ctx); err != nil {
		return s, fmt.Errorf("start task %s: %w", s.ContainerID, err)
	}
	phases.Mark(ctx, "start")
	spec, err := container.Spec(ctx)
	if err != nil {
		return s, fmt.Errorf("spec of %s: %w", s.ContainerID, err)
	}
	live := newLiveSession(task, spec, m.fifo)
	if err := live.awaitSpawner(ctx); err != nil {
		// Its runs are started with runc exec meanwhile (see start).
		slog.Warn("spawner not listening", "container", s.ContainerID, "err", err)
	}
	if err := live.spareFromPidsLimit(); err != nil {
		return s, err
	}
	phases.Mark(ctx, "spawner") // PID 1 listening, placed outside the pids limit
	missing := lacks()
	phases.Mark(ctx, "deps") // the starter's dependencies copied in
	if KindOf(sessionID) == KindPool {
		if missing != "" {
			slog.Debug("warm container without starter dependencies", "record", sessionID, "notice", missing)
			missing = ""
		}
		// What the copy wrote reaches the disk now, not in the flush of a claim.
		if err := flushWorkspace(dir); err != nil {
			return s, err
		}
	}
	s, err = m.db.Update(sessionID, func(r *store.Session) error {
		r.State = store.StateRunning
		r.DependenciesMissing = missing
		return nil
	})
	if err != nil {
		return s, err
	}
	m.live.add(sessionID, live)
	m.previews.add(sessionID, s.UUID)
	return s, nil
}

// sessionLabels are the labels of s's container: who it is and its activity.
func sessionLabels(s store.Session) map[string]string {
	labels := activityLabels(s)
	labels[LabelSession] = s.SessionID
	labels[LabelUUID] = s.UUID
	labels[LabelCreatedAt] = s.CreatedAt.UTC().Format(time.RFC3339)
	labels[LabelProjectType] = s.ProjectType
	return labels
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
	MemoryBytes         uint64
	MemoryLimitBytes    uint64
	CPUSeconds          float64
	Pids                uint64
	WorkspaceBytes      int64
	WorkspaceLimitBytes int64
}

// Get returns the session of sessionID with live status and usage. It does
// not count as activity.
func (m *Manager) Get(ctx context.Context, sessionID string) (Info, error) {
	var info Info
	err := m.readLive(ctx, sessionID, func(l *liveSession, s store.Session) error {
		info = Info{Session: m.activity.view(s), Status: "unknown"}
		if st, err := l.task.Status(ctx); err == nil {
			info.Status = string(st.Status)
		}
		if u, err := taskUsage(ctx, l.task); err == nil {
			info.Usage = u
			// The user's processes alone, as on cgroup v1 where the spawner is outside.
			if n, ok := cgroup.RunsPids(l.cgroup); ok {
				info.Usage.Pids = n
			}
		} else {
			slog.Warn("read usage", "session", sessionID, "container", s.ContainerID, "err", err)
		}
		info.Usage.WorkspaceBytes, info.Usage.WorkspaceLimitBytes, _ = m.vols.Usage(s.UUID)
		return nil
	})
	return info, err
}

// Extend pushes the session's deadline out by ExtendBy, once per session:
// errdefs.ErrFailedPrecondition the second time.
func (m *Manager) Extend(ctx context.Context, sessionID string) (store.Session, error) {
	unlock := m.locks.Lock(sessionID)
	defer unlock()
	if err := m.activity.flush(m.db); err != nil {
		return store.Session{}, err
	}
	s, err := m.db.Update(sessionID, func(s *store.Session) error { return extend(s, m.cfg.ExtendBy) })
	if err == nil {
		m.activity.relabel(sessionID)
	}
	return s, err
}

// Destroy removes the session and everything it had; errdefs.ErrNotFound if unknown.
func (m *Manager) Destroy(ctx context.Context, sessionID string) error {
	// Calls in flight end first (their runs are killed), so the lock is
	// free within a bound whatever the session's code holds open.
	done := m.calls.end(sessionID)
	defer done()
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
		n, err := countSessions(m.db)
		if err != nil {
			return err
		}
		if err := checkCapacity(n, m.cfg.MaxSessions); err != nil {
			return err
		}
	}
	return m.db.Create(s)
}

// countSessions is the number of sessions in db, live or being made or destroyed.
func countSessions(db Store) (int, error) {
	n, err := db.Count()
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// teardown removes container, task, snapshot, workspace and record of s, in
// that order, tolerating any of them being gone already. The record goes last,
// so a crash midway leaves something for the next start to finish.
func (m *Manager) teardown(ctx context.Context, s store.Session) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	m.live.remove(s.SessionID)
	m.previews.remove(s.SessionID)
	m.bg.forget(s.SessionID)
	for _, rn := range m.runners.takeSession(s.SessionID) {
		rn.stop()
	}
	if s.State != store.StateDestroying {
		if _, err := m.db.Update(s.SessionID, func(r *store.Session) error { r.State = store.StateDestroying; return nil }); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	if err := removeContainer(ctx, m.client, s.ContainerID); err != nil {
		return err
	}
	if err := m.vols.Remove(ctx, s.UUID); err != nil {
		return err
	}
	if err := m.db.Delete(s.SessionID); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	m.activity.forget(s.SessionID)
	return nil
}

// removeContainer kills the task and deletes it, the container and its rootfs snapshot.
func removeContainer(ctx context.Context, client *containerd.Client, containerID string) error {
	container, err := client.LoadContainer(ctx, containerID)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("load container %s: %w", containerID, err)
	}
	return deleteContainer(ctx, container)
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
func (m *Manager) Touch(sessionID string) { m.activity.touch(sessionID) }
