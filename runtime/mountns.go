package runtime

import (
	"fmt"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// remountWorkspace makes the host folder dir the /workspace of the running
// container whose PID 1 is pid, in place of the folder mounted there: the
// bind mount of dir is cloned in the host's namespace (nosuid, nodev, as
// the spec mounts it), the old /workspace is detached inside the
// container's mount namespace and the clone is moved onto it. A process
// whose working folder was the old /workspace keeps it; every run starts
// in /workspace by path and gets dir. Only a warm container, where no user
// code has run, is remounted (a fork onto the warm pool). The namespace is
// entered through a pidfd that alive confirms (once it is open) is still
// the container's PID 1, so a PID reused by another process is never entered.
func remountWorkspace(pid uint32, dir string, alive func() error) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone the mount of %s: %w", dir, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Propagation: unix.MS_PRIVATE}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("make the mount of %s nosuid and nodev: %w", dir, err)
	}
	pidfd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return fmt.Errorf("open pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	if err := alive(); err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread never comes back to the host's namespace: it stays
		// locked, and Go ends it with this goroutine. It first gets a
		// working folder and root of its own (Go's threads share one), as
		// entering a mount namespace needs.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare the thread's root and working folder: %w", err)
			return
		}
		if err := unix.Setns(pidfd, unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("enter the mount namespace of pid %d: %w", pid, err)
			return
		}
		if err := unix.Unmount(WorkspacePath, unix.MNT_DETACH); err != nil {
			errc <- fmt.Errorf("detach the old %s of pid %d: %w", WorkspacePath, pid, err)
			return
		}
		if err := unix.MoveMount(tree, "", unix.AT_FDCWD, WorkspacePath, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			errc <- fmt.Errorf("mount %s at %s of pid %d: %w", dir, WorkspacePath, pid, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}
