package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// runnerJS is a Node process started ahead of a request. It blocks reading
// one line from stdin (a file name, byte by byte, so the rest of stdin stays
// the program's), then makes itself look like `node <file>` and runs it as
// the main module. Every run still gets its own fresh process: this one.
const runnerJS = `const fs=require("fs");const c=[];const b=Buffer.alloc(1);` +
	`for(;;){let n;try{n=fs.readSync(0,b,0,1,null)}catch(e){if(e.code==="EAGAIN")continue;throw e}` +
	`if(n===0)process.exit(0);if(b[0]===10)break;c.push(b[0])}` +
	`process.argv.splice(1,process.argv.length,Buffer.from(c).toString());` +
	`process.execArgv.length=0;delete process._eval;const M=require("module");` +
	// -e defines require, module, exports, __filename and __dirname as globals; a file run by node has none.
	`for(const k of ["require","module","exports","__filename","__dirname"])delete globalThis[k];M.runMain();`

// runner is a pre-started Node process of a session, waiting for a file.
type runner struct {
	r       *run
	stdin   *io.PipeWriter
	out     *runOutput
	started time.Time
}

// runners holds at most one waiting runner per session.
//
// Lock order: mu is a leaf. It is never held while another lock is taken,
// the store is called or a runner is stopped.
type runners struct {
	mu sync.Mutex
	m  map[string]*runner
}

func (rs *runners) take(sessionID string) *runner {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[sessionID]
	delete(rs.m, sessionID)
	return r
}

func (rs *runners) put(sessionID string, r *runner) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]*runner{}
	}
	if rs.m[sessionID] != nil {
		return false
	}
	rs.m[sessionID] = r
	return true
}

// all is a copy of the waiting runners by session.
func (rs *runners) all() map[string]*runner {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return maps.Clone(rs.m)
}

// remove takes r out if it still waits for sessionID, and reports whether it did.
func (rs *runners) remove(sessionID string, r *runner) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m[sessionID] != r {
		return false
	}
	delete(rs.m, sessionID)
	return true
}

// exited reports whether the runner died while it waited (user code may
// kill any process of the session); its status is then already there.
func (r *runner) exited() bool {
	select {
	case st := <-r.r.statusC:
		r.r.statusC = closedStatus(st)
		return true
	default:
	}
	// The exit event may still be on its way: ask the kernel.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.r.p.Pid()))
	if err != nil {
		return true
	}
	// The state is the field after the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		switch stat[i+2] {
		case 'Z', 'X', 'x':
			return true
		}
	}
	return false
}

// closedStatus is a channel that hands st to the next reader, as statusC would have.
func closedStatus(st containerd.ExitStatus) <-chan containerd.ExitStatus {
	c := make(chan containerd.ExitStatus, 1)
	c <- st
	return c
}

// stop ends a runner that will not be used.
func (r *runner) stop() {
	_ = r.stdin.Close() // EOF before a file name: it exits 0
	go func() { _, _ = r.r.finish(context.Background(), nil) }()
}

// prestart starts a runner for the session in the background, if it has none.
func (m *Manager) prestart(sessionID string, l *liveSession) {
	if !m.cfg.Runners {
		return
	}
	go func() {
		ctx := context.Background()
		stdinR, stdinW := io.Pipe()
		out := newRunOutput(ExecRequest{OutputLimit: m.cfg.OutputLimit})
		r, err := l.start(ctx, runSpec{id: "run-" + randomHex(6), args: []string{m.cfg.NodePath, "-e", runnerJS},
			stdin: stdinR, stdout: out.stdout, stderr: out.stderr})
		if err != nil {
			slog.Debug("prestart runner", "session", sessionID, "err", err)
			return
		}
		rn := &runner{r: r, stdin: stdinW, out: out, started: time.Now()}
		if !m.runners.put(sessionID, rn) {
			rn.stop()
		}
	}()
}

// runScript runs a workspace JavaScript file as `node <file>` would: on the
// session's waiting runner when there is one (no process start on the
// request's path), else cold. Either way the next runner is started after.
func (m *Manager) runScript(ctx context.Context, sessionID string, l *liveSession, req ExecRequest) (ExecResult, error) {
	file := WorkspacePath + "/" + req.Script
	rn := m.runners.take(sessionID)
	defer m.prestart(sessionID, l)
	if rn != nil && (rn.out.stdout.limit != req.OutputLimit || rn.exited()) {
		rn.stop()
		rn = nil
	}
	if rn == nil {
		req.Args = []string{m.cfg.NodePath, file}
		return l.exec(ctx, req)
	}
	rn.out.stream(req.OnOutput)
	rn.r.started = time.Now()
	go func() {
		_, _ = rn.stdin.Write([]byte(file + "\n"))
		_, _ = rn.stdin.Write(req.Stdin)
		_ = rn.stdin.Close()
	}()
	res, err := waitRun(ctx, rn.r, rn.out, req.Timeout)
	res.Warm = true
	return res, err
}
