package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

// testProjectFS mounts a new ext4 filesystem of fsSize with project quotas
// enforced (prjquota) and returns its mount point and a function that
// mounts it again. It needs root and e2fsprogs, and a kernel with ext4
// quota support: this project's build machines lack it (CONFIG_QFMT_V2),
// so the test skips there, saying so, and runs in the cgroup v2 guest
// (scripts/cgroup2-guest), a stock Debian 12 kernel.
func testProjectFS(t *testing.T, fsSize int64) (string, func()) {
	t.Helper()
	needRootAnd(t, "mkfs.ext4", "e2fsprogs")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.ext4"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, fsSize); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "quota,project", "-E", "quotatype=prjquota", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 with project quotas: %v: %s", err, out)
	}
	mount := func() error {
		out, err := exec.Command("mount", "-o", "loop,prjquota", img, mnt).CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := mount(); err != nil {
		t.Skipf("this kernel cannot mount ext4 with project quotas (%v): the project backend is tested in the cgroup v2 guest", err)
	}
	t.Cleanup(func() { _ = unmount(mnt) })
	if ok, why := projectQuotasEnforced(mnt); !ok {
		t.Skipf("this kernel does not enforce ext4 project quotas (%s): the project backend is tested in the cgroup v2 guest", why)
	}
	return mnt, func() {
		if err := unmount(mnt); err != nil {
			t.Fatal(err)
		}
		if err := mount(); err != nil {
			t.Fatalf("mount again: %v", err)
		}
	}
}

