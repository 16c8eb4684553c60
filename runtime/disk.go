package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// DiskStatus is the state filesystem's room against the reserve.
type DiskStatus struct {
	TotalBytes     int64
	FreeBytes      int64
	ReserveBytes   int64  // kept free: creates never take it
	WorkspaceBytes int64  // what one new session's workspace takes at once
	Backend        string // the workspace backend: image or btrfs
	WrittenBytes   int64  // what the workspaces hold, summed (a fork's shared bytes count in each)
	Workspaces     int    // workspace volumes on this node, warm containers' included
	// Low: FreeBytes is short of ReserveBytes plus one workspace, so a new
	// session that no warm container serves is refused (507 host_disk_full).
	Low bool
}

// DiskStatus reads the room left where new workspaces are made: the state
// filesystem, or the btrfs pool.
func (m *Manager) DiskStatus() (DiskStatus, error) {
	sp, reserve, err := m.vols.Space()
	if err != nil {
		return DiskStatus{}, err
	}
	st := diskStatus(sp, reserve, upfront(m.vols))
	st.Backend = m.vols.Backend()
	if st.WrittenBytes, st.Workspaces, err = m.vols.Written(); err != nil {
		return DiskStatus{}, err
	}
	return st, nil
}

// upfront is what a new workspace takes at once: its whole quota as an
// image, nothing as a subvolume (it takes what the session writes).
func upfront(vols *workspace.Volumes) int64 {
	if vols.Backend() == workspace.BackendImage {
		return vols.Size()
	}
	return 0
}

func diskStatus(sp disk.Space, reserve, workspaceSize int64) DiskStatus {
	return DiskStatus{TotalBytes: sp.Total, FreeBytes: sp.Free, ReserveBytes: reserve, WorkspaceBytes: workspaceSize,
		Low: sp.Free-workspaceSize < reserve}
}

// DiskReservations is the room on the state filesystem the daemon may come
// to take with cfg: a workspace for every session it may hold, the
// dependency layer cache and the npm tarball cache (cfg.Registry's) up to
// their budgets. Used is what each takes on disk now.
func DiskReservations(cfg Config, vols *workspace.Volumes) ([]disk.Reservation, error) {
	ws, err := vols.Plan(cfg.MaxSessions)
	if err != nil {
		return nil, err
	}
	rs := []disk.Reservation{ws}
	if cfg.DepCacheDir != "" {
		used, _, err := treeDiskBytes(cfg.DepCacheDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("dependency layer folder: %w", err)
		}
		rs = append(rs, layerReservation(cfg.DepCacheBytes, used))
	}
	if cfg.Registry != nil {
		rs = append(rs, npmReservation(cfg.Registry.CacheBytes()))
	}
	return rs, nil
}

func layerReservation(budget, used int64) disk.Reservation {
	return disk.Reservation{Name: "dependency layers", Setting: "--dep-cache-size " + disk.Format(budget), Bytes: budget, Used: used}
}

func npmReservation(used, budget int64) disk.Reservation {
	return disk.Reservation{Name: "npm tarballs", Setting: "--npm-cache-size " + disk.Format(budget), Bytes: budget, Used: used}
}

// CheckDisk says whether DiskReservations and cfg.DiskReserve fit the
// filesystem that holds vols; the error (wrapping disk.ErrHostFull) names
// what does not.
func CheckDisk(cfg Config, vols *workspace.Volumes) error {
	rs, err := DiskReservations(cfg, vols)
	if err != nil {
		return err
	}
	sp, err := disk.Stat(filepath.Dir(vols.Root())) // the host's, under a pool mounted at the root
	if err != nil {
		return err
	}
	return disk.Plan(sp, cfg.DiskReserve, rs)
}
