package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/store"
)

// What a start does with what the last daemon left behind: the runs it had
// in flight are killed (a restarted daemon holds no handle on them, so
// nothing would ever end them), teardowns that fail are retried with a fresh
// context, and half-built dependency layers are removed.

// Teardown retries at start: a teardown that fails is tried again with a
// fresh context after a growing pause, at most teardownAttempts times per
// start; what still fails is left to the reaper, which retries at every reap.
const (
	teardownAttempts = 4
	teardownBackoff  = 500 * time.Millisecond
)

// killStaleRuns ends every run of container c that no handle of this daemon
// owns: all of them, except the background processes in keep, which are
// adopted again (backgrounds.restore). Their run cgroups say which runs there
// are; each is killed, its exec process deleted and its cgroup removed.
// It returns the runs it ended.
func killStaleRuns(ctx context.Context, c containerd.Container, keep []store.Process) ([]string, error) {
	spec, err := c.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("spec of %s: %w", c.ID(), err)
	}
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return nil, nil
	}
	names, err := cgroup.RunNames(spec.Linux.CgroupsPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no task, no cgroup: nothing runs
	} else if err != nil {
		return nil, err
	}
	kept := map[string]bool{}
	for _, p := range keep {
		kept[p.ID] = true
	}
	ctx, cancel := context.WithTimeout(ctx, taskProbeTimeout)
	defer cancel()
	task, terr := c.Task(ctx, nil)
	var ended []string
	var errs []error
	// First the runs never placed in their cgroup (removing it ends nothing
	// of them), so that their exec processes can be deleted below.
	for _, pid := range killUnplacedRuns(spec.Linux.CgroupsPath) {
		ended = append(ended, fmt.Sprintf("unplaced-%d", pid))
	}
	for _, name := range names {
		if kept[name] {
			continue
		}
		if err := cgroup.ExistingRun(spec.Linux.CgroupsPath, name).Remove(); err != nil {
			errs = append(errs, err)
			continue
		}
		if terr == nil {
			if p, err := task.LoadProcess(ctx, name, nil); err == nil {
				deleteProcess(ctx, p)
			}
		}
		ended = append(ended, name)
	}
	return ended, errors.Join(errs...)
}

// killUnplacedRuns kills the runs a dead daemon started but never moved
// into their run cgroup: still waiting at a gate (atGate), as direct
// members of the container's own cgroup. Their stdin's writer died with the
// daemon, but the shim may hold it open, so the gate would wait for ever.
// It returns the pids it killed.
func killUnplacedRuns(containerCgroup string) []int {
	var killed []int
	pids, _ := cgroup.Members(containerCgroup) // none if unreadable
	for _, pid := range pids {
		if atGate(pid) && unix.Kill(pid, unix.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	// Their shim reaps them; wait for that (briefly) so their exec
	// processes can be deleted.
	for _, pid := range killed {
		for range 100 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return killed
}

// atGate reports whether pid is a run's process still waiting at a gate
// (the spawner's or the shell's).
func atGate(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	_, gated := afterGate(strings.Split(string(cmdline), "\x00"))
	return gated
}

// teardownRetrying tears s down, trying again with a fresh context (each
// teardown makes its own) after a growing pause, teardownAttempts times at most.
func (m *Manager) teardownRetrying(ctx context.Context, s store.Session) error {
	var err error
	pause := teardownBackoff
	for attempt := 1; attempt <= teardownAttempts; attempt++ {
		if err = m.teardown(ctx, s); err == nil {
			return nil
		}
		if errdefs.IsNotFound(err) {
			return nil
		}
		slog.Warn("tear down failed, retrying", "session", s.SessionID, "container", s.ContainerID, "attempt", attempt, "err", err)
		if attempt == teardownAttempts {
			break
		}
		select {
		case <-time.After(pause):
		case <-m.stop:
			return err
		}
		pause *= 2
		if cur, gerr := m.db.Get(s.SessionID); gerr == nil {
			s = cur // teardown moved it to destroying
		} else if errdefs.IsNotFound(gerr) {
			return nil
		}
	}
	return err
}

// unfinishedLayerPattern matches a dependency layer being copied into the
// cache (depLayers.build's temporary folder); a crash leaves it behind.
const unfinishedLayerPattern = ".build-*"

// removeUnfinishedLayers removes the dependency layers whose build a crash
// cut short: they were never renamed into place, so nothing uses them.
// cacheDir is the dependency cache ("": none).
func removeUnfinishedLayers(cacheDir string) ([]string, error) {
	if cacheDir == "" {
		return nil, nil
	}
	dirs, err := filepath.Glob(filepath.Join(cacheDir, unfinishedLayerPattern))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("remove unfinished layer %s: %w", d, err))
			continue
		}
		removed = append(removed, filepath.Base(d))
	}
	return removed, errors.Join(errs...)
}

// holdFIFOs opens every FIFO under dir without blocking (O_RDWR) and keeps
// it open until release. An exec the last daemon was starting when it died
// has its shim opening the exec's stdio FIFOs one after another, each open
// waiting for the other end, which died with the daemon; meanwhile the shim
// answers nothing else about the task, and the session would look gone. Held
// ends let every one of those opens go through, whenever the shim reaches
// it; the release gives the process EOF on stdin (its gate then exits) and
// killStaleRuns ends the rest. FIFOs of processes still attached (kept
// background processes) lose nothing: nothing is read from them.
func holdFIFOs(dir string) (release func()) {
	var fds []int
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeNamedPipe == 0 {
			return nil
		}
		if fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0); err == nil {
			fds = append(fds, fd)
		}
		return nil
	})
	return func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}
}
