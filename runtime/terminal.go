package runtime

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/servcraft/servcraftd/store"
)

// Terminal is an interactive process inside a session, a shell on a PTY
// (OpenTerminal) or a language server on pipes (OpenLanguageServer): write
// input to it, read output from it, resize it (a PTY's), close it to end it
// and everything it started.
type Terminal struct {
	run    *run
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
	p, ok := t.run.p.(execProcess)
	if !ok {
		return fmt.Errorf("terminal %s has no PTY", t.run.id)
	}
	return p.Resize(ctx, cols, rows)
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
func (runs *Runs) OpenTerminal(ctx context.Context, sessionID string, cols, rows uint32) (*Terminal, error) {
	var t *Terminal
	err := runs.table.withLive(ctx, sessionID, func(l *liveSession, _ store.Session) (err error) {
		t, err = openTerminal(ctx, l, sessionID, cols, rows)
		return err
	})
	return t, err
}

// openTerminal starts the shell of a terminal in l, as every run starts
// (liveSession.start), on a PTY.
func openTerminal(ctx context.Context, l *liveSession, sessionID string, cols, rows uint32) (*Terminal, error) {
	t, err := startAttached(ctx, l, runSpec{id: "tty-" + randomHex(6), args: []string{"/bin/sh", "-i"},
		env: []string{"TERM=xterm-256color", "PS1=\\w $ "}, tty: &ttySize{cols: cols, rows: rows}},
		func(w io.Writer) io.Writer { return &stripPrefix{w: w, prefix: gateEcho} })
	if err != nil {
		return nil, fmt.Errorf("start terminal in %s: %w", sessionID, err)
	}
	return t, nil
}

// startAttached starts spec in l with its stdin and stdout on pipes the
// returned Terminal writes and reads (stdout through wrap, when not nil):
// it outlives the request that started it; when it ends, both pipes close
// and its exit code is sent on Exit.
func startAttached(ctx context.Context, l *liveSession, spec runSpec, wrap func(io.Writer) io.Writer) (*Terminal, error) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	spec.stdin, spec.stdout = inR, outW
	if wrap != nil {
		spec.stdout = wrap(outW)
	}
	bctx := context.WithoutCancel(ctx)
	r, err := l.start(bctx, spec)
	if err != nil {
		return nil, err
	}
	t := &Terminal{run: r, input: inW, output: outR, exit: make(chan int, 1)}
	go func() {
		exit := <-r.statusC
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
