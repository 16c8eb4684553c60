package runtime

import (
	"github.com/servcraft/servcraftd/runtime/spawn"

	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/store"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want Kind
		name string
	}{
		{"my-session", KindSession, "session"},
		{"~pool-0a1b", KindPool, "pool"},
		{"~deps-abcdef", KindLayerBuilder, "layer-builder"},
		{"pool-x", KindSession, "session"},
		{"~other", KindSession, "session"},
	} {
		if got := KindOf(tc.id); got != tc.want || got.String() != tc.name {
			t.Errorf("KindOf(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if buildsLayer("~pool-x") || buildsLayer("~deps-x") || !buildsLayer("s") {
		t.Error("only clients' sessions build dependency layers")
	}
}

func TestNewRecord(t *testing.T) {
	lim := store.Limits{MemoryBytes: 1}
	s := newRecord("s", "u", "img", "js", "/w", lim, t0, time.Minute)
	if s.ContainerID != ContainerPrefix+"u" || s.State != store.StateCreating || !s.ExpiresAt.Equal(t0.Add(time.Minute)) ||
		!s.CreatedAt.Equal(t0) || !s.LastActiveAt.Equal(t0) || s.Limits != lim || s.Workspace != "/w" || s.Image != "img" {
		t.Fatalf("record %+v", s)
	}
	if p := newRecord(poolPrefix+"x", "u", "img", "", "/w", lim, t0, time.Minute); !p.ExpiresAt.Equal(poolNever) {
		t.Fatalf("a warm container does not expire: %v", p.ExpiresAt)
	}
}

func TestWithActivity(t *testing.T) {
	base := store.Session{LastActiveAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	extended := base
	extended.ExpiresAt = t0.Add(time.Hour)
	for _, tc := range []struct {
		name       string
		s          store.Session
		at         time.Time
		wantActive time.Time
		wantExpiry time.Time
	}{
		{"newer activity moves both", base, t0.Add(time.Minute), t0.Add(time.Minute), t0.Add(11 * time.Minute)},
		{"older activity changes nothing", base, t0.Add(-time.Minute), t0, t0.Add(10 * time.Minute)},
		{"same instant changes nothing", base, t0, t0, t0.Add(10 * time.Minute)},
		{"an extension is not pulled in", extended, t0.Add(time.Minute), t0.Add(time.Minute), t0.Add(time.Hour)},
	} {
		got := withActivity(tc.s, tc.at, 10*time.Minute)
		if !got.LastActiveAt.Equal(tc.wantActive) || !got.ExpiresAt.Equal(tc.wantExpiry) {
			t.Errorf("%s: active %v expires %v", tc.name, got.LastActiveAt, got.ExpiresAt)
		}
	}
}

func TestExtend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     store.Session
		cause error
	}{
		{"first", store.Session{State: store.StateRunning, ExpiresAt: t0}, nil},
		{"second", store.Session{State: store.StateRunning, ExpiresAt: t0, Extended: true}, errdefs.ErrFailedPrecondition},
		{"not running", store.Session{State: store.StateDestroying, ExpiresAt: t0}, errdefs.ErrNotFound},
	} {
		s := tc.s
		err := extend(&s, time.Hour)
		if !errors.Is(err, tc.cause) || (tc.cause == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.cause)
			continue
		}
		if err == nil && (!s.Extended || !s.ExpiresAt.Equal(t0.Add(time.Hour))) {
			t.Errorf("%s: %+v", tc.name, s)
		}
	}
}

func TestAdoptRecord(t *testing.T) {
	s := store.Session{SessionID: "~pool-1", State: store.StateRunning, ExpiresAt: poolNever}
	if err := adoptRecord(&s, "mine", "ts", t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s.SessionID != "mine" || s.ProjectType != "ts" || !s.CreatedAt.Equal(t0) || !s.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("adopted %+v", s)
	}
	dead := store.Session{SessionID: "~pool-2", State: store.StateCreating}
	if err := adoptRecord(&dead, "mine", "", t0, time.Minute); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("a warm container not running: %v", err)
	}
}

func TestCheckCapacity(t *testing.T) {
	for _, tc := range []struct {
		n, max int
		cause  error
	}{
		{0, 0, nil}, {100, 0, nil}, {0, 1, nil}, {1, 1, ErrCapacity}, {2, 1, ErrCapacity}, {2, 3, nil},
	} {
		err := checkCapacity(tc.n, tc.max)
		if !errors.Is(err, tc.cause) || (tc.cause == nil) != (err == nil) {
			t.Errorf("%d of %d: %v", tc.n, tc.max, err)
		}
		if err != nil && !errdefs.IsUnavailable(err) {
			t.Errorf("capacity is unavailable: %v", err)
		}
	}
}

