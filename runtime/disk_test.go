package runtime

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

func TestCheckDiskNamesWhatDoesNotFit(t *testing.T) {
	vols, err := workspace.NewVolumes(context.Background(), t.TempDir(), 1<<30, workspace.WithBackend(workspace.BackendImage))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := disk.Stat(vols.Root())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DiskReserve = 0
	cfg.MaxSessions = int(sp.Free>>30) + 1 // one workspace more than the free space holds
	err = CheckDisk(cfg, vols)
	if !errors.Is(err, disk.ErrHostFull) || !strings.Contains(err.Error(), "workspaces (--max-sessions") {
		t.Fatalf("CheckDisk over the free space: %v", err)
	}
	cfg.MaxSessions = 1
	if err := CheckDisk(cfg, vols); err != nil && sp.Free > 2<<30 {
		t.Fatalf("CheckDisk of one workspace with %d bytes free: %v", sp.Free, err)
	}
}

func TestDiskStatusLowAtTheWatermark(t *testing.T) {
	const ws, reserve = 100, 50
	if diskStatus(disk.Space{Total: 1000, Free: ws + reserve}, reserve, ws).Low {
		t.Error("low with exactly one workspace and the reserve free")
	}
	if !diskStatus(disk.Space{Total: 1000, Free: ws + reserve - 1}, reserve, ws).Low {
		t.Error("not low one byte short")
	}
}

// TestDiskReservationsCountTheCaches: the start plan holds the dependency
// layer cache and the npm tarball cache at their budgets, each with what it
// already takes on disk.
func TestDiskReservationsCountTheCaches(t *testing.T) {
	vols, err := workspace.NewVolumes(context.Background(), t.TempDir(), 8<<20, workspace.WithBackend(workspace.BackendImage))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MaxSessions = 1
	cfg.DepCacheDir = t.TempDir()
	layer := bytes.Repeat([]byte{1}, 1<<20)
	if err := os.MkdirAll(filepath.Join(cfg.DepCacheDir, "k1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DepCacheDir, "k1", "f"), layer, 0o600); err != nil {
		t.Fatal(err)
	}
	npmDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(npmDir, "sha512"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(npmDir, "sha512", strings.Repeat("ab", 64)), layer[:256<<10], 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := disk.Stat(vols.Root())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry, err = npmproxy.New(npmproxy.Config{Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:9"}, CacheDir: npmDir,
		CacheBytes: sp.Free + 1<<30}) // more than the filesystem holds
	if err != nil {
		t.Fatal(err)
	}
	rs, err := DiskReservations(cfg, vols)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]disk.Reservation{}
	for _, r := range rs {
		got[r.Name] = r
	}
	if r := got["dependency layers"]; r.Bytes != cfg.DepCacheBytes || r.Used < 1<<20 {
		t.Errorf("dependency layers: %+v, want the budget %d with at least 1 MiB used", r, cfg.DepCacheBytes)
	}
	if r := got["npm tarballs"]; r.Bytes != sp.Free+1<<30 || r.Used < 256<<10 || !strings.Contains(r.Setting, "--npm-cache-size") {
		t.Errorf("npm tarballs: %+v, want the budget with at least 256 KiB used", r)
	}
	cfg.DiskReserve = 0
	if err := CheckDisk(cfg, vols); !errors.Is(err, disk.ErrHostFull) || !strings.Contains(err.Error(), "npm tarballs (--npm-cache-size") {
		t.Fatalf("CheckDisk with an npm cache budget past the free space: %v", err)
	}
}
