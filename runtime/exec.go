package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/runtime/phases"
	"github.com/servcraft/servcraftd/runtime/spawn"
	"github.com/servcraft/servcraftd/snapshots/disk"
)

// ExecRequest is one program run inside a session. Args is the argv inside
// the container; callers build it from validated input, never from raw text.
type ExecRequest struct {
	Args []string
	// Script, instead of Args, names a workspace file to run as
	// `node <file>`, or for TypeScript (.ts, .mts, .cts, .tsx) as
	// `node --import <tsx loader> <file>` (on a pre-started runner when one waits).
	Script string
	// Shell, instead of Args, is a command line run as `/bin/sh -c <command>`
	// (on the session's waiting shell runner when one waits).
	Shell string
	Env   []string // added to the container's environment
	Stdin []byte
	// StdinStream, when set, is read after Stdin until its EOF, and only
	// then does the program see EOF: an interactive run's typed input.
	StdinStream io.Reader
	Timeout     time.Duration
	OutputLimit int // bytes kept of stdout and of stderr, each
	// OnOutput, when set, also receives every chunk of output as it comes
	// ("stdout" or "stderr"), up to the output limit.
	OnOutput func(stream string, chunk []byte)
	// Stop, when closed, ends the run at once (a client's stop): its result
	// says Stopped, with what it printed until then.
	Stop <-chan struct{}
}

// ExecResult is how a run ended.
type ExecResult struct {
	Stdout    string
	Stderr    string
	ExitCode  int
	Signal    string // name of the signal that ended the process, if any
	TimedOut  bool
	Stopped   bool // ended by ExecRequest.Stop
	OOMKilled bool
	Truncated bool
	Duration  time.Duration
	Warm      bool // served by a pre-started Node process
	// TypeScript is how a TypeScript file ran: "esbuild" (transformed by the
	// daemon, run by plain node) or "tsx: <why>"; "" for anything else.
	TypeScript string
}

// shellGateArgs is the run gate of a container made without a spawner: a
// shell, as the sandbox user, waits for one line on stdin before it execs
// the program, so the daemon can move it into the run's cgroup first.
// `read` in busybox ash reads byte by byte, leaving the rest of stdin to
// the program. User code (the same uid) can write into such a gate before
// it is placed: containers with a spawner use its gate (spawn.Gate), which
// waits as the spawner's uid instead.
var shellGateArgs = []string{"/bin/sh", "-c", `read -r _ && exec "$@"`, "servcraft-run"}

// gatedProcess is the process of a run of args started by runc exec: the
// container's own spec (no_new_privileges, seccomp, rlimits, env) behind
// the gate. With a spawner mounted the gate is the spawner's (spawn.Gate),
// started as its uid with caps, which it gives up with the uid before it
// execs args; without, the shell gate as the sandbox user with none.
func (l *liveSession) gatedProcess(args []string, caps []string) specs.Process {
	proc := userProcess(l.proc)
	if l.spawner == "" {
		proc.Args = append(slices.Clone(shellGateArgs), args...)
		return proc
	}
	proc.Args = spawn.GateArgs(spawnerPath, proc.User.UID, proc.User.GID, args...)
	proc.User = specs.User{UID: initUID, GID: initUID}
	caps = slices.Clone(caps)
	proc.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps,
		Inheritable: caps, Ambient: caps}
	return proc
}

// drainTimeout bounds the wait for a run's output once its process tree is
// dead: what is still in the pipes is read within milliseconds.
const drainTimeout = 2 * time.Second

// cleanupTimeout bounds the teardown that must finish even when the caller
// has gone; generous, as a loaded host can take seconds to kill and unmount.
const cleanupTimeout = 30 * time.Second

// run is one process tree started in a session: its first process, the
// cgroup that holds everything it starts, and its exit status to come.
type run struct {
	id        string
	p         runProcess
	group     *cgroup.Run
	statusC   <-chan containerd.ExitStatus
	cgroup    string
	oomBefore int64
	started   time.Time
}

