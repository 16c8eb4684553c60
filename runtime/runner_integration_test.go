package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/store"
)

// warmCase is one program run cold and warm.
type warmCase struct {
	script, stdin string
	timeout       time.Duration
}

// compareWarmCold runs every case as a fresh process (coldArgs) and on the
// session's runner, and compares what they did. Runners start as soon as
// one is taken and a request waits for one still starting, so after the
// first script run every run must be warm: none may go cold.
func compareWarmCold(t *testing.T, h *harness, s store.Session, coldArgs func(file string) []string, cases []warmCase) {
	t.Helper()
	ctx := h.env.Context(t)
	runWarm := func(tc warmCase) runtime.ExecResult {
		t.Helper()
		res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: tc.script, Stdin: []byte(tc.stdin), Timeout: tc.timeout})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Warm {
			t.Fatalf("%s ran cold with a runner on its way", tc.script)
		}
		return res
	}
	// The first run of a kind is cold and starts its runner.
	if _, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: cases[0].script}); err != nil {
		t.Fatal(err)
	}
	withoutStack := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "    at ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	for _, tc := range cases {
		if tc.timeout == 0 {
			tc.timeout = time.Minute // a loaded host can take seconds to start a cold tsx
		}
		cold, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{
			Args: coldArgs("/workspace/" + tc.script), Stdin: []byte(tc.stdin), Timeout: tc.timeout})
		if err != nil {
			t.Fatal(err)
		}
		warm := runWarm(tc)
		if cold.ExitCode != warm.ExitCode || cold.Stdout != warm.Stdout || cold.TimedOut != warm.TimedOut ||
			cold.Truncated != warm.Truncated || withoutStack(cold.Stderr) != withoutStack(warm.Stderr) {
			t.Errorf("%s differs:\ncold %+v\nwarm %+v", tc.script, cold, warm)
		}
		t.Logf("%s: exit %d, cold %v, warm %v", tc.script, cold.ExitCode, cold.Duration, warm.Duration)
	}
}

func writeFiles(t *testing.T, h *harness, s store.Session, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := h.m.WriteFile(h.env.Context(t), s.SessionID, name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWarmRunsBehaveLikeColdOnes runs the same programs as a fresh
// `node <file>` and on a pre-started runner and compares what they did.
func TestWarmRunsBehaveLikeColdOnes(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.OutputLimit = 64 << 10 })
	s := h.session(t, "")
	ctx := h.env.Context(t)
	writeFiles(t, h, s, map[string]string{
		"child.js":         `console.log("child", JSON.stringify(process.execArgv), process.argv.length)`,
		"esm/package.json": `{"type":"module"}`,
		"esm/lib.js":       `export const v = 7;`,
		"esm/main.js":      `import { v } from "./lib.js"; console.log("esm", v, import.meta.url, typeof require);`,
		"p/hello.js":       `console.log("hi")`,
		"p/main.js":        `console.log(require.main === module, __filename, process.argv.slice(1).join(","), process.cwd(), JSON.stringify(process.execArgv), typeof process._eval)`,
		"p/exit.js":        `console.log("bye"); process.exit(3)`,
		"p/throw.js":       `console.log("before"); throw new Error("boom")`,
		"p/reject.js":      `Promise.reject(new Error("nope"))`,
		"p/mod.mjs":        `console.log(import.meta.url, typeof require, process.argv[1])`,
		"p/stdin.js":       `let s=""; process.stdin.on("data", d => s += d).on("end", () => console.log(s.toUpperCase()))`,
		"p/env.js":         `console.log(process.env.HOME, process.env.PATH.split(":").length > 1, process.getuid())`,
		"p/fork.js":        `require("child_process").fork("/workspace/child.js").on("exit", c => console.log("forked", c))`,
		"p/loop.js":        `setInterval(() => {}, 1000)`,
		"p/spam.js":        `for (;;) require("fs").writeSync(1, "x".repeat(4096))`,
		"p/exitcode.js":    `process.exitCode = 5`,
	})
	compareWarmCold(t, h, s, func(file string) []string { return []string{"/usr/local/bin/node", file} }, []warmCase{
		{"p/hello.js", "", 0}, {"p/main.js", "", 0}, {"p/exit.js", "", 0}, {"p/throw.js", "", 0},
		{"p/reject.js", "", 0}, {"p/mod.mjs", "", 0}, {"esm/main.js", "", 0}, {"p/stdin.js", "abc\ndef", 0},
		{"p/env.js", "", 0}, {"p/fork.js", "", 0}, {"p/exitcode.js", "", 0},
		{"p/loop.js", "", 700 * time.Millisecond}, {"p/spam.js", "", 0},
	})
	// A runner killed by user code while it waits is not mistaken for a run.
	// It waits with SIGTERM and SIGINT at the kernel's default, so a kill is
	// fatal at once rather than a handler of node's that runs (and can be
	// throttled) in user mode, looking like a runner waiting for its file.
	pid, ok := runtime.WaitRunner(h.m, s.SessionID, "p/hello.js")
	if !ok {
		t.Fatal("no runner after the runs")
	}
	waitSignalsDefault(t, pid)
	h.exec(t, s, 0, "/bin/sh", "-c", "killall node")
	res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: "p/hello.js"})
	if err != nil || res.Stdout != "hi\n" || res.ExitCode != 0 {
		t.Fatalf("after the runner was killed: %+v %v", res, err)
	}
}

