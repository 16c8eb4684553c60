package runtime

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

func TestScriptKinds(t *testing.T) {
	for file, want := range map[string]scriptKind{
		"a.ts": scriptTS, "src/a.mts": scriptTS, "a.cts": scriptTS, "a.tsx": scriptTS,
		"a.js": scriptJS, "a.mjs": scriptJS, "a.ts.js": scriptJS, "Makefile": scriptJS, "a.d/ts": scriptJS,
	} {
		if got := kindOfScript(file); got != want {
			t.Errorf("kindOfScript(%q) = %s, want %s", file, got, want)
		}
	}
	if got := scriptJS.coldArgs("/node", "a.js"); !slices.Equal(got, []string{"/node", "a.js"}) {
		t.Errorf("js cold argv %q", got)
	}
	if got := scriptTS.coldArgs("/node", "a.ts"); !slices.Equal(got, []string{"/node", "--import", TSLoader, "a.ts"}) {
		t.Errorf("ts cold argv %q", got)
	}
	if got := shellKind.runnerArgs("/node"); !slices.Equal(got, shellRunnerArgs) {
		t.Errorf("shell runner argv %q", got)
	}
	js := scriptJS.runnerArgs("/node")
	if len(js) != 3 || js[0] != "/node" || js[1] != "-e" || js[2] != runnerSource(nil, "") {
		t.Errorf("js runner argv %q", js)
	}
	ts := scriptTS.runnerArgs("/node")
	if len(ts) != 5 || !slices.Equal(ts[:4], []string{"/node", "--import", TSLoader, "-e"}) ||
		ts[4] != runnerSource(scriptTS.execArgv(), tsWarmFile) {
		t.Errorf("ts runner argv %q", ts)
	}
	if runnerKey("s1", scriptTS) == runnerKey("s1", scriptJS) || runnerKey("s1", scriptJS) == runnerKey("s2", scriptJS) {
		t.Error("runner keys must differ by session and kind")
	}
}

func TestRunnerSource(t *testing.T) {
	plain := runnerSource(nil, "")
	// A runner started without flags must look like `node <file>`: an empty execArgv, never null.
	if !strings.Contains(plain, "process.execArgv.length,...(P?P.execArgv:[]))") {
		t.Errorf("plain runner does not empty execArgv: %s", plain)
	}
	if strings.Contains(plain, "import(") {
		t.Errorf("a runner without a warm file imports one: %s", plain)
	}
	args := []string{"--import", `/x"y.mjs`}
	keep, _ := json.Marshal(args)
	warm := runnerSource(args, "/tc/warm.ts")
	if !strings.Contains(warm, "process.execArgv.length,...(P?P.execArgv:"+string(keep)+"))") {
		t.Errorf("runner does not restore its execArgv as JSON: %s", warm)
	}
	if !strings.HasPrefix(warm, `import("/tc/warm.ts").catch(()=>{}).then(()=>setImmediate(()=>{`) ||
		!strings.HasSuffix(warm, "}))") || !strings.Contains(warm, runnerSource(args, "")) {
		t.Errorf("warm runner does not wrap the waiting one: %s", warm)
	}
}

