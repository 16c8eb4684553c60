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

	"github.com/servcraft/servcraftd/runtime"
)

type result struct {
	Name     string  `json:"name"`
	Runs     int     `json:"runs"`
	MedianMs float64 `json:"medianMs"`
	P95Ms    float64 `json:"p95Ms"`
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Unit     string  `json:"unit,omitempty"` // "" is milliseconds; "/s" is a rate
}

type bench struct {
	lastTiming         string // the Server-Timing header of the last answer
	url, coldURL       string
	noRunnersURL       string
	client             *http.Client
	prefix             string
	node               string
	n                  int
	quick, install     bool
	address, namespace string
	image              string
	clusterOwnerURL    string      // cluster.go: a cluster node and the session's owner
	clusterPeerURL     string      // another node of the same cluster
	created            [][2]string // base URL, sessionId
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "servcraftd base URL (loopback); its warm pool serves the pooled creates")
	coldURL := flag.String("cold-url", "", "a second servcraftd without a warm pool, for cold creates (default: -url)")
	noRunnersURL := flag.String("no-runners-url", "", "a servcraftd started with --runners=false, for throughput without runners (empty: skip those rows)")
	address := flag.String("containerd-address", "", "containerd socket for the bare create+start and `ctr run --rm` baselines (empty: skip them)")
	namespace := flag.String("namespace", "servcraft-bench", "containerd namespace for the baselines (one holding the image)")
	image := flag.String("image", runtime.DefaultConfig().Image.FallbackRef, "image for the baselines")
	n := flag.Int("n", 20, "runs per measurement")
	quick := flag.Bool("quick", false, "few runs, for a smoke check (about two minutes)")
	install := flag.Bool("install", false, "also install fastify cold and cached (reaches the package registry)")
	asJSON := flag.Bool("json", false, "print JSON instead of a table")
	densityN := flag.Int("density", 0, "instead of the rest, create this many idle sessions on -url (a daemon of its own) and report create and execute p50 at 10, 100 and N, "+
		"disk and memory (PSS) per idle session and the time to destroy them (needs root)")
	densityNamespace := flag.String("density-namespace", "servcraft-bench-dense", "containerd namespace of the -url daemon, for -density")
	densityHostDir := flag.String("density-host-dir", ".", "a folder on the filesystem holding containerd's root and the daemon's state folder, for -density's disk rows")
	densityPool := flag.String("density-pool", "", "the -url daemon's workspace folder on btrfs, for -density's per-session disk rows from the qgroups (empty: not measured)")
	node := flag.String("node", "node", "host node binary for the baselines")
	clusterOwner := flag.String("cluster-owner-url", "", "a cluster-mode servcraftd (loopback) to hold a session: with -cluster-peer-url, times the hop of a non-owner node")
	clusterPeer := flag.String("cluster-peer-url", "", "another node of the same cluster, through which the owner's session is executed")
	flag.Parse()
	if *quick {
		*n = 5
	}
	if (*clusterOwner == "") != (*clusterPeer == "") {
		fmt.Fprintln(os.Stderr, "servcraft-bench: -cluster-owner-url and -cluster-peer-url go together")
		os.Exit(2)
	}
	if *coldURL == "" {
		*coldURL = *url
	}
	b := &bench{url: strings.TrimRight(*url, "/"), coldURL: strings.TrimRight(*coldURL, "/"), noRunnersURL: strings.TrimRight(*noRunnersURL, "/"),
		client: &http.Client{Timeout: 5 * time.Minute}, prefix: fmt.Sprintf("bench-%d", time.Now().UnixNano()),
		node: *node, n: *n, quick: *quick, install: *install,
		address: *address, namespace: *namespace, image: *image,
		clusterOwnerURL: strings.TrimRight(*clusterOwner, "/"), clusterPeerURL: strings.TrimRight(*clusterPeer, "/")}
	loadAtStart, _ := os.ReadFile("/proc/loadavg")
	var results []result
	var err error
	if *densityN > 0 {
		results, err = b.density(context.Background(), *densityN, *densityNamespace, *densityHostDir, *densityPool)
		b.cleanup(context.Background())
	} else {
		results, err = b.run(context.Background())
	}
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
	// A loaded machine slows the baselines and flatters every ratio: say how loaded it was.
	fmt.Printf("load average at start: %s", loadAtStart)
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average at end:   %s", la)
	}
	fmt.Printf("%-44s %5s %10s %10s  %s\n", "measurement", "runs", "median", "p95", "ratio to baseline (medians)")
	for _, r := range results {
		ratio := ""
		if r.Baseline != "" {
			ratio = fmt.Sprintf("%.2fx %s", r.Ratio, r.Baseline)
		}
		unit := "ms"
		if r.Unit != "" {
			unit = r.Unit
		}
		fmt.Printf("%-44s %5d %8.2f%-2s %8.2f%-2s  %s\n", r.Name, r.Runs, r.MedianMs, unit, r.P95Ms, unit, ratio)
	}
}

