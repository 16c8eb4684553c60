package workspace

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/snapshots/disk"
)

// testVolumes is a volume set of 16 MiB volumes in a new folder (root).
// It needs root and mkfs.ext4: missing, it fails under CI=true and skips elsewhere.
func testVolumes(t *testing.T) (*Volumes, string) {
	t.Helper()
	testneeds.Root(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.ext4 missing")
		}
		t.Skip("mkfs.ext4 missing")
	}
	root := t.TempDir()
	v, err := NewVolumes(context.Background(), root, 16<<20, WithBackend(BackendImage))
	if err != nil {
		t.Fatal(err)
	}
	return v, root
}

func TestVolumeQuotaAndRemove(t *testing.T) {
	v, root := testVolumes(t)
	ctx := context.Background()
	dir, err := v.Create(ctx, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Remove(ctx, "vol1") })
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil || st.Uid != Owner {
		t.Fatalf("root owned by %d: %v", st.Uid, err)
	}
	// Every block of the image is the volume's from the start, and a trim cannot hand them back.
	if err := syscall.Stat(v.store.(*images).imagePath("vol1"), &st); err != nil || st.Blocks*512 < 16<<20 {
		t.Fatalf("image holds %d bytes on the host, want all 16 MiB allocated: %v", st.Blocks*512, err)
	}
	if out, err := exec.Command("fstrim", dir).CombinedOutput(); err == nil {
		t.Errorf("fstrim of a workspace succeeded: %s", out)
	}
	if err := syscall.Stat(v.store.(*images).imagePath("vol1"), &st); err != nil || st.Blocks*512 < 16<<20 {
		t.Fatalf("after fstrim the image holds %d bytes: %v", st.Blocks*512, err)
	}
	if r, err := v.Plan(1); err != nil || r.Used < 16<<20 {
		t.Fatalf("plan: %+v, %v", r, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("fresh volume holds %v", entries)
	}
	// Writing past the quota fails with ENOSPC, classified as the client's,
	// and the file it would have replaced keeps its content.
	if err := WriteFile(dir, "big.bin", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 20<<20)
	err = WriteFile(dir, "big.bin", big, 0o644)
	if b, _ := os.ReadFile(filepath.Join(dir, "big.bin")); string(b) != "old" {
		t.Errorf("failed write left %d bytes, want the old content", len(b))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("failed write left files behind: %v", entries)
	}
	if !errors.Is(err, ErrFull) || !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("write past quota: %v", err)
	}
	used, total, err := v.Usage("vol1")
	if err != nil || total > 16<<20 || used <= 0 {
		t.Fatalf("usage %d/%d %v", used, total, err)
	}
	if _, err := v.Create(ctx, "vol1"); err == nil {
		t.Fatal("created the same volume twice")
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := v.Create(ctx, bad); err == nil {
			t.Errorf("created volume %q", bad)
		}
	}
	if err := v.Remove(ctx, "vol1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "vol1")); !os.IsNotExist(err) {
		t.Fatalf("volume folder left: %v", err)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Join(root, "vol1")) {
		t.Fatal("still mounted")
	}
	if err := v.Remove(ctx, "vol1"); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
}

func TestVolumeCreateKeepsReserve(t *testing.T) {
	v, root := testVolumes(t)
	sp, err := disk.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	// A reserve as large as all the free space: no volume fits beside it.
	v.SetReserve(func() int64 { return sp.Free })
	ctx := context.Background()
	_, err = v.Create(ctx, "over")
	if !errors.Is(err, disk.ErrHostFull) || !strings.Contains(err.Error(), "--disk-reserve") {
		t.Fatalf("create over the reserve: %v", err)
	}
	if strings.Contains(err.Error(), "mkfs") || strings.Contains(err.Error(), root) {
		t.Errorf("refusal shows internals: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "over")); !os.IsNotExist(err) {
		t.Fatalf("refused create left its folder: %v", err)
	}
	v.SetReserve(func() int64 { return 0 })
	if _, err := v.Create(ctx, "fits"); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove(ctx, "fits"); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkVolumeCreate is the cost of making (allocating, formatting,
// mounting) and removing one 1 GiB workspace, the default size.
func BenchmarkVolumeCreate(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount")
	}
	v, err := NewVolumes(context.Background(), b.TempDir(), 1<<30, WithBackend(BackendImage))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		id := "b" + strconv.Itoa(i)
		if _, err := v.Create(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := v.Remove(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkSyncFlush is the cost of a small Sync, flush included.
func BenchmarkSyncFlush(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount")
	}
	v, err := NewVolumes(context.Background(), b.TempDir(), 64<<20, WithBackend(BackendImage))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dir, err := v.Create(ctx, "s")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Remove(ctx, "s") })
	entries := []Entry{{Path: "index.js", Data: make([]byte, 4<<10)}, {Path: "src/app.js", Data: make([]byte, 16<<10)}}
	for b.Loop() {
		if _, err := Sync(dir, entries, false); err != nil {
			b.Fatal(err)
		}
	}
}
