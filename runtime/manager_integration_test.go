package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/snapshots/templates"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

const testNamespace = "servcraft-test-runtime"

type harness struct {
	env   *runtimetest.Env
	m     *runtime.Runtime
	db    *store.DB
	vols  *workspace.Volumes
	state string
}

func newHarness(t *testing.T, tweak ...func(*runtime.Config)) *harness {
	t.Helper()
	return newHarnessOn(t, func(string) []workspace.Option {
		return []workspace.Option{workspace.WithBackend(workspace.BackendImage)}
	}, tweak...)
}

// newHarnessOnPool is newHarness with the workspaces in a btrfs pool file
// of its own (1 GiB); it fails in CI and skips elsewhere without btrfs-progs.
func newHarnessOnPool(t *testing.T, tweak ...func(*runtime.Config)) *harness {
	t.Helper()
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.btrfs missing (scripts/deps.sh installs btrfs-progs)")
		}
		t.Skip("mkfs.btrfs missing (apt-get install btrfs-progs)")
	}
	return newHarnessOn(t, func(state string) []workspace.Option {
		return []workspace.Option{workspace.WithPool(filepath.Join(state, "pool.btrfs"), 1<<30, 64<<20)}
	}, tweak...)
}

// newHarnessOn is newHarness with the workspace volumes volumes(state) gives.
func newHarnessOn(t *testing.T, volumes func(state string) []workspace.Option, tweak ...func(*runtime.Config)) *harness {
	t.Helper()
	env := runtimetest.Start(t, testNamespace)
	state := t.TempDir()
	db, err := store.Open(filepath.Join(state, "servcraftd.db"))
	if err != nil {
		t.Fatal(err)
	}
	vols, err := workspace.NewVolumes(context.Background(), filepath.Join(state, "workspaces"), 64<<20, volumes(state)...)
	if err != nil {
		t.Fatal(err)
	}
	if vols.Backend() == workspace.BackendBtrfs {
		t.Cleanup(func() { _ = syscall.Unmount(vols.Root(), syscall.MNT_DETACH) }) // after the sessions are destroyed
	}
	cfg := env.Config(state)
	for _, f := range tweak {
		f(&cfg)
	}
	m, err := runtime.New(env.Context(t), env.Client, db, vols, cfg)
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	h := &harness{env: env, m: m, db: db, vols: vols, state: state}
	t.Cleanup(func() {
		ctx := context.Background()
		list, _ := db.List()
		for _, s := range list {
			if err := m.Destroy(env.Context(t), s.SessionID); err != nil {
				t.Errorf("cleanup %s: %v", s.SessionID, err)
			}
		}
		_ = ctx
		m.Close()
		db.Close()
	})
	return h
}

// session creates a session named after the test.
func (h *harness) session(t *testing.T, suffix string) store.Session {
	t.Helper()
	id := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + suffix
	s, created, err := h.m.Create(h.env.Context(t), id, "js")
	if err != nil || !created {
		t.Fatalf("create %s: created=%v err=%v", id, created, err)
	}
	return s
}

func (h *harness) node(t *testing.T, s store.Session, code string, timeout time.Duration) runtime.ExecResult {
	t.Helper()
	if err := h.m.WriteFile(h.env.Context(t), s.SessionID, "main.js", []byte(code)); err != nil {
		t.Fatal(err)
	}
	return h.exec(t, s, timeout, "/usr/local/bin/node", "/workspace/main.js")
}

func (h *harness) exec(t *testing.T, s store.Session, timeout time.Duration, args ...string) runtime.ExecResult {
	t.Helper()
	res, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{Args: args, Timeout: timeout})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	return res
}

