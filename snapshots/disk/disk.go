// Package disk reads how much room the daemon's state filesystem has and
// checks the room the daemon plans to take (workspace volumes, cache
// budgets) against it, keeping a reserve free for everything else.
package disk

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrHostFull is the cause of a refusal because the state filesystem has
// no room left beyond its reserve: the host's problem, never the client's.
var ErrHostFull = errors.New("host disk full")

// HostFull marks err, from making a folder or file on the state filesystem,
// as ErrHostFull when the filesystem had no block or inode left (ENOSPC,
// EDQUOT): a 507, not a 500. Any other error is returned as it is.
func HostFull(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("the state filesystem is full: %w (%w)", ErrHostFull, err)
	}
	return err
}

// Space is a filesystem's size and the bytes still free on it.
type Space struct {
	Total int64 // bytes the filesystem holds
	Free  int64 // bytes free to unprivileged writers (blocks reserved for root not counted)
}

// Stat reads the Space of the filesystem that holds path.
func Stat(path string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return Space{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}, nil
}

// Reservation is room the daemon may come to take on the state filesystem.
type Reservation struct {
	Name    string // what takes it, e.g. "workspaces"
	Setting string // the flags that size it, e.g. "--max-sessions × --workspace-size"
	Bytes   int64  // the most it may take
	Used    int64  // of Bytes, what already sits on the filesystem (counted out of Space.Free)
}

// Plan checks that reservations, beyond what of them is already used, fit
// in sp.Free and leave reserve bytes free. nil when they fit; otherwise an
// error wrapping ErrHostFull that names each reservation and the shortfall.
func Plan(sp Space, reserve int64, reservations []Reservation) error {
	need := reserve + Unclaimed(reservations)
	if need <= sp.Free {
		return nil
	}
	parts := make([]string, 0, len(reservations)+1)
	for _, r := range reservations {
		parts = append(parts, fmt.Sprintf("%s (%s) %s, %s of it already on disk", r.Name, r.Setting, Format(r.Bytes), Format(r.Used)))
	}
	parts = append(parts, fmt.Sprintf("reserve (--disk-reserve) %s", Format(reserve)))
	return fmt.Errorf("the state filesystem has %s free of %s but may be asked for %s more: %s; short by %s: %w",
		Format(sp.Free), Format(sp.Total), Format(need), strings.Join(parts, "; "), Format(need-sp.Free), ErrHostFull)
}

// Unclaimed is what reservations may still take beyond what of them is
// already on the filesystem: the sum of Bytes-Used, none below zero (a
// cache over its budget for a moment gives no room back to the others).
func Unclaimed(reservations []Reservation) int64 {
	var n int64
	for _, r := range reservations {
		n += max(r.Bytes-r.Used, 0)
	}
	return n
}

// Format writes n bytes for people: 1.5 GiB, 12 MiB, 900 B.
func Format(n int64) string {
	const unit = 1 << 10
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), 0
	for ; (f >= unit || f <= -unit) && i < 4; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.3g %s", f, []string{"B", "KiB", "MiB", "GiB", "TiB"}[i])
}