const hello = `console.log("hello")`

func (b *bench) run(ctx context.Context) ([]result, error) {
	dir, err := os.MkdirTemp("", "servcraft-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	helloFile := filepath.Join(dir, "hello.js")
	if err := os.WriteFile(helloFile, []byte(hello), 0o644); err != nil {
		return nil, err
	}
	var out []result
	add := func(r result) { out = append(out, r) }
	defer b.cleanup(context.WithoutCancel(ctx))

	// Baselines and measured calls interleave, so drift hits both alike.
	var bareE0, bareHello, bareCtr, ctrRun, cold, pooled, execute, shell []time.Duration
	for i := range b.n {
		d, err := timeCmd(ctx, b.node, "-e", "0")
		if err != nil {
			return nil, fmt.Errorf("baseline node -e 0: %w", err)
		}
		bareE0 = append(bareE0, d)
		if b.address != "" {
			d, err := b.bareContainer(ctx, i)
			if err != nil {
				return nil, fmt.Errorf("baseline containerd create+start: %w", err)
			}
			bareCtr = append(bareCtr, d)
		}
		d, err = b.create(ctx, b.coldURL, fmt.Sprintf("cold-%d", i))
		if err != nil {
			return nil, err
		}
		cold = append(cold, d)
		if b.url != b.coldURL {
			time.Sleep(300 * time.Millisecond) // let the pool refill; not timed
			d, err = b.create(ctx, b.url, fmt.Sprintf("pool-%d", i))
			if err != nil {
				return nil, err
			}
			pooled = append(pooled, d)
		}
	}
	add(stats("bare node -e 0 (host)", bareE0, nil, ""))
	if len(bareCtr) > 0 {
		add(stats("bare containerd create+start (same image)", bareCtr, nil, ""))
		add(stats("session create, cold", cold, bareCtr, "bare containerd create+start"))
	} else {
		add(stats("session create, cold", cold, bareE0, "node -e 0"))
	}
	if len(pooled) > 0 {
		add(stats("session create, warm pool", pooled, cold, "cold create"))
		// A fork of a session holding the starter's node_modules; on a btrfs
		// pool a snapshot moved onto a warm container.
		var forks []time.Duration
		for i := range b.n {
			time.Sleep(300 * time.Millisecond) // let the pool refill; not timed
			d, err := b.fork(ctx, b.url, fmt.Sprintf("fork-%d", i), b.prefix+"-pool-0")
			if err != nil {
				return nil, err
			}
			forks = append(forks, d)
			if err := b.destroyLast(ctx); err != nil { // not timed: the destroy row is the sessions kept
				return nil, err
			}
		}
		add(stats("session fork (starter with node_modules), warm pool", forks, cold, "cold create"))
	}

	session := b.prefix + "-pool-0"
	if b.url == b.coldURL {
		session = b.prefix + "-cold-0"
	}
	for range b.n {
		d, err := timeCmd(ctx, b.node, helloFile)
		if err != nil {
			return nil, fmt.Errorf("baseline node hello.js: %w", err)
		}
		bareHello = append(bareHello, d)
		if b.address != "" {
			d, err := b.ctrRun(ctx, dir)
			if err != nil {
				return nil, fmt.Errorf("baseline ctr run --rm: %w", err)
			}
			ctrRun = append(ctrRun, d)
		}
		d, err = b.call(ctx, b.url, "POST", "/api/playground/execute", map[string]any{"sessionId": session, "code": hello}, 200)
		if err != nil {
			return nil, err
		}
		execute = append(execute, d)
		d, err = b.call(ctx, b.url, "POST", "/api/playground/shell", map[string]any{"sessionId": session, "command": "true"}, 200)
		if err != nil {
			return nil, err
		}
		shell = append(shell, d)
	}
	add(stats("bare node hello.js (host)", bareHello, nil, ""))
	add(stats("execute hello.js over HTTP", execute, bareHello, "node hello.js"))
	if len(ctrRun) > 0 {
		add(stats("ctr run --rm node hello.js (container per run)", ctrRun, bareHello, "node hello.js"))
	}
	add(stats("shell `true` over HTTP", shell, bareE0, "node -e 0"))

	// What clients do. Back to back: the timed execute is sent the moment
	// the answer to an untimed one arrives (a test runner, an agent, a fast
	// typist); spaced: half a second after the last answer; a stream: ten
	// in a row, each sent as the last answer arrives, all timed (what a
	// session sustains). Each round pairs with a bare `node hello.js` run
	// just before it.
	clientRows := []struct {
		name, file string
		pause      time.Duration
		burst      int // executes in a row per round; all but the untimed primer of a pair are timed
		primed     bool
	}{
		{"execute hello.js, back to back", "index.js", 0, 1, true},
		{"execute hello.ts, back to back", "index.ts", 0, 1, true},
		{"execute hello.js, spaced 0.5 s", "index.js", 500 * time.Millisecond, 1, false},
		{"execute hello.ts, spaced 0.5 s", "index.ts", 500 * time.Millisecond, 1, false},
		{"execute hello.js, stream of 10", "index.js", 500 * time.Millisecond, 10, false},
		{"execute hello.ts, stream of 10", "index.ts", 500 * time.Millisecond, 10, false},
		// An ES module, as the ts template's programs are (runs on the ES-module runner).
		{"execute hello.mts, back to back", "index.mts", 0, 1, true},
		{"execute hello.mts, spaced 0.5 s", "index.mts", 500 * time.Millisecond, 1, false},
	}
	for _, row := range clientRows {
		var bare, runs []time.Duration
		rounds := b.n
		if row.burst > 1 {
			rounds = max(2, b.n/5)
		}
		for range rounds {
			d, err := timeCmd(ctx, b.node, helloFile)
			if err != nil {
				return nil, fmt.Errorf("baseline node hello.js: %w", err)
			}
			bare = append(bare, d)
			time.Sleep(row.pause) // not timed
			body := map[string]any{"sessionId": session, "code": hello, "filename": row.file}
			if row.primed {
				if _, err := b.call(ctx, b.url, "POST", "/api/playground/execute", body, 200); err != nil {
					return nil, fmt.Errorf("%s: %w", row.name, err)
				}
			}
			for range row.burst {
				d, err = b.call(ctx, b.url, "POST", "/api/playground/execute", body, 200)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", row.name, err)
				}
				runs = append(runs, d)
			}
		}
		add(stats(row.name, runs, bare, "node hello.js"))
	}

	// A terminal-like client: shell `true` back to back (sent as the answer
	// to an untimed one arrives) and spaced, each round paired with a bare
	// `node -e 0` run just before it.
	for _, pause := range []time.Duration{0, 500 * time.Millisecond} {
		var bare, runs []time.Duration
		body := map[string]any{"sessionId": session, "command": "true"}
		for range b.n {
			d, err := timeCmd(ctx, b.node, "-e", "0")
			if err != nil {
				return nil, fmt.Errorf("baseline node -e 0: %w", err)
			}
			bare = append(bare, d)
			time.Sleep(pause) // not timed
			if pause == 0 {
				if _, err := b.call(ctx, b.url, "POST", "/api/playground/shell", body, 200); err != nil {
					return nil, fmt.Errorf("shell: %w", err)
				}
			}
			d, err = b.call(ctx, b.url, "POST", "/api/playground/shell", body, 200)
			if err != nil {
				return nil, fmt.Errorf("shell: %w", err)
			}
			runs = append(runs, d)
		}
		name := "shell `true`, back to back"
		if pause > 0 {
			name = "shell `true`, spaced 0.5 s"
		}
		add(stats(name, runs, bare, "node -e 0"))
	}

	// A burst of creates a second apart: the pool must keep up.
	if b.url != b.coldURL {
		var burst, bare []time.Duration
		for i := range 10 {
			d, err := timeCmd(ctx, b.node, "-e", "0")
			if err != nil {
				return nil, fmt.Errorf("baseline node -e 0: %w", err)
			}
			bare = append(bare, d)
			time.Sleep(time.Second - d) // one create a second; not timed
			d, err = b.create(ctx, b.url, fmt.Sprintf("burst-%d", i))
			if err != nil {
				return nil, err
			}
			burst = append(burst, d)
		}
		add(stats("10 creates 1 s apart (pool)", burst, bare, "node -e 0"))
	}

	// The daemon's own cost per request: HTTP alone, then HTTP + store + containerd round trips.
	var health, info []time.Duration
	for range b.n {
		d, err := b.call(ctx, b.url, "GET", "/healthz", nil, 200)
		if err != nil {
			return nil, err
		}
		health = append(health, d)
		d, err = b.call(ctx, b.url, "GET", "/api/playground/container?sessionId="+session, nil, 200)
		if err != nil {
			return nil, err
		}
		info = append(info, d)
	}
	add(stats("daemon overhead: GET /healthz (HTTP only)", health, nil, ""))
	add(stats("daemon overhead: GET container (store+containerd)", info, health, "HTTP only"))

	tree := syncTree(200)
	var syncs []time.Duration
	for range b.n {
		d, err := b.call(ctx, b.url, "POST", "/api/playground/sync", map[string]any{"sessionId": session, "files": tree}, 200)
		if err != nil {
			return nil, err
		}
		syncs = append(syncs, d)
	}
	add(stats("sync of a 200-file tree", syncs, nil, ""))

	if b.install {
		var installs []time.Duration
		for i := range 2 {
			id := fmt.Sprintf("install-%d", i)
			if _, err := b.create(ctx, b.coldURL, id); err != nil {
				return nil, err
			}
			d, err := b.call(ctx, b.coldURL, "POST", "/api/playground/install", map[string]any{"sessionId": b.prefix + "-" + id, "packages": []string{"fastify@4"}}, 200)
			if err != nil {
				return nil, err
			}
			installs = append(installs, d)
		}
		add(result{Name: "install fastify@4, first (cache as found)", Runs: 1, MedianMs: ms(installs[0]), P95Ms: ms(installs[0])})
		add(result{Name: "install fastify@4, second session (cached)", Runs: 1, MedianMs: ms(installs[1]), P95Ms: ms(installs[1]),
			Baseline: "first install", Ratio: float64(installs[1]) / float64(installs[0])})
	}

	pv, err := b.preview(ctx, session)
	if err != nil {
		return nil, err
	}
	out = append(out, pv...)

	st, err := b.starter(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, st...)

	tp, err := b.throughput(ctx, helloFile)
	if err != nil {
		return nil, err
	}
	out = append(out, tp...)

	mem, err := b.runnerMemory(ctx, b.namespace)
	if err != nil {
		return nil, err
	}
	out = append(out, mem...)

	if b.clusterOwnerURL != "" {
		cl, err := b.clusterHop(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, cl...)
	}

	var destroy []time.Duration
	for _, c := range b.created {
		d, err := b.call(ctx, c[0], "DELETE", "/api/playground/container?sessionId="+c[1], nil, 200)
		if err != nil {
			return nil, err
		}
		destroy = append(destroy, d)
	}
	b.created = nil
	add(stats("session destroy", destroy, bareE0, "node -e 0"))
	return out, nil
}