// waitSignalsDefault waits until the runner pid catches neither SIGTERM
// nor SIGINT: it has reached its wait for a file.
func waitSignalsDefault(t *testing.T, pid uint32) {
	t.Helper()
	const termAndInt = 1<<(15-1) | 1<<(2-1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatalf("runner %d: %v", pid, err)
		}
		_, rest, _ := strings.Cut(string(status), "SigCgt:")
		caught, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 16, 64)
		if err != nil {
			t.Fatalf("runner %d SigCgt: %v", pid, err)
		}
		if caught&termAndInt == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("runner %d still catches SIGTERM or SIGINT (SigCgt %x) after 30s", pid, caught)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tsSession is a session holding the TypeScript suite's programs.
func tsSession(t *testing.T) (*harness, store.Session) {
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.OutputLimit = 64 << 10 })
	if h.env.ToolchainDir == "" {
		testneeds.Unavailable(t, "no TypeScript toolchain (SERVCRAFT_TEST_TOOLCHAIN)")
	}
	s := h.session(t, "")
	writeFiles(t, h, s, map[string]string{
		"tsconfig.json":       `{"compilerOptions":{"baseUrl":".","paths":{"@lib/*":["ts/lib/*"]}}}`,
		"child.ts":            `const n: number = process.argv.length; console.log("child", JSON.stringify(process.execArgv), n)`,
		"ts/lib/x.ts":         `export const x: number = 42;`,
		"ts/hello.ts":         `const greeting: string = "hi"; console.log(greeting)`,
		"ts/main.ts":          `console.log(require.main === module, __filename, process.argv.slice(1).join(","), process.cwd(), JSON.stringify(process.execArgv), typeof process._eval)`,
		"ts/paths.ts":         `import { x } from "@lib/x"; console.log("paths", x)`,
		"ts/mod.mts":          `const u: string = import.meta.url; console.log(u, typeof require, process.argv[1])`,
		"ts/cjs.cts":          `const p = require("path"); console.log(p.basename(__filename), typeof module)`,
		"ts/esm/package.json": `{"type":"module"}`,
		"ts/esm/lib.ts":       `export const v: number = 7;`,
		"ts/esm/main.ts":      `import { v } from "./lib.js"; console.log("esm", v, import.meta.url, typeof require);`,
		"ts/view.tsx":         `const h = (t: string, p: unknown, ...c: unknown[]) => ({ t, c }); const React = { createElement: h }; console.log(JSON.stringify(<b>x</b>))`,
		"ts/throw.ts":         "interface A { a: number }\nconst a: A = { a: 1 };\nconsole.log(\"before\", a.a);\n  throw new Error(\"boom\")",
		"ts/syntax.ts":        "const x: number = ;\n",
		"ts/exit.ts":          `console.log("bye"); process.exit(3)`,
		"ts/exitcode.ts":      `process.exitCode = 5`,
		"ts/reject.ts":        `Promise.reject(new Error("nope"))`,
		"ts/stdin.ts":         `let s: string = ""; process.stdin.on("data", (d: Buffer) => s += d).on("end", () => console.log(s.toUpperCase()))`,
		"ts/fork.ts":          `require("child_process").fork("/workspace/child.ts").on("exit", (c: number) => console.log("forked", c))`,
		"ts/loop.ts":          `setInterval((): void => {}, 1000)`,
	})
	return h, s
}

func tsCold(file string) []string {
	return []string{"/usr/local/bin/node", "--import", runtime.TSLoader, file}
}

