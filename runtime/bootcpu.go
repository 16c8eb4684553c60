package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// bootCPUName is the CPU cgroup, beside the session containers' own, in
// which pre-started runners boot and wait.
const bootCPUName = "servcraft-runner-boot"

// bootShares is the boot cgroup's cpu.shares: half a session's (1024), so
// a run that competes with a booting runner for the host wins.
const bootShares = 512

// bootCPU is where a runner's Node boots: a daemon-owned CPU cgroup with a
// quota of its own (Config.RunnerBootCPUs for all of them together), not
// the session's. A runner boots ahead of a request, at the daemon's
// expense; charging the boot to the session's half CPU made the run it was
// started beside wait for its quota. When a request takes the runner,
// every process of its run moves into the session's CPU cgroup before the
// file name is written, so nothing of the user's runs on the boot quota.
//
// Memory, pids and the run's freezer group stay the session's all along:
// only the cpu hierarchy differs, which exists apart only on cgroup v1. On
// v2 (one hierarchy) runners boot on their session's quota.
type bootCPU struct {
	cpus   float64 // the boot quota in CPUs; 0: boot in the session
	period uint64  // microseconds

	once sync.Once
	dir  string // "" until made, or when unavailable
	err  error
}

func newBootCPU(cpus float64, period uint64) *bootCPU {
	if cpus <= 0 || isCgroup2() {
		return &bootCPU{}
	}
	return &bootCPU{cpus: cpus, period: period}
}

// enabled reports whether runners boot outside their session's CPU quota.
func (b *bootCPU) enabled() bool { return b.cpus > 0 }

// cpuDir is the cpu-hierarchy folder of a container cgroup path.
func cpuDir(containerCgroup string) string {
	return filepath.Join(cgroupRoot, "cpu", containerCgroup)
}

// ensure makes the boot cgroup beside containerCgroup (once: every session
// of a manager lives under one namespace folder) and sets its quota.
func (b *bootCPU) ensure(containerCgroup string) (string, error) {
	b.once.Do(func() {
		dir := filepath.Join(cpuDir(filepath.Dir(containerCgroup)), bootCPUName)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			b.err = fmt.Errorf("create runner boot cgroup %s: %w", dir, err)
			return
		}
		quota := int64(b.cpus * float64(b.period))
		for _, kv := range [][2]string{
			{"cpu.cfs_period_us", strconv.FormatUint(b.period, 10)},
			{"cpu.cfs_quota_us", strconv.FormatInt(quota, 10)},
			{"cpu.shares", strconv.Itoa(bootShares)},
		} {
			file, value := kv[0], kv[1]
			if err := writeControl(filepath.Join(dir, file), value); err != nil {
				b.err = fmt.Errorf("set %s of %s: %w", file, dir, err)
				return
			}
		}
		b.dir = dir
	})
	return b.dir, b.err
}

// enter moves pid into the boot cgroup of the manager whose sessions live
// beside containerCgroup.
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
