package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// Start brings the manager into service, in this order: it reconciles the
// store with containerd (errors are logged; what could not be cleaned up is
// retried by the reaper), indexes the live sessions by preview id, adopts
// the warm containers left in the store and keeps the pool full, reaps
// every ReapInterval, and writes activity to the store every TouchInterval.
// All of it runs until Close.
func (m *Manager) Start(ctx context.Context) error {
	rep, err := m.Reconcile(ctx)
	slog.Info("reconciled sessions with containerd", "kept", len(rep.Kept), "expired", rep.Expired,
		"unfinished", rep.Unfinished, "gone", rep.Gone, "orphans", rep.Orphans, "stray_volumes", rep.StrayVolumes,
		"stale_runs", rep.StaleRuns, "unfinished_layers", rep.LayerBuilds, "failed_cleanup", rep.FailedCleanup, "half_written", rep.HalfWritten)
	if err != nil {
		slog.Error("reconcile", "err", err)
	}
	if err := m.previews.load(m.db); err != nil {
		return err
	}
	// The warm containers the store holds (Reconcile kept them) are the
	// pool's; it is kept full from now on.
	if m.cfg.PoolSize > 0 {
		records, err := m.db.List()
		if err != nil {
			return fmt.Errorf("list sessions: %w", err)
		}
		m.pool.adopt(records)
		m.stopped.Add(1)
		go func() {
			defer m.stopped.Done()
			m.pool.keep(m.stop, m.cfg.PoolParallel, func(ctx context.Context, id, projectType string) error {
				_, err := m.build(ctx, id, projectType, nil)
				return err
			})
		}()
		m.pool.refill()
	}
	m.stopped.Add(1)
	go func() {
		defer m.stopped.Done()
		m.deps.keepStarters()
	}()
	// The reaper outlives the caller's context: Close ends it.
	reapCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stopped.Add(2)
	go func() {
		defer m.stopped.Done()
		<-m.stop
		cancel()
	}()
	go m.runReaper(reapCtx, m.cfg.ReapInterval)
	m.stopped.Add(1)
	go func() {
		defer m.stopped.Done()
		m.activity.flushEvery(m.stop, m.cfg.TouchInterval, m.client, m.db)
	}()
	return nil
}

// Close stops what Start started and writes pending activity. Containers keep running.
func (m *Manager) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	m.stopped.Wait()
	m.deps.running.Wait() // a build in flight was cancelled; its builder is torn down
	m.reapRuns.Wait()     // a teardown under way is bounded by its own timeouts
	return m.activity.flush(m.db)
}

// labelTimeout bounds one round of label writes.
const labelTimeout = 10 * time.Second

// labelStale copies the stored activity of the sessions used since the
// last round onto their containers' labels, so that a store rebuilt from
// containerd finds every deadline within one TouchInterval.
func (a *activity) labelStale(client *containerd.Client, db Store) {
	ids := a.takeStale()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), labelTimeout)
	defer cancel()
	for _, id := range ids {
		s, err := db.Get(id)
		if err != nil {
			continue // destroyed meanwhile
		}
		// The view holds a touch that came after this round's flush: its
		// stale mark was taken above, so this is the round to label it.
		s = a.view(s)
		c, err := client.LoadContainer(ctx, s.ContainerID)
		if err == nil {
			_, err = c.SetLabels(ctx, activityLabels(s))
		}
		if err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("label session activity", "session", id, "container", s.ContainerID, "err", err)
		}
	}
}

// flushEvery writes the activity to db, and then onto the containers'
// labels, every interval until stop is closed.
func (a *activity) flushEvery(stop <-chan struct{}, interval time.Duration, client *containerd.Client, db Store) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := a.flush(db); err != nil {
				slog.Error("flush activity", "err", err)
				continue
			}
			a.labelStale(client, db)
		}
	}
}

// runReaper reaps every interval until ctx ends.
func (m *Manager) runReaper(ctx context.Context, interval time.Duration) {
	defer m.stopped.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.runners.dropIdle(m.clock.read(), m.cfg.RunnerIdle, m.lastActive)
			reaped, err := m.Reap(ctx)
			if len(reaped) > 0 {
				slog.Info("reaped idle sessions", "count", len(reaped), "sessions", reaped)
			}
			if err != nil {
				slog.Error("reap", "err", err)
			}
		}
	}
}
