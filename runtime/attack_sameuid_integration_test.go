package runtime_test

// The attack suite of issue 21: same-uid tampering with the processes the
// daemon starts in a session. User code runs as the sandbox uid; it tries
// to write into, stop and continue every process the daemon starts there
// (gates, waiting JavaScript and shell runners, the spawner), to fork past
// the pids limit through them and to burn CPU outside its quota. Each test
// passes only when the attack gains nothing.

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/store"
)

// gateScanSource looks for runs waiting at a gate (the spawner's or the
// shell's) for argv[2] milliseconds and, for each, tries to open its memory
// for writing (a handle counts only if the process is still at the gate
// once it is open: the handle is then on the gate's memory) and to stop and
// continue it. It does the same to PID 1, the spawner. It writes its
// counts to /workspace/gatescan.json as it goes.
const gateScanSource = `
const fs = require("fs");
const until = Date.now() + Number(process.argv[2]);
const isGate = (a) => (a[1] === "gate" && a[0].endsWith("servcraft-spawner")) || a[3] === "servcraft-run";
const args = (pid) => { try { return fs.readFileSync("/proc/" + pid + "/cmdline", "latin1").split("\0"); } catch { return []; } };
const r = { seen: 0, writable: 0, stopped: 0, denied: 0, spawnerWritable: false, spawnerStopped: false };
try { fs.closeSync(fs.openSync("/proc/1/mem", "r+")); r.spawnerWritable = true; } catch {}
try { process.kill(1, "SIGSTOP"); process.kill(1, "SIGCONT"); r.spawnerStopped = true; } catch {}
const seen = new Set();
let last = 0;
while (Date.now() < until) {
  for (const d of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(d) || !isGate(args(d))) continue;
    if (!seen.has(d)) { seen.add(d); r.seen++; }
    try {
      const fd = fs.openSync("/proc/" + d + "/mem", "r+");
      if (isGate(args(d))) r.writable++;
      fs.closeSync(fd);
    } catch { r.denied++; }
    try { process.kill(Number(d), "SIGSTOP"); process.kill(Number(d), "SIGCONT"); r.stopped++; } catch {}
  }
  if (Date.now() - last > 50) { fs.writeFileSync("/workspace/gatescan.json", JSON.stringify(r)); last = Date.now(); }
}
fs.writeFileSync("/workspace/gatescan.json", JSON.stringify(r));
`

// hijackSource writes machine code into the process whose command line
// matches argv[2] while it waits in read(2) or poll(2): at the system call's own
// instruction, which the kernel restarts after SIGCONT. "spin" is a jump
// to itself; "fork" calls fork(2) in a loop, in every child too. It
// prints {"pid": ...} once the code is in, or {"error": ...}.
const hijackSource = `
const fs = require("fs");
const re = new RegExp(process.argv[2]);
const code = process.argv[3] === "spin" ? [0xeb, 0xfe] : [0xb8, 0x39, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
const nap = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
let pid = 0, pc, last = "";
for (let i = 0; i < 300 && pc === undefined; i++, nap(10)) {
  for (const d of fs.readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(d) || Number(d) === process.pid) continue;
    let cmd; try { cmd = fs.readFileSync("/proc/" + d + "/cmdline", "latin1"); } catch { continue; }
    if (!re.test(cmd)) continue;
    let f; try { f = fs.readFileSync("/proc/" + d + "/syscall", "utf8").trim().split(" "); } catch (e) { last = d + ": " + e.code; continue; } // a gate: out of reach
    last = d + ": " + f.join(" ");
    if (f[0] === "0" || f[0] === "7") { pid = Number(d); pc = BigInt(f[f.length - 1]); break; }
  }
}
if (pc === undefined) { console.log(JSON.stringify({ error: "no waiting target; last seen " + last })); process.exit(2); }
process.kill(pid, "SIGSTOP");
const fd = fs.openSync("/proc/" + pid + "/mem", "r+");
fs.writeSync(fd, Buffer.from(code), 0, code.length, Number(pc - 2n));
fs.closeSync(fd);
process.kill(pid, "SIGCONT");
console.log(JSON.stringify({ pid }));
`

// The runners' command lines, as the attacker finds them in /proc.
const (
	jsRunnerPattern    = `readSync\(0`
	shellRunnerPattern = `servcraft_line`
)

