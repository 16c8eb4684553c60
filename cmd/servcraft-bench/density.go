package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// densityStudy is what -density measures on a daemon started for it alone
// (scripts/bench.sh gives it 1 GiB workspaces on a btrfs pool): n idle
// sessions made one after another; at 10, 100 and n sessions alive, the
// create p50 of the last creates, and a probe session's warm execute p50 and
// an install-free `npm start` answering its preview; at n the disk and the
// memory (PSS) each idle session costs; then the time to destroy them all.
type densityStudy struct {
	b         *bench
	n         int
	namespace string // the daemon's containerd namespace: its shims and cgroups
	hostDir   string // a folder on the host filesystem containerd and the state folder are on
	pool      string // the daemon's workspace folder when it is a btrfs pool ("": not measured)
}

func (b *bench) density(ctx context.Context, n int, namespace, hostDir, pool string) ([]result, error) {
	d := densityStudy{b: b, n: n, namespace: namespace, hostDir: hostDir, pool: pool}
	return d.run(ctx)
}

func (d densityStudy) run(ctx context.Context) ([]result, error) {
	b := d.b
	var out []result
	var bare []time.Duration
	for range 10 {
		t, err := timeCmd(ctx, b.node, "-e", "0")
		if err != nil {
			return nil, fmt.Errorf("baseline node -e 0: %w", err)
		}
		bare = append(bare, t)
	}
	out = append(out, stats("bare node -e 0 (host)", bare, nil, ""))
	if err := d.awaitStarterDeps(ctx); err != nil {
		return nil, err
	}
	poolBefore, err := d.poolUsed(ctx)
	if err != nil {
		return nil, err
	}
	hostBefore, err := usedBytes(d.hostDir)
	if err != nil {
		return nil, err
	}
	var creates []time.Duration
	var phaseRuns []map[string]time.Duration // each create's Server-Timing phases
	var ids []string
	checkpoints := []int{10, 100, d.n}
	start := time.Now()
	for i := range d.n {
		name := fmt.Sprintf("dense-%d", i)
		t, err := b.create(ctx, b.url, name)
		if err != nil {
			return nil, fmt.Errorf("create session %d of %d: %w", i+1, d.n, err)
		}
		creates = append(creates, t)
		phaseRuns = append(phaseRuns, serverTiming(b.lastTiming))
		ids = append(ids, b.prefix+"-"+name)
		if alive := i + 1; len(checkpoints) > 0 && alive == checkpoints[0] {
			for len(checkpoints) > 0 && checkpoints[0] <= alive {
				checkpoints = checkpoints[1:]
			}
			window := creates[max(0, alive-20):]
			out = append(out, stats(fmt.Sprintf("create at %d sessions (last %d)", alive, len(window)), window, nil, ""))
			out = append(out, phaseStats(fmt.Sprintf("create at %d sessions", alive), phaseRuns[max(0, alive-20):])...)
			probe, err := d.probe(ctx, alive)
			if err != nil {
				return nil, err
			}
			out = append(out, probe...)
			fmt.Fprintf(os.Stderr, "density: %d sessions alive after %s\n", alive, time.Since(start).Round(time.Second))
		}
	}
	out = append(out, result{Name: fmt.Sprintf("create %d sessions, total (with probes)", d.n), Runs: 1, MedianMs: ms(time.Since(start)), P95Ms: ms(time.Since(start))})
	time.Sleep(5 * time.Second) // the pool's commit (5 s) and the shims settle
	out = append(out, d.memory()...)
	poolAfter, err := d.poolUsed(ctx)
	if err != nil {
		return nil, err
	}
	hostAfter, err := usedBytes(d.hostDir)
	if err != nil {
		return nil, err
	}
	mi := func(v int64) float64 { return float64(v) / float64(d.n) / (1 << 20) }
	if d.pool != "" {
		excl, rfer, err := qgroupSums(ctx, d.pool)
		if err != nil {
			return nil, err
		}
		out = append(out,
			result{Name: fmt.Sprintf("disk per idle session at %d: its own (btrfs exclusive)", d.n), Runs: d.n, MedianMs: mi(excl), P95Ms: mi(excl), Unit: "Mi"},
			result{Name: fmt.Sprintf("disk per idle session at %d: referenced (quota use)", d.n), Runs: d.n, MedianMs: mi(rfer), P95Ms: mi(rfer), Unit: "Mi"})
	}
	out = append(out,
		result{Name: fmt.Sprintf("disk per idle session at %d: pool used (statfs)", d.n), Runs: d.n, MedianMs: mi(poolAfter - poolBefore), P95Ms: mi(poolAfter - poolBefore), Unit: "Mi"},
		result{Name: fmt.Sprintf("disk per idle session at %d: host (rootfs, state)", d.n), Runs: d.n, MedianMs: mi(hostAfter - hostBefore), P95Ms: mi(hostAfter - hostBefore), Unit: "Mi"})

	destroyed, took, err := d.destroyAll(ctx, ids)
	if err != nil {
		return nil, err
	}
	out = append(out, stats(fmt.Sprintf("destroy one of %d (4 at once)", d.n), destroyed, nil, ""),
		result{Name: fmt.Sprintf("destroy %d sessions, total", d.n), Runs: 1, MedianMs: ms(took), P95Ms: ms(took)})
	return out, nil
}

