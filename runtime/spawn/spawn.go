// Package spawn starts a session's runs from inside its container. A small
// server (cmd/servcraft-spawner) is the container's PID 1 for its whole
// life and forks each run the daemon asks for: same namespaces, seccomp
// filter, rlimits and no_new_privileges as every process of the container,
// the run's uid and gid, no capabilities. The daemon talks to it over a
// unix socket in a tmpfs only the server's uid may enter, handing it the
// run's stdin, stdout and stderr as file descriptors. A run started this
// way costs a fork and an exec instead of a runc exec (a shim request, runc
// and runc init, about 150 ms of CPU on a 2-core host).
//
// One connection carries one run: the daemon sends a Request with three
// descriptors, the server answers a Started, and a Exited when the process
// has ended; then it closes the connection. What the run's process starts
// is the daemon's to account for and kill (its run cgroup).
package spawn

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Dir is the folder of the socket inside the container: a tmpfs of its own,
// mode 0700, owned by the server's uid.
const Dir = "/run/servcraft"

// SocketPath is where the server listens inside the container.
const SocketPath = Dir + "/spawner.sock"

// maxMessage bounds one message: a request's argv and environment (a
// command line is at most the kernel's 128 KiB argument, the environment
// a few hundred bytes).
const maxMessage = 1 << 20

// Request is one process to start.
type Request struct {
	Args []string `json:"args"` // argv; Args[0] is an absolute path
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
	UID  uint32   `json:"uid"`
	GID  uint32   `json:"gid"`
}

// Started is the first answer: the process's pid in the container's pid
// namespace, or why it could not be started.
type Started struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// Exited is the last answer: how the process ended, as containerd reports
// an exec's end (128+n for a death by signal n).
type Exited struct {
	Status uint32 `json:"status"`
}

// exitCode is the status of ws the way a shell and containerd report it.
func exitCode(ws syscall.WaitStatus) uint32 {
	if ws.Signaled() {
		return 128 + uint32(ws.Signal())
	}
	return uint32(ws.ExitStatus())
}

// Server starts runs and reaps every child it has: as a container's PID 1
// those are the orphans of every run too.
type Server struct {
	gate    string // the binary run as each process's gate (Gate)
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus // started processes not yet reaped
}

// NewServer is a server reaping its children from now on: every child of
// this process, so there is one per process. Each process it starts begins
// as `gate <uid> <gid> <args...>` (Gate), run from the binary gate: this
// program's own.
func NewServer(gate string) *Server {
	s := &Server{gate: gate, waiting: map[int]chan syscall.WaitStatus{}}
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		for range sigchld {
			s.reap()
		}
	}()
	return s
}

// reap collects every child that has ended and hands the status of a
// started one to its waiter. A process is registered under s.mu in the
// same critical section that starts it, so its status is never missed.
func (s *Server) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		s.mu.Lock()
		if c := s.waiting[pid]; c != nil {
			c <- ws
			delete(s.waiting, pid)
		}
		s.mu.Unlock()
	}
}

// Serve accepts connections on ln until it fails, one run each.
func (s *Server) Serve(ln *net.UnixListener) error {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		go s.serveOne(conn)
	}
}

// Listen makes the socket at path (replacing a stale one) and listens on it.
func Listen(path string) (*net.UnixListener, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// serveOne starts the run conn asks for, answers its pid, waits for it and
// answers its end.
func (s *Server) serveOne(conn *net.UnixConn) {
	defer conn.Close()
	req, files, err := readRequest(conn)
	if err != nil {
		for _, f := range files {
			_ = unix.Close(f)
		}
		_ = writeJSON(conn, Started{Error: err.Error()})
		return
	}
	pid, done, err := s.start(req, files)
	for _, f := range files {
		_ = unix.Close(f)
	}
	if err != nil {
		_ = writeJSON(conn, Started{Error: err.Error()})
		return
	}
	_ = writeJSON(conn, Started{Pid: pid})
	_ = writeJSON(conn, Exited{Status: exitCode(<-done)})
}

// start forks and execs req's gate with files as its stdin, stdout and
// stderr, in a session of its own, and returns where its status will come.
// The gate runs as this process's uid, out of reach of the run's (see
// Gate), with this process's GateCaps and no supplementary group; it takes
// req's uid and gid, and gives up every capability, only once the daemon
// has placed it and written its line.
func (s *Server) start(req Request, files []int) (int, <-chan syscall.WaitStatus, error) {
	attr := &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(files[0]), uintptr(files[1]), uintptr(files[2])},
		Sys: &syscall.SysProcAttr{
			Setsid: true, // its own session and process group, as a runc exec's are
		},
	}
	argv := GateArgs(s.gate, req.UID, req.GID, req.Args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	pid, err := syscall.ForkExec(s.gate, argv, attr)
	if err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", req.Args[0], err)
	}
	done := make(chan syscall.WaitStatus, 1)
	s.waiting[pid] = done
	return pid, done, nil
}

// readRequest reads a request and its three descriptors.
func readRequest(conn *net.UnixConn) (Request, []int, error) {
	var req Request
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return req, nil, fmt.Errorf("read request: %w", err)
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		return req, nil, err
	}
	if len(files) != 3 {
		return req, files, fmt.Errorf("request carries %d descriptors, not 3", len(files))
	}
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		return req, files, fmt.Errorf("decode request: %w", err)
	}
	if len(req.Args) == 0 || len(req.Args[0]) == 0 || req.Args[0][0] != '/' {
		return req, files, fmt.Errorf("request argv must start with an absolute path")
	}
	if req.UID == 0 || req.GID == 0 {
		// A run is never root: the kernel would let it keep capabilities.
		return req, files, fmt.Errorf("refusing to start a process as root")
	}
	return req, files, nil
}

// parseRights is the descriptors of a message's SCM_RIGHTS.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, fmt.Errorf("parse descriptors: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func writeJSON(conn *net.UnixConn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = conn.Write(b)
	return err
}

// Confine empties the bounding set of every thread of this process but for
// GateCaps and keeps those as its effective, permitted, inheritable and
// ambient capabilities: the processes it starts (gates, as this process's
// uid) begin with them, and a gate drops all of them before it runs
// anything of a run's (see Gate). Dropping from the bounding set needs
// CAP_SETPCAP, one of GateCaps. The bounding set and capabilities are a
// thread's own: each change is made on every thread.
func Confine() error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	keep := uint32(0)
	for _, name := range GateCaps {
		keep |= 1 << capNumbers[name]
	}
	for c := 0; c <= last; c++ {
		if c < 32 && keep&(1<<c) != 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil && err != syscall.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted, data[0].Inheritable = keep, keep, keep
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("keep only %v: %w", GateCaps, errno)
	}
	for c := 0; c < 32; c++ {
		if keep&(1<<c) == 0 {
			continue
		}
		if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c)); err != nil {
			return fmt.Errorf("keep capability %d ambient: %w", c, err)
		}
	}
	return nil
}

// capNumbers are the numbers of the capabilities named in GateCaps.
var capNumbers = map[string]int{
	"CAP_SETUID":  unix.CAP_SETUID,
	"CAP_SETGID":  unix.CAP_SETGID,
	"CAP_SETPCAP": unix.CAP_SETPCAP,
}

// lastCap is the kernel's highest capability number.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse cap_last_cap %q: %w", b, err)
	}
	return n, nil
}
