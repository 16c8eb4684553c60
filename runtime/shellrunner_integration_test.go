package runtime_test

import (
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/store"
)

// shellCase is one command line run cold and on the shell runner.
type shellCase struct {
	name, command, stdin string
	timeout              time.Duration
}

// runNames are the per-run cgroup names, different in every run, cold or warm.
var runNames = regexp.MustCompile(`run-[0-9a-f]{12}`)

// shellSession is a session whose shell runner is started (by a first, cold command).
func shellSession(t *testing.T) (*harness, store.Session) {
	t.Helper()
	h := newHarness(t, func(c *runtime.Config) { c.Runners = true; c.OutputLimit = 64 << 10 })
	s := h.session(t, "")
	res, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{Shell: "true"})
	if err != nil || res.ExitCode != 0 || res.Warm {
		t.Fatalf("first shell command: %+v %v", res, err)
	}
	return h, s
}

// shellWarm runs command on the session's shell runner; it must not go cold.
func shellWarm(t *testing.T, h *harness, s store.Session, tc shellCase) runtime.ExecResult {
	t.Helper()
	res, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{Shell: tc.command, Stdin: []byte(tc.stdin), Timeout: tc.timeout})
	if err != nil {
		t.Fatalf("%s warm: %v", tc.name, err)
	}
	if !res.Warm {
		t.Fatalf("%s ran cold with a shell runner on its way", tc.name)
	}
	return res
}

// compareShellWarmCold runs every case as a cold `/bin/sh -c <command>`
// (the argv the shell endpoint used before runners) and on the runner, and
// compares everything a caller sees.
func compareShellWarmCold(t *testing.T, h *harness, s store.Session, cases []shellCase) {
	t.Helper()
	for _, tc := range cases {
		if tc.timeout == 0 {
			tc.timeout = 30 * time.Second
		}
		cold, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{
			Args: []string{"/bin/sh", "-c", tc.command}, Stdin: []byte(tc.stdin), Timeout: tc.timeout})
		if err != nil {
			t.Fatalf("%s cold: %v", tc.name, err)
		}
		warm := shellWarm(t, h, s, tc)
		same := func(a, b string) bool {
			return runNames.ReplaceAllString(a, "run-X") == runNames.ReplaceAllString(b, "run-X")
		}
		if !same(cold.Stdout, warm.Stdout) || !same(cold.Stderr, warm.Stderr) || cold.ExitCode != warm.ExitCode ||
			cold.Signal != warm.Signal || cold.TimedOut != warm.TimedOut || cold.Truncated != warm.Truncated || cold.OOMKilled != warm.OOMKilled {
			t.Errorf("%s differs:\ncold %+v\nwarm %+v", tc.name, cold, warm)
		}
		t.Logf("%s: exit %d %s, cold %v, warm %v", tc.name, cold.ExitCode, cold.Signal, cold.Duration, warm.Duration)
	}
}

// TestWarmShellBehavesLikeCold: exit codes, command lines of any bytes,
// $0, the working directory, uid, the whole environment, the process's
// credentials, signal masks, limits and open files, stdin, stderr, the
// output cap and signals, cold and warm alike.
func TestWarmShellBehavesLikeCold(t *testing.T) {
	h, s := shellSession(t)
	compareShellWarmCold(t, h, s, []shellCase{
		{name: "true", command: "true"},
		{name: "false", command: "false"},
		{name: "exit 42", command: "(exit 42)"},
		{name: "exit 3", command: "echo bye; exit 3"},
		{name: "newlines", command: "echo one\n\necho two\nprintf 'three\\n\\n'\n\n\n"},
		{name: "backslashes", command: `printf '%s|' 'a\b' "c\\d" 'e\\f' "\n" '\n' 'x\'; echo; echo "\\\\" 'end\'`},
		{name: "quotes", command: `echo "it's" 'say "hi"' "a'b\"c" ` + "`echo tick`"},
		{name: "trailing x", command: "echo x\nx=1; echo $x"},
		{name: "percent", command: `printf '%%b %s\n' '\0101 %b \c'`},
		{name: "high bytes", command: "printf '%s\\n' '\x01\x1b\x7f\xc3\xa9 \u20ac \U0001f600'"},
		{name: "$0", command: `echo "[$0] [$#] [$*] [$-] [$PPID]"`},
		{name: "pwd", command: "pwd; echo $PWD; cd ..; pwd; echo $OLDPWD"},
		{name: "id", command: "id -u; id"},
		{name: "env", command: "env | sort"},
		{name: "set", command: "set | grep -v -e '^_=' | sort"},
		{name: "SHLVL", command: `echo "$SHLVL"; sh -c 'echo $SHLVL'`},
		{name: "argv", command: `tr '\0' ' ' < /proc/$$/cmdline; echo`},
		{name: "status", command: `grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|SigBlk|SigIgn|SigCgt|Cpus_allowed_list):' /proc/$$/status`},
		{name: "limits", command: "ulimit -a; umask; cat /proc/$$/limits"},
		{name: "fds", command: `ls /proc/$$/fd; for f in 0 1 2; do readlink /proc/$$/fd/$f; done | sed 's/:.*//'`},
		{name: "cgroup", command: "cat /proc/self/cgroup"},
		{name: "stdin cat", command: "cat", stdin: "abc\ndef\n\nno newline"},
		{name: "stdin read", command: `read -r a; echo "[$a]"; cat`, stdin: "first\\line\nsecond\n"},
		{name: "stdin head", command: "head -c 3; echo; cat", stdin: "abcdef\nghi"},
		{name: "stdin none", command: "cat; echo done"},
		{name: "stderr", command: "echo out; echo err >&2; ls /nonexistent; exit 1"},
		{name: "over the cap", command: "yes | head -c 200000; sleep 30; echo after >&2"},
		{name: "stderr over the cap", command: "yes >&2"},
		{name: "kill -9", command: "echo before; kill -9 $$; echo after"},
		{name: "kill -TERM", command: "kill -TERM $$"},
		{name: "not found", command: "no-such-command"},
		{name: "syntax", command: "if then fi"},
		{name: "timeout", command: "echo started; sleep 100 & sleep 100", timeout: 700 * time.Millisecond},
	})
}

