package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// SpawnersName is the cgroup v1 pids-hierarchy folder, beside a
// namespace's containers, that holds every spawner of the namespace.
const SpawnersName = "servcraft-spawners"

// UserName is the cgroup v2 child of a session container's cgroup that
// holds every run, under the session's pids limit.
const UserName = "servcraft-user"

// SpawnerReserve is how many pids a session container's own cgroup v2
// limit keeps above its runs' for its PID 1 (the spawner's threads, a
// gate's first moment before it is placed).
const SpawnerReserve = 64

// PidsDir is the pids-hierarchy folder of a container (cgroup v1).
func PidsDir(container string) string {
	return filepath.Join(Root, "pids", container)
}

// SpareSpawner keeps a fork bomb at the session's pids limit from killing
// its container's PID 1, the spawner: the Go runtime dies when it cannot
// make a thread. spawnerPid is the spawner's host pid, 0 when the
// container has none.
//
// On cgroup v1 the spawner moves out of its container's pids cgroup into
// SpawnersName (its memory, CPU and freezer cgroups stay the session's),
// and every run enters the session's pids cgroup (EnterSessionPids) before
// its gate opens, so the limit holds for all of the user's processes.
//
// On cgroup v2 (one hierarchy, a process is in one cgroup) the runs move
// instead: the container's cgroup gets a child, UserName, with the
// session's pids limit, every run cgroup is made in it (RunDir), and the
// container's own limit is raised by SpawnerReserve. The spawner stays in
// the container's cgroup, above the runs' limit. pids is a threaded
// controller, so the container's cgroup may enable it for its children
// while the spawner is in it.
func SpareSpawner(container string, spawnerPid uint32) error {
	if Unified() {
		return separateRuns(container)
	}
	if spawnerPid == 0 {
		return nil
	}
	dir := filepath.Join(PidsDir(filepath.Dir(container)), SpawnersName)
	if err := mkdirExisting(dir, "spawner pids"); err != nil {
		return err
	}
	return move(dir, spawnerPid)
}

// separateRuns makes the container's UserName group under the session's
// pids limit and raises the container's own (cgroup v2). Done once: a
// container whose cgroup already enables pids for its children is left as
// it is.
func separateRuns(container string) error {
	return separateRunsAt(filepath.Join(Root, container))
}

// separateRunsAt is separateRuns on the container cgroup folder dir.
func separateRunsAt(dir string) error {
	user := filepath.Join(dir, UserName)
	if raw, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	} else if slices.Contains(strings.Fields(string(raw)), "pids") {
		return nil
	}
	raw, err := os.ReadFile(filepath.Join(dir, "pids.max"))
	if err != nil {
		return fmt.Errorf("read pids limit of %s: %w", dir, err)
	}
	limit := strings.TrimSpace(string(raw))
	// The container's cgroup holds the spawner, so its children with a
	// controller of their own must be threaded (it becomes their threaded
	// domain, where memory and CPU are still charged): made threaded
	// first, then given pids.
	if err := mkdirExisting(user, "runs"); err != nil {
		return err
	}
	if err := writeControl(filepath.Join(user, "cgroup.type"), "threaded"); err != nil {
		return fmt.Errorf("make %s threaded: %w", user, err)
	}
	if err := writeControl(filepath.Join(dir, "cgroup.subtree_control"), "+pids"); err != nil {
		return fmt.Errorf("enable pids below %s: %w", dir, err)
	}
	if err := writeControl(filepath.Join(user, "pids.max"), limit); err != nil {
		return fmt.Errorf("set pids limit of %s: %w", user, err)
	}
	if limit == "max" {
		return nil
	}
	n, err := strconv.ParseInt(limit, 10, 64)
	if err != nil {
		return fmt.Errorf("pids limit of %s: %q: %w", dir, limit, err)
	}
	if err := writeControl(filepath.Join(dir, "pids.max"), strconv.FormatInt(n+SpawnerReserve, 10)); err != nil {
		return fmt.Errorf("raise pids limit of %s: %w", dir, err)
	}
	return nil
}

// RunsPids is how many processes the runs of a container hold on cgroup v2
// (the runs' group's pids.current: the spawner is not among them); false
// on v1, where the container's own count already leaves the spawner out,
// and where the group cannot be read.
func RunsPids(container string) (uint64, bool) {
	if !Unified() {
		return 0, false
	}
	raw, err := os.ReadFile(filepath.Join(Root, container, UserName, "pids.current"))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
	return n, err == nil
}

// runParent is the folder run cgroups of container are made in: on v1 the
// container's freezer cgroup; on v2 its UserName group, or the container's
// cgroup itself for a container made before that group existed.
func runParent(container string) string {
	if !Unified() {
		return filepath.Join(Root, "freezer", container)
	}
	user := filepath.Join(Root, container, UserName)
	if _, err := os.Stat(user); errors.Is(err, os.ErrNotExist) {
		return filepath.Join(Root, container)
	}
	return user
}

// EnterSessionPids moves a run's first process, born in the spawner's pids
// cgroup, into its container's (cgroup v1; on v2 its run cgroup is under
// the session's limit).
func EnterSessionPids(container string, pid uint32) error {
	if Unified() {
		return nil
	}
	return move(PidsDir(container), pid)
}

// Release removes the runs' group of a container on cgroup v2, killing
// what is left in it, before the container's task is deleted: runc (1.1)
// reads cgroup.procs of every cgroup below the container's when it
// deletes one, which a threaded cgroup refuses. Nothing on v1.
func Release(container string) error {
	if !Unified() {
		return nil
	}
	user := filepath.Join(Root, container, UserName)
	entries, err := os.ReadDir(user)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("list %s: %w", user, err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			errs = append(errs, RunAt(filepath.Join(user, e.Name())).Remove())
		}
	}
	if err := os.Remove(user); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", user, err))
	}
	return errors.Join(errs...)
}
