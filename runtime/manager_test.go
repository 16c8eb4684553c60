package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// unitManager is a manager over a real store and no containerd: what it
// tests must not reach containerd.
func unitManager(t *testing.T, tweak ...func(*Config)) (*Runtime, *store.DB, *fakeClock) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "servcraftd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := Config{IdleTimeout: 10 * time.Minute, ExtendBy: time.Hour, StateDir: t.TempDir(), MaxBackground: 2,
		BackgroundLogBytes: 64, OutputLimit: 1000, TouchInterval: time.Hour, RunnerIdle: 5 * time.Minute}
	for _, f := range tweak {
		f(&cfg)
	}
	m := newRuntime(newManager(nil, db, nil, cfg, nil))
	clock := &fakeClock{t: t0}
	m.clock.set(clock.now)
	return m, db, clock
}

// running records a running session whose workspace is a plain folder and
// whose live handles are cached (with no task: nothing may run in it).
func running(t *testing.T, m *Runtime, db *store.DB, id string) store.Session {
	t.Helper()
	s := newRecord(id, "u-"+strings.TrimPrefix(id, "~"), "img", "js", t.TempDir(), store.Limits{}, m.clock.read(), m.cfg.IdleTimeout)
	s.State = store.StateRunning
	if err := db.Create(s); err != nil {
		t.Fatal(err)
	}
	m.live.add(id, &liveSession{fifoDir: m.fifo})
	return s
}