// TestWarmShellLeavesNothing: a timed-out command's background children
// and a finished command's detached ones die with the run, warm as cold:
// afterwards no run cgroup of the session holds anything but the next
// waiting shell runner.
func TestWarmShellLeavesNothing(t *testing.T) {
	h, s := shellSession(t)
	for _, tc := range []shellCase{
		{name: "timeout", command: "sleep 101 & sleep 102", timeout: 500 * time.Millisecond},
		{name: "detached", command: "setsid sleep 103 & (setsid sleep 104 &); echo detached"},
		{name: "nohup", command: "nohup sleep 105 >/dev/null 2>&1 & trap '' HUP; echo ok"},
	} {
		res := shellWarm(t, h, s, tc)
		if tc.timeout > 0 && (!res.TimedOut || res.Signal != "SIGKILL") {
			t.Fatalf("%s: %+v", tc.name, res)
		}
		procs := settledRunProcesses(t, h, s.SessionID)
		waiting := 0
		for group, cmdlines := range procs {
			for _, c := range cmdlines {
				if !strings.Contains(c, "servcraft_line") {
					t.Errorf("%s: %q survives in %s", tc.name, c, group)
				} else {
					waiting++
				}
			}
		}
		if waiting > 2 { // the waiter, and the gate before it while it boots
			t.Errorf("%s: %d shell runners: %v", tc.name, waiting, procs)
		}
	}
	ps := h.exec(t, s, 0, "/bin/sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
	if strings.Contains(ps.Stdout, "sleep 10") {
		t.Fatalf("processes survive:\n%s", ps.Stdout)
	}
}

// settledRunProcesses lists the session's run cgroups once no process in
// them is between fork and exec (its cmdline reads empty while execve
// swaps its memory): the next waiting runner may be starting. It gives up
// after 5 s (times SERVCRAFT_TEST_SLOWDOWN) and returns what it saw.
func settledRunProcesses(t *testing.T, h *harness, sessionID string) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second * time.Duration(runtimetest.Slowdown(t)))
	for {
		procs, err := runtime.RunProcesses(h.env.Context(t), h.m, sessionID)
		if err != nil {
			t.Fatal(err)
		}
		settled := true
		for _, cmdlines := range procs {
			if slices.Contains(cmdlines, "") {
				settled = false
			}
		}
		if settled || time.Now().After(deadline) {
			return procs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShellRunnerKilledWhileWaiting: user code may kill the waiting shell;
// the next command then runs cold, as it would have, and starts a new one.
func TestShellRunnerKilledWhileWaiting(t *testing.T) {
	h, s := shellSession(t)
	ctx := h.env.Context(t)
	warm := shellWarm(t, h, s, shellCase{name: "warm", command: "echo hi"})
	if warm.Stdout != "hi\n" {
		t.Fatalf("%+v", warm)
	}
	// Wait for the session's runners to be up (its depth of them), then
	// kill them all from a cold run.
	depth := runtime.DefaultConfig().RunnerDepth
	deadline := time.Now().Add(30 * time.Second)
	for {
		procs, err := runtime.RunProcesses(ctx, h.m, s.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		up := 0
		for _, cmdlines := range procs {
			for _, c := range cmdlines {
				if strings.HasPrefix(c, "/bin/sh -c IFS=") {
					up++
				}
			}
		}
		if up == depth {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d shell runners wait, not %d: %v", up, depth, procs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res := h.exec(t, s, 0, "/bin/sh", "-c", `for p in /proc/[0-9]*; do case $(tr '\0' ' ' < $p/cmdline) in *IFS=\ read*) kill -9 ${p#/proc/} && echo killed;; esac; done`); res.Stdout != strings.Repeat("killed\n", depth) {
		t.Fatalf("kill the waiting shells: %+v", res)
	}
	res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Shell: "echo again"})
	if err != nil || res.Stdout != "again\n" || res.ExitCode != 0 || res.Warm {
		t.Fatalf("after the runner was killed: %+v %v", res, err)
	}
	shellWarm(t, h, s, shellCase{name: "warm again", command: "true"})
}

// TestWarmShellStreams: a warm command's output reaches OnOutput as it
// comes, in order, and only its own.
func TestWarmShellStreams(t *testing.T) {
	h, s := shellSession(t)
	var mu sync.Mutex
	var chunks []string
	res, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{
		Shell: "cat; sleep 0.3; echo err >&2; sleep 0.3; echo out", Stdin: []byte("in\n"),
		OnOutput: func(stream string, p []byte) {
			mu.Lock()
			chunks = append(chunks, stream+":"+string(p))
			mu.Unlock()
		}})
	if err != nil || !res.Warm || res.Stdout != "in\nout\n" || res.Stderr != "err\n" {
		t.Fatalf("%+v %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(chunks, "|"); got != "stdout:in\n|stderr:err\n|stdout:out\n" {
		t.Fatalf("streamed %q", got)
	}
}
