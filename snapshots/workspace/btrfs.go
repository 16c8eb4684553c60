package workspace

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/snapshots/disk"
)

// btrfsVolumes is the thin backend: a subvolume per session whose qgroup
// limit is its quota. A session takes from the filesystem only what it
// writes; a fork is a snapshot that shares every extent with its source.
type btrfsVolumes struct {
	v       *Volumes
	fsid    string // the filesystem's UUID, naming its folder in /sys/fs/btrfs
	pool    string // the pool file, "" when the root is on btrfs itself
	reserve int64  // free room creates keep in the pool; 0 without a pool (the host's reserve applies)
}

func (b *btrfsVolumes) name() string { return BackendBtrfs }

// openBtrfs turns quotas on for the btrfs filesystem at v.root.
func openBtrfs(ctx context.Context, v *Volumes, pool string, reserve int64) (*btrfsVolumes, error) {
	if err := run(ctx, "btrfs", "quota", "enable", v.root); err != nil {
		return nil, fmt.Errorf("workspace backend btrfs: %w (quotas are needed for the per-session limit)", err)
	}
	fsid, err := btrfsFSID(v.root)
	if err != nil {
		return nil, fmt.Errorf("workspace backend btrfs: %w", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/btrfs", fsid, "qgroups")); err != nil {
		return nil, fmt.Errorf("workspace backend btrfs: the kernel does not show qgroups in sysfs (Linux 5.9 or later does): %w", err)
	}
	// Qgroups of subvolumes deleted before the kernel dropped them (see remove).
	_ = run(ctx, "btrfs", "qgroup", "clear-stale", v.root)
	return &btrfsVolumes{v: v, fsid: fsid, pool: pool, reserve: reserve}, nil
}

// openPool mounts the pool file at v.root, making it first when it does
// not exist (allocated in full, so no other use of the host disk can take
// its room), and opens the btrfs backend on it.
func openPool(ctx context.Context, v *Volumes, o options) (*btrfsVolumes, error) {
	if !mounted(v.root) {
		if err := makePool(ctx, v.root, o.poolFile, o.poolSize); err != nil {
			return nil, err
		}
		if err := run(ctx, "mount", "-t", "btrfs", "-o", "loop,nosuid,nodev,noatime,nodiscard,commit=5", o.poolFile, v.root); err != nil {
			return nil, fmt.Errorf("mount the workspace pool %s: %w", o.poolFile, err)
		}
	}
	if ok, err := isBtrfs(v.root); err != nil || !ok {
		return nil, fmt.Errorf("workspace pool: %s is mounted but not btrfs (%v)", v.root, err)
	}
	if err := noDiscard(v.root); err != nil {
		return nil, fmt.Errorf("workspace pool: %w", err)
	}
	if err := directIO(ctx, v.root); err != nil {
		slog.Warn("workspace pool: its loop device caches the pool file too (twice the page cache for what sessions write)", "err", err)
	}
	return openBtrfs(ctx, v, o.poolFile, o.poolReserve)
}

// directIO turns direct I/O on for the loop device mounted at root, so the
// pool file's pages are not cached a second time below btrfs's own: at a
// thousand sessions the doubled page cache woke the kernel's reclaim, whose
// slab scans grow with every session's mounts.
func directIO(ctx context.Context, root string) error {
	dev, err := output(ctx, "findmnt", "-n", "-o", "SOURCE", "--mountpoint", root)
	if err != nil {
		return err
	}
	dev = strings.TrimSpace(dev)
	if !strings.HasPrefix(dev, "/dev/loop") {
		return fmt.Errorf("%s is mounted from %q, not a loop device", root, dev)
	}
	return run(ctx, "losetup", "--direct-io=on", dev)
}

// makePool allocates and formats the pool file unless it exists. The root
// it will be mounted on must hold no volume of the image backend.
func makePool(ctx context.Context, root, file string, size int64) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) > 0 {
		return fmt.Errorf("workspace pool: %s holds %d workspaces of the image backend (%v); a pool mounted over it would hide them: destroy them first", root, len(entries), err)
	}
	if size < 256<<20 {
		return fmt.Errorf("workspace pool of %s: at least 256 MiB", disk.Format(size))
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create the workspace pool: %w", disk.HostFull(err))
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = run(ctx, "mkfs.btrfs", "-q", "-f", "--nodiscard", file)
	}
	if err != nil {
		_ = os.Remove(file)
		return fmt.Errorf("make the workspace pool %s of %s: %w", file, disk.Format(size), disk.HostFull(err))
	}
	return nil
}

func (b *btrfsVolumes) create(ctx context.Context, id, mnt string) error {
	if err := b.admit(); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "create", mnt); err != nil {
		return fmt.Errorf("create workspace %s: %w", id, err)
	}
	if err := os.Chown(mnt, Owner, Owner); err != nil {
		return fmt.Errorf("own workspace %s: %w", id, err)
	}
	return b.limit(ctx, id, mnt)
}

// fork snapshots src: instant, and what the two share is stored once.
func (b *btrfsVolumes) fork(ctx context.Context, src, id, mnt string) error {
	if err := b.admit(); err != nil {
		return err
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", src, mnt); err != nil {
		return fmt.Errorf("snapshot workspace into %s: %w", id, err)
	}
	return b.limit(ctx, id, mnt)
}

