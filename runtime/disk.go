package runtime

import (
	"fmt"

	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// DiskStatus is the state filesystem's room against the reserve.
type DiskStatus struct {
	TotalBytes     int64
	FreeBytes      int64
	ReserveBytes   int64 // kept free: creates never take it
	WorkspaceBytes int64 // what one new session's workspace takes
	// Low: FreeBytes is short of ReserveBytes plus one workspace, so a new
	// session that no warm container serves is refused (507 host_disk_full).
	Low bool
}

// DiskStatus reads the room left on the filesystem that holds the workspaces.
func (m *Manager) DiskStatus() (DiskStatus, error) {
	sp, err := disk.Stat(m.vols.Root())
	if err != nil {
		return DiskStatus{}, err
	}
	return diskStatus(sp, m.vols.Reserve(), m.vols.Size()), nil
}

func diskStatus(sp disk.Space, reserve, workspaceSize int64) DiskStatus {
	return DiskStatus{TotalBytes: sp.Total, FreeBytes: sp.Free, ReserveBytes: reserve, WorkspaceBytes: workspaceSize,
		Low: sp.Free-workspaceSize < reserve}
}

// DiskReservations is the room on the state filesystem the daemon may come
// to take with cfg: a workspace for every session it may hold. A cache with
// a byte budget is one more entry.
func DiskReservations(cfg Config, vols *workspace.Volumes) ([]disk.Reservation, error) {
	used, err := vols.Allocated()
	if err != nil {
		return nil, err
	}
	rs := []disk.Reservation{{
		Name:    "workspaces",
		Setting: fmt.Sprintf("--max-sessions %d × --workspace-size %s", cfg.MaxSessions, disk.Format(vols.Size())),
		Bytes:   int64(cfg.MaxSessions) * vols.Size(),
		Used:    used,
	}}
	if cfg.DepCacheDir != "" && cfg.DepCacheBytes > 0 {
		rs = append(rs, disk.Reservation{Name: "dependency layers",
			Setting: "--dep-cache-size " + disk.Format(cfg.DepCacheBytes), Bytes: cfg.DepCacheBytes})
	}
	return rs, nil
}

// CheckDisk says whether DiskReservations and cfg.DiskReserve fit the
// filesystem that holds vols; the error (wrapping disk.ErrHostFull) names
// what does not.
func CheckDisk(cfg Config, vols *workspace.Volumes) error {
	rs, err := DiskReservations(cfg, vols)
	if err != nil {
		return err
	}
	sp, err := disk.Stat(vols.Root())
	if err != nil {
		return err
	}
	return disk.Plan(sp, cfg.DiskReserve, rs)
}
