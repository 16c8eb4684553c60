package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/runtime/spawn"
	"github.com/servcraft/servcraftd/snapshots/disk"
)

// spawnerPath is where a container's spawner (cmd/servcraft-spawner) is mounted.
const spawnerPath = "/sbin/servcraft-spawner"

// spawnerCaps are what the spawner needs: those of the gates it starts as
// its own uid (spawn.GateCaps: CAP_SETUID and CAP_SETGID to become the
// sandbox user, CAP_SETPCAP to empty the bounding set first). It runs as
// initUID, like the init it replaces. A gate empties its bounding, ambient
// and inheritable sets, changes uid and drops the rest before it execs a
// run's program, so the program has none; with an empty bounding set and
// no_new_privileges none can come back.
var spawnerCaps = spawn.GateCaps

// withSpawner makes the spawner (hostSpawner, bind-mounted read-only) the
// container's PID 1 in place of the init, with spawnerCaps, and gives it a
// tmpfs for its socket that only its uid may enter.
func withSpawner(hostSpawner string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: spawnerPath, Type: "bind", Source: hostSpawner,
				Options: []string{"bind", "ro", "nosuid", "nodev"}},
			specs.Mount{Destination: spawn.Dir, Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "nodev", "noexec", "size=64k", "mode=700",
					fmt.Sprintf("uid=%d", initUID), fmt.Sprintf("gid=%d", initUID)}})
		s.Process.Args = []string{spawnerPath}
		s.Process.User = specs.User{UID: initUID, GID: initUID}
		caps := slices.Clone(spawnerCaps)
		// Not being root, it keeps capabilities across runc's exec only as
		// ambient ones (which need them inheritable), and keeps them so for its gates.
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps,
			Inheritable: caps, Ambient: caps}
		return nil
	}
}

// stageSpawner copies the spawner binary at src into the state folder
// under a name of its content's hash, once, and returns that path: the one
// containers bind-mount. containerd resolves a mount's source on the host,
// and the state folder is the one path the daemon and the host share even
// when the daemon runs in a container of its own (the Kubernetes
// DaemonSet). A running container keeps the file it started with when an
// upgrade brings another spawner.
func stageSpawner(dir, src string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("spawner binary: %w", err)
	}
	sum := sha256.Sum256(data)
	dst := filepath.Join(dir, "servcraft-spawner-"+hex.EncodeToString(sum[:8]))
	if st, err := os.Stat(dst); err == nil && st.Size() == int64(len(data)) {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("spawner folder: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".stage-*")
	if err != nil {
		return "", fmt.Errorf("stage spawner: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return "", fmt.Errorf("stage spawner at %s: %w", dst, disk.HostFull(err))
	}
	return dst, nil
}

// hasSpawner reports whether a container of this spec runs a spawner.
func hasSpawner(spec *oci.Spec) bool {
	return spec.Process != nil && len(spec.Process.Args) > 0 && spec.Process.Args[0] == spawnerPath
}

// newLiveSession is the handle of a running session container of spec.
func newLiveSession(task containerd.Task, spec *oci.Spec, fifoDir string) *liveSession {
	l := &liveSession{task: task, proc: spec.Process, cgroup: spec.Linux.CgroupsPath, fifoDir: fifoDir}
	if hasSpawner(spec) {
		// The host reaches the socket through the spawner's own view of
		// the container's filesystem.
		l.spawner = fmt.Sprintf("/proc/%d/root%s", task.Pid(), spawn.SocketPath)
	}
	return l
}

// spawnerStartTimeout bounds how long a new container's spawner may take to
// listen (a static binary: milliseconds).
const spawnerStartTimeout = 5 * time.Second

// awaitSpawner waits until the container's spawner listens, so that the
// session's first run need not fall back to runc exec.
func (l *liveSession) awaitSpawner(ctx context.Context) error {
	if l.spawner == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, spawnerStartTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(l.spawner); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no socket at %s: %w", l.spawner, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// spareFromPidsLimit keeps the session's pids limit off its PID 1 (see cgroup.SpareSpawner).
func (l *liveSession) spareFromPidsLimit() error {
	var spawnerPid uint32
	if l.spawner != "" {
		spawnerPid = l.task.Pid()
	}
	if err := cgroup.SpareSpawner(l.cgroup, spawnerPid); err != nil {
		return fmt.Errorf("spare the spawner of %s: %w", l.cgroup, err)
	}
	return nil
}

// spawnTimeout bounds the spawner's answer that a run has started.
const spawnTimeout = 10 * time.Second

// spawn starts spec as start does, through the container's spawner: the
// same process (argv behind the gate, the sandbox uid, environment,
// working directory, run cgroup) without a runc exec.
func (l *liveSession) spawn(ctx context.Context, spec runSpec) (_ *run, retErr error) {
	group, err := cgroup.NewRun(l.cgroup, spec.id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = group.Remove()
		}
	}()
	var pipes [3][2]*os.File // stdin, stdout, stderr: [read, write]
	defer func() {
		for _, p := range pipes {
			for _, f := range p {
				if f != nil {
					_ = f.Close()
				}
			}
		}
	}()
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("pipes of %s: %w", spec.id, err)
		}
		pipes[i] = [2]*os.File{r, w}
	}
	proc := userProcess(l.proc)
	req := spawn.Request{
		Args: spec.args, // behind the spawner's gate
		Env:  append(append([]string{}, l.proc.Env...), spec.env...),
		Dir:  WorkspacePath, UID: proc.User.UID, GID: proc.User.GID,
	}
	sctx, cancel := context.WithTimeout(ctx, spawnTimeout)
	defer cancel()
	sp, err := spawn.Start(sctx, l.spawner, req, pipes[0][0], pipes[1][1], pipes[2][1])
	if err != nil {
		return nil, fmt.Errorf("spawn %s in %s: %w", spec.id, l.task.ID(), err)
	}
	// The child has its ends; the daemon keeps stdin's writer and the readers.
	stdinW, stdoutR, stderrR := pipes[0][1], pipes[1][0], pipes[2][0]
	for _, f := range []*os.File{pipes[0][0], pipes[1][1], pipes[2][1]} {
		_ = f.Close()
	}
	pipes = [3][2]*os.File{}
	p := &spawnedProcess{sp: sp, readers: []*os.File{stdoutR, stderrR}}
	p.copies.Add(2)
	for _, c := range []struct {
		w io.Writer
		r *os.File
	}{{spec.stdout, stdoutR}, {spec.stderr, stderrR}} {
		go func() {
			defer p.copies.Done()
			_, _ = io.Copy(c.w, c.r)
		}()
	}
	statusC := make(chan containerd.ExitStatus, 1)
	go func() {
		code, err := sp.Wait()
		if err != nil {
			code = containerd.UnknownExitStatus
		}
		statusC <- *containerd.NewExitStatus(code, time.Now(), err)
	}()
	// On failure: end the process (the one not found on the host cannot be
	// killed, so its status is given up; its gate sees EOF and exits), then
	// wait for its end and its output.
	defer func() {
		if retErr == nil {
			return
		}
		if p.pid != 0 {
			_ = unix.Kill(int(p.pid), unix.SIGKILL)
		} else {
			_ = sp.Close()
		}
		_ = stdinW.Close()
		<-statusC
		p.drained(drainTimeout)
	}()
	if p.pid, err = hostPid(l.cgroup, sp.Pid); err != nil {
		return nil, err
	}
	r := &run{id: spec.id, p: p, group: group, statusC: statusC, cgroup: l.cgroup,
		oomBefore: cgroup.OOMKills(l.cgroup), started: time.Now()}
	if err := group.Add(p.pid); err != nil {
		return nil, err
	}
	if err := cgroup.EnterSessionPids(l.cgroup, p.pid); err != nil {
		return nil, err
	}
	if spec.placed != nil {
		if err := spec.placed(p.pid); err != nil {
			return nil, err
		}
	}
	go openGate(stdinW, spec.stdin)
	return r, nil
}

