package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/snapshots/disk"
)

// projectQuotas is the thin backend of ext4 and XFS state filesystems
// mounted with project quotas enforced (prjquota): a plain folder per
// session carrying a project ID that everything made in it inherits, and
// that project's block limit as its quota. The ID is the folder's inode
// number, unique while the folder exists. A session takes from the
// filesystem what it writes; past its quota a writer gets EDQUOT, and a
// full filesystem fails new writes with ENOSPC without touching what was
// written. Forks copy the files (reflinks on XFS). The sandbox cannot move
// its files out of the project: its seccomp profile refuses the ioctls
// that change a file's project ID or its inheritance (runtime/spec.go).
type projectQuotas struct {
	v *Volumes
}

func (p *projectQuotas) name() string { return BackendProject }

func (p *projectQuotas) create(ctx context.Context, id, mnt string) error {
	if err := p.admit(); err != nil {
		return err
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return fmt.Errorf("create workspace %s: %w", id, disk.HostFull(err))
	}
	if err := os.Chown(mnt, Owner, Owner); err != nil {
		return fmt.Errorf("own workspace %s: %w", id, err)
	}
	project, err := setProject(mnt)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", id, err)
	}
	if err := setProjectLimit(p.v.root, project, p.v.size); err != nil {
		return fmt.Errorf("limit workspace %s: %w", id, err)
	}
	return nil
}

// fork makes a new folder in its own project and copies src's files into
// it; they take the new folder's project as they are made.
func (p *projectQuotas) fork(ctx context.Context, src, id, mnt string) error {
	if err := p.create(ctx, id, mnt); err != nil {
		return err
	}
	if err := run(ctx, "cp", "-a", "--reflink=auto", "--no-dereference", src+"/.", mnt+"/"); err != nil {
		return fmt.Errorf("copy workspace into %s: %w", id, disk.HostFull(err))
	}
	return nil
}

// remove lifts the project's limit; Volumes deletes the folder and its files.
func (p *projectQuotas) remove(_ context.Context, id, mnt string) error {
	project, err := projectOf(mnt)
	if err != nil || project == 0 {
		return nil // half made: nothing was limited
	}
	if err := setProjectLimit(p.v.root, project, 0); err != nil {
		return fmt.Errorf("workspace %s: lift the limit: %w", id, err)
	}
	return nil
}

func (p *projectQuotas) usage(id, mnt string) (used, total int64, err error) {
	project, err := projectOf(mnt)
	if err != nil {
		return 0, 0, fmt.Errorf("workspace %s: %w", id, err)
	}
	q, err := getProjectQuota(p.v.root, project)
	if err != nil {
		return 0, 0, fmt.Errorf("workspace %s: %w", id, err)
	}
	return int64(q.curSpace), int64(q.bHardLimit) * quotaBlock, nil
}

// admit refuses a new volume, with disk.ErrHostFull, when the filesystem
// has no more free than its reserve.
func (p *projectQuotas) admit() error { return admitOn(p.space) }

func (p *projectQuotas) space() (disk.Space, int64, error) {
	sp, err := disk.Stat(p.v.root)
	return sp, p.v.Reserve(), err
}

// plan: the workspaces take what they wrote; no quota is set aside ahead.
func (p *projectQuotas) plan(int) (disk.Reservation, error) {
	return disk.Reservation{Name: "workspaces", Setting: "project quotas: what sessions write"}, nil
}

// The kernel's project quota interface (linux/fs.h, linux/quota.h,
// linux/dqblk_xfs.h).
const (
	iocFSGetXattr     = 0x801c581f // FS_IOC_FSGETXATTR: _IOR('X', 31, struct fsxattr)
	iocFSSetXattr     = 0x401c5820 // FS_IOC_FSSETXATTR: _IOW('X', 32, struct fsxattr)
	xflagProjInherit  = 0x200      // FS_XFLAG_PROJINHERIT
	prjQuota          = 2          // PRJQUOTA
	qGetQuota         = 0x800007   // Q_GETQUOTA
	qSetQuota         = 0x800008   // Q_SETQUOTA
	qXGetQStatV       = 0x5808     // Q_XGETQSTATV
	qifBLimits        = 1          // QIF_BLIMITS
	quotaBlock        = 1024       // QIF_DQBLKSIZE: limits count 1 KiB blocks
	quotaPrjAccounted = 0x10       // FS_QUOTA_PDQ_ACCT
	quotaPrjEnforced  = 0x20       // FS_QUOTA_PDQ_ENFD
)

