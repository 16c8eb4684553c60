package runtime_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// loopFS makes an ext4 filesystem of size bytes in a file and mounts it;
// cleanup unmounts whatever is mounted below it, then it.
func loopFS(t *testing.T, size int64) (mnt, image string) {
	t.Helper()
	dir := t.TempDir()
	image, mnt = filepath.Join(dir, "state.ext4"), filepath.Join(dir, "mnt")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	run("truncate", "-s", strconv.FormatInt(size, 10), image)
	run("mkfs.ext4", "-q", "-F", "-m", "0", image)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", "-o", "loop", image, mnt)
	t.Cleanup(func() { unmountTree(t, mnt) })
	return mnt, image
}

// unmountTree unmounts every mount at or below dir, deepest first. A loop
// device made by mount -o loop detaches itself when unmounted.
func unmountTree(t *testing.T, dir string) {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], 0); err != nil {
			if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", points[i], err)
			}
		}
	}
}

// fillTo grows the file path until the filesystem holding it has at most
// free bytes free (0: until it is full).
func fillTo(t *testing.T, path string, free int64) {
	t.Helper()
	sp, err := disk.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if grow := sp.Free - free; grow > 0 {
		err := unix.Fallocate(int(f.Fd()), 0, st.Size(), grow)
		if err != nil && !errors.Is(err, unix.ENOSPC) {
			t.Fatal(err)
		}
	}
	if free == 0 { // the last blocks, one at a time
		buf := make([]byte, 4096)
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
		_ = f.Sync()
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestFullHostDiskLosesNoAcknowledgedWrite puts the state folder on a small
// filesystem of its own and fills it: through a tenant's workspace (its
// quota stops it with ENOSPC), through creates (refused past the reserve
// with disk.ErrHostFull) and from outside (what caches or logs would do).
// Another session's writes that were answered with success are all there
// after its workspace and the state filesystem are unmounted and mounted
// again, and the manager keeps serving throughout.
func TestFullHostDiskLosesNoAcknowledgedWrite(t *testing.T) {
	env := runtimetest.Start(t, testNamespace)
	ctx := env.Context(t)
	const wsSize, reserve = 48 << 20, 40 << 20
	lo, loImage := loopFS(t, 320<<20)
	state := filepath.Join(lo, "state")
	db, err := store.Open(filepath.Join(state, "servcraftd.db"))
	if err != nil {
		t.Fatal(err)
	}
	vols, err := workspace.NewVolumes(context.Background(), filepath.Join(state, "workspaces"), wsSize, workspace.WithBackend(workspace.BackendImage))
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.Config(state)
	cfg.DiskReserve = reserve
	m, err := runtime.New(ctx, env.Client, db, vols, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var closed bool
	t.Cleanup(func() {
		if !closed {
			list, _ := db.List()
			for _, s := range list {
				_ = m.Destroy(ctx, s.SessionID)
			}
			m.Close()
			db.Close()
		}
	})
	create := func(id string) (store.Session, error) {
		s, _, err := m.Create(ctx, id, "js")
		return s, err
	}
	victim, err := create("victim")
	if err != nil {
		t.Fatal(err)
	}
	tenant, err := create("tenant")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{} // path in the victim's workspace -> sha256 of what it was told is stored
	syncFile := func(s store.Session, path string, data []byte) error {
		_, err := m.Sync(ctx, s.SessionID, []workspace.Entry{{Path: path, Data: data}}, false)
		return err
	}
	before := make([]byte, 2<<20)
	_, _ = rand.Read(before)
	if err := syncFile(victim, "before.bin", before); err != nil {
		t.Fatal(err)
	}
	acked["before.bin"] = sha(before)

	// The tenant fills its own workspace: ENOSPC, not EIO, and its own /sync is refused as workspace full.
	res, err := m.Exec(ctx, tenant.SessionID, runtime.ExecRequest{Args: []string{"/bin/sh", "-c",
		"dd if=/dev/zero of=/workspace/fill bs=1M count=100 conv=fsync"}, Timeout: 30 * time.Second})
	if err != nil || res.ExitCode == 0 || !strings.Contains(res.Stderr, "No space left on device") || strings.Contains(res.Stderr, "I/O error") {
		t.Fatalf("filling a workspace past its quota: %+v %v", res, err)
	}
	if err := syncFile(tenant, "more.bin", make([]byte, 1<<20)); !errors.Is(err, workspace.ErrFull) {
		t.Fatalf("sync into a full workspace: %v", err)
	}

	// Creates stop exactly at the reserve: with one workspace plus the reserve
	// minus a MiB free, refused; with a MiB more than that, made.
	filler := filepath.Join(lo, "filler")
	fillTo(t, filler, wsSize+reserve-1<<20)
	_, err = create("refused")
	if !errors.Is(err, disk.ErrHostFull) || !strings.Contains(err.Error(), "--disk-reserve") || strings.Contains(err.Error(), "mkfs") {
		t.Fatalf("create past the reserve: %v", err)
	}
	if st, err := m.DiskStatus(); err != nil || !st.Low || st.ReserveBytes != reserve {
		t.Fatalf("disk status below the watermark: %+v %v", st, err)
	}
	if err := os.Truncate(filler, 0); err != nil {
		t.Fatal(err)
	}
	fillTo(t, filler, wsSize+reserve+1<<20)
	if st, err := m.DiskStatus(); err != nil || st.Low {
		t.Fatalf("disk status above the watermark: %+v %v", st, err)
	}
	third, err := create("third")
	if err != nil {
		t.Fatalf("create with room beside the reserve: %v", err)
	}
	if err := m.Destroy(ctx, third.SessionID); err != nil {
		t.Fatal(err)
	}

	// Now the host is full to the last block. The victim writes on, through
	// /sync and from inside, and is told the truth.
	fillTo(t, filler, 0)
	if sp, _ := disk.Stat(lo); sp.Free > 64<<10 {
		t.Fatalf("state filesystem still has %d bytes free", sp.Free)
	}
	after := make([]byte, 4<<20)
	_, _ = rand.Read(after)
	if err := syncFile(victim, "src/after.bin", after); err != nil {
		t.Fatalf("victim's sync on a full host: %v", err)
	}
	acked["src/after.bin"] = sha(after)
	// A run the spawner starts has pipes for streams and needs nothing of
	// the state filesystem: it runs on a full host.
	if res, err := m.Exec(ctx, victim.SessionID, runtime.ExecRequest{Args: []string{"/bin/echo", "ok"}, Timeout: time.Minute,
		OutputLimit: 1 << 10}); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("a spawned run on a full state filesystem: %+v %v", res, err)
	}
	// A runc exec needs a little room there for its FIFOs: with not a
	// block left, none starts, and the refusal says so (a 507
	// host_disk_full), not a 500. Background processes alike.
	if _, err := runtime.ExecByRunc(ctx, m, victim.SessionID, "", "/bin/true"); !errors.Is(err, disk.ErrHostFull) ||
		!strings.Contains(err.Error(), "state filesystem is full") {
		t.Fatalf("a runc exec on a full state filesystem: %v", err)
	}
	if _, err := m.StartBackground(ctx, tenant.SessionID, "yes"); !errors.Is(err, disk.ErrHostFull) {
		t.Fatalf("a background process on a full state filesystem: %v", err)
	}
	if list, err := m.Processes(ctx, tenant.SessionID); err != nil || len(list) != 0 {
		t.Fatalf("a refused background process is listed: %v %v", list, err)
	}
	// Give back 2 MiB, far less than the 24 MiB the victim then writes from inside.
	if st, err := os.Stat(filler); err != nil || os.Truncate(filler, st.Size()-2<<20) != nil {
		t.Fatalf("shrink filler: %v", err)
	}
	res, err = m.Exec(ctx, victim.SessionID, runtime.ExecRequest{Args: []string{"/bin/sh", "-c",
		"dd if=/dev/urandom of=/workspace/inside.bin bs=1M count=24 conv=fsync 2>&1 && sha256sum /workspace/inside.bin"}, Timeout: 30 * time.Second})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("victim's own write on a full host: %+v %v", res, err)
	}
	acked["inside.bin"] = strings.Fields(res.Stdout[strings.LastIndex(strings.TrimSpace(res.Stdout), "\n")+1:])[0]
	if _, err := create("refused2"); !errors.Is(err, disk.ErrHostFull) {
		t.Fatalf("create on a full host: %v", err)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatalf("not ready on a full host: %v", err)
	}
	if res, err := m.Exec(ctx, victim.SessionID, runtime.ExecRequest{Args: []string{"/bin/cat", "/workspace/package.json"}}); err != nil || res.ExitCode != 0 {
		t.Fatalf("victim's read on a full host: %+v %v", res, err)
	}

	// Stop the victim's container, keep its workspace; tear the tenant down,
	// then unmount everything and mount the state filesystem afresh.
	c, err := env.Client.LoadContainer(ctx, victim.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if spec, err := c.Spec(ctx); err == nil { // cgroup v2: runc 1.1 cannot delete past the runs' threaded group
			_ = cgroup.Release(spec.Linux.CgroupsPath)
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(ctx, tenant.SessionID); err != nil {
		t.Fatalf("destroy on a full host: %v", err)
	}
	closed = true
	m.Close()
	db.Close()
	victimImage := strings.TrimPrefix(filepath.Join(filepath.Dir(victim.Workspace), "workspace.ext4"), lo)
	unmountTree(t, lo)
	if out, err := exec.Command("mount", "-o", "loop", loImage, lo).CombinedOutput(); err != nil {
		t.Fatalf("mount again: %v: %s", err, out)
	}
	ro := filepath.Join(t.TempDir(), "ws")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop,ro", filepath.Join(lo, victimImage), ro).CombinedOutput(); err != nil {
		t.Fatalf("mount the victim's workspace again: %v: %s", err, out)
	}
	t.Cleanup(func() { unmountTree(t, ro) })
	for path, want := range acked {
		data, err := os.ReadFile(filepath.Join(ro, path))
		if err != nil || sha(data) != want {
			t.Errorf("%s after remount: %d bytes, sha %s, want %s: %v", path, len(data), sha(data), want, err)
		}
	}
}
