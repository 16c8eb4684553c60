package workspace

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/snapshots/disk"
)

// needRootAnd needs root and the program tool (of Debian's package pkg):
// missing, it fails under CI=true and skips elsewhere.
func needRootAnd(t *testing.T, tool, pkg string) {
	t.Helper()
	testneeds.Root(t)
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing (apt-get install %s)", tool, pkg)
		}
		t.Skipf("%s missing (apt-get install %s)", tool, pkg)
	}
}

// testPool is a btrfs backend on a pool file of poolSize under a new
// folder, volumes of size bytes. It needs root and btrfs-progs: missing,
// it fails under CI=true and skips elsewhere.
func testPool(t *testing.T, poolSize, size, reserve int64) *Volumes {
	t.Helper()
	needRootAnd(t, "mkfs.btrfs", "btrfs-progs")
	dir := t.TempDir()
	root := filepath.Join(dir, "workspaces")
	v, err := NewVolumes(context.Background(), root, size, WithPool(filepath.Join(dir, "pool.btrfs"), poolSize, reserve))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmount(root) })
	if v.Backend() != BackendBtrfs {
		t.Fatalf("backend %s (%s), want btrfs", v.Backend(), v.Reason())
	}
	// The pool's loop device reads and writes its file with direct I/O.
	dev, err := output(context.Background(), "findmnt", "-n", "-o", "SOURCE", "--mountpoint", root)
	if err != nil {
		t.Fatal(err)
	}
	dio, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(strings.TrimSpace(dev)), "loop", "dio"))
	if err != nil || strings.TrimSpace(string(dio)) != "1" {
		t.Fatalf("loop device %s of the pool: dio %q (%v), want 1", strings.TrimSpace(dev), dio, err)
	}
	return v
}

