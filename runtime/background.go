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

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/store"
)

// Process is a background process of a session, as the API lists it.
type Process struct {
	ID        string
	Command   string
	StartedAt time.Time
	Running   bool
	ExitCode  *int
	ExitedAt  *time.Time
}

// background is a live background process: its run, its log and who follows it.
//
// Its output is read only while someone may see it: once the process has
// written a ring buffer's worth that nobody read, and nobody follows, Write
// blocks, the pipe fills and the process blocks on its own writes, burning
// no CPU, until a reader comes (Logs), a follower attaches, or the process
// is ending (release).
type background struct {
	mu       sync.Mutex
	resume   *sync.Cond // signalled when a reader or follower comes, or on release
	info     Process
	log      *ringBuffer
	unread   int  // bytes written since the log was last read
	released bool // the process is ending: never block its output again
	run      *run
	done     chan struct{} // closed when the process has ended
	subs     map[chan []byte]struct{}
}

// Write appends output to the log and hands it to every follower. It
// blocks while the log holds a full buffer nobody read and nobody follows.
func (b *background) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.subs) == 0 && b.unread >= b.log.size && !b.released {
		b.resume.Wait()
	}
	b.log.Write(p)
	b.unread += len(p)
	for ch := range b.subs {
		select {
		case ch <- append([]byte(nil), p...):
		default: // a follower that cannot keep up misses chunks; the log keeps them
		}
	}
	return len(p), nil
}

// read marks the log as read: the process may write another buffer's worth.
// b.mu must be held.
func (b *background) read() {
	b.unread = 0
	b.resume.Broadcast()
}

// release lets output flow freely from now on: the process is ending, and
// its pipes must drain for the end to complete.
func (b *background) release() {
	b.mu.Lock()
	b.released = true
	b.resume.Broadcast()
	b.mu.Unlock()
}

func (b *background) snapshot() Process {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info
}

// backgrounds holds the background processes of every session.
//
// Lock order: mu, then a background's own mu; nothing else is taken under them.
type backgrounds struct {
	cfg   Config // MaxBackground, BackgroundLogBytes, KeepEndedBackground
	db    Store  // each process is recorded on its session's record
	clock *clock

	mu       sync.Mutex
	m        map[string]map[string]*background // sessionID -> process ID -> process
	starting map[string]int                    // sessionID -> starts under way
}

// running counts sessionID's processes that have not ended. The caller holds mu.
func (bs *backgrounds) running(sessionID string) int {
	n := 0
	for _, b := range bs.m[sessionID] {
		if b.snapshot().Running {
			n++
		}
	}
	return n
}

// reserve counts one start under way for sessionID unless its running
// processes and starts under way reach most already (which it reports).
// Counting and reserving are one step, so starts at once cannot all pass.
// release ends the reservation: once the process is added, or failed.
func (bs *backgrounds) reserve(sessionID string, most int) (release func(), running int, ok bool) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	running = bs.running(sessionID) + bs.starting[sessionID]
	if running >= most {
		return nil, running, false
	}
	if bs.starting == nil {
		bs.starting = map[string]int{}
	}
	bs.starting[sessionID]++
	return func() {
		bs.mu.Lock()
		defer bs.mu.Unlock()
		if bs.starting[sessionID]--; bs.starting[sessionID] <= 0 {
			delete(bs.starting, sessionID)
		}
	}, running, true
}

func (bs *backgrounds) add(sessionID string, b *background) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = map[string]map[string]*background{}
	}
	if bs.m[sessionID] == nil {
		bs.m[sessionID] = map[string]*background{}
	}
	bs.m[sessionID][b.info.ID] = b
}

// get is sessionID's process id; errdefs.ErrNotFound when it has none.
func (bs *backgrounds) get(sessionID, id string) (*background, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.m[sessionID][id]
	if b == nil {
		return nil, fmt.Errorf("session %q has no process %q: %w", sessionID, id, errdefs.ErrNotFound)
	}
	return b, nil
}

// list is sessionID's processes, oldest first.
func (bs *backgrounds) list(sessionID string) []Process {
	bs.mu.Lock()
	out := make([]Process, 0, len(bs.m[sessionID]))
	for _, b := range bs.m[sessionID] {
		out = append(out, b.snapshot())
	}
	bs.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// forget drops a session's processes (its task is going away with them),
// releasing their output so that nothing waits on a reader that never comes.
func (bs *backgrounds) forget(sessionID string) {
	bs.mu.Lock()
	gone := bs.m[sessionID]
	delete(bs.m, sessionID)
	bs.mu.Unlock()
	for _, b := range gone {
		b.release()
	}
}

// prune drops sessionID's ended processes, with their logs, beyond the keep
// most recently ended.
func (bs *backgrounds) prune(sessionID string, keep int) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var ended []Process
	for _, b := range bs.m[sessionID] {
		if p := b.snapshot(); !p.Running {
			ended = append(ended, p)
		}
	}
	for _, p := range endedBeyond(ended, keep) {
		delete(bs.m[sessionID], p.ID)
	}
}

// backgroundPrefix starts the id, and the run cgroup's name, of every
// background process.
const backgroundPrefix = "bg-"

func newBackground(info Process, logBytes int) *background {
	b := &background{info: info, log: newRingBuffer(logBytes), done: make(chan struct{}), subs: map[chan []byte]struct{}{}}
	b.resume = sync.NewCond(&b.mu)
	return b
}

