package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

var isCgroup2 = sync.OnceValue(func() bool {
	var st unix.Statfs_t
	return unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
})

// runGroup is a child cgroup of a session container's own, holding one run's
// process tree. Everything a run starts (double forks and setsid included)
// stays in it, so the whole tree can be killed at once. On cgroup v1 it lives
// in the freezer hierarchy (freeze, kill, thaw); on v2 it uses cgroup.kill.
type runGroup struct {
	dir string
}

// runGroupDir is where the run cgroup name below containerCgroup (the spec's cgroupsPath) lives.
func runGroupDir(containerCgroup, name string) string {
	if isCgroup2() {
		return filepath.Join(cgroupRoot, containerCgroup, name)
	}
	return filepath.Join(cgroupRoot, "freezer", containerCgroup, name)
}

// existingRunGroup is a run cgroup made earlier (by a daemon before a restart).
func existingRunGroup(containerCgroup, name string) *runGroup {
	return &runGroup{dir: runGroupDir(containerCgroup, name)}
}

// newRunGroup makes the cgroup name below containerCgroup.
func newRunGroup(containerCgroup, name string) (*runGroup, error) {
	dir := runGroupDir(containerCgroup, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create run cgroup %s: %w", dir, err)
	}
	return &runGroup{dir: dir}, nil
}

// add moves pid into the group. Children it starts afterwards are born in it.
func (g *runGroup) add(pid uint32) error {
	if err := writeControl(filepath.Join(g.dir, "cgroup.procs"), strconv.FormatUint(uint64(pid), 10)); err != nil {
		return fmt.Errorf("move pid %d to %s: %w", pid, g.dir, err)
	}
	return nil
}

// writeControl writes value to a cgroup control file. The kernel makes those
// files; one that is missing means the group (or the feature) is not there,
// so it is never created.
func writeControl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// pids lists the processes in the group.
func (g *runGroup) pids() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// kill SIGKILLs every process in the group and waits until it is empty. A
// group already gone (its container's cgroup removed with the task) is empty.
func (g *runGroup) kill() error {
	if _, err := os.Stat(g.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if isCgroup2() {
		if err := writeControl(filepath.Join(g.dir, "cgroup.kill"), "1"); err == nil {
			return g.waitEmpty()
		}
		// Kernels before 5.14 have no cgroup.kill: freeze by hand.
		return g.freezeKill("cgroup.freeze", "1", "0")
	}
	return g.freezeKill("freezer.state", "FROZEN", "THAWED")
}

// freezeKill freezes the group so no process can fork while being killed,
// signals every member, and thaws it so the signals are delivered.
func (g *runGroup) freezeKill(file, frozen, thawed string) error {
	state := filepath.Join(g.dir, file)
	if err := writeControl(state, frozen); err != nil {
		return fmt.Errorf("freeze %s: %w", g.dir, err)
	}
	if !isCgroup2() {
		// v1 goes FREEZING, then FROZEN once every task has stopped.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
			if b, err := os.ReadFile(state); err != nil || strings.TrimSpace(string(b)) == frozen {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	pids, err := g.pids()
	if err != nil {
		return fmt.Errorf("list %s: %w", g.dir, err)
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if err := writeControl(state, thawed); err != nil {
		return fmt.Errorf("thaw %s: %w", g.dir, err)
	}
	return g.waitEmpty()
}

// waitEmpty polls until the group has no process; killed processes leave within milliseconds.
func (g *runGroup) waitEmpty() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := g.pids()
		if err != nil {
			return fmt.Errorf("list %s: %w", g.dir, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run cgroup %s: %d processes survive SIGKILL", g.dir, len(pids))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// remove kills what is left and deletes the cgroup.
func (g *runGroup) remove() error {
	kerr := g.kill()
	if err := unix.Rmdir(g.dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return errors.Join(kerr, fmt.Errorf("remove run cgroup %s: %w", g.dir, err))
	}
	return kerr
}

// oomKills reads how many times the kernel's OOM killer struck in the
// container's memory cgroup; -1 when the counter cannot be read.
func oomKills(containerCgroup string) int64 {
	var file, key string
	if isCgroup2() {
		file, key = filepath.Join(cgroupRoot, containerCgroup, "memory.events"), "oom_kill"
	} else {
		file, key = filepath.Join(cgroupRoot, "memory", containerCgroup, "memory.oom_control"), "oom_kill"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// runGroupNames lists the run cgroups below containerCgroup: one per run
// (exec, shell, install, background process, runner) not yet released.
func runGroupNames(containerCgroup string) ([]string, error) {
	entries, err := os.ReadDir(runGroupDir(containerCgroup, ""))
	if err != nil {
		return nil, fmt.Errorf("list run cgroups of %s: %w", containerCgroup, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
