package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/store"
)

// Process is a background process of a session, as the API lists it.
type Process struct {
	ID        string     `json:"id"`
	Command   string     `json:"command"`
	StartedAt time.Time  `json:"startedAt"`
	Running   bool       `json:"running"`
	ExitCode  *int       `json:"exitCode"`
	ExitedAt  *time.Time `json:"exitedAt,omitempty"`
}

// background is a live background process: its run, its log and who follows it.
type background struct {
	mu   sync.Mutex
	info Process
	log  *ringBuffer
	run  *run
	done chan struct{} // closed when the process has ended
	subs map[chan []byte]struct{}
}

// Write appends output to the log and hands it to every follower.
func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log.Write(p)
	for ch := range b.subs {
		select {
		case ch <- append([]byte(nil), p...):
		default: // a follower that cannot keep up misses chunks; the log keeps them
		}
	}
	return len(p), nil
}

func (b *background) snapshot() Process {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info
}

// StartBackground starts `sh -c command` in the session, detached: it keeps
// running after the call returns, its combined output kept in a ring buffer.
func (m *Manager) StartBackground(ctx context.Context, sessionID, command string) (Process, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	l, _, err := m.liveLocked(ctx, sessionID)
	if err != nil {
		return Process{}, err
	}
	m.touch(sessionID)
	m.bgMu.Lock()
	running := 0
	for _, b := range m.bg[sessionID] {
		if b.snapshot().Running {
			running++
		}
	}
	m.bgMu.Unlock()
	if running >= m.cfg.MaxBackground {
		return Process{}, fmt.Errorf("session %q runs %d background processes, the most allowed: %w", sessionID, running, errdefs.ErrResourceExhausted)
	}
	id := "bg-" + randomHex(6)
	b := &background{
		info: Process{ID: id, Command: command, StartedAt: time.Now().UTC(), Running: true},
		log:  newRingBuffer(m.cfg.BackgroundLogBytes),
		done: make(chan struct{}),
		subs: map[chan []byte]struct{}{},
	}
	// The process outlives this request: its calls must not end with it.
	bctx := context.WithoutCancel(ctx)
	r, err := startRun(bctx, l.task, l.proc, l.cgroup, m.fifoDir(), id, []string{"/bin/sh", "-c", command}, nil, nil, b, b)
	if err != nil {
		return Process{}, err
	}
	b.run = r
	// Recorded so that a restarted daemon finds the process again.
	if _, err := m.db.Update(sessionID, func(s *store.Session) error {
		s.Processes = append(s.Processes, store.Process{ID: id, Command: command, StartedAt: b.info.StartedAt})
		return nil
	}); err != nil {
		_ = r.kill()
		return Process{}, err
	}
	m.watchBackground(bctx, sessionID, b)
	return b.snapshot(), nil
}

// watchBackground registers b and, when its program ends, records the exit,
// kills what it left and forgets its record.
func (m *Manager) watchBackground(ctx context.Context, sessionID string, b *background) {
	m.bgMu.Lock()
	if m.bg[sessionID] == nil {
		m.bg[sessionID] = map[string]*background{}
	}
	m.bg[sessionID][b.info.ID] = b
	m.bgMu.Unlock()
	go func() {
		exit := <-b.run.statusC // the program ends, or Kill ends it
		st, err := b.run.finish(ctx, &exit)
		if err != nil {
			slog.Warn("background process cleanup", "session", sessionID, "process", b.info.ID, "err", err)
		}
		code := int(st.ExitCode())
		now := time.Now().UTC()
		b.mu.Lock()
		b.info.Running, b.info.ExitCode, b.info.ExitedAt = false, &code, &now
		b.mu.Unlock()
		close(b.done)
		_, err = m.db.Update(sessionID, func(s *store.Session) error {
			s.Processes = slices.DeleteFunc(s.Processes, func(p store.Process) bool { return p.ID == b.info.ID })
			return nil
		})
		if err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("forget background process", "session", sessionID, "process", b.info.ID, "err", err)
		}
	}()
}