// TestProjectQuotaVolume: on a filesystem enforcing project quotas the
// automatic choice is the project backend; a volume is a folder of the
// sandbox user's in a project of its own: past its quota a writer gets
// EDQUOT, its usage is what it holds, a fork is a copy with its own
// project and quota, and Remove leaves nothing.
func TestProjectQuotaVolume(t *testing.T) {
	fs, _ := testProjectFS(t, 256<<20)
	ctx := context.Background()
	v, err := NewVolumes(ctx, filepath.Join(fs, "workspaces"), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if v.Backend() != BackendProject {
		t.Fatalf("backend %s (%s), want project", v.Backend(), v.Reason())
	}
	if r, err := v.Plan(100); err != nil || r.Bytes != 0 {
		t.Fatalf("plan %+v, %v: want nothing set aside", r, err)
	}
	dir, err := v.Create(ctx, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil || st.Uid != Owner {
		t.Fatalf("root owned by %d: %v", st.Uid, err)
	}
	project, err := projectOf(dir)
	if err != nil || project != uint32(st.Ino) {
		t.Fatalf("project %d (%v), want the folder's inode %d", project, err, st.Ino)
	}
	data := bytes.Repeat([]byte("x"), 4<<20)
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "a"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// What is made inside, at any depth, is in the project.
	if p, err := projectOf(filepath.Join(dir, "sub")); err != nil || p != project {
		t.Fatalf("a subfolder's project %d, %v", p, err)
	}
	// Past the quota a writer gets EDQUOT: the daemon's own writes too
	// (WriteFile drops the capability that lets root past ext4 quotas).
	err = quotaBound(func() error { return os.WriteFile(filepath.Join(dir, "big"), make([]byte, 20<<20), 0o644) })
	if !errors.Is(err, syscall.EDQUOT) && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the quota: %v, want EDQUOT", err)
	}
	_ = os.Remove(filepath.Join(dir, "big"))
	if err := WriteFile(dir, "big", make([]byte, 20<<20), 0o644); !errors.Is(err, ErrFull) {
		t.Fatalf("WriteFile past the quota: %v, want ErrFull", err)
	}
	if _, err := Sync(dir, []Entry{{Path: "big2", Data: make([]byte, 20<<20)}}, false); !errors.Is(err, ErrFull) {
		t.Fatalf("Sync past the quota: %v, want ErrFull", err)
	}
	used, total, err := v.Usage("vol1")
	if err != nil || total != 16<<20 || used < 4<<20 || used > 5<<20 {
		t.Fatalf("usage %d of %d (%v), want about 4 MiB of 16 MiB", used, total, err)
	}
	start := time.Now()
	fork, err := v.Fork(ctx, "vol1", "vol2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fork of a volume holding 4 MiB took %v", time.Since(start))
	if got, err := os.ReadFile(filepath.Join(fork, "sub", "a")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fork's copy: %d bytes, %v", len(got), err)
	}
	if p, err := projectOf(filepath.Join(fork, "sub")); err != nil || p == project || p == 0 {
		t.Fatalf("the fork's files in project %d (%v); the source's is %d", p, err, project)
	}
	if used, total, err := v.Usage("vol2"); err != nil || total != 16<<20 || used < 4<<20 {
		t.Fatalf("fork's usage %d of %d, %v", used, total, err)
	}
	// A hard link across projects is refused: a file cannot be in two quotas.
	if err := os.Link(filepath.Join(dir, "sub", "a"), filepath.Join(fork, "linked")); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("hard link across workspaces: %v, want EXDEV", err)
	}
	if written, n, err := v.Written(); err != nil || n != 2 || written < 8<<20 {
		t.Fatalf("written %d bytes in %d volumes (%v), want about 8 MiB in 2", written, n, err)
	}
	for _, id := range []string{"vol1", "vol2"} {
		if err := v.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if ids, _ := v.List(); len(ids) != 0 {
		t.Fatalf("left after remove: %v", ids)
	}
	if q, err := getProjectQuota(fs, project); err != nil || q.bHardLimit != 0 {
		t.Fatalf("the removed volume's project keeps a limit: %+v %v", q, err)
	}
	if _, err := NewVolumes(ctx, filepath.Join(fs, "workspaces"), 16<<20, WithBackend(BackendProject)); err != nil {
		t.Fatalf("project chosen by name: %v", err)
	}
}

// TestProjectQuotaFilledToZeroLosesNothing: the fill-to-zero test of the
// btrfs pool, on a filesystem of project quotas.
func TestProjectQuotaFilledToZeroLosesNothing(t *testing.T) {
	fs, remount := testProjectFS(t, 256<<20)
	v, err := NewVolumes(context.Background(), filepath.Join(fs, "workspaces"), 256<<20, WithBackend(BackendProject))
	if err != nil {
		t.Fatal(err)
	}
	v.SetReserve(func() int64 { return 16 << 20 })
	fillToZeroLosesNothing(t, v, remount)
}

// Without project quotas on its filesystem the backend is refused by name
// and not picked automatically.
func TestProjectBackendNeedsEnforcedQuotas(t *testing.T) {
	root := t.TempDir()
	if ok, _ := projectQuotasEnforced(root); ok {
		t.Skip("the test folder's filesystem enforces project quotas")
	}
	if _, err := NewVolumes(context.Background(), filepath.Join(root, "w"), 16<<20, WithBackend(BackendProject)); err == nil || !strings.Contains(err.Error(), "workspace backend project") {
		t.Fatalf("project backend without quotas: %v", err)
	}
	if isB, _ := isBtrfs(root); isB {
		return
	}
	v, err := NewVolumes(context.Background(), filepath.Join(root, "w2"), 16<<20)
	if err != nil || v.Backend() == BackendProject {
		t.Fatalf("auto without quotas: %v %v", v, err)
	}
}

// quotaBound's function runs on a thread without CAP_SYS_RESOURCE; the
// caller's threads keep it.
func TestQuotaBoundDropsTheQuotaBypass(t *testing.T) {
	testneeds.Root(t)
	capEff := func() uint64 {
		b, err := os.ReadFile("/proc/thread-self/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				var n uint64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
		t.Fatal("no CapEff")
		return 0
	}
	const sysResource = 1 << 24 // CAP_SYS_RESOURCE
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := capEff() // some hosts' root lacks CAP_SYS_RESOURCE already
	var inside uint64
	if err := quotaBound(func() error { inside = capEff(); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != before&^sysResource {
		t.Fatalf("CapEff %#x inside, %#x before: want exactly CAP_SYS_RESOURCE dropped", inside, before)
	}
	if after := capEff(); after != before {
		t.Fatalf("CapEff %#x after, %#x before: the caller's thread changed", after, before)
	}
}

// A folder that holds image-backend workspaces stays on images: auto
// does not switch it, and the project backend by name refuses it.
func TestHoldsImagesKeepsTheImageBackend(t *testing.T) {
	root := t.TempDir()
	if holdsImages(root) {
		t.Fatal("an empty folder holds images")
	}
	if err := os.MkdirAll(filepath.Join(root, "some-uuid"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "some-uuid", "workspace.ext4"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !holdsImages(root) {
		t.Fatal("a folder with a workspace image does not hold images")
	}
	if _, err := NewVolumes(context.Background(), root, 16<<20, WithBackend(BackendProject)); err == nil || !strings.Contains(err.Error(), "image-backend workspaces") {
		t.Fatalf("project backend over images: %v", err)
	}
}
