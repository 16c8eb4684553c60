// Package workspace manages per-session workspace volumes: an ext4 image
// whose every block is allocated on the host when it is made (so a full host
// disk can never fail a write the session was told succeeded),
// loop-mounted with nosuid and nodev, whose size is a hard quota that code
// inside the container cannot exceed; and safe host-side access to the
// files in it.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/snapshots/disk"
)

// Owner is the uid and gid that own the workspace: the container's "node" user.
const Owner = 1000

// Volumes creates and removes workspace volumes under one root folder.
type Volumes struct {
	root    string
	size    int64
	reserve func() int64 // bytes the root's filesystem keeps free: a create that would cut into them is refused

	allocMu sync.Mutex // held from checking the room to allocating it, so two creates never take the same bytes
}

// NewVolumes returns a manager of volumes of size bytes under root.
func NewVolumes(root string, size int64) (*Volumes, error) {
	if size < 8<<20 {
		return nil, fmt.Errorf("workspace size %d bytes: at least 8 MiB", size)
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("create workspace root: %w", err)
	}
	return &Volumes{root: root, size: size}, nil
}

// SetReserve makes creates keep reserve() bytes free on the filesystem that
// holds the volumes (for the session database, caches and logs), asked
// anew at every create: one that would leave less is refused with
// disk.ErrHostFull. Call it before any Create; without it nothing is kept.
func (v *Volumes) SetReserve(reserve func() int64) { v.reserve = reserve }

// Reserve is the bytes creates keep free now (see SetReserve).
func (v *Volumes) Reserve() int64 {
	if v.reserve == nil {
		return 0
	}
	return v.reserve()
}

// Root is the folder the volumes live in.
func (v *Volumes) Root() string { return v.root }

// Size is the quota of every volume, in bytes.
func (v *Volumes) Size() int64 { return v.size }

// Dir is the host folder where the volume of id is mounted.
func (v *Volumes) Dir(id string) string { return filepath.Join(v.root, id, "mnt") }

func (v *Volumes) imagePath(id string) string { return filepath.Join(v.root, id, "workspace.ext4") }

// Create makes the volume of id and mounts it at Dir(id), owned by Owner.
// On failure nothing of it is left behind.
func (v *Volumes) Create(ctx context.Context, id string) (dir string, retErr error) {
	if err := validID(id); err != nil {
		return "", err
	}
	base := filepath.Join(v.root, id)
	if err := os.Mkdir(base, 0o700); err != nil {
		return "", fmt.Errorf("create workspace %s: %w", id, disk.HostFull(err))
	}
	defer func() {
		if retErr != nil {
			_ = v.Remove(context.WithoutCancel(ctx), id)
		}
	}()
	img := v.imagePath(id)
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create workspace image %s: %w", id, disk.HostFull(err))
	}
	err = v.allocate(f, id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	owner := strconv.Itoa(Owner)
	// No reserved blocks, no journal (the data is a scratch copy; speed wins), root dir owned by node.
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
		"-E", "root_owner="+owner+":"+owner+",lazy_itable_init=1,nodiscard", img); err != nil {
		return "", fmt.Errorf("format workspace %s: %w", id, err)
	}
	dir = v.Dir(id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("create mount point %s: %w", id, disk.HostFull(err))
	}
	if err := run(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime", img, dir); err != nil {
		return "", fmt.Errorf("mount workspace %s: %w", id, err)
	}
	if err := noDiscard(dir); err != nil {
		return "", fmt.Errorf("workspace %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("tidy workspace %s: %w", id, err)
	}
	return dir, nil
}

// allocate gives the image f every block of its size now, with fallocate,
// if the filesystem keeps its reserve after that; otherwise the error wraps
// disk.ErrHostFull. A sparse image would take its blocks only when the
// session writes, and a host disk filled meanwhile would turn that write
// into lost data (EIO in the loop device, after the session was told it
// succeeded); an allocated one never needs another host block.
func (v *Volumes) allocate(f *os.File, id string) error {
	v.allocMu.Lock()
	defer v.allocMu.Unlock()
	sp, err := disk.Stat(v.root)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", id, err)
	}
	if reserve := v.Reserve(); sp.Free-v.size < reserve {
		return fmt.Errorf("no room for a new workspace: it takes %s, the state filesystem has %s free and keeps %s in reserve (--disk-reserve and what the caches may still grow by): %w",
			disk.Format(v.size), disk.Format(sp.Free), disk.Format(reserve), disk.ErrHostFull)
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, v.size)
	switch {
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("no room for a new workspace of %s on the state filesystem: %w", disk.Format(v.size), disk.ErrHostFull)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("reserve workspace image %s: the state filesystem cannot allocate space ahead (fallocate); use ext4 or xfs: %w", id, err)
	case err != nil:
		return fmt.Errorf("reserve workspace image %s: %w", id, err)
	}
	return nil
}

// noDiscard turns discard off on the loop device mounted at dir: a trim of
// the volume (the host's fstrim timer trims every mounted filesystem) would
// punch holes in the image and hand its reserved blocks back to the host.
func noDiscard(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("stat mount: %w", err)
	}
	p := fmt.Sprintf("/sys/dev/block/%d:%d/queue/discard_max_bytes", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("turn off discard: %w", err)
	}
	return nil
}

// Allocated is the bytes the volume images take on the host now.
func (v *Volumes) Allocated() (int64, error) {
	ids, err := v.List()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, id := range ids {
		var st unix.Stat_t
		if err := unix.Stat(v.imagePath(id), &st); err == nil {
			total += st.Blocks * 512
		}
	}
	return total, nil
}

// Remove unmounts and deletes the volume of id. Removing a volume that does
// not exist, or one half made, succeeds. It never follows links inside the
// volume: the image file is deleted whole once unmounted.
func (v *Volumes) Remove(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	dir := v.Dir(id)
	for mounted(dir) {
		if err := unix.Unmount(dir, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				// A process still holds a file (a container being killed): detach now,
				// the kernel frees the loop device when the last user goes.
				err = unix.Unmount(dir, unix.MNT_DETACH)
			}
			if err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmount workspace %s: %w", id, err)
			}
		}
	}
	// The mount point is empty once unmounted; RemoveAll of the base removes only our own files.
	if err := os.RemoveAll(filepath.Join(v.root, id)); err != nil {
		return fmt.Errorf("remove workspace %s: %w", id, err)
	}
	return nil
}

// List returns the IDs of every volume folder under the root.
func (v *Volumes) List() ([]string, error) {
	entries, err := os.ReadDir(v.root)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Usage reports the bytes used and the quota of the volume of id.
func (v *Volumes) Usage(id string) (used, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(v.Dir(id), &st); err != nil {
		return 0, 0, fmt.Errorf("statfs workspace %s: %w", id, err)
	}
	total = int64(st.Blocks) * st.Bsize
	used = total - int64(st.Bfree)*st.Bsize
	return used, total, nil
}

// mounted reports whether dir is a mount point, by comparing its device with its parent's.
func mounted(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("workspace id %q: not a plain name", id)
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
