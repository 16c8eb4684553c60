package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/runtime/phases"
)

// runnerSource is the program of a Node process started ahead of a request.
// It blocks reading one line from stdin (a file name, byte by byte, so the
// rest of stdin stays the program's), then makes itself look like
// `node <execArgv> <file>` and runs it as the main module. Every run still
// gets its own fresh process: this one. All of it is in a block, so none of
// its names is a global the program could see.
//
// A line of the form `<file>\0<n>` is followed by n bytes of JSON (see
// tsRunPayload): a TypeScript program the daemon transformed ahead of the run
// (runtime/tsprogram). The runner then reads exactly those bytes, takes the
// payload's execArgv (tsx's, as a cold TypeScript run has them), turns
// source maps on as tsx does, and compiles each of the program's files from
// the payload when node loads it; a TypeScript file that is not in it (a
// require with a computed name) brings in tsx's own CommonJS hooks from then on.
// An ES-module program goes to a runner of the ES-module kind, whose module
// hooks (esmHooksSource) were registered while it booted: the runner hands
// them the payload, and they resolve and load the program's files from it.
// The main module is loaded as CommonJS main (Module._load, as runMain does
// for CommonJS: runMain itself would hand a .cts file in a package of
// "type": "module" to the ES-module loader, which cannot run it) inside an
// async function, so that what its first
// turn throws is a rejected promise, as under tsx, whose `--import` makes
// node load the main module through its ES-module loader: node reports it
// where the error was made, and a process.on("unhandledRejection") sees it.
//
// Before it waits it hands SIGTERM and SIGINT back to the kernel's default
// (adding and removing a listener does that; node's own handler resets a
// terminal and re-raises, and runs never have one). A kill while it waits
// is then fatal in the kernel at once and shows in /proc as a pending
// signal or an exiting task (see deadOrDying), never as a handler still
// running in user mode that looks like a runner waiting for its file.
func runnerSource(execArgv []string, warm string) string {
	keep, _ := json.Marshal(append([]string{}, execArgv...)) // [] rather than null
	wait := `{const fs=require("fs"),R=require;const c=[];const b=Buffer.alloc(1);` +
		`{const f=()=>{};for(const s of ["SIGTERM","SIGINT"]){process.on(s,f);process.off(s,f)}}` +
		`const rd=(p,o,n)=>{for(;;){try{return fs.readSync(0,p,o,n,null)}catch(e){if(e.code!=="EAGAIN")throw e}}};` +
		`for(;;){const n=rd(b,0,1);if(n===0)process.exit(0);if(b[0]===10)break;c.push(b[0])}` +
		`let f=Buffer.from(c).toString(),P=null;const z=f.indexOf("\0");` +
		`if(z>=0){const n=+f.slice(z+1),p=Buffer.alloc(n);f=f.slice(0,z);` +
		`for(let o=0;o<n;){const r=rd(p,o,n-o);if(r===0)process.exit(0);o+=r}P=JSON.parse(p.toString())}` +
		`process.argv.splice(1,process.argv.length,f);` +
		`process.execArgv.splice(0,process.execArgv.length,...(P?P.execArgv:` + string(keep) + `));delete process._eval;const M=require("module");` +
		// -e defines require, module, exports, __filename and __dirname as globals; a file run by node has none.
		`for(const k of ["require","module","exports","__filename","__dirname"])delete globalThis[k];` +
		`if(P&&P.module){process.setSourceMapsEnabled(true);const k=Symbol.for(` + jsonString(esmHooksPort) + `),q=globalThis[k];` +
		`delete globalThis[k];q.postMessage({files:P.files,imports:P.imports});M.runMain()}else ` +
		`if(P){process.setSourceMapsEnabled(true);const F=P.files,X=[".ts",".tsx",".cts"];` +
		`const h=function(m,p){const s=F[p];if(s!==undefined)return m._compile(s,p);` +
		`for(const e of X)delete M._extensions[e];R(P.tsx).register();return M._extensions[R("path").extname(p)](m,p)};` +
		`for(const e of X)M._extensions[e]=h;(async()=>M._load(f,null,true))()}else M.runMain()}`
	if warm == "" {
		return wait
	}
	// Import a file of the kind first, so the loader's first transform (and
	// its compiler service) is behind us; then wait as above, from a fresh
	// macrotask, so what the program throws is an uncaught exception as in
	// a cold run. A toolchain without the file only loses the head start.
	w, _ := json.Marshal(warm)
	return `import(` + string(w) + `).catch(()=>{}).then(()=>setImmediate(()=>{` + wait + `}))`
}

