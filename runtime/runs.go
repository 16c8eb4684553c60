package runtime

import (
	"context"

	"github.com/servcraft/servcraftd/runtime/phases"
	"github.com/servcraft/servcraftd/store"
)

// Runtime is the runtime as the API and the daemon see it: the session
// table and its lifecycle (Manager), and the owners of what happens inside
// a session, each with its own state: its runs (Runs), its workspace
// (Files) and its preview addresses (Previews).
type Runtime struct {
	*Manager
	*Runs
	*Files
	*Previews
}

// sessionTable is what the owners of a session's runs, files and previews
// need of the manager: a call on a running session under its shared lock.
type sessionTable interface {
	// withLive runs fn on the running session, as activity.
	withLive(ctx context.Context, sessionID string, fn func(*liveSession, store.Session) error) error
	// readLive runs fn on the running session; reading is not activity.
	readLive(ctx context.Context, sessionID string, fn func(*liveSession, store.Session) error) error
}

// newRuntime wires the owners around m.
func newRuntime(m *Manager) *Runtime {
	runs := &Runs{runDeps{table: m, cfg: m.cfg, db: m.db, clock: m.clock, calls: m.calls, counters: m.counters,
		runners: m.runners, bg: m.bg, deps: m.deps}}
	m.deps.sessions = builderSessions{m: m, runs: runs}
	return &Runtime{Manager: m, Runs: runs, Files: &Files{table: m}, Previews: &Previews{previewIndex: m.previews, table: m}}
}

// Runs starts what runs in a session and keeps track of it: executions (on
// a waiting runner or cold), installs, terminals and background processes.
type Runs struct{ runDeps }

// runDeps is what Runs shares with the manager (the same owners, not copies).
type runDeps struct {
	table    sessionTable
	cfg      Config
	db       Store
	clock    *clock
	calls    *sessionCalls // calls in flight that a teardown cancels first
	counters *counters
	runners  *runners
	bg       *backgrounds
	deps     *depLayers
}

// Exec runs req in the session's container. A program that fails is a
// result, not an error; errors are the service's own (or an unknown session).
func (runs *Runs) Exec(ctx context.Context, sessionID string, req ExecRequest) (ExecResult, error) {
	req = execBounds(req, runs.cfg.ExecTimeout, runs.cfg.MaxExecTimeout, runs.cfg.OutputLimit)
	ctx, release := runs.calls.join(ctx, sessionID)
	defer release()
	var res ExecResult
	err := runs.table.withLive(ctx, sessionID, func(l *liveSession, s store.Session) (err error) {
		phases.Mark(ctx, "lock") // the session found and held
		switch {
		case req.Script != "":
			res, err = runs.runners.runScript(ctx, sessionID, s.Workspace, l, req)
		case req.Shell != "":
			res, err = runs.runners.runShell(ctx, sessionID, l, req)
		default:
			res, err = l.exec(ctx, req)
		}
		runs.counters.inc("exec", execOutcome(res, err))
		return err
	})
	return res, err
}

// builderSessions are the private sessions dependency layers are built in.
type builderSessions struct {
	m    *Manager
	runs *Runs
}

func (b builderSessions) create(ctx context.Context, id string) (store.Session, error) {
	return b.m.build(ctx, id, "", nil)
}

func (b builderSessions) install(ctx context.Context, id string, req InstallRequest) (InstallResult, error) {
	return b.runs.Install(ctx, id, req)
}

func (b builderSessions) destroy(ctx context.Context, id string) error { return b.m.Destroy(ctx, id) }
