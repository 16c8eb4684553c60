package workspace

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestVolumeQuotaAndRemove(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.ext4 missing")
		}
		t.Skip("mkfs.ext4 missing")
	}
	root := t.TempDir()
	v, err := NewVolumes(root, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
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
