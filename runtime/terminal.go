package runtime

import (
	"context"
	"fmt"
	"io"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/servcraft/servcraftd/runtime/spawn"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/store"
)

// Terminal is an interactive shell on a PTY inside a session: write input
// to it, read output from it, resize it, close it to end the shell and
// everything it started.
type Terminal struct {
	run    *run
	proc   containerd.Process // its shell, for resizes
	input  *io.PipeWriter
	output *io.PipeReader
	once   sync.Once
	exit   chan int
}

// Write sends keystrokes to the shell.
func (t *Terminal) Write(p []byte) (int, error) { return t.input.Write(p) }

// Read returns the shell's output; io.EOF once it has ended.
func (t *Terminal) Read(p []byte) (int, error) { return t.output.Read(p) }

// Resize sets the PTY's size in columns and rows.
func (t *Terminal) Resize(ctx context.Context, cols, rows uint32) error {
	return t.proc.Resize(ctx, cols, rows)
}

// Exit is the shell's exit code, sent once when it has ended.
func (t *Terminal) Exit() <-chan int { return t.exit }

// Close ends the shell and everything it started.
func (t *Terminal) Close() error {
	var err error
	t.once.Do(func() {
		err = t.run.kill()
		t.input.Close()
	})
	return err
}

// gateEcho is what the PTY echoes of the gate's newline; it is not the shell's.
var gateEcho = []byte("\r\n")

// OpenTerminal starts `sh -i` on a PTY of cols×rows in the session, as the
// sandbox user in /workspace. It counts as activity while input flows.
func (m *Manager) OpenTerminal(ctx context.Context, sessionID string, cols, rows uint32) (*Terminal, error) {
	var t *Terminal
	err := m.withLive(ctx, sessionID, func(l *liveSession, _ store.Session) (err error) {
		t, err = openTerminal(ctx, l, sessionID, cols, rows)
		return err
	})
	return t, err
}

// openTerminal starts the shell of a terminal in l.
func openTerminal(ctx context.Context, l *liveSession, sessionID string, cols, rows uint32) (*Terminal, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	proc := l.gatedProcess([]string{"/bin/sh", "-i"}, spawn.TerminalGateCaps)
	proc.Terminal = true
	proc.Env = append(append([]string{}, l.proc.Env...), "TERM=xterm-256color", "PS1=\\w $ ")
	proc.Cwd = WorkspacePath
	proc.ConsoleSize = nil
	id := "tty-" + randomHex(6)
	group, err := newRunGroup(l.cgroup, id)
	if err != nil {
		return nil, err
	}
	bctx := context.WithoutCancel(ctx)
	stripped := &stripPrefix{w: outW, prefix: gateEcho}
	p, err := l.task.Exec(bctx, id, &proc, cio.NewCreator(cio.WithStreams(inR, stripped, nil), cio.WithTerminal, cio.WithFIFODir(l.fifoDir)))
	if err != nil {
		_ = group.remove()
		return nil, fmt.Errorf("exec terminal in %s: %w", sessionID, disk.HostFull(err))
	}
	statusC, err := p.Wait(bctx)
	if err == nil {
		err = p.Start(bctx)
	}
	if err == nil {
		err = group.add(p.Pid())
	}
	if err == nil && cols > 0 && rows > 0 {
		err = p.Resize(bctx, cols, rows)
	}
	if err != nil {
		_ = group.remove()
		deleteProcess(bctx, p)
		return nil, fmt.Errorf("start terminal in %s: %w", sessionID, err)
	}
	r := &run{id: id, p: execProcess{p}, group: group, statusC: statusC, cgroup: l.cgroup}
	t := &Terminal{run: r, proc: p, input: inW, output: outR, exit: make(chan int, 1)}
	_, _ = inW.Write([]byte("\n")) // open the gate
	go func() {
		exit := <-statusC
		st, _ := r.finish(bctx, &exit)
		outW.Close()
		inW.Close()
		t.exit <- int(st.ExitCode())
	}()
	return t, nil
}

// stripPrefix drops prefix from the very start of the stream, if it is there.
type stripPrefix struct {
	w      io.Writer
	prefix []byte
	seen   int
	done   bool
}

func (s *stripPrefix) Write(p []byte) (int, error) {
	n := len(p)
	for !s.done && len(p) > 0 {
		if p[0] != s.prefix[s.seen] {
			s.done = true
			if _, err := s.w.Write(s.prefix[:s.seen]); err != nil {
				return 0, err
			}
			break
		}
		s.seen++
		p = p[1:]
		if s.seen == len(s.prefix) {
			s.done = true
		}
	}
	if len(p) > 0 {
		if _, err := s.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}
