package runtime

import (
	"errors"
	"strings"
	"testing"

	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

func TestCheckDiskNamesWhatDoesNotFit(t *testing.T) {
	vols, err := workspace.NewVolumes(t.TempDir(), 1<<30)
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