func TestReapCandidate(t *testing.T) {
	running := store.Session{State: store.StateRunning, ExpiresAt: t0}
	creating := store.Session{State: store.StateCreating, CreatedAt: t0}
	destroying := store.Session{State: store.StateDestroying}
	for _, tc := range []struct {
		name        string
		s           store.Session
		taskRunning bool
		now         time.Time
		want        bool
	}{
		{"running, in time", running, true, t0, false},
		{"running, past deadline", running, true, t0.Add(time.Nanosecond), true},
		{"running record, task gone", running, false, t0.Add(-time.Hour), true},
		{"being created now", creating, false, t0.Add(cleanupTimeout - time.Nanosecond), false},
		{"left creating by a crash", creating, false, t0.Add(cleanupTimeout), true},
		{"left destroying", destroying, false, t0, true},
	} {
		if got := reapCandidate(tc.s, tc.taskRunning, tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReapReason(t *testing.T) {
	s := store.Session{ExpiresAt: t0}
	asked := false
	if got := reapReason(s, t0.Add(time.Second), func() bool { asked = true; return true }); got != "idle" || asked {
		t.Fatalf("expired: %q (task asked: %v)", got, asked)
	}
	if got := reapReason(s, t0, func() bool { return false }); got != "gone" {
		t.Fatalf("task gone: %q", got)
	}
	if got := reapReason(s, t0, func() bool { return true }); got != "" {
		t.Fatalf("in time and running: %q", got)
	}
	// Left half destroyed (a teardown that failed at start): it goes at
	// the next reap, however far its deadline and whether its task runs.
	far := store.Session{State: store.StateDestroying, ExpiresAt: t0.Add(time.Hour)}
	if got := reapReason(far, t0, func() bool { return true }); got != "unfinished" {
		t.Fatalf("destroying: %q", got)
	}
	creating := store.Session{State: store.StateCreating, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if got := reapReason(creating, t0.Add(time.Second), func() bool { return true }); got != "" {
		t.Fatalf("a create at work: %q", got)
	}
	if got := reapReason(creating, t0.Add(cleanupTimeout), func() bool { return true }); got != "unfinished" {
		t.Fatalf("left creating: %q", got)
	}
}

func TestReconcileVerdict(t *testing.T) {
	running := store.Session{SessionID: "s", State: store.StateRunning, ExpiresAt: t0}
	builder := running
	builder.SessionID = layerBuilderPrefix + "k"
	creating := running
	creating.State = store.StateCreating
	for _, tc := range []struct {
		name        string
		s           store.Session
		now         time.Time
		taskRunning bool
		want        verdict
	}{
		{"kept", running, t0, true, keep},
		{"expired while down", running, t0.Add(time.Second), true, expired},
		{"container gone", running, t0, false, gone},
		{"half made", creating, t0, true, unfinished},
		{"layer builder cut short", builder, t0, true, unfinished},
	} {
		if got := reconcileVerdict(tc.s, tc.now, func() bool { return tc.taskRunning }); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRunnerIdle(t *testing.T) {
	if runnerIdle(t0, t0.Add(time.Minute-1), time.Minute) || !runnerIdle(t0, t0.Add(time.Minute), time.Minute) ||
		!runnerIdle(time.Time{}, t0, time.Minute) {
		t.Fatal("a runner goes once its session is idle for RunnerIdle")
	}
}

func TestExecBounds(t *testing.T) {
	for _, tc := range []struct {
		name        string
		req         ExecRequest
		wantTimeout time.Duration
		wantOutput  int
	}{
		{"defaults", ExecRequest{}, 10 * time.Second, 1000},
		{"asked within", ExecRequest{Timeout: 20 * time.Second, OutputLimit: 10}, 20 * time.Second, 10},
		{"asked beyond", ExecRequest{Timeout: time.Hour, OutputLimit: 5000}, time.Minute, 1000},
		{"negative", ExecRequest{Timeout: -1, OutputLimit: -1}, 10 * time.Second, 1000},
	} {
		got := execBounds(tc.req, 10*time.Second, time.Minute, 1000)
		if got.Timeout != tc.wantTimeout || got.OutputLimit != tc.wantOutput {
			t.Errorf("%s: %v %d", tc.name, got.Timeout, got.OutputLimit)
		}
	}
	if installBound(0, time.Minute) != time.Minute || installBound(time.Hour, time.Minute) != time.Minute ||
		installBound(time.Second, time.Minute) != time.Second {
		t.Fatal("install timeout bounds")
	}
}

func TestLayerKey(t *testing.T) {
	pkg := []byte(`{"name":"x"}`)
	k := layerKey(pkg, "sha256:a", "/npm", []string{"b@1", "a@2"})
	if len(k) != 16 {
		t.Fatalf("key %q", k)
	}
	if layerKey(pkg, "sha256:a", "/npm", []string{"a@2", "b@1"}) != k {
		t.Fatal("the order of specs must not matter")
	}
	for name, other := range map[string]string{
		"package.json": layerKey([]byte(`{"name":"y"}`), "sha256:a", "/npm", []string{"a@2", "b@1"}),
		"image":        layerKey(pkg, "sha256:b", "/npm", []string{"a@2", "b@1"}),
		"npm":          layerKey(pkg, "sha256:a", "/other/npm", []string{"a@2", "b@1"}),
		"specs":        layerKey(pkg, "sha256:a", "/npm", []string{"a@2"}),
		"boundaries":   layerKey(pkg, "sha256:a", "/npm", []string{"a@2b@1"}),
	} {
		if other == k {
			t.Errorf("a different %s must give a different key", name)
		}
	}
}

func TestEndedBeyond(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) *time.Time { x := t0.Add(time.Duration(s) * time.Second); return &x }
	ended := []Process{
		{ID: "a", ExitedAt: at(3)}, {ID: "b", ExitedAt: at(1)}, {ID: "c", ExitedAt: at(5)},
		{ID: "d", StartedAt: t0.Add(2 * time.Second)}, {ID: "e", ExitedAt: at(4)},
	}
	for _, tc := range []struct {
		keep int
		want []string
	}{
		{keep: 5}, {keep: 9},
		{keep: 3, want: []string{"d", "b"}},
		{keep: 0, want: []string{"c", "e", "a", "d", "b"}},
	} {
		var got []string
		for _, p := range endedBeyond(ended, tc.keep) {
			got = append(got, p.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("keep %d: dropped %v, want %v", tc.keep, got, tc.want)
		}
	}
}

func TestRecordFromLabels(t *testing.T) {
	idle := 30 * time.Minute
	now := t0.Add(time.Hour)
	orig := newRecord("sess-1", "u-1", "img", "ts", "/w/u-1/mnt", store.Limits{MemoryBytes: 1}, t0, idle)
	orig.State = store.StateRunning
	orig = withActivity(orig, t0.Add(40*time.Minute), idle)
	if err := extend(&orig, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := recordFromLabels(orig.ContainerID, "img", "/w/u-1/mnt", sessionLabels(orig), orig.Limits, now, idle)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(orig.ExpiresAt) || !got.LastActiveAt.Equal(orig.LastActiveAt) || !got.CreatedAt.Equal(orig.CreatedAt) {
		t.Fatalf("times: got %+v, want %+v", got, orig)
	}
	got.ExpiresAt, got.LastActiveAt, got.CreatedAt = orig.ExpiresAt, orig.LastActiveAt, orig.CreatedAt
	if !reflect.DeepEqual(got, orig) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, orig)
	}
	// Labels of a build without the activity labels: deadline from now.
	old := map[string]string{LabelSession: "s", LabelUUID: "u", LabelCreatedAt: t0.Format(time.RFC3339), LabelProjectType: "js"}
	got, err = recordFromLabels(ContainerPrefix+"u", "img", "/w", old, store.Limits{}, now, idle)
	if err != nil || !got.ExpiresAt.Equal(now.Add(idle)) || got.Extended || got.ProjectType != "js" {
		t.Fatalf("old labels: %+v %v", got, err)
	}
	pool := map[string]string{LabelSession: poolPrefix + "x", LabelUUID: "p"}
	if got, err := recordFromLabels(ContainerPrefix+"p", "img", "/w", pool, store.Limits{}, now, idle); err != nil || !got.ExpiresAt.Equal(poolNever) {
		t.Fatalf("pool: %+v %v", got, err)
	}
	for name, labels := range map[string]map[string]string{
		"no session": {LabelUUID: "u"},
		"no uuid":    {LabelSession: "s"},
		"other id":   {LabelSession: "s", LabelUUID: "v"},
	} {
		if _, err := recordFromLabels(ContainerPrefix+"u", "img", "/w", labels, store.Limits{}, now, idle); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDeadOrDying(t *testing.T) {
	const quiet = "Name:\tnode\nSigQ:\t0/1\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n"
	const term = "Name:\tnode\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000004000\n"
	stat := func(state string, flags int) []byte {
		return []byte(fmt.Sprintf("123 (node (x)) %s 1 1 1 0 -1 %d 0 0", state, flags))
	}
	for _, tc := range []struct {
		name         string
		stat, status []byte
		want         bool
	}{
		{"waiting", stat("S", 0x400100), []byte(quiet), false},
		{"running", stat("R", 0x400000), []byte(quiet), false},
		{"zombie", stat("Z", 0x400100), []byte(quiet), true},
		{"exiting", stat("R", 0x400104), []byte(quiet), true},
		{"signal pending", stat("S", 0x400100), []byte(term), true},
		{"thread signal pending", stat("S", 0), []byte("SigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\n"), true},
		{"unreadable stat", []byte("garbage"), []byte(quiet), true},
	} {
		if got := deadOrDying(tc.stat, tc.status); got != tc.want {
			t.Errorf("%s: deadOrDying = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestWorkspaceRoom: once the start plan fits, every session the daemon may
// hold gets its workspace however the caches grow meanwhile, and the caches
// at their budgets beside all the workspaces still leave the disk reserve
// free. A reserve of --disk-reserve alone lets creates take the room the
// caches grow into later.
func TestWorkspaceRoom(t *testing.T) {
	const reserve, wsSize, sessions = 10, 100, 3
	caches := []disk.Reservation{{Name: "dependency layers", Bytes: 50, Used: 20}, {Name: "npm tarballs", Bytes: 40}}
	if got := workspaceRoom(reserve, caches); got != reserve+30+40 {
		t.Fatalf("workspaceRoom = %d, want %d", got, reserve+30+40)
	}
	if got := workspaceRoom(reserve, []disk.Reservation{{Bytes: 50, Used: 80}}); got != reserve {
		t.Fatalf("a cache over its budget: workspaceRoom = %d, want the reserve %d", got, reserve)
	}
	ws := disk.Reservation{Name: "workspaces", Bytes: sessions * wsSize}
	free := int64(reserve + sessions*wsSize + 30 + 40) // exactly what the start plan asks for
	if err := disk.Plan(disk.Space{Total: 1000, Free: free}, reserve, append([]disk.Reservation{ws}, caches...)); err != nil {
		t.Fatal(err)
	}
	// Caches growing before, between and after creates, in each order.
	for _, growAt := range []int{0, 1, 2, 3} {
		free, cs := free, slices.Clone(caches)
		grow := func() {
			for i := range cs {
				free -= cs[i].Bytes - cs[i].Used
				cs[i].Used = cs[i].Bytes
			}
		}
		for n := range sessions {
			if n == growAt {
				grow()
			}
			if free-wsSize < workspaceRoom(reserve, cs) {
				t.Fatalf("caches grown before create %d: create %d refused with %d free", growAt, n, free)
			}
			free -= wsSize
		}
		grow()
		if free < reserve {
			t.Fatalf("caches grown before create %d: %d free at the end, below the reserve %d", growAt, free, reserve)
		}
	}
}

func TestBackgroundCommand(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/bin/sh", "-c", "node server.js"}, "node server.js"},
		{append(slices.Clone(shellGateArgs), "/bin/sh", "-c", "sleep 300 && echo done"), "sleep 300 && echo done"},
		{spawn.GateArgs(spawnerPath, 1000, 1000, "/bin/sh", "-c", "sleep 300 && echo done"), "sleep 300 && echo done"},
		{[]string{"node", "server.js"}, "node server.js"},
		{append(slices.Clone(shellGateArgs), "node"), "node"},
		{spawn.GateArgs(spawnerPath, 1000, 1000, "node"), "node"},
		// A program of that name without a gate's shape is not a gate.
		{[]string{spawnerPath, "gate"}, spawnerPath + " gate"},
	} {
		if got := backgroundCommand(tc.argv); got != tc.want {
			t.Errorf("backgroundCommand(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func TestStartedAt(t *testing.T) {
	host := []byte("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
	// pid (comm with ") " inside) state, then fields 4..21, field 22 = 12345 ticks.
	stat := []byte("42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 4096 100")
	got, ok := startedAt(stat, host)
	if want := time.Unix(1700000000, 0).Add(123450 * time.Millisecond).UTC(); !ok || !got.Equal(want) {
		t.Fatalf("startedAt = %v %v, want %v", got, ok, want)
	}
	if _, ok := startedAt([]byte("42 (a) S 1"), host); ok {
		t.Error("a short stat line gave a time")
	}
	if _, ok := startedAt(stat, []byte("cpu 1\n")); ok {
		t.Error("no btime gave a time")
	}
}

func TestDefaultConfigIsValidAndRangesAreChecked(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	bad := DefaultConfig()
	bad.RunnerDepth, bad.PoolSize, bad.MaxSessions = 9, 5, 5
	err := bad.Validate()
	for _, setting := range []string{"runner-depth", "pool-size"} {
		if err == nil || !strings.Contains(err.Error(), setting) {
			t.Errorf("err %v does not name %s", err, setting)
		}
	}
}