func (b *btrfsVolumes) limit(ctx context.Context, id, mnt string) error {
	if err := run(ctx, "btrfs", "qgroup", "limit", strconv.FormatInt(b.v.size, 10), mnt); err != nil {
		return fmt.Errorf("limit workspace %s: %w", id, err)
	}
	return nil
}

// admit refuses a new volume, with disk.ErrHostFull, when the filesystem
// has no more free than its reserve.
func (b *btrfsVolumes) admit() error { return admitOn(b.space) }

// admitOn refuses a new volume of a backend that takes what its sessions
// write, with disk.ErrHostFull, when space says the filesystem has no more
// free than its reserve.
func admitOn(space func() (disk.Space, int64, error)) error {
	sp, reserve, err := space()
	if err != nil {
		return err
	}
	if sp.Free < reserve {
		return fmt.Errorf("no room for a new workspace: the workspace filesystem has %s free and keeps %s in reserve: %w",
			disk.Format(sp.Free), disk.Format(reserve), disk.ErrHostFull)
	}
	return nil
}

// remove deletes the subvolume (the kernel frees its extents in the
// background) and its qgroup; a half-made one that is a plain folder is
// left for Volumes to delete.
func (b *btrfsVolumes) remove(ctx context.Context, id, mnt string) error {
	subvol, err := subvolumeID(mnt)
	if err != nil {
		return nil // not a subvolume: a folder RemoveAll deletes
	}
	if err := run(ctx, "btrfs", "subvolume", "delete", mnt); err != nil {
		return fmt.Errorf("delete workspace %s: %w", id, err)
	}
	// The qgroup of a deleted subvolume goes once the kernel has dropped it; one left is harmless and cleared at start.
	_ = run(ctx, "btrfs", "qgroup", "destroy", "0/"+strconv.FormatUint(subvol, 10), b.v.root)
	return nil
}

// usage reads the subvolume's qgroup: the bytes it references (shared
// with a fork or not) and its limit. The kernel updates them at each
// commit (every 5 s in a pool).
func (b *btrfsVolumes) usage(id, mnt string) (used, total int64, err error) {
	subvol, err := subvolumeID(mnt)
	if err != nil {
		return 0, 0, fmt.Errorf("workspace %s: %w", id, err)
	}
	dir := filepath.Join("/sys/fs/btrfs", b.fsid, "qgroups", "0_"+strconv.FormatUint(subvol, 10))
	if used, err = readInt(filepath.Join(dir, "referenced")); err != nil {
		return 0, 0, fmt.Errorf("workspace %s: %w", id, err)
	}
	if total, err = readInt(filepath.Join(dir, "max_referenced")); err != nil {
		return 0, 0, fmt.Errorf("workspace %s: %w", id, err)
	}
	return used, total, nil
}

func (b *btrfsVolumes) space() (disk.Space, int64, error) {
	sp, err := disk.Stat(b.v.root)
	if b.pool == "" {
		return sp, b.v.Reserve(), err
	}
	return sp, b.reserve, err
}

// plan: a pool takes its file, allocated once; on a btrfs state
// filesystem the workspaces take what they wrote, and no quota is set
// aside ahead.
func (b *btrfsVolumes) plan(int) (disk.Reservation, error) {
	if b.pool != "" {
		var st unix.Stat_t
		if err := unix.Stat(b.pool, &st); err != nil {
			return disk.Reservation{}, fmt.Errorf("workspace pool: %w", err)
		}
		return disk.Reservation{Name: "workspace pool", Setting: "--workspace-pool " + disk.Format(st.Size),
			Bytes: st.Size, Used: st.Blocks * 512}, nil
	}
	return disk.Reservation{Name: "workspaces", Setting: "btrfs subvolumes: what sessions write"}, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// isBtrfs reports whether dir is on a btrfs filesystem.
func isBtrfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Type == unix.BTRFS_SUPER_MAGIC, nil
}

// The btrfs ioctls used here (linux/btrfs.h).
const (
	iocFSInfo    = 0x8400941f // BTRFS_IOC_FS_INFO: _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args[1024])
	iocInoLookup = 0xd0009412 // BTRFS_IOC_INO_LOOKUP: _IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args[4096])
	firstFreeID  = 256        // BTRFS_FIRST_FREE_OBJECTID: the inode of a subvolume's root
)

// btrfsFSID is the UUID of the btrfs filesystem holding dir, as /sys/fs/btrfs names it.
func btrfsFSID(dir string) (string, error) {
	var args [1024]byte // u64 max_id, u64 num_devices, u8 fsid[16], ...
	if err := ioctlOn(dir, iocFSInfo, unsafe.Pointer(&args)); err != nil {
		return "", fmt.Errorf("filesystem info of %s: %w", dir, err)
	}
	h := hex.EncodeToString(args[16:32])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// subvolumeID is the ID of the subvolume whose root is dir; an error when dir is not one.
func subvolumeID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return 0, err
	}
	if st.Ino != firstFreeID || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("%s is not a btrfs subvolume", dir)
	}
	var args [4096]byte // u64 treeid (0: the one of the fd), u64 objectid, char name[4080]
	*(*uint64)(unsafe.Pointer(&args[8])) = firstFreeID
	if err := ioctlOn(dir, iocInoLookup, unsafe.Pointer(&args)); err != nil {
		return 0, fmt.Errorf("subvolume of %s: %w", dir, err)
	}
	return *(*uint64)(unsafe.Pointer(&args[0])), nil
}

func ioctlOn(dir string, req uintptr, arg unsafe.Pointer) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}
