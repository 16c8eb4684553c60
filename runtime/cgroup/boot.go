package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BootName is the CPU cgroup, inside each session container's own, in
// which its pre-started runners boot and wait (cgroup v1).
const BootName = "servcraft-runner-boot"

// bootShares is the boot cgroup's cpu.shares, the least there is: inside
// its session a run (a process of weight 1024) all but always wins the CPU
// over a booting runner.
const bootShares = 2

// Boot is where a runner's Node boots when a boot quota is set: a CPU
// cgroup nested in its session's, of the least weight and a quota of its
// own (the session's own quota bounds it too). Without one, runners boot
// in the session's CPU cgroup itself. A runner waits as the sandbox user,
// so user code can write into it: it must gain nothing by that, and it
// does not, for either way it is inside the session's CPU quota, as its
// memory, pids and run (freezer) cgroups are its session's. At the least
// weight a run goes before a boot, but a request that waits for a booting
// runner waits longer (measured: a back-to-back execute 0.38-0.46x of node
// hello.js nested, 0.22x in the session's cgroup). When a request takes
// the runner, every process of its run moves into the session's CPU cgroup
// itself (Leave) before the file name is written.
//
// The cpu hierarchy exists apart only on cgroup v1. On v2 (one hierarchy)
// runners boot in their session's cgroup.
type Boot struct {
	cpus   float64 // the boot quota in CPUs; 0: boot in the session
	period uint64  // microseconds
}

// NewBoot is the boot group of cpus CPUs per period microseconds; cpus 0,
// or a cgroup v2 host, boots runners in their session's CPU cgroup.
func NewBoot(cpus float64, period uint64) *Boot {
	if cpus <= 0 || Unified() {
		return &Boot{}
	}
	return &Boot{cpus: cpus, period: period}
}

// Enabled reports whether runners boot in a group of their own in their session.
func (b *Boot) Enabled() bool { return b.cpus > 0 }

// CPUDir is the cpu-hierarchy folder of a container (cgroup v1).
func CPUDir(container string) string {
	return filepath.Join(Root, "cpu", container)
}

// BootDir is the boot cgroup of a container (cgroup v1).
func BootDir(container string) string {
	return filepath.Join(CPUDir(container), BootName)
}

// ensure makes the container's boot cgroup unless it is there and sets its
// weight and quota (again: a runner started beside the one that made it
// must not find it without them).
func (b *Boot) ensure(container string) (string, error) {
	dir := BootDir(container)
	if err := mkdirExisting(dir, "runner boot"); err != nil {
		return "", err
	}
	// A quota nested in a session's may not exceed it (EINVAL): the lower wins.
	quota := int64(b.cpus * float64(b.period))
	if raw, err := os.ReadFile(filepath.Join(CPUDir(container), "cpu.cfs_quota_us")); err == nil {
		if session, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64); err == nil && session > 0 {
			quota = min(quota, session)
		}
	}
	for _, kv := range [][2]string{
		{"cpu.cfs_period_us", strconv.FormatUint(b.period, 10)},
		{"cpu.cfs_quota_us", strconv.FormatInt(quota, 10)},
		{"cpu.shares", strconv.Itoa(bootShares)},
	} {
		file, value := kv[0], kv[1]
		if err := writeControl(filepath.Join(dir, file), value); err != nil {
			return "", fmt.Errorf("set %s of %s: %w", file, dir, err)
		}
	}
	return dir, nil
}

// Enter moves pid into the boot cgroup of container.
func (b *Boot) Enter(container string, pid uint32) error {
	dir, err := b.ensure(container)
	if err != nil {
		return err
	}
	return move(dir, pid)
}

// Leave moves every process of the run cgroup g into the container's own CPU cgroup.
func (b *Boot) Leave(container string, g *Run) error {
	pids, err := g.Pids()
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", g.dir, err)
	}
	if len(pids) == 0 {
		return fmt.Errorf("runner %s has no process left", g.dir)
	}
	dir := CPUDir(container)
	for _, pid := range pids {
		if err := move(dir, uint32(pid)); err != nil {
			return err
		}
	}
	return nil
}
