package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/store"
)

// SetClock makes now the manager's time source, so that a test moves
// deadlines instead of sleeping past them.
func SetClock(m *Runtime, now func() time.Time) { m.clock.set(now) }

// WarmReady is how many warm containers the pool can hand out now.
func WarmReady(m *Runtime) int {
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	return len(m.pool.ids)
}

// WaitLayerBuilds waits for the dependency layer builds installs started.
func WaitLayerBuilds(m *Runtime) { m.deps.running.Wait() }

// BuildLayer builds the dependency layer an install of pkg with no packages
// names (a private builder session running npm, copied into the cache), as
// an install does after its own npm, and reports whether it is there.
func BuildLayer(m *Runtime, pkg []byte) bool {
	return m.deps.build(layerKey(pkg, m.deps.imageDigest, m.cfg.NpmPath, nil), pkg, nil, true)
}

// WaitStarterLayers waits for the starter layers Start builds and the warm
// containers completed with them, and reports whether all are built.
func WaitStarterLayers(m *Runtime) bool {
	<-m.deps.startersEnd
	if m.deps.starters == nil {
		return false
	}
	for key := range m.deps.starters.manifests {
		if !m.deps.ready(key) {
			return false
		}
	}
	return true
}

// WaitRunner waits until sessionID's oldest runner for files like script
// has started, and returns its process id (false: none is on its way).
func WaitRunner(m *Runtime, sessionID, script string) (uint32, bool) {
	list := m.runners.all()[runnerKey(sessionID, kindOfScript(script))]
	if len(list) == 0 {
		return 0, false
	}
	rn := list[0]
	<-rn.ready
	if rn.r == nil {
		return 0, false
	}
	return rn.r.p.Pid(), true
}

// BootCgroup is the CPU cgroup folder a session's runners boot in ("" when
// they boot in their session's own).
func BootCgroup(ctx context.Context, m *Runtime, sessionID string) (string, error) {
	if !m.boot.Enabled() {
		return "", nil
	}
	var dir string
	err := m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		dir = cgroup.BootDir(l.cgroup)
		return nil
	})
	return dir, err
}

// SessionCPUCgroup is the CPU cgroup folder of a session's container (cgroup v1).
func SessionCPUCgroup(ctx context.Context, m *Runtime, sessionID string) (string, error) {
	var dir string
	err := m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		dir = cgroup.CPUDir(l.cgroup)
		return nil
	})
	return dir, err
}

// RunProcesses lists, as the host sees them, the command lines of the
// processes in each run cgroup of a session's container.
func RunProcesses(ctx context.Context, m *Runtime, sessionID string) (map[string][]string, error) {
	out := map[string][]string{}
	err := m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		names, err := cgroup.RunNames(l.cgroup)
		if err != nil {
			return err
		}
		for _, name := range names {
			pids, err := cgroup.ExistingRun(l.cgroup, name).Pids()
			// A run that ended since the listing has lost its cgroup: not
			// there (ErrNotExist), or, read while cgroup v1 removes it, ENODEV.
			if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENODEV) {
				return err
			}
			out[name] = []string{}
			for _, pid := range pids {
				cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if err == nil {
					out[name] = append(out[name], strings.ReplaceAll(string(cmdline), "\x00", " "))
				}
			}
		}
		return nil
	})
	return out, err
}

// ExecByRunc runs args in the session as Exec does, but started by runc
// exec even where the session has a spawner (as a background process is).
func ExecByRunc(ctx context.Context, m *Runtime, sessionID string, stdin string, args ...string) (res ExecResult, err error) {
	err = m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		out := newRunOutput(ExecRequest{OutputLimit: 1 << 20})
		r, err := l.start(ctx, runSpec{id: "run-" + randomHex(6), args: args, stdin: strings.NewReader(stdin),
			stdout: out.stdout, stderr: out.stderr, adoptable: true})
		if err != nil {
			return err
		}
		res, err = waitRun(ctx, r, out, time.Minute, nil)
		return err
	})
	return res, err
}

// SpawnerSocket is the host's path of the session's spawner socket ("": none).
func SpawnerSocket(ctx context.Context, m *Runtime, sessionID string) (sock string, err error) {
	err = m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		sock = l.spawner
		return nil
	})
	return sock, err
}

// SessionProcess is a process of a session's container as the host sees it.
type SessionProcess struct {
	Pid     int
	Cmdline string
	// PidsCgroup and CPUCgroup are its cgroups in those hierarchies
	// (cgroup v1; on v2 both are its one cgroup), relative to the root.
	PidsCgroup, CPUCgroup string
}

// SessionProcesses lists every process of a session's container (its
// freezer tree on cgroup v1, its cgroup tree on v2) and returns the
// container's cgroup path beside them.
func SessionProcesses(ctx context.Context, m *Runtime, sessionID string) (procs []SessionProcess, containerCgroup string, err error) {
	err = m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		containerCgroup = l.cgroup
		return filepath.WalkDir(cgroup.RunDir(l.cgroup, ""), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil // a run cgroup removed while walking
			}
			pids, _ := cgroup.RunAt(path).Pids()
			for _, pid := range pids {
				p := SessionProcess{Pid: pid}
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				p.Cmdline = strings.ReplaceAll(string(cmdline), "\x00", " ")
				cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
				for _, line := range strings.Split(string(cg), "\n") {
					f := strings.SplitN(line, ":", 3)
					if len(f) != 3 {
						continue
					}
					if f[0] == "0" && f[1] == "" && cgroup.Unified() {
						p.PidsCgroup, p.CPUCgroup = f[2], f[2]
					}
					for _, c := range strings.Split(f[1], ",") {
						switch c {
						case "pids":
							p.PidsCgroup = f[2]
						case "cpu":
							p.CPUCgroup = f[2]
						}
					}
				}
				procs = append(procs, p)
			}
			return nil
		})
	})
	return procs, containerCgroup, err
}