// tsWarmFile is a TypeScript file of the toolchain (scripts/build-toolchain.sh)
// that a TypeScript runner imports while it waits.
const tsWarmFile = ToolchainPath + "/warm.ts"

// scriptKind is how a workspace file is run: plain node, or node with the
// tsx loader imported first. Each kind has its own waiting runner.
type scriptKind string

const (
	scriptJS scriptKind = "js"
	scriptTS scriptKind = "ts"
	// scriptESM runs ES-module TypeScript the daemon transformed: plain node
	// with the runner's module hooks imported first.
	scriptESM scriptKind = "esm"
)

// tsEndings are the file endings run with the tsx loader.
var tsEndings = map[string]bool{".ts": true, ".mts": true, ".cts": true, ".tsx": true}

func kindOfScript(file string) scriptKind {
	if tsEndings[path.Ext(file)] {
		return scriptTS
	}
	return scriptJS
}

// execArgv is what node is started with before the file, cold or warm.
func (k scriptKind) execArgv() []string {
	switch k {
	case scriptTS:
		return []string{"--import", TSLoader}
	case scriptESM:
		return []string{"--import", esmHooksImport}
	}
	return nil
}

// coldArgs is the argv of a run of file without a runner.
func (k scriptKind) coldArgs(nodePath, file string) []string {
	return append(append([]string{nodePath}, k.execArgv()...), file)
}

// runnerArgs is the argv of a waiting runner of this kind.
func (k scriptKind) runnerArgs(nodePath string) []string {
	if k == shellKind {
		return shellRunnerArgs
	}
	warm := ""
	if k == scriptTS {
		warm = tsWarmFile
	}
	return append(append([]string{nodePath}, k.execArgv()...), "-e", runnerSource(k.execArgv(), warm))
}

// runnerKey is where the runner of kind waits for sessionID.
func runnerKey(sessionID string, kind scriptKind) string { return sessionID + "/" + string(kind) }

// runner is a pre-started Node process of a session, waiting for a file. It
// is listed as soon as its start begins; ready closes when the start ended,
// with r, stdin and out set if it succeeded.
type runner struct {
	session string
	ready   chan struct{}
	r       *run
	stdin   *io.PipeWriter
	out     *runOutput
	started time.Time
	// config is the stamp of the workspace's tsconfig.json when a
	// TypeScript runner started: tsx reads it once, at start.
	config string
}

// tsconfigStamp identifies the workspace's tsconfig.json as it is now
// (inode, size, modification time; "" when there is none). A TypeScript
// runner whose stamp differs read an older one and is not used.
func tsconfigStamp(workspace string) string {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(workspace, "tsconfig.json"), &st); err != nil {
		return ""
	}
	return fmt.Sprint(st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
}

// stamp is the part of the workspace a runner of kind read when it started.
func (k scriptKind) stamp(workspace string) string {
	if k == scriptTS {
		return tsconfigStamp(workspace)
	}
	return ""
}

// runners holds the waiting (or starting) runners of each session and
// kind, oldest first: up to the kind's depth, and starts them.
//
// Lock order: mu is a leaf. It is never held while another lock is taken,
// the store is called or a runner is stopped.
type runners struct {
	cfg         Config       // Runners, RunnerDepth, NodePath, OutputLimit
	boot        *cgroup.Boot // where runners boot
	nodeVersion string       // the image's node, the target of TypeScript transforms

	mu sync.Mutex
	m  map[string][]*runner
}

// take takes a runner waiting under key: the oldest whose start has ended,
// else the oldest (the one to be ready first).
func (rs *runners) take(key string) *runner {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	list := rs.m[key]
	if len(list) == 0 {
		return nil
	}
	at := 0
	for i, r := range list {
		select {
		case <-r.ready:
			at = i
		default:
			continue
		}
		break
	}
	r := list[at]
	rs.drop(key, at)
	return r
}

// drop removes the runner at index i of key's list; mu is held.
func (rs *runners) drop(key string, i int) {
	list := slices.Delete(rs.m[key], i, i+1)
	if len(list) == 0 {
		delete(rs.m, key)
		return
	}
	rs.m[key] = list
}

// takeSession takes every runner of sessionID.
func (rs *runners) takeSession(sessionID string) []*runner {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []*runner
	for key, list := range rs.m {
		if len(list) > 0 && list[0].session == sessionID {
			out = append(out, list...)
			delete(rs.m, key)
		}
	}
	return out
}