// create makes session prefix-name on base and remembers it for destroy.
func (b *bench) create(ctx context.Context, base, name string) (time.Duration, error) {
	id := b.prefix + "-" + name
	d, err := b.call(ctx, base, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}, 201)
	if err == nil {
		b.created = append(b.created, [2]string{base, id})
	}
	return d, err
}

// fork makes session prefix-name on base a fork of session from.
func (b *bench) fork(ctx context.Context, base, name, from string) (time.Duration, error) {
	id := b.prefix + "-" + name
	d, err := b.call(ctx, base, "POST", "/api/playground/container", map[string]any{"sessionId": id, "from": from}, 201)
	if err == nil {
		b.created = append(b.created, [2]string{base, id})
	}
	return d, err
}

// destroyLast destroys the session made last.
func (b *bench) destroyLast(ctx context.Context) error {
	c := b.created[len(b.created)-1]
	if _, err := b.call(ctx, c[0], "DELETE", "/api/playground/container?sessionId="+c[1], nil, 200); err != nil {
		return err
	}
	b.created = b.created[:len(b.created)-1]
	return nil
}

// cleanup destroys what a failed run left.
func (b *bench) cleanup(ctx context.Context) {
	for _, c := range b.created {
		_, _ = b.call(ctx, c[0], "DELETE", "/api/playground/container?sessionId="+c[1], nil, 200)
	}
}