// runProcess is the first process of a run: a containerd exec, or a process
// the session's spawner started.
type runProcess interface {
	// Pid is its pid on the host.
	Pid() uint32
	// drained returns once all of its output has been copied out, or
	// after wait: then it stops the copies (a process the run did not
	// place, which the run's kill did not reach, may hold the pipes open
	// for ever) and returns false.
	drained(wait time.Duration) bool
	// release forgets it (containerd's exec record, the spawner's connection).
	release(ctx context.Context)
}

// execProcess is a run's process started by runc exec through containerd.
type execProcess struct{ containerd.Process }

func (p execProcess) drained(wait time.Duration) bool {
	return drainWithin(wait, p.IO().Wait, func() {
		p.IO().Cancel()
		_ = p.IO().Close()
	})
}

// drainWithin waits for wait to return, for d at most; past that it calls
// stop, which makes wait return, and waits (d again at most) for that. It
// reports whether wait returned by itself.
func drainWithin(d time.Duration, wait, stop func()) bool {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	if waitFor(done, d) {
		return true
	}
	stop()
	waitFor(done, d)
	return false
}

// waitFor reports whether done closed within wait.
func waitFor(done <-chan struct{}, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (p execProcess) release(ctx context.Context) { deleteProcess(ctx, p.Process) }

// userProcess derives a user's process from the container's own spec: the
// same capabilities (none), no_new_privileges, seccomp, rlimits and env, but
// the sandbox user instead of the init's uid.
func userProcess(base *specs.Process) specs.Process {
	proc := *base
	proc.User = specs.User{UID: SandboxUID, GID: SandboxUID}
	// The init of a container with a spawner has the two capabilities it
	// needs to start runs as the sandbox user; no user process has any.
	proc.Capabilities = &specs.LinuxCapabilities{}
	return proc
}

// runSpec is one process tree to start in a session: its exec ID, argv
// (run behind the gate), environment added to the container's, and streams.
type runSpec struct {
	id             string
	args, env      []string
	stdin          io.Reader // nil: none
	stdout, stderr io.Writer
	// placed, when set, is called once the process is in its run cgroup
	// and before the gate opens (a runner moves to the boot CPU cgroup).
	placed func(pid uint32) error
	// adoptable runs are started by containerd even where the session has
	// a spawner: containerd keeps them (a background process) across a
	// daemon restart, when a spawner's answer would be lost.
	adoptable bool
	// tty, when set, runs the program on a PTY of that size: a terminal.
	// Its output is one stream (stdout; stderr is unused) and it is always
	// started by containerd, which holds the PTY's master side.
	tty *ttySize
}

// ttySize is a PTY's size in columns and rows; 0 keeps runc's default.
type ttySize struct{ cols, rows uint32 }

// start execs spec's args behind the gate, moves the process into a new run
// cgroup, then opens the gate and hands it stdin (closed after). On error
// nothing of the run is left.
func (l *liveSession) start(ctx context.Context, spec runSpec) (_ *run, retErr error) {
	if l.spawner != "" && !spec.adoptable && spec.tty == nil {
		r, err := l.spawn(ctx, spec)
		if !errors.Is(err, spawn.ErrUnreachable) {
			return r, err
		}
		// The spawner is gone (killed by the OOM killer, say): runc exec still works.
		slog.Warn("spawner unreachable: starting the run with runc exec", "container", l.task.ID(), "err", err)
	}
	// Derive the process from the container's own spec: no_new_privileges,
	// seccomp, rlimits; only args (behind the gate) and env change.
	// A terminal's gate also hands the PTY to the sandbox user.
	caps := spawn.GateCaps
	opts := []cio.Opt{cio.WithStreams(nil, spec.stdout, spec.stderr), cio.WithFIFODir(l.fifoDir)}
	if spec.tty != nil {
		caps = spawn.TerminalGateCaps
		opts = append(opts, cio.WithTerminal)
	}
	proc := l.gatedProcess(spec.args, caps)
	proc.Terminal = spec.tty != nil
	proc.ConsoleSize = nil
	proc.Env = append(append([]string{}, l.proc.Env...), spec.env...)
	proc.Cwd = WorkspacePath
	id, task, containerCgroup, stdin := spec.id, l.task, l.cgroup, spec.stdin

	group, err := cgroup.NewRun(containerCgroup, id)
	if err != nil {
		return nil, err
	}
	cleanupCtx := context.WithoutCancel(ctx)
	defer func() {
		if retErr != nil {
			_ = group.Remove()
		}
	}()
	stdinR, stdinW := io.Pipe()
	opts[0] = cio.WithStreams(stdinR, spec.stdout, spec.stderr)
	p, err := task.Exec(ctx, id, &proc, cio.NewCreator(opts...))
	if err != nil {
		// Its FIFOs are made on the state filesystem: with no room there, a 507.
		return nil, fmt.Errorf("exec %s in %s: %w", id, task.ID(), disk.HostFull(err))
	}
	defer func() {
		if retErr != nil {
			stdinW.Close()
			deleteProcess(cleanupCtx, p)
		}
	}()
	statusC, err := p.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait exec %s: %w", id, err)
	}
	r := &run{id: id, p: execProcess{p}, group: group, statusC: statusC, cgroup: containerCgroup,
		oomBefore: cgroup.OOMKills(containerCgroup), started: time.Now()}
	if err := p.Start(ctx); err != nil {
		return nil, fmt.Errorf("start exec %s: %w", id, err)
	}
	if err := group.Add(p.Pid()); err != nil {
		_ = p.Kill(cleanupCtx, unix.SIGKILL)
		return nil, err
	}
	if spec.placed != nil {
		if err := spec.placed(p.Pid()); err != nil {
			_ = p.Kill(cleanupCtx, unix.SIGKILL)
			return nil, err
		}
	}
	if spec.tty != nil && spec.tty.cols > 0 && spec.tty.rows > 0 {
		if err := p.Resize(ctx, spec.tty.cols, spec.tty.rows); err != nil {
			_ = p.Kill(cleanupCtx, unix.SIGKILL)
			return nil, fmt.Errorf("size terminal %s: %w", id, err)
		}
	}
	go func() {
		openGate(stdinW, stdin)
		cctx, cancel := context.WithTimeout(cleanupCtx, cleanupTimeout)
		defer cancel()
		_ = p.CloseIO(cctx, containerd.WithStdinCloser)
	}()
	return r, nil
}

