package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// ReconcileReport says what a reconciliation found and did.
type ReconcileReport struct {
	Kept          []string // sessions running on with their stored deadlines
	Expired       []string // sessions whose deadline passed while the daemon was down
	Unfinished    []string // sessions left creating or destroying by a crash
	Gone          []string // sessions whose container or task had disappeared
	Orphans       []string // labelled containers without a record
	StrayVolumes  []string // workspace volumes without a record
	FailedCleanup []string // sessions that could not be cleaned up (retried at every reap)
	StaleRuns     []string // runs of the last daemon killed (session/run)
	LayerBuilds   []string // dependency layers whose build was cut short, removed
	HalfWritten   []string // kept sessions whose workspace held files of writes cut short, removed (session/count)
}

// Reconcile brings the store and containerd into agreement, as at start:
// the runs the last daemon had in flight are killed (a kept session's
// background processes excepted: they are adopted again); running sessions
// keep their deadlines; expired, half-made, half-destroyed and vanished
// sessions are torn down, each retried with a fresh context until it
// succeeds or teardownAttempts are spent (the reaper then goes on trying);
// labelled containers and workspace volumes that no record owns, and
// half-built dependency layers, are removed; so are the new files of writes
// the last daemon did not finish in a kept session's workspace.
func (m *Manager) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	if err := m.activity.flush(m.db); err != nil {
		return rep, err
	}
	records, err := m.db.List()
	if err != nil {
		return rep, fmt.Errorf("list sessions: %w", err)
	}
	defer holdFIFOs(m.fifo)()
	containers, err := m.client.Containers(ctx, fmt.Sprintf("labels.%q", LabelSession))
	if err != nil {
		return rep, fmt.Errorf("list containers: %w", err)
	}
	byID := map[string]containerd.Container{}
	for _, c := range containers {
		byID[c.ID()] = c
	}
	owned := map[string]bool{} // workspace UUIDs that stay
	now := m.clock.read()
	for _, s := range records {
		unlock := m.locks.Lock(s.SessionID)
		var bucket *[]string
		switch reconcileVerdict(s, now, func() bool { return taskRunning(ctx, byID[s.ContainerID]) }) {
		case unfinished:
			bucket = &rep.Unfinished
		case expired:
			bucket = &rep.Expired
		case gone:
			bucket = &rep.Gone
		case keep:
			rep.Kept = append(rep.Kept, s.SessionID)
			owned[s.UUID] = true
			if n, err := workspace.RemoveWriteLeftovers(s.Workspace); n > 0 || err != nil {
				rep.HalfWritten = append(rep.HalfWritten, fmt.Sprintf("%s/%d", s.SessionID, n))
				if err != nil {
					slog.Error("reconcile: remove the files of writes cut short", "session", s.SessionID, "err", err)
				}
			}
		}
		if c := byID[s.ContainerID]; c != nil {
			var keepRuns []store.Process
			if bucket == nil {
				keepRuns = s.Processes
			}
			ended, err := killStaleRuns(ctx, c, keepRuns)
			for _, r := range ended {
				rep.StaleRuns = append(rep.StaleRuns, s.SessionID+"/"+r)
			}
			if err != nil {
				slog.Error("reconcile: kill the last daemon's runs", "session", s.SessionID, "container", s.ContainerID, "err", err)
			}
		}
		delete(byID, s.ContainerID)
		if bucket != nil {
			*bucket = append(*bucket, s.SessionID)
			if err := m.teardownRetrying(ctx, s); err != nil {
				slog.Error("reconcile: tear down", "session", s.SessionID, "container", s.ContainerID, "err", err)
				rep.FailedCleanup = append(rep.FailedCleanup, s.SessionID)
				owned[s.UUID] = true
			}
		}
		unlock()
	}
	var errs []error
	layers, err := removeUnfinishedLayers(m.cfg.DepCacheDir)
	rep.LayerBuilds = layers
	if err != nil {
		errs = append(errs, err)
	}
	for id, c := range byID {
		rep.Orphans = append(rep.Orphans, id)
		if err := removeContainer(ctx, m.client, id); err != nil {
			errs = append(errs, err)
		}
		if labels, err := c.Labels(ctx); err == nil && labels[LabelUUID] != "" {
			owned[labels[LabelUUID]] = false
		}
	}
	vols, err := m.vols.List()
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range vols {
		if owned[id] {
			continue
		}
		rep.StrayVolumes = append(rep.StrayVolumes, id)
		if err := m.vols.Remove(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// taskProbeTimeout bounds each question to containerd about one task at
// start: a shim stuck on one session must not hold up every other.
const taskProbeTimeout = 10 * time.Second

// taskRunning reports whether c exists and its task is running or paused.
// Only containerd's word that there is no such task, or that it stopped,
// makes it false: a session is torn down (its workspace with it) on that
// alone. An answer that does not come (a busy shim, a timeout) keeps the
// session; the reaper asks again at every reap.
func taskRunning(ctx context.Context, c containerd.Container) bool {
	if c == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, taskProbeTimeout)
	defer cancel()
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return false
	} else if err != nil {
		slog.Warn("reconcile: no answer about a task; keeping its session", "container", c.ID(), "err", err)
		return true
	}
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return false
	} else if err != nil {
		slog.Warn("reconcile: no status of a task; keeping its session", "container", c.ID(), "err", err)
		return true
	}
	return st.Status == containerd.Running || st.Status == containerd.Paused
}