func TestLifecycleLeavesNothing(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)
	s := h.session(t, "")
	if !strings.HasPrefix(s.ContainerID, runtime.ContainerPrefix) || s.State != store.StateRunning {
		t.Fatalf("session = %+v", s)
	}
	res := h.node(t, s, `console.log("hi", process.getuid(), process.cwd()); console.error("err")`, 0)
	if res.ExitCode != 0 || res.Stdout != "hi 1000 /workspace\n" || res.Stderr != "err\n" {
		t.Fatalf("run = %+v", res)
	}
	info, err := h.m.Get(ctx, s.SessionID)
	if err != nil || info.Status != "running" || info.Usage.MemoryLimitBytes != 512<<20 {
		t.Fatalf("get = %+v, %v", info, err)
	}
	if err := h.m.Destroy(ctx, s.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Get(ctx, s.SessionID); !errdefs.IsNotFound(err) {
		t.Fatalf("get after destroy: %v", err)
	}
	for _, id := range h.env.Containers(t) {
		if id == s.ContainerID {
			t.Fatalf("container %s survives destroy", id)
		}
	}
	snaps := h.env.Client.SnapshotService("overlayfs")
	if _, err := snaps.Stat(ctx, s.ContainerID+"-rootfs"); !errdefs.IsNotFound(err) {
		t.Fatalf("rootfs snapshot survives destroy: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), s.UUID) {
		t.Fatalf("workspace still mounted")
	}
	if _, err := os.Stat(filepath.Join(h.state, "workspaces", s.UUID)); !os.IsNotExist(err) {
		t.Fatalf("workspace folder survives: %v", err)
	}
	if err := h.m.Destroy(ctx, s.SessionID); !errdefs.IsNotFound(err) {
		t.Fatalf("second destroy: %v", err)
	}
}

func TestConcurrentCreatesMakeOneContainer(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)
	id := "concurrent-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, ids := 0, map[string]bool{}
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, c, err := h.m.Create(ctx, id, "ts")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[s.ContainerID] = true
			if c {
				created++
			}
		}()
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Fatalf("created %d sessions, %d container IDs", created, len(ids))
	}
	n := 0
	for _, c := range h.env.Containers(t) {
		if ids[c] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d containers in containerd", n)
	}
}

