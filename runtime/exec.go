package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecRequest is one program run inside a session. Args is the argv inside
// the container; callers build it from validated input, never from raw text.
type ExecRequest struct {
	Args        []string
	Env         []string // added to the container's environment
	Stdin       []byte
	Timeout     time.Duration
	OutputLimit int // bytes kept of stdout and of stderr, each
}

// ExecResult is how a run ended.
type ExecResult struct {
	Stdout    string
	Stderr    string
	ExitCode  int
	Signal    string // name of the signal that ended the process, if any
	TimedOut  bool
	OOMKilled bool
	Truncated bool
	Duration  time.Duration
}

// The run gate: a shell waits for one line on stdin before it execs the
// program, so the daemon can move it into the run's cgroup before anything
// of the user's runs. `read` in busybox ash reads byte by byte, leaving the
// rest of stdin to the program.
var gateArgs = []string{"/bin/sh", "-c", `read -r _ && exec "$@"`, "servcraft-run"}

// cleanupTimeout bounds the teardown that must finish even when the caller has gone.
const cleanupTimeout = 10 * time.Second

// runExec runs req in task, whose container's cgroup is containerCgroup and
// whose process spec is base. Nothing the run starts outlives it.
func runExec(ctx context.Context, task containerd.Task, base *specs.Process, containerCgroup, fifoDir string, req ExecRequest) (res ExecResult, retErr error) {
	start := time.Now()
	execID := "run-" + randomHex(6)

	// Derive the process from the container's own spec: the same uid, no
	// capabilities, no_new_privileges; only args and env change.
	proc := *base
	proc.Terminal = false
	proc.Args = append(append([]string{}, gateArgs...), req.Args...)
	proc.Env = append(append([]string{}, base.Env...), req.Env...)
	proc.Cwd = WorkspacePath

	full := make(chan struct{})
	var fullOnce sync.Once
	onFull := func() { fullOnce.Do(func() { close(full) }) }
	stdout := newCappedBuffer(req.OutputLimit, onFull)
	stderr := newCappedBuffer(req.OutputLimit, onFull)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()

	group, err := newRunGroup(containerCgroup, execID)
	if err != nil {
		return res, err
	}
	cleanupCtx := context.WithoutCancel(ctx)
	defer func() {
		if err := group.remove(); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	p, err := task.Exec(ctx, execID, &proc, cio.NewCreator(cio.WithStreams(stdinR, stdout, stderr), cio.WithFIFODir(fifoDir)))
	if err != nil {
		return res, fmt.Errorf("exec %s in %s: %w", execID, task.ID(), err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(cleanupCtx, cleanupTimeout)
		defer cancel()
		if _, err := p.Delete(dctx, containerd.WithProcessKill); err != nil {
			slog.Warn("delete exec", "task", task.ID(), "exec", execID, "err", err)
		}
	}()
	statusC, err := p.Wait(ctx)
	if err != nil {
		return res, fmt.Errorf("wait exec %s: %w", execID, err)
	}
	oomBefore := oomKills(containerCgroup)
	if err := p.Start(ctx); err != nil {
		return res, fmt.Errorf("start exec %s: %w", execID, err)
	}
	if err := group.add(p.Pid()); err != nil {
		_ = p.Kill(cleanupCtx, unix.SIGKILL)
		return res, err
	}
	// Open the gate, hand over stdin, and close it so the program sees EOF.
	go func() {
		_, _ = stdinW.Write([]byte("\n"))
		_, _ = stdinW.Write(req.Stdin)
		_ = stdinW.Close()
		cctx, cancel := context.WithTimeout(cleanupCtx, cleanupTimeout)
		defer cancel()
		_ = p.CloseIO(cctx, containerd.WithStdinCloser)
	}()

	timer := time.NewTimer(req.Timeout)
	defer timer.Stop()
	var status containerd.ExitStatus
	exited := false
	select {
	case status = <-statusC:
		exited = true
	case <-timer.C:
		res.TimedOut = true
	case <-full:
	case <-ctx.Done():
	}
	// Whatever ended the wait, the run's whole tree goes now: a finished
	// program's detached children too, which would otherwise hold the pipes.
	if err := group.kill(); err != nil {
		return res, err
	}
	if !exited {
		status = <-statusC
	}
	// Output is complete only once the copiers have drained the FIFOs.
	p.IO().Wait()

	res.Duration = time.Since(start)
	code, _, err := status.Result()
	if err != nil {
		return res, fmt.Errorf("exit status of %s: %w", execID, err)
	}
	res.ExitCode = int(code)
	if code > 128 && code < 128+65 {
		res.Signal = unix.SignalName(unix.Signal(code - 128))
	}
	var outCut, errCut bool
	res.Stdout, outCut = stdout.result()
	res.Stderr, errCut = stderr.result()
	res.Truncated = outCut || errCut
	if oomBefore >= 0 && code == 128+uint32(unix.SIGKILL) && !res.TimedOut && !res.Truncated {
		res.OOMKilled = oomKills(containerCgroup) > oomBefore
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("exec %s: %w", execID, ctx.Err())
	}
	return res, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