// StartBackground starts `sh -c command` in the session, detached: it keeps
// running after the call returns, its combined output kept in a ring buffer.
func (runs *Runs) StartBackground(ctx context.Context, sessionID, command string) (Process, error) {
	var p Process
	err := runs.table.withLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		release, running, ok := runs.bg.reserve(sessionID, runs.cfg.MaxBackground)
		if !ok {
			return fmt.Errorf("session %q runs %d background processes, the most allowed: %w", sessionID, running, errdefs.ErrResourceExhausted)
		}
		defer release() // added below (backgrounds.watch), or failed
		id := backgroundPrefix + randomHex(6)
		b := newBackground(Process{ID: id, Command: command, StartedAt: runs.clock.read().UTC(), Running: true}, runs.cfg.BackgroundLogBytes)
		// The process outlives this request: its calls must not end with it.
		bctx := context.WithoutCancel(ctx)
		r, err := l.start(bctx, runSpec{id: id, args: []string{"/bin/sh", "-c", command}, stdout: b, stderr: b, adoptable: true})
		if err != nil {
			return err
		}
		b.run = r
		// Recorded so that a restarted daemon finds the process again.
		if _, err := runs.db.Update(sessionID, func(s *store.Session) error {
			s.Processes = append(s.Processes, store.Process{ID: id, Command: command, StartedAt: b.info.StartedAt})
			return nil
		}); err != nil {
			_ = r.kill()
			return err
		}
		runs.bg.watch(bctx, sessionID, b)
		p = b.snapshot()
		return nil
	})
	return p, err
}

// watch registers b and, when its program ends, records the exit,
// kills what it left and forgets its record.
func (bs *backgrounds) watch(ctx context.Context, sessionID string, b *background) {
	bs.add(sessionID, b)
	go func() {
		exit := <-b.run.statusC // the program ends, or Kill ends it
		b.release()
		st, err := b.run.finish(ctx, &exit)
		if err != nil {
			slog.Warn("background process cleanup", "session", sessionID, "process", b.info.ID, "err", err)
		}
		code := int(st.ExitCode())
		now := bs.clock.read().UTC()
		b.mu.Lock()
		b.info.Running, b.info.ExitCode, b.info.ExitedAt = false, &code, &now
		b.mu.Unlock()
		close(b.done)
		bs.prune(sessionID, bs.cfg.KeepEndedBackground)
		_, err = bs.db.Update(sessionID, func(s *store.Session) error {
			s.Processes = slices.DeleteFunc(s.Processes, func(p store.Process) bool { return p.ID == b.info.ID })
			return nil
		})
		if err != nil && !errdefs.IsNotFound(err) {
			slog.Warn("forget background process", "session", sessionID, "process", b.info.ID, "err", err)
		}
	}()
}

// restore finds the background processes of a session again after
// a daemon restart: containerd kept them running. Their output reattaches
// from now on; what they printed while the daemon was away is lost.
func (bs *backgrounds) restore(ctx context.Context, s store.Session, l *liveSession) {
	bctx := context.WithoutCancel(ctx)
	for _, rec := range s.Processes {
		b := newBackground(Process{ID: rec.ID, Command: rec.Command, StartedAt: rec.StartedAt, Running: true}, bs.cfg.BackgroundLogBytes)
		p, err := l.task.LoadProcess(bctx, rec.ID, cio.NewAttach(cio.WithStreams(nil, b, b)))
		var statusC <-chan containerd.ExitStatus
		if err == nil {
			statusC, err = p.Wait(bctx)
		}
		if err != nil {
			slog.Info("background process gone after restart", "session", s.SessionID, "process", rec.ID, "err", err)
			_, _ = bs.db.Update(s.SessionID, func(s *store.Session) error {
				s.Processes = slices.DeleteFunc(s.Processes, func(p store.Process) bool { return p.ID == rec.ID })
				return nil
			})
			continue
		}
		b.log.Write([]byte("[servcraftd restarted: earlier output of this process is not kept]\n"))
		b.run = &run{id: rec.ID, p: execProcess{p}, group: cgroup.ExistingRun(l.cgroup, rec.ID),
			statusC: statusC, cgroup: l.cgroup, started: rec.StartedAt}
		bs.watch(bctx, s.SessionID, b)
	}
}

// Processes lists the session's background processes, oldest first.
func (runs *Runs) Processes(ctx context.Context, sessionID string) ([]Process, error) {
	var out []Process
	err := runs.table.readLive(ctx, sessionID, func(*liveSession, store.Session) error {
		out = runs.bg.list(sessionID)
		return nil
	})
	return out, err
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
func (runs *Runs) Logs(ctx context.Context, sessionID, id string, follow bool) (ProcessLog, error) {
	b, err := runs.background(ctx, sessionID, id)
	if err != nil {
		return ProcessLog{}, err
	}
	b.mu.Lock()
	out, cut := b.log.Bytes()
	b.read()
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
func (runs *Runs) Kill(ctx context.Context, sessionID, id string) (Process, error) {
	b, err := runs.background(ctx, sessionID, id)
	if err != nil {
		return Process{}, err
	}
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

// background finds sessionID's process id; the call counts as activity.
func (runs *Runs) background(ctx context.Context, sessionID, id string) (*background, error) {
	var b *background
	err := runs.table.withLive(ctx, sessionID, func(*liveSession, store.Session) (err error) {
		b, err = runs.bg.get(sessionID, id)
		return err
	})
	return b, err
}