func TestTsconfigStamp(t *testing.T) {
	ws := t.TempDir()
	if s := scriptTS.stamp(ws); s != "" {
		t.Fatalf("no tsconfig.json: stamp %q", s)
	}
	cfg := filepath.Join(ws, "tsconfig.json")
	writeFiles(t, ws, map[string]string{"tsconfig.json": "{}"})
	first := scriptTS.stamp(ws)
	if first == "" || scriptTS.stamp(ws) != first {
		t.Fatalf("stamp of an unchanged file: %q then %q", first, scriptTS.stamp(ws))
	}
	if s := scriptJS.stamp(ws); s != "" {
		t.Fatalf("a js runner reads no tsconfig: stamp %q", s)
	}
	if err := os.WriteFile(cfg, []byte(`{"compilerOptions":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if scriptTS.stamp(ws) == first {
		t.Fatal("a rewritten tsconfig.json keeps its stamp")
	}
}

func TestRunnersBySession(t *testing.T) {
	var rs runners
	a, b, c := &runner{session: "a"}, &runner{session: "a"}, &runner{session: "b"}
	for key, r := range map[string]*runner{runnerKey("a", scriptJS): a, runnerKey("a", scriptTS): b, runnerKey("b", scriptJS): c} {
		if !putOK(&rs, key, r, 1) {
			t.Fatalf("put %s", key)
		}
	}
	if putOK(&rs, runnerKey("a", scriptJS), &runner{session: "a"}, 1) {
		t.Fatal("a second runner of the same session and kind at depth 1")
	}
	if rs.remove(runnerKey("b", scriptJS), a) {
		t.Fatal("removed a runner that does not wait under the key")
	}
	got := rs.takeSession("a")
	if len(got) != 2 || !slices.Contains(got, a) || !slices.Contains(got, b) {
		t.Fatalf("takeSession(a) = %v", got)
	}
	if all := rs.all(); len(all) != 1 || !slices.Equal(all[runnerKey("b", scriptJS)], []*runner{c}) {
		t.Fatalf("left %v", all)
	}
	if rs.take(runnerKey("a", scriptJS)) != nil || rs.take(runnerKey("b", scriptJS)) != c || len(rs.all()) != 0 {
		t.Fatal("take")
	}
}

func TestRunnersTakeTheReadyOneFirst(t *testing.T) {
	var rs runners
	key := runnerKey("s", scriptJS)
	starting := &runner{session: "s", ready: make(chan struct{})}
	ready := &runner{session: "s", ready: make(chan struct{})}
	close(ready.ready)
	later := &runner{session: "s", ready: make(chan struct{})}
	for _, r := range []*runner{starting, ready} {
		if !putOK(&rs, key, r, 2) {
			t.Fatal("put within the depth")
		}
	}
	if putOK(&rs, key, later, 2) {
		t.Fatal("a third runner at depth 2")
	}
	if got := rs.take(key); got != ready {
		t.Fatal("take passed over the runner that is ready")
	}
	if !putOK(&rs, key, later, 2) {
		t.Fatal("a runner taken makes room")
	}
	if got := rs.take(key); got != starting {
		t.Fatal("with none ready, take gives the oldest")
	}
	if !rs.remove(key, later) || rs.remove(key, later) || len(rs.all()) != 0 {
		t.Fatal("remove")
	}
}

// pidProcess is a run's process of which only the pid is known.
type pidProcess struct{ pid uint32 }

func (p pidProcess) Pid() uint32                { return p.pid }
func (p pidProcess) drained(time.Duration) bool { return true }
func (p pidProcess) release(context.Context)    {}

func TestRunnerUsable(t *testing.T) {
	m, _, _ := unitManager(t)
	ws := t.TempDir()
	waiting := func(kind scriptKind, pid int) *runner {
		return &runner{session: "s", config: kind.stamp(ws), out: newRunOutput(ExecRequest{OutputLimit: 100}),
			r: &run{p: pidProcess{pid: uint32(pid)}, statusC: make(chan containerd.ExitStatus)}}
	}
	req := ExecRequest{OutputLimit: 100}
	if !m.runners.usable(waiting(scriptJS, os.Getpid()), nil, scriptJS, ws, req) {
		t.Fatal("a live runner with the same limit is usable")
	}
	if m.runners.usable(&runner{}, nil, scriptJS, ws, req) {
		t.Fatal("a runner whose start failed is not usable")
	}
	if m.runners.usable(waiting(scriptJS, os.Getpid()), nil, scriptJS, ws, ExecRequest{OutputLimit: 50}) {
		t.Fatal("a runner capturing another output limit is not usable")
	}
	ts := waiting(scriptTS, os.Getpid())
	writeFiles(t, ws, map[string]string{"tsconfig.json": "{}"})
	if m.runners.usable(ts, nil, scriptTS, ws, req) {
		t.Fatal("a ts runner started before tsconfig.json changed is not usable")
	}
	// No process has pid 2^22+1 (above the kernel's largest pid_max).
	if m.runners.usable(waiting(scriptJS, 1<<22+1), nil, scriptJS, ws, req) {
		t.Fatal("a runner whose process is gone is not usable")
	}
	dead := waiting(scriptJS, os.Getpid())
	status := make(chan containerd.ExitStatus, 1)
	status <- *containerd.NewExitStatus(137, time.Now(), nil)
	dead.r.statusC = status
	if !dead.exited() {
		t.Fatal("a runner whose exit status came has exited")
	}
	// The status stays there for whoever waits on the run.
	if st := <-dead.r.statusC; st.ExitCode() != 137 {
		t.Fatalf("status handed on: %d", st.ExitCode())
	}
}

// putOK is runners.put's first answer.
func putOK(rs *runners, key string, r *runner, depth int) bool {
	ok, _ := rs.put(key, r, depth)
	return ok
}

// TestPutNamesTheRunnerBefore: prestart boots each runner once the one
// listed before it is ready, so put says which that is.
func TestPutNamesTheRunnerBefore(t *testing.T) {
	var rs runners
	key := runnerKey("a", scriptESM)
	first, second := &runner{session: "a"}, &runner{session: "a"}
	if ok, before := rs.put(key, first, 2); !ok || before != nil {
		t.Fatalf("first put: %v, %v", ok, before)
	}
	if ok, before := rs.put(key, second, 2); !ok || before != first {
		t.Fatalf("second put: %v, before %p, want %p", ok, before, first)
	}
	if ok, _ := rs.put(key, &runner{session: "a"}, 2); ok {
		t.Fatal("a third runner listed past the depth")
	}
}