// syncTree is n small files in folders of 20, in the frontend's format.
func syncTree(n int) []map[string]any {
	var folders []map[string]any
	for f := 0; f*20 < n; f++ {
		var files []map[string]any
		for i := 0; i < 20 && f*20+i < n; i++ {
			files = append(files, map[string]any{"name": fmt.Sprintf("file%02d.js", i), "type": "file",
				"content": fmt.Sprintf("module.exports = %d;\n", f*20+i)})
		}
		folders = append(folders, map[string]any{"name": fmt.Sprintf("dir%02d", f), "type": "folder", "children": files})
	}
	return folders
}

// previewServer answers GET / with "ok"; inside is the same request made
// from inside the session, timed there (median of 30, in ms).
const previewServer = `require("http").createServer((q, s) => s.end("ok")).listen(3000, "127.0.0.1")`
const previewInside = `(async () => { const t = []; for (let i = 0; i < 30; i++) { const s = performance.now();
  await (await fetch("http://127.0.0.1:3000/")).text(); t.push(performance.now() - s); }
  t.sort((a, b) => a - b); console.log(t[15]); })()`

// preview times GET / of a server in the session through the preview
// proxy, against the same request made inside the session.
func (b *bench) preview(ctx context.Context, session string) ([]result, error) {
	if _, err := b.call(ctx, b.url, "POST", "/api/playground/shell", map[string]any{"sessionId": session,
		"command": "node -e '" + previewServer + "'", "background": true}, 200); err != nil {
		return nil, err
	}
	var through []time.Duration
	for len(through) < b.n {
		start := time.Now()
		resp, err := b.client.Get(b.url + "/p/" + session + "/")
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode == http.StatusServiceUnavailable && len(through) == 0 {
			time.Sleep(100 * time.Millisecond) // the server is still starting
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("preview: status %d", resp.StatusCode)
		}
		through = append(through, d)
	}
	var inside struct {
		Output string `json:"output"`
	}
	if err := b.postJSON(ctx, b.url, "/api/playground/execute", map[string]any{"sessionId": session, "code": previewInside}, http.StatusOK, &inside); err != nil {
		return nil, err
	}
	var insideMs float64
	if _, err := fmt.Sscan(inside.Output, &insideMs); err != nil {
		return nil, fmt.Errorf("inside timing %q: %w", inside.Output, err)
	}
	r := stats("GET through the preview proxy", through, nil, "")
	return []result{
		{Name: "GET from inside the session (fetch)", Runs: 30, MedianMs: insideMs, P95Ms: insideMs},
		{Name: r.Name, Runs: r.Runs, MedianMs: r.MedianMs, P95Ms: r.P95Ms, Baseline: "inside", Ratio: r.MedianMs / insideMs},
	}, nil
}

