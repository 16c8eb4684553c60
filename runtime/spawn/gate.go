package spawn

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GateCommand is the first argument that makes the spawner binary a run's
// gate: `servcraft-spawner gate <uid> <gid> <program> <args...>`.
const GateCommand = "gate"

// GateCaps are the capabilities a gate starts with (as its ambient set, for
// it runs as the spawner's uid, not root): CAP_SETUID and CAP_SETGID to
// become the run's user, CAP_SETPCAP to empty its bounding set first. A
// gate on a terminal also gets CAP_CHOWN (TerminalGateCaps) to hand the
// terminal to the run's user.
var GateCaps = []string{"CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"}

// TerminalGateCaps are GateCaps and CAP_CHOWN, for a gate whose stdin is a
// terminal made for the gate's uid.
var TerminalGateCaps = append([]string{"CAP_CHOWN"}, GateCaps...)

// GateArgs is the argv of a gate that runs args as uid:gid once it is let go.
func GateArgs(binary string, uid, gid uint32, args ...string) []string {
	return append([]string{binary, GateCommand, strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(gid), 10)}, args...)
}

// Gate is a run's first process. It is started as the spawner's uid, which
// user code (another uid) can neither signal, trace nor write into, and
// waits for one line on stdin: the daemon writes it once it has moved the
// process into the run's cgroups, so nothing a run does, and nothing user
// code could make of a waiting process, happens outside the session's
// limits. Then it empties its bounding, ambient and inheritable sets,
// becomes uid:gid (no supplementary group), drops its last capabilities
// and execs the program: the program starts with all five capability sets
// empty, as a runc exec's does. The line is read byte by byte, so the rest
// of stdin is the program's. It returns only on failure.
func Gate(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: %s uid gid program [args...]", GateCommand)
	}
	uid, err := parseID(args[0])
	if err != nil {
		return err
	}
	gid, err := parseID(args[1])
	if err != nil {
		return err
	}
	argv := args[2:]
	// Every change below is made on this thread, which then execs: the
	// new program's credentials are this thread's.
	runtime.LockOSThread()
	if err := awaitLine(0); err != nil {
		return err
	}
	if err := becomeUser(uid, gid); err != nil {
		return err
	}
	// As a shell reports a program it cannot run: 127 when it is not
	// there, 126 when it cannot be executed.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: not found\n", argv[0])
		os.Exit(127)
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "%s: %v\n", argv[0], err)
	os.Exit(126)
	return nil
}

// parseID is a uid or gid other than root's.
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("gate: %q is not a user or group id other than root's", s)
	}
	return int(n), nil
}

// awaitLine reads fd byte by byte up to and including a newline. EOF
// first (the daemon gave the run up) is an error.
func awaitLine(fd int) error {
	b := make([]byte, 1)
	for {
		n, err := syscall.Read(fd, b)
		if err == syscall.EINTR || err == syscall.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("gate: read stdin: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("gate: stdin closed before the run was let go")
		}
		if b[0] == '\n' {
			return nil
		}
	}
}

// becomeUser drops every capability from the bounding, ambient and
// inheritable sets of the calling thread (locked: it execs next), hands a terminal on stdin made for this
// uid to uid:gid, changes to uid:gid with no supplementary group and
// empties the permitted and effective sets. The next exec starts with no
// capability and none to gain.
func becomeUser(uid, gid int) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if c == unix.CAP_SETPCAP {
			continue // needed for the drops; goes with the rest below
		}
		if err := thisThread(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil && err != syscall.EINVAL {
			return fmt.Errorf("gate: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := thisThread(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, unix.CAP_SETPCAP, 0); err != nil {
		return fmt.Errorf("gate: drop CAP_SETPCAP from the bounding set: %w", err)
	}
	if err := thisThread(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return fmt.Errorf("gate: clear the ambient capabilities: %w", err)
	}
	chownTerminal(0, uid, gid)
	if err := thisThread(unix.SYS_SETGROUPS, 0, 0, 0); err != nil {
		return fmt.Errorf("gate: setgroups: %w", err)
	}
	if err := thisThread(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); err != nil {
		return fmt.Errorf("gate: setgid %d: %w", gid, err)
	}
	if err := thisThread(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); err != nil {
		return fmt.Errorf("gate: setuid %d: %w", uid, err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // all zero: no capability at all
	if err := thisThread(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("gate: drop the last capabilities: %w", err)
	}
	return nil
}

// chownTerminal gives a terminal on fd that belongs to this process's uid
// (runc hands an exec's terminal to the exec's user) to uid:gid, so the
// run's programs can open it by name. Anything else is left alone, and a
// failure only costs the program the terminal's name.
func chownTerminal(fd, uid, gid int) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || int(st.Uid) != os.Geteuid() {
		return
	}
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return
	}
	_ = unix.Fchown(fd, uid, gid)
}

// thisThread makes a system call on the calling thread only.
func thisThread(trap, a1, a2, a3 uintptr) error {
	if _, _, errno := syscall.RawSyscall(trap, a1, a2, a3); errno != 0 {
		return errno
	}
	return nil
}

func allThreads(trap, a1, a2, a3 uintptr) error {
	if _, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3); errno != 0 {
		return errno
	}
	return nil
}