type gateScan struct {
	Seen, Writable, Stopped, Denied int
	SpawnerWritable                 bool `json:"spawnerWritable"`
	SpawnerStopped                  bool `json:"spawnerStopped"`
}

// TestAttackSameUID_Gates: while user code scans /proc for runs waiting at
// their gate, the session starts runs through the spawner and through runc
// exec (background processes). No gate, and not the spawner, may be opened
// for writing: a gate waits as another uid until it is placed.
func TestAttackSameUID_Gates(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	ctx := h.env.Context(t)
	if err := h.m.WriteFile(ctx, s.SessionID, "gatescan.js", []byte(gateScanSource)); err != nil {
		t.Fatal(err)
	}
	scanner, err := h.m.StartBackground(ctx, s.SessionID, "node /workspace/gatescan.js 15000")
	if err != nil {
		t.Fatal(err)
	}
	read := func() gateScan {
		var g gateScan
		res := h.sh(t, s, 0, "cat /workspace/gatescan.json 2>/dev/null")
		_ = json.Unmarshal([]byte(res.Stdout), &g)
		return g
	}
	deadline := time.Now().Add(14 * time.Second)
	var g gateScan
	for runs := 0; time.Now().Before(deadline); runs++ {
		if res := h.sh(t, s, 0, "true"); res.ExitCode != 0 {
			t.Fatalf("a run beside the scanner: %+v", res)
		}
		if runs%5 == 0 {
			if _, err := h.m.StartBackground(ctx, s.SessionID, "true"); err != nil {
				t.Fatal(err)
			}
		}
		if g = read(); g.Seen >= 10 {
			break
		}
	}
	_, _ = h.m.Kill(ctx, s.SessionID, scanner.ID)
	t.Logf("gates seen %d, opened for writing at the gate %d, denied %d, stopped and continued %d; spawner writable %v, stopped %v",
		g.Seen, g.Writable, g.Denied, g.Stopped, g.SpawnerWritable, g.SpawnerStopped)
	if g.Seen == 0 {
		t.Fatal("the scanner never saw a gate: the test did not test")
	}
	if g.Writable > 0 {
		t.Errorf("user code opened %d waiting gates for writing", g.Writable)
	}
	if g.SpawnerWritable || g.SpawnerStopped {
		t.Errorf("user code reached the spawner: writable %v, stopped %v", g.SpawnerWritable, g.SpawnerStopped)
	}
	if res := h.sh(t, s, 0, "echo still"); res.Stdout != "still\n" {
		t.Errorf("a run after the attack: %+v", res)
	}
}

// hijack writes code into the session's waiting runner whose command line
// matches pattern and returns its pid in the container.
func (h *harness) hijack(t *testing.T, s store.Session, pattern, mode string) {
	t.Helper()
	ctx := h.env.Context(t)
	if err := h.m.WriteFile(ctx, s.SessionID, "hijack.js", []byte(hijackSource)); err != nil {
		t.Fatal(err)
	}
	// It answers as soon as it has written; the bound is for slow (emulated) machines.
	res := h.exec(t, s, 30*time.Second, "/usr/local/bin/node", "/workspace/hijack.js", pattern, mode)
	var out struct {
		Pid   int
		Error string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &out); err != nil || out.Pid == 0 {
		t.Fatalf("hijack of %s: %+v (%v)", pattern, res, err)
	}
}

// leaveRunnersWaiting runs a first JavaScript file and a first shell
// command in s, which leaves runners of both kinds waiting.
func (h *harness) leaveRunnersWaiting(t *testing.T, s store.Session) {
	t.Helper()
	ctx := h.env.Context(t)
	if err := h.m.WriteFile(ctx, s.SessionID, "hello.js", []byte(`console.log("hi")`)); err != nil {
		t.Fatal(err)
	}
	if res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: "hello.js"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("first run: %+v %v", res, err)
	}
	if res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Shell: "true"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("first shell run: %+v %v", res, err)
	}
	if _, ok := runtime.WaitRunner(h.m, s.SessionID, "hello.js"); !ok {
		t.Fatal("no JavaScript runner waiting")
	}
}