// put lists r under key unless depth runners are there already, and
// returns the runner listed last before it (nil if none).
func (rs *runners) put(key string, r *runner, depth int) (ok bool, before *runner) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string][]*runner{}
	}
	list := rs.m[key]
	if len(list) >= depth {
		return false, nil
	}
	if len(list) > 0 {
		before = list[len(list)-1]
	}
	rs.m[key] = append(list, r)
	return true, before
}

// all is a copy of the waiting runners by key.
func (rs *runners) all() map[string][]*runner {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make(map[string][]*runner, len(rs.m))
	for key, list := range rs.m {
		out[key] = slices.Clone(list)
	}
	return out
}

// remove takes r out if it still waits under key, and reports whether it did.
func (rs *runners) remove(key string, r *runner) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	i := slices.Index(rs.m[key], r)
	if i < 0 {
		return false
	}
	rs.drop(key, i)
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
	pid := r.r.p.Pid()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	return deadOrDying(stat, status)
}

// pfExiting is the kernel's PF_EXITING task flag: the process is exiting.
const pfExiting = 0x4

// deadOrDying reads a process's /proc stat and status: whether it is a
// zombie or gone, exiting, or has a signal pending. A runner blocked in its
// read has none pending; one that has (a kill whose delivery waits for the
// CPU, as on a throttled boot quota) is about to die, not to run a file.
func deadOrDying(stat, status []byte) bool {
	// The fields after the parenthesised command name: state is the first, flags the seventh.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return true
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 7 {
		return true
	}
	switch f[0] {
	case "Z", "X", "x":
		return true
	}
	if flags, err := strconv.ParseUint(f[6], 10, 64); err != nil || flags&pfExiting != 0 {
		return true
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if ok && (key == "SigPnd" || key == "ShdPnd") && strings.Trim(strings.TrimSpace(value), "0") != "" {
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

// stop ends a runner that will not be used, once its start has ended.
func (r *runner) stop() {
	go func() {
		<-r.ready
		if r.r == nil {
			return
		}
		_ = r.stdin.Close() // EOF before a file name: it exits 0
		_, _ = r.r.finish(context.Background(), nil)
	}()
}

// depth is how many runners of kind a session keeps waiting: RunnerDepth
// for JavaScript, ES-module TypeScript (its hooks thread adds about 13 MB
// to a plain runner's 22 MB PSS) and shell, one for tsx (a runner with the
// tsx loader costs four times a plain one's CPU and memory, and a
// session's memory limit holds its runners). A session starts runners of
// a kind only once it has run one of that kind.
func (rs *runners) depth(kind scriptKind) int {
	if kind == scriptTS {
		return 1
	}
	return max(1, rs.cfg.RunnerDepth)
}

// prestart starts runners of kind for the session in the background until
// it has its depth of them, each once the one before it is ready. Each is listed at once, so a request that
// comes while it starts waits for it rather than starting a second Node
// beside it. They boot on the boot CPU quota where there is one (see cgroup.Boot).
func (rs *runners) prestart(sessionID, workspace string, kind scriptKind, l *liveSession) {
	if !rs.cfg.Runners {
		return
	}
	key := runnerKey(sessionID, kind)
	for {
		rn := &runner{session: sessionID, ready: make(chan struct{}), config: kind.stamp(workspace)}
		ok, before := rs.put(key, rn, rs.depth(kind))
		if !ok {
			return
		}
		// One after another: booted side by side on the session's quota,
		// the first would be ready only when all are.
		go func() {
			if before != nil {
				<-before.ready
			}
			rs.startRunner(key, kind, rn, l)
		}()
	}
}

// startRunner starts rn, listed under key, and closes its ready channel.
func (rs *runners) startRunner(key string, kind scriptKind, rn *runner, l *liveSession) {
	defer close(rn.ready)
	var placed func(uint32) error
	if rs.boot.Enabled() {
		placed = func(pid uint32) error { return rs.boot.Enter(l.cgroup, pid) }
	}
	ctx := context.Background()
	stdinR, stdinW := io.Pipe()
	out := newRunOutput(ExecRequest{OutputLimit: rs.cfg.OutputLimit})
	r, err := l.start(ctx, runSpec{id: "run-" + randomHex(6), args: kind.runnerArgs(rs.cfg.NodePath),
		stdin: stdinR, stdout: out.stdout, stderr: out.stderr, placed: placed})
	if err != nil {
		slog.Warn("prestart runner", "session", rn.session, "kind", kind, "err", err)
		rs.remove(key, rn)
		return
	}
	rn.r, rn.stdin, rn.out, rn.started = r, stdinW, out, time.Now()
}

// usable reports whether a runner whose start has ended can take a run of
// req now, and hands it the session's CPU quota if it booted on the boot
// quota.
func (rs *runners) usable(rn *runner, l *liveSession, kind scriptKind, workspace string, req ExecRequest) bool {
	if rn.r == nil || rn.out.stdout.limit != req.OutputLimit || rn.config != kind.stamp(workspace) || rn.exited() {
		return false
	}
	if rs.boot.Enabled() {
		if err := rs.boot.Leave(l.cgroup, rn.r.group); err != nil {
			slog.Warn("hand runner to its session", "session", rn.session, "err", err)
			return false
		}
	}
	return true
}

// takeRunner takes one of the session's runners of kind, waiting for it
// if it is still starting (never a cold start beside a warm one on its
// way), and returns it if it can take req now. One that cannot (it died
// while it waited, it read an older tsconfig.json) is stopped and the next
// is tried; with none left it returns nil.
func (rs *runners) takeRunner(ctx context.Context, sessionID, workspace string, l *liveSession, kind scriptKind, req ExecRequest) (*runner, error) {
	for {
		rn := rs.take(runnerKey(sessionID, kind))
		if rn == nil {
			return nil, nil
		}
		select {
		case <-rn.ready:
		case <-ctx.Done():
			rn.stop()
			return nil, fmt.Errorf("wait for %s runner: %w", kind, ctx.Err())
		}
		if rs.usable(rn, l, kind, workspace, req) {
			return rn, nil
		}
		rn.stop()
	}
}

// runScript runs a workspace file as `node <file>` (with the tsx loader for
// TypeScript) would: on the session's runner of that kind when there is one
// (see takeRunner), else cold. A TypeScript program that runtime/tsprogram
// can transform ahead of the run goes to a JavaScript runner instead (see
// runnerSource), with the same result as tsx's. The next runner starts once
// this run has answered: started beside it, its boot took the run's CPU.
func (rs *runners) runScript(ctx context.Context, sessionID, workspace string, l *liveSession, req ExecRequest) (ExecResult, error) {
	file := WorkspacePath + "/" + req.Script
	kind := kindOfScript(req.Script)
	line, why, transformed := file+"\n", "", false
	if kind == scriptTS {
		var plan tsPlan
		if plan, why = planTypeScript(workspace, req.Script, rs.nodeVersion); why == "" {
			kind, line, transformed = scriptJS, plan.line, true
			if plan.module {
				kind = scriptESM
			}
		}
		phases.Mark(ctx, "transform") // the program transformed, or left to tsx
		logTypeScriptPath(sessionID, req.Script, why)
	}
	rn, err := rs.takeRunner(ctx, sessionID, workspace, l, kind, req)
	phases.Mark(ctx, "runner") // a waiting runner taken (and ready), or none
	if err != nil {
		return ExecResult{}, err
	}
	defer rs.prestart(sessionID, workspace, kind, l)
	var res ExecResult
	switch {
	case rn != nil:
		res, err = rn.run(ctx, line, req)
	case transformed: // cold: a runner's program, given its line at once
		req.Args = kind.runnerArgs(rs.cfg.NodePath)
		req.Stdin = append([]byte(line), req.Stdin...)
		res, err = l.exec(ctx, req)
	default:
		req.Args = kind.coldArgs(rs.cfg.NodePath, file)
		res, err = l.exec(ctx, req)
	}
	switch {
	case transformed:
		res.TypeScript = "esbuild"
	case why != "":
		res.TypeScript = "tsx: " + why
	}
	return res, err
}

// run hands the runner line (what it waits for: a file name, a command)
// and then req's stdin, and waits for the run as a cold one would be waited for.
func (rn *runner) run(ctx context.Context, line string, req ExecRequest) (ExecResult, error) {
	rn.out.stream(req.OnOutput)
	// The run starts now: its duration, and the OOM kills it may be blamed
	// for, count from here rather than from when the runner started.
	rn.r.started, rn.r.oomBefore = time.Now(), cgroup.OOMKills(rn.r.cgroup)
	go func() {
		_, _ = rn.stdin.Write([]byte(line))
		_, _ = io.Copy(rn.stdin, stdinOf(req))
		_ = rn.stdin.Close()
	}()
	res, err := waitRun(ctx, rn.r, rn.out, req.Timeout, req.Stop)
	res.Warm = true
	return res, err
}