// postJSON posts body, checks the answer's status is want and decodes it into out.
func (b *bench) postJSON(ctx context.Context, base, path string, body any, want int, out any) error {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", base+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		data, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: status %d: %s", path, resp.StatusCode, data)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// throughput runs hello.js executions with 1, 4 and 16 concurrent clients over
// up to 16 sessions, against the host's own parallel `node hello.js`, with
// runners and (given -no-runners-url) without.
func (b *bench) throughput(ctx context.Context, helloFile string) ([]result, error) {
	levels := []int{1, 4, 16}
	perLevel := 48
	if b.quick {
		levels, perLevel = []int{1, 4}, 8
	}
	bases := []string{b.coldURL}
	if b.noRunnersURL != "" {
		bases = append(bases, b.noRunnersURL)
	}
	sessions := map[string][]string{}
	for _, base := range bases {
		for i := range levels[len(levels)-1] {
			name := fmt.Sprintf("tp-%d", i)
			if _, err := b.create(ctx, base, name); err != nil {
				return nil, err
			}
			sessions[base] = append(sessions[base], b.prefix+"-"+name)
		}
	}
	var out []result
	for _, c := range levels {
		host, err := parallel(c, perLevel, func(int) error { _, err := timeCmd(ctx, b.node, helloFile); return err })
		if err != nil {
			return nil, err
		}
		out = append(out, result{Name: fmt.Sprintf("host node hello.js, %d parallel", c), Runs: perLevel, MedianMs: host, P95Ms: host, Unit: "/s"})
		for _, base := range bases {
			api, err := parallel(c, perLevel, func(i int) error {
				_, err := b.call(ctx, base, "POST", "/api/playground/execute", map[string]any{"sessionId": sessions[base][i%c], "code": hello}, 200)
				return err
			})
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("executions over HTTP, %d clients", c)
			if base == b.noRunnersURL {
				name += ", runners off"
			}
			out = append(out, result{Name: name, Runs: perLevel, MedianMs: api, P95Ms: api, Unit: "/s", Baseline: "host ceiling", Ratio: api / host})
		}
	}
	return out, nil
}

// parallel runs total calls of fn on c workers and returns calls per second.
func parallel(c, total int, fn func(i int) error) (float64, error) {
	jobs := make(chan int)
	errc := make(chan error, c)
	start := time.Now()
	for range c {
		go func() {
			for i := range jobs {
				if err := fn(i); err != nil {
					errc <- err
					for range jobs {
					}
					return
				}
			}
			errc <- nil
		}()
	}
	for i := range total {
		jobs <- i
	}
	close(jobs)
	var first error
	for range c {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return float64(total) / time.Since(start).Seconds(), first
}

// call makes one API request, checks its status and returns its wall time.
func (b *bench) call(ctx context.Context, base, method, path string, body any, want int) (time.Duration, error) {
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, r)
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
	b.lastTiming = resp.Header.Get("Server-Timing")
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