func TestSecurityContextFromInside(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	res := h.exec(t, s, 0, "/bin/sh", "-c", `grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; touch /etc/x 2>&1; ls /sys/class/net`)
	for _, want := range []string{"Uid:\t1000\t1000\t1000\t1000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
		"NoNewPrivs:\t1", "Seccomp:\t2", "Read-only file system"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("missing %q in:\n%s", want, res.Stdout)
		}
	}
	if strings.TrimSpace(lastLine(res.Stdout)) != "lo" {
		t.Errorf("network interfaces: %q, want only lo", lastLine(res.Stdout))
	}
	pid1 := h.exec(t, s, 0, "/bin/sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
	if !strings.HasPrefix(pid1.Stdout, "/sbin/servcraft-spawner") {
		t.Errorf("PID 1 is %q, want the spawner", pid1.Stdout)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestNetworkOnlyLoopback(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	// A server on the host's loopback that the container must not reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	res := h.node(t, s, fmt.Sprintf(`
const net = require("net");
console.log(JSON.stringify(Object.keys(require("os").networkInterfaces())));
const c = net.connect(%d, "127.0.0.1");
c.on("connect", () => { console.log("CONNECTED"); process.exit(0); });
c.on("error", (e) => { console.log("ERR", e.code); });
`, port), 5*time.Second)
	if !strings.HasPrefix(res.Stdout, `["lo"]`) {
		t.Errorf("interfaces: %q", res.Stdout)
	}
	if strings.Contains(res.Stdout, "CONNECTED") || !strings.Contains(res.Stdout, "ERR ECONNREFUSED") {
		t.Errorf("host loopback reachable or unexpected error: %q", res.Stdout)
	}
	select {
	case <-accepted:
		t.Error("host listener accepted a connection from the container")
	default:
	}
}

func TestMemoryHogIsOOMKilledAndSessionSurvives(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Limits.MemoryBytes = 128 << 20 })
	s := h.session(t, "")
	res := h.node(t, s, `const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1));`, 30*time.Second)
	if !res.OOMKilled || res.ExitCode != 137 || res.Signal != "SIGKILL" {
		t.Fatalf("hog: %+v", res)
	}
	if res := h.node(t, s, `console.log("alive")`, 0); res.Stdout != "alive\n" {
		t.Fatalf("after OOM: %+v", res)
	}
}

func TestCPUQuota(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	res := h.node(t, s, `const s = process.cpuUsage(), t0 = Date.now(); while (Date.now() - t0 < 2000); const u = process.cpuUsage(s); console.log((u.user + u.system) / 1e6);`, 20*time.Second)
	cpu, err := strconv.ParseFloat(strings.TrimSpace(res.Stdout), 64)
	if err != nil {
		t.Fatalf("%+v: %v", res, err)
	}
	t.Logf("2 s busy loop used %.3f s CPU", cpu)
	if cpu > 1.15 || cpu < 0.5 {
		t.Fatalf("CPU %.3f s in 2 s wall, want about 1 s at 0.5 CPU", cpu)
	}
}

func TestTimeoutKillsDetachedChildren(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	res := h.node(t, s, `
const { spawn } = require("child_process");
const c = spawn("/bin/sh", ["-c", "sleep 1000"], { detached: true, stdio: "ignore" });
c.unref();
console.log("child", c.pid);
setInterval(() => {}, 1000);
`, 1500*time.Millisecond)
	if !res.TimedOut || !strings.HasPrefix(res.Stdout, "child ") {
		t.Fatalf("run: %+v", res)
	}
	if res.Duration > 5*time.Second {
		t.Fatalf("timeout took %v", res.Duration)
	}
	ps := h.exec(t, s, 0, "/bin/sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
	if strings.Contains(ps.Stdout, "sleep 1000") || strings.Contains(ps.Stdout, "main.js") {
		t.Fatalf("processes survive the timeout:\n%s", ps.Stdout)
	}
}

func TestFinishedRunLeavesNoOrphans(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	res := h.exec(t, s, 0, "/bin/sh", "-c", "(setsid sleep 900 &) ; echo started")
	if res.ExitCode != 0 || res.Stdout != "started\n" {
		t.Fatalf("%+v", res)
	}
	ps := h.exec(t, s, 0, "/bin/sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
	if strings.Contains(ps.Stdout, "sleep 900") {
		t.Fatalf("a finished run's detached child survives:\n%s", ps.Stdout)
	}
}

func TestOutputCap(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.OutputLimit = 64 << 10 })
	s := h.session(t, "")
	start := time.Now()
	res := h.node(t, s, `const fs = require("fs"); for (;;) fs.writeSync(1, "x".repeat(1000));`, 30*time.Second)
	if !res.Truncated || res.TimedOut || len(res.Stdout) != 64<<10 {
		t.Fatalf("truncated=%v timedOut=%v len=%d", res.Truncated, res.TimedOut, len(res.Stdout))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to stop an endless printer", d)
	}
}

func TestForkBombContained(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.Limits.Pids = 64 })
	bomb := h.session(t, "-bomb")
	other := h.session(t, "-other")
	done := make(chan runtime.ExecResult, 1)
	go func() {
		res, err := h.m.Exec(h.env.Context(t), bomb.SessionID, runtime.ExecRequest{
			Args: []string{"/bin/sh", "-c", "b() { b | b & }; b"}, Timeout: 3 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(500 * time.Millisecond) // let the bomb fill its pids limit
	if res := h.node(t, other, `console.log("fine")`, 0); res.Stdout != "fine\n" {
		t.Fatalf("other session during the bomb: %+v", res)
	}
	<-done
	info, err := h.m.Get(h.env.Context(t), bomb.SessionID)
	if err != nil || info.Usage.Pids > 64 {
		t.Fatalf("bomb session: %+v %v", info.Usage, err)
	}
	if res := h.node(t, bomb, `console.log("recovered")`, 0); res.Stdout != "recovered\n" {
		t.Fatalf("bomb session after: %+v", res)
	}
}

func TestStdinAndExitCodes(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	res, err := h.m.Exec(h.env.Context(t), s.SessionID, runtime.ExecRequest{
		Args: []string{"/bin/sh", "-c", "cat; exit 3"}, Stdin: []byte("hello\nworld")})
	if err != nil || res.Stdout != "hello\nworld" || res.ExitCode != 3 || res.Signal != "" {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestExtendOnce(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)
	s := h.session(t, "")
	ext, err := h.m.Extend(ctx, s.SessionID)
	if err != nil || !ext.Extended || ext.ExpiresAt.Sub(s.ExpiresAt) < 10*time.Minute {
		t.Fatalf("extend: %+v %v", ext, err)
	}
	if _, err := h.m.Extend(ctx, s.SessionID); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second extend: %v", err)
	}
	if _, err := h.m.Extend(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("extend unknown: %v", err)
	}
}

func TestCapacityLimitAndStats(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.MaxSessions = 2 })
	ctx := h.env.Context(t)
	a := h.session(t, "-a")
	h.session(t, "-b")
	_, _, err := h.m.Create(ctx, "over-capacity", "js")
	if !errors.Is(err, runtime.ErrCapacity) || !errdefs.IsUnavailable(err) {
		t.Fatalf("third create: %v", err)
	}
	if _, err := h.db.Get("over-capacity"); !errdefs.IsNotFound(err) {
		t.Fatalf("a refused create left a record: %v", err)
	}
	// An existing session is still answered at capacity.
	if _, created, err := h.m.Create(ctx, a.SessionID, "js"); err != nil || created {
		t.Fatalf("existing at capacity: %v %v", created, err)
	}
	if err := h.m.Destroy(ctx, a.SessionID); err != nil {
		t.Fatal(err)
	}
	c := h.session(t, "-c")
	h.node(t, c, `console.log(1)`, 0)
	h.node(t, c, `process.exit(4)`, 0)
	st := h.m.Stats()
	if st.Active != 2 || st.Creates["ok"] != 3 || st.Creates["capacity"] != 1 || st.Creates["existing"] != 1 ||
		st.Destroys["ok"] != 1 || st.ExecResults["ok"] != 1 || st.ExecResults["nonzero"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWarmPool(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.PoolSize, c.MaxSessions, c.ReapInterval = 2, 3, time.Hour })
	ctx := h.env.Context(t)
	if err := h.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitPooled := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		// Stats counts a warm container while it is still being built: wait for those the pool can hand out.
		for runtime.WarmReady(h.m) != n {
			if time.Now().After(deadline) {
				t.Fatalf("pool holds %d ready, want %d", runtime.WarmReady(h.m), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitPooled(2)
	start := time.Now()
	s, created, err := h.m.Create(ctx, "from-pool", "ts")
	took := time.Since(start)
	if err != nil || !created || s.SessionID != "from-pool" || s.ProjectType != "ts" {
		t.Fatalf("create from pool: %+v %v %v", s, created, err)
	}
	t.Logf("create from the warm pool took %v", took)
	if st := h.m.Stats(); st.Creates["pool"] != 1 {
		t.Fatalf("not served from the pool: %+v", st.Creates)
	}
	// It looks like any session: starter project, labels, deadline, it runs.
	res := h.exec(t, s, 0, "/bin/sh", "-c", "ls src; id -u")
	if res.Stdout != "app.ts\n1000\n" {
		t.Fatalf("adopted session: %+v", res)
	}
	c, err := h.env.Client.LoadContainer(ctx, s.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	labels, _ := c.Labels(ctx)
	if labels[runtime.LabelSession] != "from-pool" || labels[runtime.LabelProjectType] != "ts" {
		t.Fatalf("labels %v", labels)
	}
	if time.Until(s.ExpiresAt) > 31*time.Minute || time.Until(s.ExpiresAt) < 29*time.Minute {
		t.Fatalf("expiresAt %v", s.ExpiresAt)
	}
	// At capacity (1 session + 2 warm = 3) the pool still serves, but does not refill.
	// The oldest warm container holds the js starter already (the first
	// type, before the claim above asked for ts): it is handed over as it is.
	waitPooled(2)
	second, _, err := h.m.Create(ctx, "second", "js")
	if err != nil {
		t.Fatal(err)
	}
	jsStarter, err := templates.Files("js")
	if err != nil {
		t.Fatal(err)
	}
	want := "app.js\n"
	for _, f := range jsStarter {
		if f.Path == "package.json" {
			want += string(f.Data)
		}
	}
	if res := h.exec(t, second, 0, "/bin/sh", "-c", "ls src; cat package.json; test ! -e tsconfig.json"); res.Stdout != want || res.ExitCode != 0 {
		t.Fatalf("second session from the pool: %+v, want %q", res, want)
	}
	time.Sleep(500 * time.Millisecond)
	if st := h.m.Stats(); st.Pooled != 1 || st.Active != 2 {
		t.Fatalf("after a claim at capacity: %+v", st)
	}
	// A client can never name a pool record.
	if _, err := h.m.Get(ctx, "~pool-x"); !errdefs.IsNotFound(err) {
		t.Fatalf("get pool record: %v", err)
	}
}

// The preview index follows a session adopted from the warm pool, is
// rebuilt by a restarted daemon's Start, and forgets a reaped session.
func TestPreviewIndexAcrossLives(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.PoolSize = 1; c.ReapInterval = time.Hour })
	ctx := h.env.Context(t)
	resolves := func(m *runtime.Runtime, id, want string) {
		t.Helper()
		if got, err := m.PreviewSession(id); err != nil || got != want {
			t.Fatalf("PreviewSession(%q) = %q, %v; want %q", id, got, err, want)
		}
	}
	if err := h.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Stats counts a warm container while it is still being built: wait for one the pool holds.
	deadline := time.Now().Add(30 * time.Second)
	for runtime.WarmReady(h.m) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the pool never filled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	const id = "session-1796051266938-adopted"
	if _, created, err := h.m.Create(ctx, id, "js"); err != nil || !created || h.m.Stats().Creates["pool"] != 1 {
		t.Fatalf("create from the pool: %v %v %+v", created, err, h.m.Stats().Creates)
	}
	resolves(h.m, "adopted", id)

	// A restarted daemon: a new manager over the same store and containerd.
	if err := h.m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := runtime.New(ctx, h.env.Client, h.db, h.vols, h.env.Config(h.state))
	if err != nil {
		t.Fatal(err)
	}
	resolves(m2, "adopted", "adopted") // not indexed before Start
	if err := m2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	resolves(m2, "adopted", id)

	// Reaped when its deadline passed: the short id names nobody.
	runtime.SetClock(m2, func() time.Time { return time.Now().Add(2 * time.Hour) })
	reaped, err := m2.Reap(ctx)
	if err != nil || !slices.Contains(reaped, id) {
		t.Fatalf("reap: %v %v", reaped, err)
	}
	resolves(m2, "adopted", "adopted")
	if _, err := m2.DialSession(ctx, "adopted", 3000); !errdefs.IsNotFound(err) {
		t.Fatalf("dial a reaped session by its short id: %v", err)
	}
}

// TestSessionsShareAShim: with --sessions-per-shim, sessions of one group
// are children of one shim; a destroyed session leaves its shim serving the
// others (a new session joins it); with 1, every session has a shim.
func TestSessionsShareAShim(t *testing.T) {
	shimOf := func(t *testing.T, h *harness, s store.Session) int {
		t.Helper()
		ctx := h.env.Context(t)
		c, err := h.env.Client.LoadContainer(ctx, s.ContainerID)
		if err != nil {
			t.Fatal(err)
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", task.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ppid ...
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		ppid, _ := strconv.Atoi(fields[1])
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
		if !strings.Contains(string(cmd), "containerd-shim") {
			t.Fatalf("parent %d of %s's PID 1 is %q, not a shim", ppid, s.SessionID, cmd)
		}
		return ppid
	}
	t.Run("grouped", func(t *testing.T) {
		h := newHarness(t, func(c *runtime.Config) { c.MaxSessions, c.SessionsPerShim, c.PoolSize = 4, 4, 0 })
		ctx := h.env.Context(t)
		a, b := h.session(t, "-a"), h.session(t, "-b")
		shim := shimOf(t, h, a)
		if got := shimOf(t, h, b); got != shim {
			t.Fatalf("two sessions of one group: shims %d and %d", shim, got)
		}
		if err := h.m.Destroy(ctx, a.SessionID); err != nil {
			t.Fatal(err)
		}
		if res := h.node(t, b, `console.log("still here")`, 0); res.Stdout != "still here\n" {
			t.Fatalf("the other session after the first's destroy: %+v", res)
		}
		c := h.session(t, "-c")
		if got := shimOf(t, h, c); got != shim {
			t.Fatalf("a new session of the group: shim %d, want the group's %d", got, shim)
		}
		if res := h.node(t, c, `console.log("new")`, 0); res.Stdout != "new\n" {
			t.Fatalf("the new session: %+v", res)
		}
	})
	t.Run("a shim each", func(t *testing.T) {
		h := newHarness(t, func(c *runtime.Config) { c.MaxSessions, c.SessionsPerShim, c.PoolSize = 4, 1, 0 })
		a, b := h.session(t, "-a"), h.session(t, "-b")
		if sa, sb := shimOf(t, h, a), shimOf(t, h, b); sa == sb {
			t.Fatalf("--sessions-per-shim 1: both sessions under shim %d", sa)
		}
	})
}
