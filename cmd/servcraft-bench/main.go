// Command servcraft-bench drives a running servcraftd over HTTP and prints
// medians, p95 and ratios against baselines measured in the same run: bare
// `node` on the host for executions.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type result struct {
	Name     string  `json:"name"`
	Runs     int     `json:"runs"`
	MedianMs float64 `json:"medianMs"`
	P95Ms    float64 `json:"p95Ms"`
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
}

type bench struct {
	url    string
	client *http.Client
	prefix string
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "servcraftd base URL (loopback)")
	n := flag.Int("n", 20, "runs per measurement")
	quick := flag.Bool("quick", false, "few runs, for a smoke check")
	asJSON := flag.Bool("json", false, "print JSON instead of a table")
	node := flag.String("node", "node", "host node binary for the baseline")
	flag.Parse()
	if *quick {
		*n = 5
	}
	b := &bench{url: strings.TrimRight(*url, "/"), client: &http.Client{Timeout: 2 * time.Minute},
		prefix: fmt.Sprintf("bench-%d", time.Now().UnixNano())}
	results, err := b.run(context.Background(), *n, *node)
	if err != nil {
		fmt.Fprintln(os.Stderr, "servcraft-bench:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
		return
	}
	fmt.Printf("%-34s %5s %10s %10s  %s\n", "measurement", "runs", "median ms", "p95 ms", "ratio to baseline")
	for _, r := range results {
		ratio := ""
		if r.Baseline != "" {
			ratio = fmt.Sprintf("%.2fx %s", r.Ratio, r.Baseline)
		}
		fmt.Printf("%-34s %5d %10.2f %10.2f  %s\n", r.Name, r.Runs, r.MedianMs, r.P95Ms, ratio)
	}
}

const hello = `console.log("hello")`

func (b *bench) run(ctx context.Context, n int, node string) ([]result, error) {
	dir, err := os.MkdirTemp("", "servcraft-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	helloFile := filepath.Join(dir, "hello.js")
	if err := os.WriteFile(helloFile, []byte(hello), 0o644); err != nil {
		return nil, err
	}
	// Interleave the baseline with the measured calls so drift hits both alike.
	var bareE0, bareHello, create, execute, shell, destroy []time.Duration
	ids := make([]string, n)
	for i := range n {
		d, err := timeCmd(ctx, node, "-e", "0")
		if err != nil {
			return nil, fmt.Errorf("baseline node -e 0: %w", err)
		}
		bareE0 = append(bareE0, d)
		ids[i] = fmt.Sprintf("%s-%d", b.prefix, i)
		d, err = b.call(ctx, "POST", "/api/playground/container", map[string]any{"sessionId": ids[i], "projectType": "js"}, 201)
		if err != nil {
			return nil, err
		}
		create = append(create, d)
	}
	session := ids[0]
	for range n {
		d, err := timeCmd(ctx, node, helloFile)
		if err != nil {
			return nil, fmt.Errorf("baseline node hello.js: %w", err)
		}
		bareHello = append(bareHello, d)
		d, err = b.call(ctx, "POST", "/api/playground/execute", map[string]any{"sessionId": session, "code": hello}, 200)
		if err != nil {
			return nil, err
		}
		execute = append(execute, d)
		d, err = b.call(ctx, "POST", "/api/playground/shell", map[string]any{"sessionId": session, "command": "true"}, 200)
		if err != nil {
			return nil, err
		}
		shell = append(shell, d)
	}
	for _, id := range ids {
		d, err := b.call(ctx, "DELETE", "/api/playground/container?sessionId="+id, nil, 200)
		if err != nil {
			return nil, err
		}
		destroy = append(destroy, d)
	}
	e0, h := stats("bare node -e 0 (host)", bareE0, nil, ""), stats("bare node hello.js (host)", bareHello, nil, "")
	return []result{
		e0, h,
		stats("session create", create, bareE0, "node -e 0"),
		stats("execute hello.js (HTTP)", execute, bareHello, "node hello.js"),
		stats("shell `true` (HTTP)", shell, bareE0, "node -e 0"),
		stats("session destroy", destroy, bareE0, "node -e 0"),
	}, nil
}

// call makes one API request, checks its status and returns its wall time.
func (b *bench) call(ctx context.Context, method, path string, body any, want int) (time.Duration, error) {
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != want {
		return 0, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	return d, nil
}

func timeCmd(ctx context.Context, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	err := exec.CommandContext(ctx, name, args...).Run()
	return time.Since(start), err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// stats summarises runs and, given paired baseline runs, the ratio of medians.
func stats(name string, runs, baseline []time.Duration, baseName string) result {
	med, p95 := percentiles(runs)
	r := result{Name: name, Runs: len(runs), MedianMs: ms(med), P95Ms: ms(p95)}
	if len(baseline) > 0 {
		bmed, _ := percentiles(baseline)
		r.Baseline, r.Ratio = baseName, float64(med)/float64(bmed)
	}
	return r
}

func percentiles(runs []time.Duration) (median, p95 time.Duration) {
	s := slices.Clone(runs)
	slices.Sort(s)
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[min(len(s)-1, (len(s)*95+99)/100-1)]
}
