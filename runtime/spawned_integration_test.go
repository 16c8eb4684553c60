package runtime_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
)

// processView is what a program can see of its own process: credentials,
// capabilities, seccomp, limits, cgroups (run names blanked), umask,
// working directory, environment, stdin and its session and process group
// relation. Only the parent pid is left out: a runc exec's parent is
// outside the container (0), a spawned run's is the spawner (1).
const processView = `id; umask; pwd; env | sort; ` +
	`grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp|Seccomp_filters|Umask):' /proc/self/status; ` +
	`cat /proc/self/limits /proc/self/oom_score_adj; sed 's#/run-[0-9a-f]*#/run-X#' /proc/self/cgroup; ` +
	`read -r line; echo "stdin: $line"; cat; ` +
	`set -- $(cat /proc/self/stat | sed 's/.*) //'); [ "$3" = "$$" ] && echo own-group; [ "$4" = "$$" ] && echo own-session; ` +
	`ls -l /proc/self/fd/ | sed 's/.*[0-9] \([0-9]*\) -> \([a-z]*\).*/\1 \2/' | grep -v '^total'; exit 3`

func TestSpawnedRunIsARuncExecRun(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	ctx := h.env.Context(t)
	if sock, err := runtime.SpawnerSocket(ctx, h.m, s.SessionID); err != nil || sock == "" {
		t.Fatalf("the session has no spawner (%q, %v)", sock, err)
	}
	args := []string{"/bin/sh", "-c", processView}
	spawned, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Args: args, Stdin: []byte("first\nrest\n"),
		Timeout: time.Minute, OutputLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	byRunc, err := runtime.ExecByRunc(ctx, h.m, s.SessionID, "first\nrest\n", args...)
	if err != nil {
		t.Fatal(err)
	}
	if spawned.ExitCode != 3 || byRunc.ExitCode != 3 {
		t.Errorf("exit codes %d (spawned) and %d (runc exec), want 3", spawned.ExitCode, byRunc.ExitCode)
	}
	if spawned.Stdout != byRunc.Stdout || spawned.Stderr != byRunc.Stderr {
		t.Errorf("a spawned run sees another process than a runc exec:\n--- spawned\n%s%s\n--- runc exec\n%s%s",
			spawned.Stdout, spawned.Stderr, byRunc.Stdout, byRunc.Stderr)
	}
	for _, want := range []string{"uid=1000", "stdin: first", "rest", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "own-group", "own-session"} {
		if !strings.Contains(spawned.Stdout, want) {
			t.Errorf("spawned run: missing %q in\n%s", want, spawned.Stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^0 pipe\n1 pipe\n2 pipe$`).MatchString(spawned.Stdout) {
		t.Errorf("a spawned run's stdio is not three pipes:\n%s", spawned.Stdout)
	}
}

// Without its socket (as if the spawner were gone), a session's runs are
// started by runc exec, and the spawner being back brings them home.
func TestRunsWithoutTheSpawnerFallBackToRuncExec(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	ctx := h.env.Context(t)
	sock, err := runtime.SpawnerSocket(ctx, h.m, s.SessionID)
	if err != nil || sock == "" {
		t.Fatalf("the session has no spawner (%q, %v)", sock, err)
	}
	parent := func() string {
		res := h.exec(t, s, time.Minute, "/bin/sh", "-c", "grep PPid /proc/self/status")
		if res.ExitCode != 0 {
			t.Fatalf("run: %+v", res)
		}
		return strings.TrimSpace(res.Stdout)
	}
	if got := parent(); got != "PPid:\t1" {
		t.Fatalf("with the spawner: %q, want the spawner's child", got)
	}
	moved := sock + ".away"
	if err := os.Rename(sock, moved); err != nil {
		t.Fatal(err)
	}
	if got := parent(); got != "PPid:\t0" {
		t.Errorf("without the spawner's socket: %q, want a runc exec (parent outside the container)", got)
	}
	if err := os.Rename(moved, sock); err != nil {
		t.Fatal(err)
	}
	if got := parent(); got != "PPid:\t1" {
		t.Errorf("with the socket back: %q", got)
	}
}

// A daemon configured without a spawner makes containers the old way (the
// init and its sleep) and runs everything with runc exec; so does one with
// a spawner for those containers.
func TestSessionsWithoutASpawner(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.SpawnerPath = "" })
	s := h.session(t, "")
	ctx := h.env.Context(t)
	if sock, err := runtime.SpawnerSocket(ctx, h.m, s.SessionID); err != nil || sock != "" {
		t.Fatalf("spawner socket %q, %v; want none", sock, err)
	}
	res := h.exec(t, s, time.Minute, "/bin/sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; grep -E 'PPid|CapBnd' /proc/self/status")
	for _, want := range []string{"/sbin/servcraft-init -- /bin/sleep", "PPid:\t0", "CapBnd:\t0000000000000000"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("missing %q in %q", want, res.Stdout)
		}
	}
	if res := h.node(t, s, `console.log(process.getuid())`, time.Minute); res.Stdout != "1000\n" {
		t.Errorf("node: %+v", res)
	}
}