// Reap destroys every session whose deadline has passed or whose task is no
// longer running (its container was removed behind the daemon's back, or
// its init died), and returns their IDs.
func (m *Manager) Reap(ctx context.Context) ([]string, error) {
	if err := m.activity.flush(m.db); err != nil {
		return nil, err
	}
	records, err := m.db.List()
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	running, err := runningTasks(ctx, m.client)
	if err != nil {
		return nil, err
	}
	now := m.clock.read()
	var (
		mu     sync.Mutex
		reaped []string
		errs   []error
		wg     sync.WaitGroup
		slots  = make(chan struct{}, reapParallel)
	)
	for _, s := range records {
		if !reapCandidate(s, running[s.ContainerID], now) || !m.reaping.add(s.SessionID) {
			continue // not idle, or its reap from an earlier pass is still under way
		}
		wg.Add(1)
		m.reapRuns.Add(1)
		go func() {
			defer m.reapRuns.Done()
			defer wg.Done()
			defer m.reaping.remove(s.SessionID)
			slots <- struct{}{}
			defer func() { <-slots }()
			reason, err := m.reapOne(context.WithoutCancel(ctx), s.SessionID, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case reason != "":
				reaped = append(reaped, s.SessionID)
			}
		}()
	}
	all := make(chan struct{})
	go func() {
		wg.Wait()
		close(all)
	}()
	if !waitFor(all, reapWait) {
		// The slow ones go on beside the next passes, bounded by teardown's
		// own timeouts; they log what they find.
		slog.Warn("reap: teardowns still under way", "after", reapWait)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(reaped), errors.Join(errs...)
}

// reapParallel is how many sessions are torn down at once by a reap, and
// reapWait how long a reap waits for them before it answers: one slow
// teardown never holds back the others, nor the next pass.
const (
	reapParallel = 4
	reapWait     = 20 * time.Second
)

// reapGrace is how long a reap waits for a session's calls in flight to
// end by themselves before it cancels them: a session idle past its
// timeout with a call still in flight holds a run that never ends.
const reapGrace = 5 * time.Second

// reapOne destroys sessionID if it is still idle once its lock is held,
// and says why ("" when it no longer is). It never waits on the session's
// code: calls still in flight after reapGrace are cancelled.
func (m *Manager) reapOne(ctx context.Context, sessionID string, now time.Time) (reason string, err error) {
	locked := make(chan func(), 1)
	go func() { locked <- m.locks.Lock(sessionID) }()
	var unlock func()
	stuck := false
	select {
	case unlock = <-locked:
	case <-time.After(reapGrace):
		done := m.calls.end(sessionID)
		defer done()
		unlock = <-locked
		stuck = true
	}
	defer unlock()
	// Look again under the lock: a request may have just used it.
	cur, err := m.db.Get(sessionID)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return "", nil
		}
		return "", err
	}
	reason = reapReason(m.activity.view(cur), now, func() bool {
		return taskRunning(ctx, loadContainer(ctx, m.client, cur.ContainerID))
	})
	if reason == "" && stuck {
		// Idle past its deadline with a call in flight since before it: the
		// call was stuck (its cancellation counts as activity, but is not).
		reason = "stuck"
	}
	if reason == "" {
		return "", nil
	}
	if err := m.teardown(ctx, cur); err != nil {
		m.counters.inc("reaps", "error")
		slog.Warn("reap", "session", sessionID, "err", err)
		return "", fmt.Errorf("reap %s: %w", sessionID, err)
	}
	m.counters.inc("reaps", reason)
	slog.Debug("reaped", "session", sessionID, "reason", reason)
	return reason, nil
}

// reapings is the set of sessions whose reap is under way.
type reapings struct {
	mu sync.Mutex
	m  map[string]bool
}

// add marks id as being reaped; false if it already is.
func (r *reapings) add(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[id] {
		return false
	}
	if r.m == nil {
		r.m = map[string]bool{}
	}
	r.m[id] = true
	return true
}

func (r *reapings) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// dropIdle ends the waiting runners of sessions idle for idleFor:
// a pre-started Node process costs memory a sleeping session should not hold.
// No lock is held while activity and the store are read.
func (rs *runners) dropIdle(now time.Time, idleFor time.Duration, lastActive func(sessionID string) time.Time) {
	for key, list := range rs.all() {
		if !runnerIdle(lastActive(list[0].session), now, idleFor) {
			continue
		}
		for _, r := range list {
			if rs.remove(key, r) {
				r.stop()
			}
		}
	}
}

// lastActive is when sessionID was last active: a touch pending in memory,
// else the store's record (zero when it has none).
func (m *Manager) lastActive(sessionID string) time.Time {
	at, ok := m.activity.last(sessionID)
	if !ok {
		if s, err := m.db.Get(sessionID); err == nil {
			at = s.LastActiveAt
		}
	}
	return at
}

// runningTasks lists, in one call, the containers whose task is running or paused.
func runningTasks(ctx context.Context, client *containerd.Client) (map[string]bool, error) {
	resp, err := client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := map[string]bool{}
	for _, t := range resp.Tasks {
		if t.Status == task.Status_RUNNING || t.Status == task.Status_PAUSED {
			out[t.ID] = true
		}
	}
	return out, nil
}

// loadContainer returns the container of id, or nil when it cannot be loaded.
func loadContainer(ctx context.Context, client *containerd.Client, id string) containerd.Container {
	c, err := client.LoadContainer(ctx, id)
	if err != nil {
		return nil
	}
	return c
}

// DestroyAll destroys every session, as --destroy-on-shutdown asks.
func (m *Manager) DestroyAll(ctx context.Context) error {
	records, err := m.db.List()
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var errs []error
	for _, s := range records {
		if err := m.Destroy(ctx, s.SessionID); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