func TestBtrfsVolumeQuotaUsageForkAndRemove(t *testing.T) {
	v := testPool(t, 512<<20, 16<<20, 0)
	ctx := context.Background()
	// The pool file is allocated in full on the host: no other use of the disk can take its room.
	r, err := v.Plan(100)
	if err != nil || r.Used < 512<<20 || r.Bytes != 512<<20 {
		t.Fatalf("plan %+v, %v: want the whole pool allocated", r, err)
	}
	dir, err := v.Create(ctx, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil || st.Uid != Owner {
		t.Fatalf("root owned by %d: %v", st.Uid, err)
	}
	data := bytes.Repeat([]byte("x"), 4<<20)
	if err := os.WriteFile(filepath.Join(dir, "a"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Past the quota the writer gets EDQUOT.
	err = os.WriteFile(filepath.Join(dir, "big"), make([]byte, 20<<20), 0o644)
	if !errors.Is(err, syscall.EDQUOT) && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write past the quota: %v, want EDQUOT", err)
	}
	_ = os.Remove(filepath.Join(dir, "big"))
	syscall.Sync()
	deadline := time.Now().Add(15 * time.Second)
	var used, total int64
	for {
		used, total, err = v.Usage("vol1")
		if err != nil {
			t.Fatal(err)
		}
		if used >= 4<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if total != 16<<20 || used < 4<<20 || used > 8<<20 {
		t.Fatalf("usage %d of %d, want about 4 MiB of 16 MiB", used, total)
	}
	// A fork is a snapshot: same files, same quota, its own writes.
	start := time.Now()
	fork, err := v.Fork(ctx, "vol1", "vol2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fork of a volume holding 4 MiB took %v", time.Since(start))
	if got, err := os.ReadFile(filepath.Join(fork, "a")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fork's copy: %d bytes, %v", len(got), err)
	}
	if err := os.WriteFile(filepath.Join(fork, "a"), []byte("fork"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); !bytes.Equal(got, data) {
		t.Fatal("a write to the fork changed its source")
	}
	if _, total, err := v.Usage("vol2"); err != nil || total != 16<<20 {
		t.Fatalf("fork's quota %d, %v", total, err)
	}
	// Written sums the volumes: the source's 4 MiB and the fork's.
	if written, n, err := v.Written(); err != nil || n != 2 || written < 8<<20 || written > 16<<20 {
		t.Fatalf("written %d bytes in %d volumes (%v), want about 8 MiB in 2", written, n, err)
	}
	if _, err := v.Fork(ctx, "missing", "vol3"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("fork of a missing volume: %v", err)
	}
	for _, id := range []string{"vol1", "vol2", "vol3"} {
		if err := v.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if ids, _ := v.List(); len(ids) != 0 {
		t.Fatalf("left after remove: %v", ids)
	}
	// A reopened pool is the same backend, found mounted.
	again, err := NewVolumes(ctx, v.Root(), 16<<20)
	if err != nil || again.Backend() != BackendBtrfs {
		t.Fatalf("reopen: %v, %v", again, err)
	}
}

// TestBtrfsForkInPlace: a fork in place puts a snapshot of the source at
// the volume's own path, keeps what it held whole until discarded, and
// leaves the volume as it was when the fork fails; Remove deletes an old
// one never discarded. The image backend copies files, so it cannot.
func TestBtrfsForkInPlace(t *testing.T) {
	v := testPool(t, 512<<20, 16<<20, 0)
	ctx := context.Background()
	write := func(id, name, data string) {
		t.Helper()
		dir, err := v.Create(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("src", "a", "source")
	write("warm", "starter", "warm")
	held, err := os.Open(v.Dir("warm")) // a container's mount of it, as far as the kernel cares
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	start := time.Now()
	discard, err := v.ForkInPlace(ctx, "src", "warm")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fork in place took %v", time.Since(start))
	if got, err := os.ReadFile(filepath.Join(v.Dir("warm"), "a")); err != nil || string(got) != "source" {
		t.Fatalf("the fork at the volume's path: %q %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(v.Dir("warm"), "starter")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old volume's file shows through: %v", err)
	}
	if names, err := held.Readdirnames(-1); err != nil || len(names) != 1 || names[0] != "starter" {
		t.Fatalf("the old volume before discard: %v %v", names, err)
	}
	if _, total, err := v.Usage("warm"); err != nil || total != 16<<20 {
		t.Fatalf("the fork's quota %d, %v", total, err)
	}
	if err := discard(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(v.Root(), "warm", displacedName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old volume after discard: %v", err)
	}
	// A failed fork leaves the volume as it was.
	if _, err := v.ForkInPlace(ctx, "missing", "warm"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("fork of a missing volume in place: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(v.Dir("warm"), "a")); err != nil || string(got) != "source" {
		t.Fatalf("the volume after a failed fork in place: %q %v", got, err)
	}
	// One never discarded goes with Remove.
	if _, err := v.ForkInPlace(ctx, "src", "warm"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"src", "warm"} {
		if err := v.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if ids, _ := v.List(); len(ids) != 0 {
		t.Fatalf("left after remove: %v", ids)
	}
	img, err := NewVolumes(ctx, filepath.Join(t.TempDir(), "img"), 16<<20, WithBackend(BackendImage))
	if err != nil {
		t.Fatal(err)
	}
	if img.ForksInPlace() {
		t.Fatal("the image backend says it forks in place")
	}
	if _, err := img.ForkInPlace(ctx, "src", "warm"); err == nil {
		t.Fatal("the image backend forked in place")
	}
}

// TestBtrfsPoolFilledToZeroLosesNothing: sessions whose quotas add up to
// three times the pool write and sync while one of them fills the pool to
// its last byte. Every write that returned success (written and fsynced)
// reads back exact after the pool is unmounted and mounted again, and the
// only errors anyone got are ENOSPC and EDQUOT.
func TestBtrfsPoolFilledToZeroLosesNothing(t *testing.T) {
	v := testPool(t, 256<<20, 256<<20, 16<<20)
	fillToZeroLosesNothing(t, v, func() {
		pool := filepath.Join(filepath.Dir(v.Root()), "pool.btrfs")
		if err := unmount(v.Root()); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "btrfs", "-o", "loop,nodiscard", pool, v.Root()).CombinedOutput(); err != nil {
			t.Fatalf("mount again: %v: %s", err, out)
		}
	})
}

// fillToZeroLosesNothing: one volume of v fills the filesystem to its last
// byte while three others write and sync; every write that returned
// success reads back exact after remount (which mounts the filesystem
// again), and the only errors anyone got are ENOSPC and EDQUOT.
func fillToZeroLosesNothing(t *testing.T, v *Volumes, remount func()) {
	t.Helper()
	ctx := context.Background()
	ids := []string{"filler", "s1", "s2", "s3"}
	for _, id := range ids {
		if _, err := v.Create(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	type acked struct {
		path string
		sum  []byte
	}
	var (
		mu   sync.Mutex
		ok   []acked
		bad  []error
		full = make(chan struct{})
	)
	write := func(path string, data []byte) error {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	record := func(path string, data []byte, err error) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			ok = append(ok, acked{path, data})
		case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
			return false
		default:
			bad = append(bad, err)
			return false
		}
		return true
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the filler: 4 MiB files until the pool is full
		defer wg.Done()
		defer close(full)
		for i := 0; ; i++ {
			data := make([]byte, 4<<20)
			_, _ = rand.Read(data)
			p := filepath.Join(v.Dir("filler"), fmt.Sprintf("f%d", i))
			if err := write(p, data); !record(p, data, err) {
				return
			}
		}
	}()
	for _, id := range ids[1:] {
		wg.Add(1)
		go func() { // the others: 64 KiB files, on until a while after the pool is full
			defer wg.Done()
			var after int
			for i := 0; after < 50; i++ {
				select {
				case <-full:
					after++
				default:
				}
				data := make([]byte, 64<<10)
				_, _ = rand.Read(data)
				p := filepath.Join(v.Dir(id), fmt.Sprintf("f%d", i))
				record(p, data, write(p, data))
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("errors other than ENOSPC/EDQUOT: %v", bad[:min(len(bad), 5)])
	}
	sp, _, err := v.Space()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes acknowledged; pool free at the end: %s", len(ok), disk.Format(sp.Free))
	if sp.Free > 32<<20 {
		t.Fatalf("the pool was not filled: %s free", disk.Format(sp.Free))
	}
	// A create on a full pool is refused as a full host, not failed half-way.
	if _, err := v.Create(ctx, "late"); !errors.Is(err, disk.ErrHostFull) {
		t.Fatalf("create on a full pool: %v, want ErrHostFull", err)
	}
	// Read everything back from the disk, not the page cache.
	remount()
	for _, a := range ok {
		got, err := os.ReadFile(a.path)
		if err != nil || !bytes.Equal(got, a.sum) {
			t.Fatalf("acknowledged %s: read %d of %d bytes, %v", a.path, len(got), len(a.sum), err)
		}
	}
}