// awaitStarterDeps waits until a new session comes with the starter's
// dependencies (the daemon builds them once after it starts): the probes'
// npm start needs them, and a create that copies them is the one measured.
func (d densityStudy) awaitStarterDeps(ctx context.Context) error {
	b := d.b
	for deadline := time.Now().Add(5 * time.Minute); ; {
		id := b.prefix + "-deps-check"
		var created struct {
			DependenciesReady bool `json:"dependenciesReady"`
		}
		if err := b.postJSON(ctx, b.url, "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}, 201, &created); err != nil {
			return err
		}
		if _, err := b.call(ctx, b.url, "DELETE", "/api/playground/container?sessionId="+id, nil, 200); err != nil {
			return err
		}
		if created.DependenciesReady {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the starter's dependencies are not ready after 5 minutes (see the daemon's log)")
		}
		time.Sleep(time.Second)
	}
}

// probe makes one more session while alive sessions exist, times its warm
// executes (the first, which boots the runners, is left out) and an
// install-free `npm start` of the starter until its preview answers, then
// destroys it.
func (d densityStudy) probe(ctx context.Context, alive int) ([]result, error) {
	b := d.b
	name := fmt.Sprintf("probe-%d", alive)
	if _, err := b.create(ctx, b.url, name); err != nil {
		return nil, err
	}
	id := b.prefix + "-" + name
	defer func() {
		_, _ = b.call(context.WithoutCancel(ctx), b.url, "DELETE", "/api/playground/container?sessionId="+id, nil, 200)
		b.created = b.created[:len(b.created)-1]
	}()
	var warm []time.Duration
	for i := range 11 {
		t, err := b.call(ctx, b.url, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": hello}, 200)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			warm = append(warm, t)
		}
		time.Sleep(300 * time.Millisecond) // spaced: a runner is up again
	}
	start := time.Now()
	if _, err := b.call(ctx, b.url, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "npm start", "background": true}, 200); err != nil {
		return nil, err
	}
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", b.url+"/p/"+id+"/", nil)
		if err != nil {
			return nil, err
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Since(start) > time.Minute {
			return nil, fmt.Errorf("npm start in %s: the preview answers %d after a minute", id, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	npmStart := time.Since(start)
	return []result{
		stats(fmt.Sprintf("execute hello.js at %d sessions (warm)", alive), warm, nil, ""),
		{Name: fmt.Sprintf("npm start to preview 200 at %d sessions", alive), Runs: 1, MedianMs: ms(npmStart), P95Ms: ms(npmStart)},
	}, nil
}

// memory is the host memory per idle session: the PSS of the namespace's
// shims and of every process in its containers' cgroups, each divided by
// the sessions alive (shims may serve several sessions).
func (d densityStudy) memory() []result {
	shimPSS, shims := shimMemory(d.namespace)
	procPSS, groups := containersPSS(d.namespace)
	if groups == 0 {
		fmt.Fprintln(os.Stderr, "servcraft-bench: no access to the sessions' cgroups and /proc (root?): memory rows left out")
		return nil
	}
	per := func(v uint64) float64 { return float64(v) / float64(groups) / (1 << 20) }
	at := fmt.Sprintf("at %d", groups)
	return []result{
		{Name: fmt.Sprintf("idle session PSS %s: shim share (%d shims)", at, shims), Runs: groups, MedianMs: per(shimPSS), P95Ms: per(shimPSS), Unit: "Mi"},
		{Name: "idle session PSS " + at + ": its processes", Runs: groups, MedianMs: per(procPSS), P95Ms: per(procPSS), Unit: "Mi"},
		{Name: "idle session PSS " + at + ": total", Runs: groups, MedianMs: per(shimPSS + procPSS), P95Ms: per(shimPSS + procPSS), Unit: "Mi"},
	}
}

// destroyAll destroys ids four at a time.
func (d densityStudy) destroyAll(ctx context.Context, ids []string) ([]time.Duration, time.Duration, error) {
	b := d.b
	times := make([]time.Duration, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for i := range next {
				times[i], errs[i] = b.call(ctx, b.url, "DELETE", "/api/playground/container?sessionId="+ids[i], nil, 200)
			}
		})
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	b.created = nil
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return times, took, nil
}

// poolUsed is what the workspaces' filesystem has in use, from /readyz.
func (d densityStudy) poolUsed(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", d.b.url+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := d.b.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ready struct {
		Disk struct {
			TotalBytes       int64  `json:"totalBytes"`
			FreeBytes        int64  `json:"freeBytes"`
			WorkspaceBackend string `json:"workspaceBackend"`
		} `json:"disk"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || ready.Disk.TotalBytes == 0 {
		return 0, fmt.Errorf("readyz: no disk figures (%v)", err)
	}
	if ready.Disk.WorkspaceBackend != "btrfs" {
		fmt.Fprintf(os.Stderr, "density: workspace backend %q: the workspaces row counts images allocated in full\n", ready.Disk.WorkspaceBackend)
	}
	return ready.Disk.TotalBytes - ready.Disk.FreeBytes, nil
}

// qgroupSums sums the exclusive and referenced bytes of every subvolume's
// qgroup (0/N, the top level 0/5 left out) of the btrfs filesystem at dir.
func qgroupSums(ctx context.Context, dir string) (excl, rfer int64, err error) {
	out, err := exec.CommandContext(ctx, "btrfs", "qgroup", "show", "--raw", "--sync", dir).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("btrfs qgroup show %s: %w", dir, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "0/") || f[0] == "0/5" {
			continue
		}
		r, err1 := strconv.ParseInt(f[1], 10, 64)
		e, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			rfer += r
			excl += e
		}
	}
	return excl, rfer, nil
}

// usedBytes is what the filesystem holding dir has in use.
func usedBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

// shimMemory sums the PSS of the containerd shims serving namespace.
func shimMemory(namespace string) (pss uint64, count int) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmd, err := os.ReadFile(p + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("containerd-shim")) ||
			!bytes.Contains(cmd, []byte("-namespace\x00"+namespace+"\x00")) {
			continue
		}
		if v := smapsField(p+"/smaps_rollup", "Pss:"); v > 0 {
			pss += v
			count++
		}
	}
	return pss, count
}

// containersPSS sums the PSS of every process in the containers of
// namespace (their memory cgroups, v1 or v2) and counts the containers.
func containersPSS(namespace string) (total uint64, count int) {
	for _, pattern := range []string{"/sys/fs/cgroup/memory/" + namespace + "/*/cgroup.procs", "/sys/fs/cgroup/" + namespace + "/*/cgroup.procs"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			id := filepath.Base(filepath.Dir(f))
			if v, ok := containerPSS(namespace, id); ok {
				total += v
				count++
			}
		}
		if count > 0 {
			break
		}
	}
	return total, count
}

func smapsField(file, key string) uint64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == key {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// createPhases are the phases of a cold create's Server-Timing, in order.
var createPhases = []string{"parse", "reserve", "workspace", "container", "task", "start", "spawner", "deps", "answer"}

// phaseStats is a row per phase of createPhases: where the time of runs
// (each a create's phases) goes.
func phaseStats(name string, runs []map[string]time.Duration) []result {
	var out []result
	for _, phase := range createPhases {
		var ds []time.Duration
		for _, r := range runs {
			ds = append(ds, r[phase])
		}
		out = append(out, stats(fmt.Sprintf("  %s: phase %s", name, phase), ds, nil, ""))
	}
	return out
}

// serverTiming reads a Server-Timing header ("name;dur=ms, ...").
func serverTiming(header string) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, part := range strings.Split(header, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		if !ok {
			continue
		}
		if ms, err := strconv.ParseFloat(dur, 64); err == nil {
			out[name] = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return out
}