// cpuSeconds is the CPU time, user and system, that pid has used.
func cpuSeconds(pid int) float64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// sessionCPURate is the CPU, in CPUs, the session's processes use over d.
func sessionCPURate(t *testing.T, h *harness, s store.Session, d time.Duration) float64 {
	t.Helper()
	ctx := h.env.Context(t)
	procs, _, err := runtime.SessionProcesses(ctx, h.m, s.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	before := map[int]float64{}
	for _, p := range procs {
		before[p.Pid] = cpuSeconds(p.Pid)
	}
	time.Sleep(d)
	used := 0.0
	for pid, b := range before {
		used += cpuSeconds(pid) - b
	}
	return used / d.Seconds()
}

// checkInsideSession fails for any process of the session outside its
// pids and CPU cgroups but the spawner and its gates, which run as another
// uid than user code's and start nothing of it before they are placed (the
// spawner is outside the pids limit on cgroup v1 by design).
func checkInsideSession(t *testing.T, h *harness, s store.Session) []runtime.SessionProcess {
	t.Helper()
	procs, cg, err := runtime.SessionProcesses(h.env.Context(t), h.m, s.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	inside := func(p string) bool { return p == cg || strings.HasPrefix(p, cg+"/") }
	for _, p := range procs {
		if strings.HasPrefix(p.Cmdline, "/sbin/servcraft-spawner ") {
			continue
		}
		if !inside(p.CPUCgroup) || !inside(p.PidsCgroup) {
			t.Errorf("process %d (%.60q) is outside its session %s: cpu %s, pids %s", p.Pid, p.Cmdline, cg, p.CPUCgroup, p.PidsCgroup)
		}
	}
	return procs
}

// TestAttackSameUID_RunnerCPU: user code turns a waiting JavaScript runner
// and a waiting shell runner into busy loops and runs one of its own
// beside them. All of it together gets no more than the session's CPU
// quota, and every process stays in the session's cgroups.
func TestAttackSameUID_RunnerCPU(t *testing.T) {
	const cpus = 0.5
	h := newHarness(t, func(c *runtime.Config) {
		c.Runners = true
		c.Limits.CPUQuota = int64(cpus * float64(c.Limits.CPUPeriod))
	})
	s := h.session(t, "")
	ctx := h.env.Context(t)
	h.leaveRunnersWaiting(t, s)
	h.hijack(t, s, jsRunnerPattern, "spin")
	h.hijack(t, s, shellRunnerPattern, "spin")
	if _, err := h.m.StartBackground(ctx, s.SessionID, "node -e 'for(;;){}'"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the quota's first periods
	rate := sessionCPURate(t, h, s, 3*time.Second)
	t.Logf("the session's processes used %.2f CPUs with two hijacked runners and a busy loop (quota %.2f)", rate, cpus)
	if rate > cpus*1.2 {
		t.Errorf("the session used %.2f CPUs, over its quota of %.2f", rate, cpus)
	}
	checkInsideSession(t, h, s)
}

// TestAttackSameUID_RunnerForkBomb: user code turns a waiting shell runner
// and a waiting JavaScript runner into fork loops. The session never holds
// more processes than its pids limit, every one of them is inside its
// cgroups, and destroying it leaves nothing.
func TestAttackSameUID_RunnerForkBomb(t *testing.T) {
	const pids = 64
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.Limits.Pids = pids })
	s := h.session(t, "")
	ctx := h.env.Context(t)
	h.leaveRunnersWaiting(t, s)
	h.hijack(t, s, shellRunnerPattern, "fork")
	most := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		procs := checkInsideSession(t, h, s)
		most = max(most, len(procs))
		if t.Failed() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The spawner (outside the pids limit on cgroup v1) is listed too.
	t.Logf("at most %d processes in the session with a hijacked runner forking (pids limit %d)", most, pids)
	if most > pids+1 {
		t.Errorf("%d processes in the session, over its pids limit %d", most, pids)
	}
	if most < pids/2 {
		t.Errorf("only %d processes: the fork loop never ran, the test did not test", most)
	}
	info, _, err := runtime.SessionProcesses(ctx, h.m, s.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.Destroy(ctx, s.SessionID); err != nil {
		t.Fatal(err)
	}
	for _, p := range info {
		if _, err := os.Stat(path.Join("/proc", strconv.Itoa(p.Pid))); err == nil {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid)); strings.ReplaceAll(string(cmd), "\x00", " ") == p.Cmdline {
				t.Errorf("process %d (%.60q) outlived its session", p.Pid, p.Cmdline)
			}
		}
	}
}