// stdinOf is what a run reads on stdin: Stdin, then StdinStream's.
func stdinOf(req ExecRequest) io.Reader {
	if req.StdinStream == nil {
		return bytes.NewReader(req.Stdin)
	}
	return io.MultiReader(bytes.NewReader(req.Stdin), req.StdinStream)
}

// openGate opens a run's gate (the line it waits for), hands it stdin
// (nil: none) and closes w, so the program sees EOF.
func openGate(w io.WriteCloser, stdin io.Reader) {
	_, _ = w.Write([]byte("\n"))
	if stdin != nil {
		_, _ = io.Copy(w, stdin)
	}
	_ = w.Close()
}

// finish kills whatever of the run is left (a finished program's detached
// children too, which would otherwise hold the pipes), waits for the exit
// status (unless the caller already has it) and the output. The exec
// process and the cgroup are removed in the background: the answer need not
// wait for containerd's bookkeeping.
func (r *run) finish(ctx context.Context, status *containerd.ExitStatus) (containerd.ExitStatus, error) {
	kerr := r.group.Kill()
	var st containerd.ExitStatus
	if status != nil {
		st = *status
	} else {
		st = <-r.statusC
	}
	// Output is complete only once the copiers have drained it. Everything
	// the run started is dead by now: a pipe still open is held from
	// outside the run, and waits no longer than drainTimeout.
	if !r.p.drained(drainTimeout) {
		slog.Warn("run's output held open after it ended: copies stopped", "exec", r.id, "after", drainTimeout)
	}
	go r.release(context.WithoutCancel(ctx))
	return st, kerr
}

