package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/snapshots/disk"
)

// images is the portable backend: an ext4 image per session whose every
// block is allocated on the host when it is made, loop-mounted.
type images struct{ v *Volumes }

func (b *images) name() string { return BackendImage }

func (b *images) imagePath(id string) string { return filepath.Join(b.v.root, id, "workspace.ext4") }

func (b *images) create(ctx context.Context, id, mnt string) error {
	img := b.imagePath(id)
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create workspace image %s: %w", id, disk.HostFull(err))
	}
	err = b.allocate(f, id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	owner := strconv.Itoa(Owner)
	// No reserved blocks, no journal (the data is a scratch copy; speed wins), root dir owned by node.
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
		"-E", "root_owner="+owner+":"+owner+",lazy_itable_init=1,nodiscard", img); err != nil {
		return fmt.Errorf("format workspace %s: %w", id, err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", id, disk.HostFull(err))
	}
	if err := run(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime", img, mnt); err != nil {
		return fmt.Errorf("mount workspace %s: %w", id, err)
	}
	if err := noDiscard(mnt); err != nil {
		return fmt.Errorf("workspace %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(mnt, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tidy workspace %s: %w", id, err)
	}
	return nil
}

// fork makes a new image and copies src's files into it (reflinks where
// the host filesystem has them): the time it takes grows with what src
// holds.
func (b *images) fork(ctx context.Context, src, id, mnt string) error {
	if err := b.create(ctx, id, mnt); err != nil {
		return err
	}
	if err := run(ctx, "cp", "-a", "--reflink=auto", "--no-dereference", src+"/.", mnt+"/"); err != nil {
		return fmt.Errorf("copy workspace into %s: %w", id, err)
	}
	return nil
}

// allocate gives the image f every block of its size now, with fallocate,
// if the filesystem keeps its reserve after that; otherwise the error wraps
// disk.ErrHostFull. A sparse image would take its blocks only when the
// session writes, and a host disk filled meanwhile would turn that write
// into lost data (EIO in the loop device, after the session was told it
// succeeded); an allocated one never needs another host block.
func (b *images) allocate(f *os.File, id string) error {
	v := b.v
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

// remove unmounts the image; Volumes deletes the file with its folder.
func (b *images) remove(_ context.Context, id, mnt string) error {
	if err := unmount(mnt); err != nil {
		return fmt.Errorf("workspace %s: %w", id, err)
	}
	return nil
}

func (b *images) usage(id, mnt string) (used, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs workspace %s: %w", id, err)
	}
	total = int64(st.Blocks) * st.Bsize
	used = total - int64(st.Bfree)*st.Bsize
	return used, total, nil
}

func (b *images) space() (disk.Space, int64, error) {
	sp, err := disk.Stat(b.v.root)
	return sp, b.v.Reserve(), err
}

// plan: every session may take a whole image, and the images there take what they hold on the host.
func (b *images) plan(maxSessions int) (disk.Reservation, error) {
	ids, err := b.v.List()
	if err != nil {
		return disk.Reservation{}, err
	}
	var used int64
	for _, id := range ids {
		var st unix.Stat_t
		if err := unix.Stat(b.imagePath(id), &st); err == nil {
			used += st.Blocks * 512
		}
	}
	return disk.Reservation{
		Name:    "workspaces",
		Setting: fmt.Sprintf("--max-sessions %d × --workspace-size %s (image backend)", maxSessions, disk.Format(b.v.size)),
		Bytes:   int64(maxSessions) * b.v.size,
		Used:    used,
	}, nil
}