// IoctlSetProject, IoctlSetFlags and IoctlSetFlags32 are the ioctl
// requests that change a file's project ID (and its inheritance) or its
// flags (PROJINHERIT among them; the last is the one 32-bit programs
// send): the sandbox's seccomp profile refuses them, so code inside it
// cannot take its files out of its workspace's project quota.
const (
	IoctlSetProject = iocFSSetXattr
	IoctlSetFlags   = unix.FS_IOC_SETFLAGS
	IoctlSetFlags32 = 0x40046602 // FS_IOC32_SETFLAGS
)

// fsxattr is struct fsxattr.
type fsxattr struct {
	xflags, extsize, nextents, projid, cowextsize uint32
	_                                             [8]byte
}

// dqblk is struct if_dqblk.
type dqblk struct {
	bHardLimit, bSoftLimit, curSpace, iHardLimit, iSoftLimit, curInodes, bTime, iTime uint64
	valid                                                                             uint32
	_                                                                                 uint32
}

func qcmd(cmd, typ uint32) uint32 { return cmd<<8 | typ&0xff }

// setProject gives the folder dir a project of its own (its inode number)
// that what is made in it inherits, and returns it.
func setProject(dir string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return 0, err
	}
	if st.Ino == 0 || st.Ino >= 1<<32 {
		return 0, fmt.Errorf("folder %s: inode %d does not fit a project ID", dir, st.Ino)
	}
	var a fsxattr
	if err := ioctlOn(dir, iocFSGetXattr, unsafe.Pointer(&a)); err != nil {
		return 0, fmt.Errorf("read the project of %s: %w", dir, err)
	}
	a.projid = uint32(st.Ino)
	a.xflags |= xflagProjInherit
	if err := ioctlOn(dir, iocFSSetXattr, unsafe.Pointer(&a)); err != nil {
		return 0, fmt.Errorf("set the project of %s: %w", dir, err)
	}
	return a.projid, nil
}

// projectOf is the project ID of dir.
func projectOf(dir string) (uint32, error) {
	var a fsxattr
	if err := ioctlOn(dir, iocFSGetXattr, unsafe.Pointer(&a)); err != nil {
		return 0, fmt.Errorf("read the project of %s: %w", dir, err)
	}
	return a.projid, nil
}

// quotactl runs quotactl_fd on the filesystem holding dir.
func quotactl(dir string, cmd, id uint32, arg unsafe.Pointer) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), uintptr(cmd), uintptr(id), uintptr(arg), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// setProjectLimit sets the hard and soft block limit of project to bytes
// (0: none), on the filesystem holding dir.
func setProjectLimit(dir string, project uint32, bytes int64) error {
	blocks := uint64(bytes+quotaBlock-1) / quotaBlock
	q := dqblk{bHardLimit: blocks, bSoftLimit: blocks, valid: qifBLimits}
	if err := quotactl(dir, qcmd(qSetQuota, prjQuota), project, unsafe.Pointer(&q)); err != nil {
		return fmt.Errorf("set the limit of project %d: %w", project, err)
	}
	return nil
}

func getProjectQuota(dir string, project uint32) (dqblk, error) {
	var q dqblk
	if err := quotactl(dir, qcmd(qGetQuota, prjQuota), project, unsafe.Pointer(&q)); err != nil {
		return q, fmt.Errorf("read the quota of project %d: %w", project, err)
	}
	return q, nil
}

// projectQuotasEnforced reports whether the filesystem holding dir
// accounts and enforces project quotas (ext4 or XFS mounted with
// prjquota), and if not, why.
func projectQuotasEnforced(dir string) (bool, string) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Sprintf("statfs %s: %v", dir, err)
	}
	if st.Type != unix.EXT4_SUPER_MAGIC && st.Type != unix.XFS_SUPER_MAGIC {
		return false, "not ext4 or XFS"
	}
	// struct fs_quota_statv: s8 version, u8 pad, u16 flags, ... (160 bytes
	// in all, which the kernel writes whole; room to spare).
	var statv [256]byte
	statv[0] = 1 // FS_QSTATV_VERSION1
	err := quotactl(dir, qcmd(qXGetQStatV, prjQuota), 0, unsafe.Pointer(&statv))
	switch {
	case errors.Is(err, unix.ENOSYS):
		return false, "the kernel has no quota support"
	case err != nil:
		return false, fmt.Sprintf("no quotas on (%v): mount it with prjquota", err)
	}
	flags := *(*uint16)(unsafe.Pointer(&statv[2]))
	if flags&quotaPrjAccounted == 0 || flags&quotaPrjEnforced == 0 {
		return false, "project quotas are not enforced: mount it with prjquota"
	}
	return true, ""
}
