package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/servcraft/servcraftd/store"
)

// SetClock makes now the manager's time source, so that a test moves
// deadlines instead of sleeping past them.
func SetClock(m *Manager, now func() time.Time) { m.setClock(now) }

// WarmReady is how many warm containers the pool can hand out now.
func WarmReady(m *Manager) int {
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	return len(m.pool.ids)
}

// WaitLayerBuilds waits for the dependency layer builds installs started.
func WaitLayerBuilds(m *Manager) { m.layerRuns.Wait() }

// BuildLayer builds the dependency layer an install of pkg with no packages
// names (a private builder session running npm, copied into the cache), as
// an install does after its own npm, and reports whether it is there.
func BuildLayer(m *Manager, pkg []byte) bool {
	return m.buildLayer(layerKey(pkg, string(m.image.Target().Digest), m.cfg.NpmPath, nil), pkg, nil, true)
}

// WaitStarterLayers waits for the starter layers Start builds and the warm
// containers completed with them, and reports whether all are built.
func WaitStarterLayers(m *Manager) bool {
	<-m.startersEnd
	if m.starters == nil {
		return false
	}
	for key := range m.starters.manifests {
		if !m.layerReady(key) {
			return false
		}
	}
	return true
}

// WaitRunner waits until sessionID's oldest runner for files like script
// has started, and returns its process id (false: none is on its way).
func WaitRunner(m *Manager, sessionID, script string) (uint32, bool) {
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

// BootCgroup is the CPU cgroup folder runners boot in ("" when they boot in their session's).
func BootCgroup(m *Manager) string { return m.boot.dir }

// RunProcesses lists, as the host sees them, the command lines of the
// processes in each run cgroup of a session's container.
func RunProcesses(ctx context.Context, m *Manager, sessionID string) (map[string][]string, error) {
	out := map[string][]string{}
	err := m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		names, err := runGroupNames(l.cgroup)
		if err != nil {
			return err
		}
		for _, name := range names {
			pids, err := existingRunGroup(l.cgroup, name).pids()
			if err != nil && !errors.Is(err, os.ErrNotExist) {
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
func ExecByRunc(ctx context.Context, m *Manager, sessionID string, stdin string, args ...string) (res ExecResult, err error) {
	err = m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		out := newRunOutput(ExecRequest{OutputLimit: 1 << 20})
		r, err := l.start(ctx, runSpec{id: "run-" + randomHex(6), args: args, stdin: strings.NewReader(stdin),
			stdout: out.stdout, stderr: out.stderr, adoptable: true})
		if err != nil {
			return err
		}
		res, err = waitRun(ctx, r, out, time.Minute)
		return err
	})
	return res, err
}

// SpawnerSocket is the host's path of the session's spawner socket ("": none).
func SpawnerSocket(ctx context.Context, m *Manager, sessionID string) (sock string, err error) {
	err = m.readLive(ctx, sessionID, func(l *liveSession, _ store.Session) error {
		sock = l.spawner
		return nil
	})
	return sock, err
}
