package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// density creates n idle sessions on the cold daemon and reports the host
// memory each costs: the PSS of its containerd shim plus its container's
// cgroup memory (init, idle child, pre-started Node runner if any), and the
// time to create them all. It reads /proc and cgroupfs, so it needs root.
func (b *bench) density(ctx context.Context, n int, namespace string) ([]result, error) {
	start := time.Now()
	var ids []string
	for i := range n {
		name := fmt.Sprintf("dense-%d", i)
		if _, err := b.create(ctx, b.coldURL, name); err != nil {
			return nil, err
		}
		ids = append(ids, b.prefix+"-"+name)
	}
	took := time.Since(start)
	time.Sleep(2 * time.Second) // settle
	shimPSS, shims := shimMemory(namespace)
	cgroupMem, groups := cgroupMemory(namespace)
	out := []result{
		{Name: fmt.Sprintf("create %d sessions, total", n), Runs: 1, MedianMs: ms(took), P95Ms: ms(took)},
	}
	if shims > 0 && groups > 0 {
		perShim := float64(shimPSS) / float64(shims) / (1 << 20)
		perGroup := float64(cgroupMem) / float64(groups) / (1 << 20)
		out = append(out,
			result{Name: fmt.Sprintf("idle session memory at %d: shim PSS", n), Runs: shims, MedianMs: perShim, P95Ms: perShim, Unit: "Mi"},
			result{Name: fmt.Sprintf("idle session memory at %d: container", n), Runs: groups, MedianMs: perGroup, P95Ms: perGroup, Unit: "Mi"},
			result{Name: fmt.Sprintf("idle session memory at %d: total", n), Runs: groups, MedianMs: perShim + perGroup, P95Ms: perShim + perGroup, Unit: "Mi"})
	}
	// Execute latency with n sessions alive, against the same with few (measured earlier).
	var lat []time.Duration
	for i := range b.n {
		d, err := b.call(ctx, b.coldURL, "POST", "/api/playground/execute", map[string]any{"sessionId": ids[i%len(ids)], "code": hello}, 200)
		if err != nil {
			return nil, err
		}
		lat = append(lat, d)
	}
	out = append(out, stats(fmt.Sprintf("execute hello.js with %d sessions", n), lat, nil, ""))
	return out, nil
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

// cgroupMemory sums memory use of the containers of namespace (cgroup v1 or v2).
func cgroupMemory(namespace string) (total uint64, count int) {
	for _, pattern := range []string{
		"/sys/fs/cgroup/memory/" + namespace + "/*/memory.usage_in_bytes",
		"/sys/fs/cgroup/" + namespace + "/*/memory.current",
	} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil {
				total += v
				count++
			}
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
