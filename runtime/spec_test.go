package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/servcraft/servcraftd/snapshots/workspace"
)

var testLimits = SpecLimits{MemoryBytes: 512 << 20, CPUQuota: 50000, CPUPeriod: 100000, Pids: 256,
	TmpBytes: 64 << 20, NoFile: 4096, FileBytes: 1 << 30}

func generate(t *testing.T, opts ...oci.SpecOpts) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "servcraft")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "servcraft-playground-x"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mountAt(s *oci.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

// TestSpawnerContainersMountNoInit: with a spawner, PID 1 is the spawner
// and no init is mounted; without, the init is PID 1.
func TestSpawnerContainersMountNoInit(t *testing.T) {
	with := generate(t, append(append([]oci.SpecOpts{oci.WithDefaultSpec(), oci.WithDefaultUnixDevices},
		hardeningOpts(testLimits, "/srv/ws/mnt", "")...), withSpawner("/srv/servcraft-spawner"))...)
	if mountAt(with, initPath) != nil || with.Process.Args[0] != spawnerPath || mountAt(with, spawnerPath) == nil {
		t.Errorf("with a spawner: init mounted %v, args %v", mountAt(with, initPath) != nil, with.Process.Args)
	}
	without := generate(t, append([]oci.SpecOpts{oci.WithDefaultSpec(), oci.WithDefaultUnixDevices},
		hardeningOpts(testLimits, "/srv/ws/mnt", "/usr/bin/tini-static")...)...)
	if mountAt(without, initPath) == nil || without.Process.Args[0] != initPath {
		t.Errorf("without a spawner: init mounted %v, args %v", mountAt(without, initPath) != nil, without.Process.Args)
	}
}

func TestHardenedSpec(t *testing.T) {
	s := generate(t, append([]oci.SpecOpts{oci.WithDefaultSpec(), oci.WithDefaultUnixDevices},
		hardeningOpts(testLimits, "/srv/ws/mnt", "/usr/bin/tini-static")...)...)
	p := s.Process
	if p.User.UID != initUID || p.User.GID != initUID || len(p.User.AdditionalGids) != 0 {
		t.Errorf("init user = %+v", p.User)
	}
	if u := userProcess(p).User; u.UID != SandboxUID || u.GID != SandboxUID {
		t.Errorf("user processes run as %+v", u)
	}
	for _, r := range s.Linux.Seccomp.Syscalls {
		if r.Action == specs.ActAllow && (slices.Contains(r.Names, "ptrace") || slices.Contains(r.Names, "process_vm_writev")) {
			t.Errorf("seccomp allows ptrace or process_vm_writev: %v", r.Names)
		}
	}
	c := p.Capabilities
	if len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities = %+v", c)
	}
	if !p.NoNewPrivileges || !s.Root.Readonly {
		t.Errorf("noNewPrivileges=%v readonly root=%v", p.NoNewPrivileges, s.Root.Readonly)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp = %+v", s.Linux.Seccomp)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 512<<20 || *r.Memory.Swap != 512<<20 {
		t.Errorf("memory %d swap %d", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.Pids.Limit != 256 {
		t.Errorf("cpu %d/%d pids %d", *r.CPU.Quota, *r.CPU.Period, *r.Pids.Limit)
	}
	netns := slices.IndexFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	if netns < 0 || s.Linux.Namespaces[netns].Path != "" {
		t.Errorf("want a fresh network namespace: %+v", s.Linux.Namespaces)
	}
	if p.Args[0] != initPath || p.Cwd != WorkspacePath {
		t.Errorf("args %v cwd %s", p.Args, p.Cwd)
	}
	if len(s.Linux.MaskedPaths) == 0 || len(s.Linux.ReadonlyPaths) == 0 {
		t.Error("default masked and read-only /proc paths were dropped")
	}
	if s.Linux.CgroupsPath != "/servcraft/servcraft-playground-x" {
		t.Errorf("cgroupsPath %q", s.Linux.CgroupsPath)
	}
	rl := map[string]uint64{}
	for _, l := range p.Rlimits {
		if l.Soft != l.Hard {
			t.Errorf("%s soft %d hard %d", l.Type, l.Soft, l.Hard)
		}
		rl[l.Type] = l.Hard
	}
	if rl["RLIMIT_NOFILE"] != 4096 || rl["RLIMIT_FSIZE"] != 1<<30 || rl["RLIMIT_CORE"] != 0 {
		t.Errorf("rlimits %v", rl)
	}
	for _, tc := range []struct {
		dest string
		want []string
	}{
		{"/workspace", []string{"rbind", "rw", "nosuid", "nodev"}},
		{"/tmp", []string{"nosuid", "nodev", "noexec", "size=67108864", "uid=1000"}},
		{"/home/node", []string{"nosuid", "nodev", "size=67108864"}},
		{initPath, []string{"bind", "ro", "nosuid", "nodev"}},
	} {
		m := mountAt(s, tc.dest)
		if m == nil {
			t.Errorf("no mount at %s", tc.dest)
			continue
		}
		for _, o := range tc.want {
			if !slices.Contains(m.Options, o) {
				t.Errorf("mount %s lacks %s: %v", tc.dest, o, m.Options)
			}
		}
	}
	if m := mountAt(s, "/workspace"); m != nil && m.Source != "/srv/ws/mnt" {
		t.Errorf("workspace source %s", m.Source)
	}
}

func TestWithRlimitReplaces(t *testing.T) {
	s := generate(t, oci.WithDefaultSpec(), withRlimit("RLIMIT_NOFILE", 10), withRlimit("RLIMIT_NOFILE", 20))
	n := 0
	for _, l := range s.Process.Rlimits {
		if l.Type == "RLIMIT_NOFILE" {
			n++
			if l.Hard != 20 {
				t.Errorf("hard = %d", l.Hard)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d RLIMIT_NOFILE entries", n)
	}
}

func TestCappedBuffer(t *testing.T) {
	full := make(chan struct{}, 2)
	b := newCappedBuffer(5, func() { full <- struct{}{} })
	for _, w := range []string{"ab", "cd", "efg", "h"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("write %q: %d %v", w, n, err)
		}
	}
	got, cut := b.result()
	if got != "abcde" || !cut {
		t.Fatalf("got %q cut=%v", got, cut)
	}
	<-full
	if len(full) != 0 {
		t.Fatal("onFull called more than once")
	}
	exact := newCappedBuffer(3, nil)
	exact.Write([]byte("abc"))
	if got, cut := exact.result(); got != "abc" || cut {
		t.Fatalf("exact fit: %q %v", got, cut)
	}
}

func TestKeyedLocksDropUnusedKeys(t *testing.T) {
	var k keyedLocks
	unlock := k.Lock("a")
	runlock := k.RLock("b")
	if len(k.locks) != 2 {
		t.Fatalf("%d locks", len(k.locks))
	}
	unlock()
	runlock()
	if len(k.locks) != 0 {
		t.Fatalf("%d locks left", len(k.locks))
	}
}

func TestCheckHostOnThisMachine(t *testing.T) {
	rep, err := CheckHost(context.Background(), true)
	if err != nil {
		t.Fatalf("with the override: %v", err)
	}
	if rep.Seccomp && rep.Libseccomp != "" {
		if _, err := CheckHost(context.Background(), false); err != nil {
			t.Fatalf("seccomp available but refused: %v", err)
		}
	} else if _, err := CheckHost(context.Background(), false); err == nil {
		t.Fatalf("no seccomp (%+v) yet not refused", rep)
	}
}

// TestShimGroups: about perShim sessions share a shim when the host is full,
// a container keeps its group, perShim 1 gives every container its own shim
// (no annotation), and the annotation is what the runc v2 shim reads.
func TestShimGroups(t *testing.T) {
	if g := shimGroup("servcraft-playground-a", 100, 1); g != "" {
		t.Fatalf("perShim 1: group %q, want none", g)
	}
	sizes := map[string]int{}
	for i := range 1000 {
		id := fmt.Sprintf("servcraft-playground-%08x-%d", i*2654435761, i)
		g := shimGroup(id, 1000, 8)
		if g != shimGroup(id, 1000, 8) {
			t.Fatalf("%s: group changes between calls", id)
		}
		sizes[g]++
	}
	biggest := 0
	for _, n := range sizes {
		biggest = max(biggest, n)
	}
	if len(sizes) < 110 || len(sizes) > 125 || biggest > 24 {
		t.Fatalf("1000 containers at 8 per shim: %d groups, the biggest %d; want up to 125 groups of about 8", len(sizes), biggest)
	}
	var spec specs.Spec
	if err := withShimGroup("servcraft-shim-3")(context.Background(), nil, nil, &spec); err != nil || spec.Annotations[shimGroupAnnotation] != "servcraft-shim-3" {
		t.Fatalf("annotations %v (%v)", spec.Annotations, err)
	}
	spec = specs.Spec{}
	if err := withShimGroup("")(context.Background(), nil, nil, &spec); err != nil || len(spec.Annotations) != 0 {
		t.Fatalf("no group: annotations %v (%v)", spec.Annotations, err)
	}
}

// allowedIoctls allows every 32-bit request but the refused ones: each
// refused one and nothing else is left out, whatever its high bits.
func TestAllowedIoctlsCoverAllButTheRefused(t *testing.T) {
	refused := []uint32{workspace.IoctlSetProject, workspace.IoctlSetFlags, workspace.IoctlSetFlags32, workspace.IoctlSetFlags}
	rules := allowedIoctls(refused)
	if len(rules) > 32*3 {
		t.Fatalf("%d rules for 3 refused requests", len(rules))
	}
	allowed := func(cmd uint64) bool {
		n := 0
		for _, r := range rules {
			if r.Index != 1 || r.Op != specs.OpMaskedEqual {
				t.Fatalf("rule %+v", r)
			}
			if cmd&r.Value == r.ValueTwo {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("request %#x allowed by %d rules: they overlap", cmd, n)
		}
		return n == 1
	}
	for _, cmd := range refused {
		if allowed(uint64(cmd)) || allowed(uint64(cmd)|1<<32) || allowed(uint64(cmd)|0xffffffff00000000) {
			t.Errorf("refused request %#x allowed", cmd)
		}
		for bit := range 32 {
			if near := uint64(cmd ^ 1<<bit); !slices.Contains(refused, uint32(near)) && !allowed(near) {
				t.Errorf("request %#x (one bit from a refused one) refused", near)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		cmd := rng.Uint64()
		if want := !slices.Contains(refused, uint32(cmd)); allowed(cmd) != want {
			t.Fatalf("request %#x: allowed %v, want %v", cmd, !want, want)
		}
	}
	for _, cmd := range []uint64{0x5401 /* TCGETS */, 0x5421 /* FIONBIO */, 0x541b /* FIONREAD */, 0x80086601 /* FS_IOC_GETFLAGS */} {
		if !allowed(cmd) {
			t.Errorf("request %#x refused", cmd)
		}
	}
	if rules := allowedIoctls(nil); len(rules) != 1 || rules[0].Value != 0 {
		t.Fatalf("nothing refused: %+v, want one rule allowing all", rules)
	}
}
