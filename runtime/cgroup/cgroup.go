package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
)

// Root is where the kernel's cgroup filesystems are mounted.
const Root = "/sys/fs/cgroup"

// Unified reports whether the host runs cgroup v2 alone (one hierarchy).
// Hybrid hosts (v1 controllers beside an empty v2 tree) count as v1: the
// controllers the daemon uses live in the v1 hierarchies there.
func Unified() bool { return cgroups.Mode() == cgroups.Unified }

// ModeName says which cgroup layout the host mounts, for the start-up log
// and /readyz: "v2", "v1 (hybrid)", "v1" or "unavailable".
func ModeName() string {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return "v2"
	case cgroups.Hybrid:
		return "v1 (hybrid)"
	case cgroups.Legacy:
		return "v1"
	}
	return "unavailable"
}

// procs lists the processes of the cgroup folder dir.
func procs(dir string) ([]int, error) { return idsIn(filepath.Join(dir, "cgroup.procs")) }

// idsIn reads a cgroup's list of process or thread ids.
func idsIn(file string) ([]int, error) {
	data, err := os.ReadFile(file)
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

// move moves pid into the cgroup folder dir. Children it starts afterwards are born there.
func move(dir string, pid uint32) error {
	if err := writeControl(filepath.Join(dir, "cgroup.procs"), strconv.FormatUint(uint64(pid), 10)); err != nil {
		return fmt.Errorf("move pid %d to %s: %w", pid, dir, err)
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

// mkdirExisting makes the cgroup folder dir unless it is there.
func mkdirExisting(dir, what string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s cgroup %s: %w", what, dir, err)
	}
	return nil
}

// Members lists the processes directly in the container's cgroup (in the
// hierarchy that holds run cgroups): its PID 1, and a run's first process
// before it is moved into its run cgroup.
func Members(container string) ([]int, error) {
	dir := filepath.Join(Root, "freezer", container)
	if Unified() {
		dir = filepath.Join(Root, container)
	}
	pids, err := procs(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return pids, nil
}

// OOMKills reads how many times the kernel's OOM killer struck in the
// container's memory cgroup; -1 when the counter cannot be read.
func OOMKills(container string) int64 {
	file := filepath.Join(Root, "memory", container, "memory.oom_control")
	if Unified() {
		file = filepath.Join(Root, container, "memory.events")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}
