package runtime_test

import (
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
)

// TestWarmRunsBehaveLikeColdOnes runs the same programs as a fresh
// `node <file>` and on a pre-started runner and compares what they did.
func TestWarmRunsBehaveLikeColdOnes(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.OutputLimit = 64 << 10 })
	s := h.session(t, "")
	ctx := h.env.Context(t)
	files := map[string]string{
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
	}
	for name, content := range files {
		if err := h.m.WriteFile(ctx, s.SessionID, name, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	runWarm := func(script string, stdin string, timeout time.Duration) runtime.ExecResult {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: script, Stdin: []byte(stdin), Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			if res.Warm {
				return res
			}
			if time.Now().After(deadline) {
				t.Fatalf("no warm runner for %s", script)
			}
			time.Sleep(200 * time.Millisecond) // the next runner starts after each run
		}
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
	for _, tc := range []struct {
		script, stdin string
		timeout       time.Duration
	}{
		{"p/hello.js", "", 0}, {"p/main.js", "", 0}, {"p/exit.js", "", 0}, {"p/throw.js", "", 0},
		{"p/reject.js", "", 0}, {"p/mod.mjs", "", 0}, {"esm/main.js", "", 0}, {"p/stdin.js", "abc\ndef", 0},
		{"p/env.js", "", 0}, {"p/fork.js", "", 0}, {"p/exitcode.js", "", 0},
		{"p/loop.js", "", 700 * time.Millisecond}, {"p/spam.js", "", 0},
	} {
		cold, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{
			Args: []string{"/usr/local/bin/node", "/workspace/" + tc.script}, Stdin: []byte(tc.stdin), Timeout: tc.timeout})
		if err != nil {
			t.Fatal(err)
		}
		warm := runWarm(tc.script, tc.stdin, tc.timeout)
		if cold.ExitCode != warm.ExitCode || cold.Stdout != warm.Stdout || cold.TimedOut != warm.TimedOut ||
			cold.Truncated != warm.Truncated || withoutStack(cold.Stderr) != withoutStack(warm.Stderr) {
			t.Errorf("%s differs:\ncold %+v\nwarm %+v", tc.script, cold, warm)
		}
		t.Logf("%s: exit %d, cold %v, warm %v", tc.script, cold.ExitCode, cold.Duration, warm.Duration)
	}
	// A runner killed by user code while it waits is not mistaken for a run.
	runWarm("p/hello.js", "", 0)
	time.Sleep(time.Second)
	h.exec(t, s, 0, "/bin/sh", "-c", "killall node")
	res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Script: "p/hello.js"})
	if err != nil || res.Stdout != "hi\n" || res.ExitCode != 0 {
		t.Fatalf("after the runner was killed: %+v %v", res, err)
	}
}