// release deletes the exec process and its (empty) cgroup.
func (r *run) release(ctx context.Context) {
	r.p.release(ctx)
	if err := r.group.Remove(); err != nil {
		slog.Warn("remove run cgroup", "exec", r.id, "err", err)
	}
}

// kill ends the whole run now.
func (r *run) kill() error { return r.group.Kill() }

func deleteProcess(ctx context.Context, p containerd.Process) {
	dctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	if _, err := p.Delete(dctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		slog.Warn("delete exec", "exec", p.ID(), "err", err)
	}
}

// exec runs req in the session to its end, the timeout, the output cap or
// the caller's going away. Nothing the run starts outlives it.
func (l *liveSession) exec(ctx context.Context, req ExecRequest) (ExecResult, error) {
	out := newRunOutput(req)
	r, err := l.start(ctx, runSpec{id: "run-" + randomHex(6), args: req.Args, env: req.Env,
		stdin: stdinOf(req), stdout: out.stdout, stderr: out.stderr})
	phases.Mark(ctx, "start") // a cold start: a process made, placed and let through its gate
	if err != nil {
		return ExecResult{}, err
	}
	return waitRun(ctx, r, out, req.Timeout, req.Stop)
}

// runOutput is a run's capped stdout and stderr, and the signal that one is full.
type runOutput struct {
	stdout, stderr *cappedBuffer
	full           chan struct{}
}

func newRunOutput(req ExecRequest) *runOutput {
	o := &runOutput{full: make(chan struct{})}
	var once sync.Once
	onFull := func() { once.Do(func() { close(o.full) }) }
	o.stdout = newCappedBuffer(req.OutputLimit, onFull)
	o.stderr = newCappedBuffer(req.OutputLimit, onFull)
	o.stream(req.OnOutput)
	return o
}

// stream also hands every kept chunk to fn (nil: no one).
func (o *runOutput) stream(fn func(stream string, chunk []byte)) {
	if fn == nil {
		o.stdout.setTee(nil)
		o.stderr.setTee(nil)
		return
	}
	o.stdout.setTee(func(p []byte) { fn("stdout", p) })
	o.stderr.setTee(func(p []byte) { fn("stderr", p) })
}

// waitRun waits for r to end, its timeout, its output cap, a stop (closed;
// nil: none) or the caller's going away, ends what is left of it and
// reports how it ended.
func waitRun(ctx context.Context, r *run, out *runOutput, timeout time.Duration, stop <-chan struct{}) (ExecResult, error) {
	var res ExecResult
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var status *containerd.ExitStatus
	select {
	case st := <-r.statusC:
		status = &st
	case <-timer.C:
		res.TimedOut = true
	case <-out.full:
	case <-stop:
		res.Stopped = true
	case <-ctx.Done():
	}
	phases.Mark(ctx, "run")
	st, err := r.finish(ctx, status)
	phases.Mark(ctx, "finish") // output drained, run cgroup removed
	if err != nil {
		return res, err
	}
	res.Duration = time.Since(r.started)
	code, _, err := st.Result()
	if err != nil {
		return res, fmt.Errorf("exit status of %s: %w", r.id, err)
	}
	res.ExitCode = int(code)
	res.Signal = signalOf(code)
	var outCut, errCut bool
	res.Stdout, outCut = out.stdout.result()
	res.Stderr, errCut = out.stderr.result()
	res.Truncated = outCut || errCut
	if r.oomBefore >= 0 && code == 128+uint32(unix.SIGKILL) && !res.TimedOut && !res.Truncated && !res.Stopped {
		res.OOMKilled = cgroup.OOMKills(r.cgroup) > r.oomBefore
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("exec %s: %w", r.id, ctx.Err())
	}
	return res, nil
}

// signalOf names the signal behind an exit status of 128+n, as shells report it.
func signalOf(code uint32) string {
	if code > 128 && code < 128+65 {
		return unix.SignalName(unix.Signal(code - 128))
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
