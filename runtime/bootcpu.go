package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// bootCPUName is the CPU cgroup, inside each session container's own, in
// which its pre-started runners boot and wait.
const bootCPUName = "servcraft-runner-boot"

// bootShares is the boot cgroup's cpu.shares, the least there is: inside
// its session a run (a process of weight 1024) all but always wins the CPU
// over a booting runner.
const bootShares = 2

// bootCPU is where a runner's Node boots when Config.RunnerBootCPUs is
// set: a CPU cgroup nested in its session's, of the least weight and a
// quota of its own (the session's own quota bounds it too). By default
// runners boot in the session's CPU cgroup itself. A runner waits as the
// sandbox user, so user code can write into it: it must gain nothing by
// that, and it does not, for either way it is inside the session's CPU
// quota, as its memory, pids and run (freezer) cgroups are its session's.
// At the least weight a run goes before a boot, but a request that waits
// for a booting runner waits longer (measured: a back-to-back execute
// 0.38-0.46x of node hello.js nested, 0.22x in the session's cgroup). When
// a request takes the runner, every process of its run moves into the
// session's CPU cgroup itself before the file name is written.
//
// The cpu hierarchy exists apart only on cgroup v1. On v2 (one hierarchy)
// runners boot in their session's cgroup.
type bootCPU struct {
	cpus   float64 // the boot quota in CPUs; 0: boot in the session
	period uint64  // microseconds
}

func newBootCPU(cpus float64, period uint64) *bootCPU {
	if cpus <= 0 || isCgroup2() {
		return &bootCPU{}
	}
	return &bootCPU{cpus: cpus, period: period}
}

// enabled reports whether runners boot in a group of their own in their session.
func (b *bootCPU) enabled() bool { return b.cpus > 0 }

// cpuDir is the cpu-hierarchy folder of a container cgroup path.
func cpuDir(containerCgroup string) string {
	return filepath.Join(cgroupRoot, "cpu", containerCgroup)
}

// bootDir is the boot cgroup of the session whose cgroup is containerCgroup.
func bootDir(containerCgroup string) string {
	return filepath.Join(cpuDir(containerCgroup), bootCPUName)
}

// ensure makes the session's boot cgroup unless it is there and sets its
// weight and quota (again: a runner started beside the one that made it
// must not find it without them).
func (b *bootCPU) ensure(containerCgroup string) (string, error) {
	dir := bootDir(containerCgroup)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create runner boot cgroup %s: %w", dir, err)
	}
	// A quota nested in a session's may not exceed it (EINVAL): the lower wins.
	quota := int64(b.cpus * float64(b.period))
	if raw, err := os.ReadFile(filepath.Join(cpuDir(containerCgroup), "cpu.cfs_quota_us")); err == nil {
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

// enter moves pid into the boot cgroup of the session whose cgroup is containerCgroup.
func (b *bootCPU) enter(containerCgroup string, pid uint32) error {
	dir, err := b.ensure(containerCgroup)
	if err != nil {
		return err
	}
	return moveCPU(dir, pid)
}

// leave moves every process of g into the session's CPU cgroup.
func (b *bootCPU) leave(containerCgroup string, g *runGroup) error {
	pids, err := g.pids()
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", g.dir, err)
	}
	if len(pids) == 0 {
		return fmt.Errorf("runner %s has no process left", g.dir)
	}
	dir := cpuDir(containerCgroup)
	for _, pid := range pids {
		if err := moveCPU(dir, uint32(pid)); err != nil {
			return err
		}
	}
	return nil
}

func moveCPU(dir string, pid uint32) error {
	if err := writeControl(filepath.Join(dir, "cgroup.procs"), strconv.FormatUint(uint64(pid), 10)); err != nil {
		return fmt.Errorf("move pid %d to %s: %w", pid, dir, err)
	}
	return nil
}