// TestWarmTypeScriptBehavesLikeCold does the same for TypeScript: a fresh
// `node --import <tsx loader> <file>` against a runner with the loader in
// place, for module systems and tsconfig paths (split from the test below
// so each fits the test context on a loaded host).
func TestWarmTypeScriptBehavesLikeCold(t *testing.T) {
	h, s := tsSession(t)
	compareWarmCold(t, h, s, tsCold, []warmCase{
		{"ts/hello.ts", "", 0}, {"ts/main.ts", "", 0}, {"ts/paths.ts", "", 0}, {"ts/mod.mts", "", 0},
		{"ts/cjs.cts", "", 0}, {"ts/esm/main.ts", "", 0}, {"ts/view.tsx", "", 0},
	})
	// tsx reads tsconfig.json when it starts: a runner started before an edit
	// is not used for the run after it, which sees the new paths as a cold one.
	writeFiles(t, h, s, map[string]string{
		"tsconfig.json": `{"compilerOptions":{"baseUrl":".","paths":{"@lib/*":["ts/lib2/*"]}}}`,
		"ts/lib2/x.ts":  `export const x: number = 43;`,
	})
	res, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{Script: "ts/paths.ts"})
	if err != nil || res.Stdout != "paths 43\n" {
		t.Fatalf("after a tsconfig edit: %+v %v", res, err)
	}
}

// TestWarmTypeScriptErrorsExitsAndStdin: errors and their positions, exit
// codes, stdin, child processes and timeouts, cold and warm alike.
func TestWarmTypeScriptErrorsExitsAndStdin(t *testing.T) {
	h, s := tsSession(t)
	compareWarmCold(t, h, s, tsCold, []warmCase{
		{"ts/throw.ts", "", 0}, {"ts/syntax.ts", "", 0}, {"ts/exit.ts", "", 0}, {"ts/exitcode.ts", "", 0},
		{"ts/reject.ts", "", 0}, {"ts/stdin.ts", "abc\ndef", 0}, {"ts/fork.ts", "", 0},
		{"ts/loop.ts", "", 700 * time.Millisecond},
	})
}

// TestRunnersBootOnTheirOwnQuota: a waiting runner sits in its session's
// boot CPU cgroup, nested in the session's own, with the configured quota
// and the least weight (cgroup v1), and the run it serves is back in its
// session's CPU cgroup before any of the file's code runs.
func TestRunnersBootOnTheirOwnQuota(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.RunnerBootCPUs = 0.25 })
	s := h.session(t, "")
	ctx := h.env.Context(t)
	// The program prints the CPU cgroup it runs in.
	writeFiles(t, h, s, map[string]string{"cg.js": `const l = require("fs").readFileSync("/proc/self/cgroup", "utf8").split("\n").find(l => /:(cpu|cpu,cpuacct|):/.test(l)); console.log(l.slice(l.lastIndexOf(":") + 1).replace(/\/servcraft-user\/[^/]+$/, ""))`})
	first, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: "cg.js"})
	if err != nil || first.ExitCode != 0 || first.Warm {
		t.Fatalf("first run: %+v %v", first, err)
	}
	pid, ok := runtime.WaitRunner(h.m, s.SessionID, "cg.js")
	if !ok {
		t.Fatal("no runner after the first run")
	}
	boot, err := runtime.BootCgroup(ctx, h.m, s.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		// cgroup v2: one hierarchy, so runners boot in their session.
		if boot != "" {
			t.Fatalf("a boot cgroup %s on cgroup v2", boot)
		}
	} else {
		if boot == "" {
			t.Fatal("no boot cgroup on cgroup v1")
		}
		procs, err := os.ReadFile(filepath.Join(boot, "cgroup.procs"))
		if err != nil || !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(int(pid))) {
			t.Fatalf("runner %d not in %s: %q %v", pid, boot, procs, err)
		}
		quota, err := os.ReadFile(filepath.Join(boot, "cpu.cfs_quota_us"))
		if err != nil || strings.TrimSpace(string(quota)) != "25000" {
			t.Fatalf("boot quota %q %v, want 25000 (0.25 CPU)", quota, err)
		}
		shares, err := os.ReadFile(filepath.Join(boot, "cpu.shares"))
		if err != nil || strings.TrimSpace(string(shares)) != "2" {
			t.Fatalf("boot weight %q %v, want 2", shares, err)
		}
		session, err := runtime.SessionCPUCgroup(ctx, h.m, s.SessionID)
		if err != nil || filepath.Dir(boot) != session {
			t.Fatalf("boot cgroup %s is not inside the session's CPU cgroup %s (%v)", boot, session, err)
		}
	}
	warm, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: "cg.js"})
	if err != nil || !warm.Warm || warm.Stdout != first.Stdout {
		t.Fatalf("the warm run is not in the cold run's CPU cgroup:\ncold %+v\nwarm %+v %v", first, warm, err)
	}
	if strings.Contains(warm.Stdout, "runner-boot") {
		t.Fatalf("a run on the boot quota: %q", warm.Stdout)
	}
}