func TestNewRefusesMissingParts(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	if _, err := New(ctx, nil, nil, nil, Config{StateDir: state, InitPath: filepath.Join(state, "no-init")}); err == nil || !strings.Contains(err.Error(), "init binary") {
		t.Fatalf("missing init: %v", err)
	}
	init := filepath.Join(state, "init")
	if err := os.WriteFile(init, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := New(ctx, nil, nil, nil, Config{StateDir: state, InitPath: init, ToolchainDir: state, DepCacheDir: filepath.Join(state, "deps")})
	if err == nil || !strings.Contains(err.Error(), "TypeScript toolchain") {
		t.Fatalf("toolchain without tsx: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "deps")); err != nil {
		t.Fatalf("dependency layer folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "fifo")); err != nil {
		t.Fatalf("fifo folder: %v", err)
	}
}

func TestActivityReachesStoreAtFlush(t *testing.T) {
	m, db, clock := unitManager(t)
	s := running(t, m, db, "a")
	clock.add(3 * time.Minute)
	m.Touch("a")
	m.Touch("unknown") // destroyed meanwhile: skipped by the store
	if rec, _ := db.Get("a"); !rec.LastActiveAt.Equal(s.LastActiveAt) {
		t.Fatal("activity must wait for the flush")
	}
	if v := m.activity.view(s); !v.LastActiveAt.Equal(t0.Add(3*time.Minute)) || !v.ExpiresAt.Equal(t0.Add(13*time.Minute)) {
		t.Fatalf("view with pending activity: %+v", v)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := db.Get("a")
	if err != nil || !rec.LastActiveAt.Equal(t0.Add(3*time.Minute)) || !rec.ExpiresAt.Equal(t0.Add(13*time.Minute)) {
		t.Fatalf("after close: %+v %v", rec, err)
	}
	if _, ok := m.activity.last("a"); ok {
		t.Fatal("the batch is written once")
	}
	m.activity.touch("a")
	m.activity.forget("a")
	if _, ok := m.activity.last("a"); ok {
		t.Fatal("a destroyed session's activity is dropped")
	}
}

func TestExtendFlushesActivityFirst(t *testing.T) {
	m, db, clock := unitManager(t)
	running(t, m, db, "e")
	clock.add(5 * time.Minute)
	m.Touch("e")
	s, err := m.Extend(context.Background(), "e")
	if err != nil || !s.Extended || !s.ExpiresAt.Equal(t0.Add(5*time.Minute+10*time.Minute+time.Hour)) {
		t.Fatalf("extend: %+v %v", s, err)
	}
	if _, err := m.Extend(context.Background(), "e"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second extend: %v", err)
	}
	if _, err := m.Extend(context.Background(), "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown: %v", err)
	}
}

func TestReserveCountsEveryRecord(t *testing.T) {
	m, _, _ := unitManager(t, func(c *Config) { c.MaxSessions = 2 })
	for _, id := range []string{"a", poolPrefix + "b"} {
		if err := m.reserve(newRecord(id, id, "img", "", "/w", store.Limits{}, t0, time.Minute)); err != nil {
			t.Fatalf("reserve %s: %v", id, err)
		}
	}
	err := m.reserve(newRecord("c", "c", "img", "", "/w", store.Limits{}, t0, time.Minute))
	if !errors.Is(err, ErrCapacity) {
		t.Fatalf("third of two: %v", err)
	}
}

func TestCreateReturnsARunningSession(t *testing.T) {
	m, db, clock := unitManager(t)
	s := running(t, m, db, "c")
	clock.add(time.Minute)
	got, created, err := m.Create(context.Background(), "c", "ts")
	if err != nil || created || got.UUID != s.UUID || !got.LastActiveAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("create existing: %+v %v %v", got, created, err)
	}
	if st := m.Stats(); st.Creates["existing"] != 1 {
		t.Fatalf("stats %+v", st.Creates)
	}
	if err := m.Destroy(context.Background(), "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("destroy unknown: %v", err)
	}
	empty, _, _ := unitManager(t)
	if err := empty.DestroyAll(context.Background()); err != nil {
		t.Fatalf("nothing to destroy: %v", err)
	}
}

func TestFilesThroughWithLive(t *testing.T) {
	testneeds.Root(t)
	m, db, clock := unitManager(t)
	running(t, m, db, "f")
	ctx := context.Background()
	clock.add(time.Minute)
	if err := m.WriteFile(ctx, "f", "src/a.js", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if at, ok := m.activity.last("f"); !ok || !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("a write is activity: %v %v", at, ok)
	}
	res, err := m.Sync(ctx, "f", []workspace.Entry{{Path: "b.js", Data: []byte("2")}}, false)
	if err != nil || res.Written != 1 {
		t.Fatalf("sync: %+v %v", res, err)
	}
	files, err := m.ListFiles(ctx, "f", "", workspace.ListLimits{})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	if !slices.Contains(paths, "b.js") || !slices.Contains(paths, "src/a.js") {
		t.Fatalf("files %v", paths)
	}
	if err := m.WriteFile(ctx, "f", "../x", nil); err == nil {
		t.Fatal("a path out of the workspace must fail")
	}
	if _, err := m.ListFiles(ctx, "f", "nope", workspace.ListLimits{}); err == nil {
		t.Fatal("listing a missing folder must fail")
	}
	if _, err := m.Sync(ctx, "f", []workspace.Entry{{Path: "/abs", Data: nil}}, false); err == nil {
		t.Fatal("an absolute path must fail")
	}
	for _, id := range []string{"nope", "half"} {
		if id == "half" {
			s := newRecord("half", "h", "img", "", t.TempDir(), store.Limits{}, t0, time.Minute)
			if err := db.Create(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.WriteFile(ctx, id, "a", nil); !errdefs.IsNotFound(err) {
			t.Fatalf("%s: %v", id, err)
		}
	}
}

func TestBackgroundProcesses(t *testing.T) {
	m, db, clock := unitManager(t)
	running(t, m, db, "b")
	ctx := context.Background()
	clock.add(time.Minute)
	first := newBackground(Process{ID: "bg-1", Command: "a", StartedAt: t0.Add(time.Second), Running: true}, 8)
	second := newBackground(Process{ID: "bg-2", Command: "b", StartedAt: t0, Running: true}, 8)
	// A run whose cgroup is already gone: killing it is a no-op.
	first.run = &run{id: "bg-1", group: cgroup.RunAt(filepath.Join(t.TempDir(), "gone"))}
	m.bg.add("b", first)
	m.bg.add("b", second)
	if n := m.bg.running("b"); n != 2 {
		t.Fatalf("running %d", n)
	}
	list, err := m.Processes(ctx, "b")
	if err != nil || len(list) != 2 || list[0].ID != "bg-2" || list[1].ID != "bg-1" {
		t.Fatalf("processes oldest first: %+v %v", list, err)
	}
	if _, ok := m.activity.last("b"); ok {
		t.Fatal("listing processes is not activity")
	}
	if _, err := m.StartBackground(ctx, "b", "sleep 1"); !errdefs.IsResourceExhausted(err) {
		t.Fatalf("past MaxBackground: %v", err)
	}

	_, _ = first.Write([]byte("0123456789"))
	pl, err := m.Logs(ctx, "b", "bg-1", true)
	if err != nil || string(pl.Output) != "23456789" || !pl.Truncated || pl.Follow == nil {
		t.Fatalf("logs: %+v %v", pl, err)
	}
	_, _ = first.Write([]byte("more"))
	if got := <-pl.Follow; string(got) != "more" {
		t.Fatalf("followed %q", got)
	}
	_, _ = first.Write([]byte("last"))
	first.mu.Lock()
	first.info.Running = false
	first.mu.Unlock()
	close(first.done)
	var rest []byte
	for p := range pl.Follow {
		rest = append(rest, p...)
	}
	if string(rest) != "last" {
		t.Fatalf("what came before the end: %q", rest)
	}
	if p, err := m.Kill(ctx, "b", "bg-1"); err != nil || p.Running {
		t.Fatalf("kill an ended process: %+v %v", p, err)
	}
	if _, err := m.Logs(ctx, "b", "bg-9", false); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown process: %v", err)
	}
	m.bg.forget("b")
	if list := m.bg.list("b"); len(list) != 0 {
		t.Fatalf("forgotten: %v", list)
	}
}

func TestStatsByKind(t *testing.T) {
	m, db, _ := unitManager(t)
	for _, id := range []string{"a", "b", poolPrefix + "1", layerBuilderPrefix + "k"} {
		running(t, m, db, id)
	}
	m.counters.inc("exec", execOutcome(ExecResult{ExitCode: 1}, nil))
	st := m.Stats()
	if st.Active != 2 || st.Pooled != 1 || st.ExecResults["nonzero"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if m.HasToolchain() {
		t.Fatal("no toolchain configured")
	}
}

func TestDropIdleRunnersKeepsActiveOnes(t *testing.T) {
	m, db, clock := unitManager(t)
	running(t, m, db, "r")
	ready := make(chan struct{})
	close(ready)
	rn := &runner{session: "r", ready: ready}
	key := runnerKey("r", scriptJS)
	if !putOK(m.runners, key, rn, 1) || putOK(m.runners, key, &runner{session: "r", ready: ready}, 1) {
		t.Fatal("a depth of one holds one waiting runner per session and kind")
	}
	clock.add(4 * time.Minute)
	m.runners.dropIdle(m.clock.read(), m.cfg.RunnerIdle, m.lastActive) // idle 4 of 5 minutes, from the store
	m.Touch("r")
	clock.add(4 * time.Minute)
	m.runners.dropIdle(m.clock.read(), m.cfg.RunnerIdle, m.lastActive) // active 4 minutes ago, pending in memory
	if got := m.runners.take(key); got != rn {
		t.Fatal("an active session keeps its runner")
	}
	if m.runners.remove(key, rn) {
		t.Fatal("a runner taken meanwhile is not removed twice")
	}
}

func TestWarmPoolAccounting(t *testing.T) {
	p := newWarmPool(2)
	if !p.short() {
		t.Fatal("empty pool is short")
	}
	p.adopt([]store.Session{
		{SessionID: poolPrefix + "a", State: store.StateRunning},
		{SessionID: "client", State: store.StateRunning},
		{SessionID: poolPrefix + "b", State: store.StateCreating},
		{SessionID: poolPrefix + "c", State: store.StateRunning},
		{SessionID: poolPrefix + "d", State: store.StateRunning},
	})
	if p.short() {
		t.Fatal("full at size")
	}
	if id, ok := p.pop(); !ok || id != poolPrefix+"a" {
		t.Fatalf("oldest first: %q", id)
	}
	p.push(poolPrefix + "e")
	for _, want := range []string{poolPrefix + "c", poolPrefix + "e"} {
		if id, _ := p.pop(); id != want {
			t.Fatalf("pop %q, want %q", id, want)
		}
	}
	if _, ok := p.pop(); ok {
		t.Fatal("empty")
	}
	p.refill()
	p.refill() // never blocks
	<-p.wake

	m, _, _ := unitManager(t)
	if _, ok := m.claimPooled(context.Background(), "s", "js"); ok {
		t.Fatal("no pool configured")
	}
}

func TestLiveSessions(t *testing.T) {
	var ls liveSessions
	a, b := &liveSession{}, &liveSession{}
	if ls.add("x", a) != a || ls.add("x", b) != a {
		t.Fatal("the first cached wins")
	}
	ls.rename("x", "y")
	if ls.get("x") != nil || ls.get("y") != a {
		t.Fatal("rename")
	}
	ls.rename("none", "z")
	ls.remove("y")
	if ls.get("y") != nil || ls.get("z") != nil {
		t.Fatal("remove")
	}
}

func TestLoopsEndAtClose(t *testing.T) {
	m, db, _ := unitManager(t)
	running(t, m, db, "l")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.stopped.Add(2)
	go m.runReaper(ctx, time.Hour)
	go func() {
		defer m.stopped.Done()
		m.activity.flushEvery(m.stop, m.cfg.TouchInterval, m.client, m.db)
	}()
	m.Touch("l")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("a second close: %v", err)
	}
	if rec, _ := db.Get("l"); !rec.LastActiveAt.Equal(t0) {
		t.Fatalf("activity written at close: %v", rec.LastActiveAt)
	}
}

func TestTerminalPipes(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	term := &Terminal{run: &run{group: cgroup.RunAt(filepath.Join(t.TempDir(), "gone"))}, input: inW, output: outR, exit: make(chan int, 1)}
	go func() {
		b := make([]byte, 2)
		n, _ := inR.Read(b)
		_, _ = outW.Write(b[:n])
		outW.Close()
	}()
	if _, err := term.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(term)
	if string(got) != "hi" {
		t.Fatalf("read %q", got)
	}
	term.exit <- 0
	if <-term.Exit() != 0 {
		t.Fatal("exit code")
	}
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	if err := term.Close(); err != nil {
		t.Fatal("closing twice is harmless")
	}
}

func TestRunnerExitedWhileWaiting(t *testing.T) {
	st := make(chan containerd.ExitStatus, 1)
	st <- *containerd.NewExitStatus(0, t0, nil)
	rn := &runner{r: &run{statusC: st}}
	if !rn.exited() {
		t.Fatal("its status is there")
	}
	if s := <-rn.r.statusC; s.ExitCode() != 0 {
		t.Fatal("the status stays for finish to read")
	}
}

func TestPoolFillsInParallelUpToTheBound(t *testing.T) {
	p := newWarmPool(5)
	started, release := make(chan struct{}, 10), make(chan struct{})
	var mu sync.Mutex
	builds := 0
	build := func(context.Context) error {
		mu.Lock()
		builds++
		mu.Unlock()
		started <- struct{}{}
		<-release
		p.push(randomHex(4))
		return nil
	}
	fill := func(want int) {
		t.Helper()
		done := make(chan error)
		go func() { done <- p.fill(context.Background(), 3, build) }()
		for range want {
			<-started // all want builds run at once: none is released yet
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		release = make(chan struct{})
	}
	fill(3)
	fill(2)
	if builds != 5 || p.short() {
		t.Fatalf("%d builds, short %v; want 5 and a full pool", builds, p.short())
	}
	if err := p.fill(context.Background(), 3, func(context.Context) error { return errors.New("no") }); err != nil {
		t.Fatalf("a full pool builds nothing: %v", err)
	}
}