// restoreBackground finds the background processes of a session again after
// a daemon restart: containerd kept them running. Their output reattaches
// from now on; what they printed while the daemon was away is lost.
func (m *Manager) restoreBackground(ctx context.Context, s store.Session, l *liveSession) {
	bctx := context.WithoutCancel(ctx)
	for _, rec := range s.Processes {
		b := &background{
			info: Process{ID: rec.ID, Command: rec.Command, StartedAt: rec.StartedAt, Running: true},
			log:  newRingBuffer(m.cfg.BackgroundLogBytes),
			done: make(chan struct{}),
			subs: map[chan []byte]struct{}{},
		}
		p, err := l.task.LoadProcess(bctx, rec.ID, cio.NewAttach(cio.WithStreams(nil, b, b)))
		var statusC <-chan containerd.ExitStatus
		if err == nil {
			statusC, err = p.Wait(bctx)
		}
		if err != nil {
			slog.Info("background process gone after restart", "session", s.SessionID, "process", rec.ID, "err", err)
			_, _ = m.db.Update(s.SessionID, func(s *store.Session) error {
				s.Processes = slices.DeleteFunc(s.Processes, func(p store.Process) bool { return p.ID == rec.ID })
				return nil
			})
			continue
		}
		b.log.Write([]byte("[servcraftd restarted: earlier output of this process is not kept]\n"))
		b.run = &run{id: rec.ID, task: l.task, p: p, group: existingRunGroup(l.cgroup, rec.ID),
			statusC: statusC, cgroup: l.cgroup, started: rec.StartedAt}
		m.watchBackground(bctx, s.SessionID, b)
	}
}

// Processes lists the session's background processes, oldest first.
func (m *Manager) Processes(ctx context.Context, sessionID string) ([]Process, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	if _, _, err := m.liveLocked(ctx, sessionID); err != nil {
		return nil, err
	}
	m.bgMu.Lock()
	out := make([]Process, 0, len(m.bg[sessionID]))
	for _, b := range m.bg[sessionID] {
		out = append(out, b.snapshot())
	}
	m.bgMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out, nil
}

// ProcessLog is what a background process printed: the kept tail of its
// output, whether older output was dropped, and, with follow, a channel of
// what comes next (closed when the process ends or ctx does).
type ProcessLog struct {
	Process   Process
	Output    []byte
	Truncated bool
	Follow    <-chan []byte
}

// Logs returns a background process's output; follow also streams what comes next.
func (m *Manager) Logs(ctx context.Context, sessionID, id string, follow bool) (ProcessLog, error) {
	b, err := m.background(ctx, sessionID, id)
	if err != nil {
		return ProcessLog{}, err
	}
	m.touch(sessionID)
	b.mu.Lock()
	out, cut := b.log.Bytes()
	pl := ProcessLog{Process: b.info, Output: out, Truncated: cut}
	if follow && b.info.Running {
		ch := make(chan []byte, 64)
		b.subs[ch] = struct{}{}
		stream := make(chan []byte, 64)
		pl.Follow = stream
		go func() {
			defer close(stream)
			defer func() { b.mu.Lock(); delete(b.subs, ch); b.mu.Unlock() }()
			for {
				select {
				case p := <-ch:
					select {
					case stream <- p:
					case <-ctx.Done():
						return
					}
				case <-b.done:
					for { // drain what arrived before the end
						select {
						case p := <-ch:
							stream <- p
						default:
							return
						}
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	b.mu.Unlock()
	return pl, nil
}

// Kill ends a background process and everything it started.
func (m *Manager) Kill(ctx context.Context, sessionID, id string) (Process, error) {
	b, err := m.background(ctx, sessionID, id)
	if err != nil {
		return Process{}, err
	}
	m.touch(sessionID)
	if err := b.run.kill(); err != nil {
		return Process{}, err
	}
	select {
	case <-b.done:
	case <-time.After(cleanupTimeout):
		return Process{}, fmt.Errorf("process %s did not end: %w", id, context.DeadlineExceeded)
	}
	return b.snapshot(), nil
}

func (m *Manager) background(ctx context.Context, sessionID, id string) (*background, error) {
	unlock := m.locks.RLock(sessionID)
	defer unlock()
	if _, _, err := m.liveLocked(ctx, sessionID); err != nil {
		return nil, err
	}
	m.bgMu.Lock()
	defer m.bgMu.Unlock()
	b := m.bg[sessionID][id]
	if b == nil {
		return nil, fmt.Errorf("session %q has no process %q: %w", sessionID, id, errdefs.ErrNotFound)
	}
	return b, nil
}

// forgetBackground drops a session's processes (its task is going away with them).
func (m *Manager) forgetBackground(sessionID string) {
	m.bgMu.Lock()
	delete(m.bg, sessionID)
	m.bgMu.Unlock()
}
