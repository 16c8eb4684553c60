package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Run is a child cgroup of a session container's own, holding one run's
// process tree. Everything a run starts (double forks and setsid included)
// stays in it, so the whole tree can be killed at once. On cgroup v1 it lives
// in the freezer hierarchy (freeze, kill, thaw); on v2 it uses cgroup.kill.
type Run struct {
	dir string
}

// RunDir is where the run cgroup name below container lives (see runParent).
func RunDir(container, name string) string {
	return filepath.Join(runParent(container), name)
}

// ExistingRun is a run cgroup made earlier (by a daemon before a restart).
func ExistingRun(container, name string) *Run {
	return &Run{dir: RunDir(container, name)}
}

// RunAt is the run cgroup at the folder dir (tests use folders of their own).
func RunAt(dir string) *Run { return &Run{dir: dir} }

// NewRun makes the run cgroup name below container.
func NewRun(container, name string) (*Run, error) {
	dir := RunDir(container, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create run cgroup %s: %w", dir, err)
	}
	// A new child of a threaded cgroup (the runs' group on v2) starts as
	// "domain invalid", which takes no process until it is made threaded.
	if Unified() && filepath.Base(filepath.Dir(dir)) == UserName {
		if err := writeControl(filepath.Join(dir, "cgroup.type"), "threaded"); err != nil {
			_ = unix.Rmdir(dir)
			return nil, fmt.Errorf("make run cgroup %s threaded: %w", dir, err)
		}
	}
	return &Run{dir: dir}, nil
}

// Dir is the group's folder.
func (g *Run) Dir() string { return g.dir }

// Add moves pid into the group. Children it starts afterwards are born in it.
func (g *Run) Add(pid uint32) error { return move(g.dir, pid) }

// Pids lists the processes in the group. A threaded group (a run on cgroup
// v2, see SpareSpawner) cannot list its processes, only their threads:
// those are listed, one per process.
func (g *Run) Pids() ([]int, error) {
	pids, err := procs(g.dir)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return pids, err
	}
	tids, err := idsIn(filepath.Join(g.dir, "cgroup.threads"))
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, tid := range tids {
		tgid := threadGroup(tid)
		if tgid > 0 && !seen[tgid] {
			seen[tgid] = true
			pids = append(pids, tgid)
		}
	}
	return pids, nil
}

// threadGroup is the process a thread belongs to; 0 once it is gone.
func threadGroup(tid int) int {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(tid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Tgid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

// Kill SIGKILLs every process in the group and waits until it is empty. A
// group already gone (its container's cgroup removed with the task) is empty.
func (g *Run) Kill() error {
	if _, err := os.Stat(g.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if Unified() {
		return g.killUnified()
	}
	return g.freezeKill("freezer.state", "FROZEN", "THAWED")
}

// killUnified kills through cgroup.kill. A threaded group refuses that
// (killing is for whole processes), as do kernels before 5.14, which lack
// it: those freeze through cgroup.freeze and signal each process.
func (g *Run) killUnified() error {
	if err := writeControl(filepath.Join(g.dir, "cgroup.kill"), "1"); err == nil {
		return g.waitEmpty()
	}
	return g.freezeKill("cgroup.freeze", "1", "0")
}

// freezeKill freezes the group so no process can fork while being killed,
// signals every member, and thaws it so the signals are delivered.
func (g *Run) freezeKill(file, frozen, thawed string) error {
	state := filepath.Join(g.dir, file)
	if err := writeControl(state, frozen); err != nil {
		if Unified() {
			return g.killUntilEmpty()
		}
		return fmt.Errorf("freeze %s: %w", g.dir, err)
	}
	g.awaitFrozen(state, frozen)
	pids, err := g.Pids()
	if gone(err) {
		return nil // removed meanwhile (by the run's own end): nothing to kill
	} else if err != nil {
		return fmt.Errorf("list %s: %w", g.dir, err)
	}
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if err := writeControl(state, thawed); err != nil {
		return fmt.Errorf("thaw %s: %w", g.dir, err)
	}
	return g.killUntilEmpty() // what escaped a freeze that had not yet held
}

// awaitFrozen waits (2 s at most) until every task of the group has
// stopped: a freeze is asynchronous. v1's freezer.state goes FREEZING, then
// FROZEN; v2's cgroup.events says "frozen 1".
func (g *Run) awaitFrozen(state, frozen string) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if Unified() {
			b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.events"))
			if err != nil || slices.Contains(strings.Split(string(b), "\n"), "frozen 1") {
				return
			}
			continue
		}
		if b, err := os.ReadFile(state); err != nil || strings.TrimSpace(string(b)) == frozen {
			return
		}
	}
}

// killUntilEmpty signals every process of the group until none is left,
// for a group that can be neither killed at once nor frozen: each pass
// kills what the last one let fork, and the pids limit bounds them.
func (g *Run) killUntilEmpty() error { return g.untilEmpty(true) }

// waitEmpty polls until the group has no process; killed processes leave within milliseconds.
func (g *Run) waitEmpty() error { return g.untilEmpty(false) }

// untilEmpty polls the group, SIGKILLing what it finds when kill is set,
// until it is empty, for at most 5 s.
func (g *Run) untilEmpty(kill bool) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := g.Pids()
		if gone(err) {
			return nil // removed meanwhile (by the run's own end), or going: empty
		} else if err != nil {
			return fmt.Errorf("list %s: %w", g.dir, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run cgroup %s: %d processes survive SIGKILL", g.dir, len(pids))
		}
		for _, pid := range pids {
			if kill {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// gone reports whether err says the group was removed (ENOENT) or is
// being removed (ENODEV): no process can be in it.
func gone(err error) bool { return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) }

// Remove kills what is left and deletes the cgroup.
func (g *Run) Remove() error {
	kerr := g.Kill()
	if err := unix.Rmdir(g.dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return errors.Join(kerr, fmt.Errorf("remove run cgroup %s: %w", g.dir, err))
	}
	return kerr
}

// RunNames lists the run cgroups below container: one per run (exec,
// shell, install, background process, runner) not yet released.
func RunNames(container string) ([]string, error) {
	entries, err := os.ReadDir(runParent(container))
	if err != nil {
		return nil, fmt.Errorf("list run cgroups of %s: %w", container, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
