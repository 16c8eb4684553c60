package cgroup

import (
	"path/filepath"
)

// SpawnersName is the cgroup v1 pids-hierarchy folder, beside a
// namespace's containers, that holds every spawner of the namespace.
const SpawnersName = "servcraft-spawners"

// PidsDir is the pids-hierarchy folder of a container (cgroup v1).
func PidsDir(container string) string {
	return filepath.Join(Root, "pids", container)
}

// SpareSpawner moves the spawner pid out of its container's pids cgroup
// into SpawnersName (cgroup v1 only; its memory, CPU and freezer cgroups
// stay the session's). The Go runtime dies when it cannot make a thread,
// and the spawner is the container's PID 1: a fork bomb that holds the
// session at its pids limit would otherwise take the container with it.
// Every run the spawner starts enters the session's pids cgroup
// (EnterSessionPids) before its gate opens, so the limit holds for all of
// the user's processes. On cgroup v2 the spawner stays under the limit.
func SpareSpawner(container string, pid uint32) error {
	if Unified() {
		return nil
	}
	dir := filepath.Join(PidsDir(filepath.Dir(container)), SpawnersName)
	if err := mkdirExisting(dir, "spawner pids"); err != nil {
		return err
	}
	return move(dir, pid)
}

// EnterSessionPids moves a run's first process, born in the spawner's pids
// cgroup, into its container's (cgroup v1; on v2 the run cgroup is in it).
func EnterSessionPids(container string, pid uint32) error {
	if Unified() {
		return nil
	}
	return move(PidsDir(container), pid)
}
