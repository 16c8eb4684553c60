package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// runnerMemory reports the PSS of one session's processes (its container's
// memory cgroup: PID 1 and any waiting runner) before its first execute,
// when no runner waits, and after it, when --runner-depth JS runners do. It reads
// /proc and cgroupfs, so it needs root; without them it reports nothing.
func (b *bench) runnerMemory(ctx context.Context, namespace string) ([]result, error) {
	if _, err := b.create(ctx, b.url, "pss"); err != nil {
		return nil, err
	}
	id := b.prefix + "-pss"
	var info struct {
		ContainerID string `json:"containerId"`
	}
	req, err := http.NewRequestWithContext(ctx, "GET", b.url+"/api/playground/container?sessionId="+id, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil || info.ContainerID == "" {
		return nil, fmt.Errorf("container of %s: %v", id, err)
	}
	time.Sleep(time.Second) // settle; not timed
	without, ok := containerPSS(namespace, info.ContainerID)
	if !ok {
		fmt.Fprintln(os.Stderr, "servcraft-bench: no access to the session's cgroup and /proc: memory rows left out")
		return nil, nil
	}
	if _, err := b.call(ctx, b.url, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": hello}, 200); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // the runner boots; not timed
	with, _ := containerPSS(namespace, info.ContainerID)
	mi := func(v uint64) float64 { return float64(v) / (1 << 20) }
	return []result{
		{Name: "session PSS, no runner waiting", Runs: 1, MedianMs: mi(without), P95Ms: mi(without), Unit: "Mi"},
		{Name: "session PSS, JS runners waiting (depth)", Runs: 1, MedianMs: mi(with), P95Ms: mi(with), Unit: "Mi",
			Baseline: "no runner", Ratio: float64(with) / float64(without)},
	}, nil
}

// containerPSS sums the PSS of every process in the memory cgroup of
// containerID under namespace (cgroup v1 or v2).
func containerPSS(namespace, containerID string) (uint64, bool) {
	for _, dir := range []string{"/sys/fs/cgroup/memory/" + namespace + "/" + containerID, "/sys/fs/cgroup/" + namespace + "/" + containerID} {
		data, err := os.ReadFile(dir + "/cgroup.procs")
		if err != nil {
			continue
		}
		var total uint64
		for _, f := range strings.Fields(string(data)) {
			if _, err := strconv.Atoi(f); err == nil {
				total += smapsField("/proc/"+f+"/smaps_rollup", "Pss:")
			}
		}
		return total, total > 0
	}
	return 0, false
}