// spawnedProcess is a run's process started by the session's spawner.
type spawnedProcess struct {
	pid     uint32 // on the host
	sp      *spawn.Process
	copies  sync.WaitGroup // the stdout and stderr copiers
	readers []*os.File     // what they read: the daemon's ends of stdout and stderr
}

func (p *spawnedProcess) Pid() uint32 { return p.pid }

// drained waits for the copiers, closing the pipes' read ends once it has
// (or, past wait, to stop them: a read end closed under a reader ends it).
func (p *spawnedProcess) drained(wait time.Duration) bool {
	ok := drainWithin(wait, p.copies.Wait, p.closeReaders)
	p.closeReaders() // drained: the pipes' read ends are done with
	return ok
}

// closeReaders closes the pipes' read ends: a copier reading one returns.
func (p *spawnedProcess) closeReaders() {
	for _, r := range p.readers {
		_ = r.Close()
	}
}

func (p *spawnedProcess) release(ctx context.Context) { _ = p.sp.Close() }

// hostPid is the host's pid of the process nsPid names in the container
// whose cgroup is containerCgroup: a direct member of that cgroup (it is
// not in its run cgroup yet) whose last NSpid is nsPid.
func hostPid(containerCgroup string, nsPid int) (uint32, error) {
	pids, err := cgroup.Members(containerCgroup)
	if err != nil {
		return 0, err
	}
	want := strconv.Itoa(nsPid)
	for _, pid := range pids {
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		if lastNSpid(status) == want {
			return uint32(pid), nil
		}
	}
	return 0, fmt.Errorf("pid %d of %s: not found on the host", nsPid, containerCgroup)
}

// lastNSpid is the innermost pid of a /proc status: the last field of NSpid.
func lastNSpid(status []byte) string {
	for _, line := range bytes.Split(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("NSpid:")); ok {
			f := strings.Fields(string(rest))
			if len(f) > 0 {
				return f[len(f)-1]
			}
		}
	}
	return ""
}
