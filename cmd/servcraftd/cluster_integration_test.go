package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/store/placement/placementtest"
)

// clusterNode is one servcraftd process of the test cluster, on an address
// fixed at its first start (it is advertised in etcd and in HAProxy's config).
type clusterNode struct {
	*apitest.Daemon
	id, url string
}

// call sends a JSON request and decodes the JSON answer.
func call(t *testing.T, method, url string, body any, hdr ...string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(data, &out)
	if out == nil {
		out = map[string]any{"raw": string(data)}
	}
	return resp.StatusCode, out, resp.Header
}

// TestClusterBehindHAProxy runs a real etcd, three daemons (own namespaces,
// state folders, ports, node ids) on the shared containerd and a real
// HAProxy in front, all on loopback, and proves the cluster's promises.
func TestClusterBehindHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		haproxy = "/usr/sbin/haproxy"
		if _, err := os.Stat(haproxy); err != nil {
			placementtest.Unavailable(t, "haproxy not installed (scripts/deps-cluster.sh)")
		}
	}
	etcd := placementtest.StartEtcd(t)
	envs := map[string]*runtimetest.Env{}
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster-secret")
	os.WriteFile(secret, []byte("integration-test-cluster-secret\n"), 0o600)
	var nodes []*clusterNode
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		ns := fmt.Sprintf("servcraft-clustertest-%s", id)
		env := runtimetest.Start(t, ns)
		envs[id] = env
		port := placementtest.FreePort(t)
		state := filepath.Join(dir, id)
		os.MkdirAll(state, 0o755)
		n := &clusterNode{id: id, url: fmt.Sprintf("http://127.0.0.1:%d", port),
			Daemon: apitest.NewDaemon(t, apitest.Binary(t, filepath.Join("..", "..")), "--state-dir", state,
				"--containerd-address", env.Address, "--namespace", ns, "--pull=false",
				"--image", runtimetest.ImageRef, "--fallback-archive", env.Image.FallbackArchive,
				"--toolchain-dir", env.ToolchainDir, "--init", env.InitPath, "--spawner", env.SpawnerPath, "--destroy-on-shutdown",
				"--create-rate", "0", "--client-exec-rate", "0", "--exec-rate", "0", "--install-rate", "0",
				"--max-concurrent-execs", "0", "--pool-size", "0", "--max-sessions", "40",
				"--workspace-size", "64MiB",
				"--registry", "http://127.0.0.1:9", "--trusted-proxies", "127.0.0.2", "--shutdown-timeout", "10s",
				"--node-id", id, "--cluster-etcd", etcd, "--cluster-secret-file", secret,
				"--cluster-lease-ttl", "4s", "--cluster-sync-interval", "1s")}
		n.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		nodes = append(nodes, n)
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(n.Start)
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Stop(syscall.SIGTERM) // --destroy-on-shutdown removes what is left
		}
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("%s log:\n%s", n.id, apitest.Tail(n.Log(), 4000))
			}
		}
	})
	lbPort := placementtest.FreePort(t)
	cfg := fmt.Sprintf(`global
    maxconn 1024
defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:%d
    default_backend nodes
backend nodes
    balance roundrobin
    # From an address of its own, the only one the nodes trust with
    # X-Forwarded-For: a client on 127.0.0.1 cannot pick its identity.
    source 127.0.0.2
    option httpchk GET /readyz
    default-server inter 1s fall 2 rise 1
`, lbPort)
	for _, n := range nodes {
		cfg += fmt.Sprintf("    server %s %s check\n", n.id, strings.TrimPrefix(n.url, "http://"))
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cfgPath, []byte(cfg), 0o644)
	lb := exec.Command(haproxy, "-db", "-f", cfgPath)
	lbLog, _ := os.Create(filepath.Join(dir, "haproxy.log"))
	lb.Stdout, lb.Stderr = lbLog, lbLog
	if err := lb.Start(); err != nil {
		t.Fatalf("haproxy: %v", err)
	}
	t.Cleanup(func() { lb.Process.Kill(); lb.Wait() })
	lbURL := fmt.Sprintf("http://127.0.0.1:%d", lbPort)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get(lbURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(lbLog.Name())
			t.Fatalf("haproxy not answering:\n%s", data)
		}
		time.Sleep(100 * time.Millisecond) // polling haproxy's start
	}
	byID := map[string]*clusterNode{}
	for _, n := range nodes {
		byID[n.id] = n
	}
	entries := []string{lbURL, nodes[0].url, nodes[1].url, nodes[2].url}
	pg := "/api/playground"
	// Client sessions' containers only: a node also makes a dependency
	// layer's builder for a while after it starts (its record is internal).
	sessionContainers := func() []string {
		var out []string
		for _, e := range envs {
			for _, id := range e.Containers(t) {
				c, err := e.Client.LoadContainer(e.Context(t), id)
				if err != nil {
					continue // gone meanwhile
				}
				labels, _ := c.Labels(e.Context(t))
				if sid := labels[runtime.LabelSession]; !runtime.IsInternal(sid) {
					out = append(out, id+" "+sid)
				}
			}
		}
		return out
	}
	totalContainers := func() int { return len(sessionContainers()) }

	// Sessions created through every entry; the create answer names the owner.
	owner := map[string]string{}
	var ids []string
	const sessions = 20
	for i := range sessions {
		id := fmt.Sprintf("session-%d-cl", i)
		status, out, hdr := call(t, "POST", entries[i%len(entries)]+pg+"/container", map[string]any{"sessionId": id, "projectType": "js"})
		if status != 201 || out["success"] != true || hdr.Get("X-Servcraft-Node") == "" {
			t.Fatalf("create %s via %s: %d %v node %q", id, entries[i%len(entries)], status, out, hdr.Get("X-Servcraft-Node"))
		}
		owner[id] = hdr.Get("X-Servcraft-Node")
		ids = append(ids, id)
	}
	if got := totalContainers(); got != sessions {
		t.Fatalf("%d containers for %d sessions", got, sessions)
	}

	// Every endpoint, for every session, through the LB and each node.
	for _, id := range ids {
		for j, e := range entries {
			if status, out, _ := call(t, "GET", e+pg+"/container?sessionId="+id, nil); status != 200 || out["exists"] != true {
				t.Fatalf("info %s via %s: %d %v", id, e, status, out)
			}
			status, out, _ := call(t, "POST", e+pg+"/execute", map[string]any{"sessionId": id, "code": fmt.Sprintf("console.log(%d*7)", j)})
			if status != 200 || out["output"] != fmt.Sprintf("%d\n", j*7) {
				t.Fatalf("execute %s via %s: %d %v", id, e, status, out)
			}
			status, out, _ = call(t, "POST", e+pg+"/shell", map[string]any{"sessionId": id, "command": "echo shell-$((6*7))"})
			if status != 200 || out["output"] != "shell-42\n" {
				t.Fatalf("shell %s via %s: %d %v", id, e, status, out)
			}
			name := fmt.Sprintf("f%d.txt", j)
			status, out, _ = call(t, "POST", e+pg+"/sync", map[string]any{"sessionId": id, "files": []map[string]any{{"name": name, "type": "file", "content": "via " + e}}})
			if status != 200 || out["success"] != true {
				t.Fatalf("sync %s via %s: %d %v", id, e, status, out)
			}
			status, out, _ = call(t, "GET", e+pg+"/files?sessionId="+id, nil)
			if status != 200 || !strings.Contains(fmt.Sprint(out["files"]), "via "+e) {
				t.Fatalf("files %s via %s: %d, written file missing", id, e, status)
			}
			// A 60 KiB body whose sessionId comes after the code.
			big := `{"code":"//` + strings.Repeat("x", 60<<10) + `\nconsole.log('big')","sessionId":"` + id + `"}`
			if status, out, _ := call(t, "POST", e+pg+"/execute", big); status != 200 || out["output"] != "big\n" {
				t.Fatalf("60 KiB execute %s via %s: %d %v", id, e, status, out)
			}
		}
	}

	// Streams, WebSockets and previews through a node that is not the owner.
	id := ids[0]
	var other *clusterNode
	for _, n := range nodes {
		if n.id != owner[id] {
			other = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Run("streamed execute is not buffered by the hop", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"sessionId": id, "code": "console.log('first'); setTimeout(() => console.log('second'), 2000)"})
		req, _ := http.NewRequestWithContext(ctx, "POST", other.url+pg+"/execute", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var firstAt time.Duration
		var all strings.Builder
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if firstAt == 0 && strings.Contains(sc.Text(), "first") {
				firstAt = time.Since(start)
			}
		}
		if firstAt == 0 || !strings.Contains(all.String(), "second") {
			t.Fatalf("stream: %s", all.String())
		}
		if total := time.Since(start); total-firstAt < time.Second {
			t.Fatalf("first chunk came %s after the start, the end %s: the stream was buffered", firstAt, total)
		}
	})
	t.Run("fork through another node is made on the source's owner", func(t *testing.T) {
		fork := id + "-fork"
		status, out, hdr := call(t, "POST", other.url+pg+"/container", map[string]any{"sessionId": fork, "from": id})
		if status != 201 || hdr.Get("X-Servcraft-Node") != owner[id] || hdr.Get("X-Servcraft-Forwarded-To") != owner[id] {
			t.Fatalf("fork of %s (on %s) via %s: %d %v, made on %q", id, owner[id], other.id, status, out, hdr.Get("X-Servcraft-Node"))
		}
		// The files every entry synced into the source are in the fork.
		status, out, _ = call(t, "GET", lbURL+pg+"/files?sessionId="+fork, nil)
		for _, e := range entries {
			if status != 200 || !strings.Contains(fmt.Sprint(out["files"]), "via "+e) {
				t.Fatalf("files of the fork via the LB: %d, the source's file written via %s missing", status, e)
			}
		}
		if status, out, _ := call(t, "POST", other.url+pg+"/container", map[string]any{"sessionId": id + "-nofork", "from": "session-0-nowhere"}); status != 404 {
			t.Fatalf("fork of a session no node has: %d %v, want 404", status, out)
		}
		if status, out, _ := call(t, "DELETE", lbURL+pg+"/container?sessionId="+fork, nil); status != 200 {
			t.Fatalf("destroy the fork: %d %v", status, out)
		}
	})
	t.Run("background, SSE logs and preview", func(t *testing.T) {
		server := `node -e 'require("http").createServer((q,s)=>s.end("preview-ok "+q.url)).listen(3000,()=>console.log("listening on 3000"))'`
		status, out, _ := call(t, "POST", other.url+pg+"/shell", map[string]any{"sessionId": id, "command": server, "background": true})
		if status != 200 || out["background"] != true {
			t.Fatalf("background: %d %v", status, out)
		}
		pid := fmt.Sprint(out["pid"])
		req, _ := http.NewRequestWithContext(ctx, "GET", other.url+pg+"/processes/logs?sessionId="+id+"&id="+pid, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		found := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on 3000") {
				found = true
				break
			}
		}
		resp.Body.Close()
		if !found {
			t.Fatal("SSE logs through the hop never showed the server's line")
		}
		for _, e := range entries {
			resp, err := http.Get(e + pg + "/preview/" + id + "/hello")
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(string(data), "preview-ok /hello") {
				t.Fatalf("preview via %s: %d %q", e, resp.StatusCode, data)
			}
		}
	})
	t.Run("terminal WebSocket", func(t *testing.T) {
		for _, e := range []string{lbURL, other.url} {
			ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e, "http")+pg+"/terminal?sessionId="+id, nil)
			if err != nil {
				t.Fatalf("terminal via %s: %v", e, err)
			}
			ws.Write(ctx, websocket.MessageBinary, []byte("echo term-$((40+2))\n"))
			var got strings.Builder
			for !strings.Contains(got.String(), "term-42") {
				_, data, err := ws.Read(ctx)
				if err != nil {
					t.Fatalf("terminal via %s: %v (got %q)", e, err, got.String())
				}
				got.Write(data)
			}
			ws.Close(websocket.StatusNormalClosure, "")
		}
	})
	t.Run("preview WebSocket", func(t *testing.T) {
		wsServer := `node -e 'const h=require("http"),c=require("crypto");const s=h.createServer();s.on("upgrade",(q,k)=>{const a=c.createHash("sha1").update(q.headers["sec-websocket-key"]+"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");k.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+a+"\r\n\r\n");k.write(Buffer.from([0x81,7,...Buffer.from("ws-ok-1")]))});s.listen(3001,()=>console.log("ws up"))'`
		if status, out, _ := call(t, "POST", other.url+pg+"/shell", map[string]any{"sessionId": id, "command": wsServer, "background": true}); status != 200 {
			t.Fatalf("ws server: %d %v", status, out)
		}
		var ws *websocket.Conn
		for deadline := time.Now().Add(15 * time.Second); ; {
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(other.url, "http")+pg+"/preview/"+id+"/?port=3001", nil)
			if err == nil {
				ws = c
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("preview WebSocket: %v", err)
			}
			time.Sleep(200 * time.Millisecond) // polling for the server in the session to listen
		}
		_, data, err := ws.Read(ctx)
		if err != nil || string(data) != "ws-ok-1" {
			t.Fatalf("preview WebSocket read %q %v", data, err)
		}
		ws.CloseNow()
	})

	t.Run("install is forwarded", func(t *testing.T) {
		// The registry is a closed loopback port: the owner's install proxy
		// answers upstream_failed; what matters is that the owner answered.
		status, out, hdr := call(t, "POST", other.url+pg+"/install", map[string]any{"sessionId": id, "packages": []string{"left-pad"}})
		if hdr.Get("X-Servcraft-Forwarded-To") != owner[id] || status == 404 || out["code"] == "not_found" {
			t.Fatalf("install via a non-owner: %d %v, forwarded to %q, want the owner %s", status, out, hdr.Get("X-Servcraft-Forwarded-To"), owner[id])
		}
	})
	t.Run("hop cost", func(t *testing.T) {
		median := func(url string) time.Duration {
			var ds []time.Duration
			for range 9 {
				start := time.Now()
				if status, out, _ := call(t, "POST", url+pg+"/execute", map[string]any{"sessionId": id, "code": "1"}); status != 200 {
					t.Fatalf("execute via %s: %d %v", url, status, out)
				}
				ds = append(ds, time.Since(start))
			}
			slices.Sort(ds)
			return ds[len(ds)/2]
		}
		direct, hop := median(byID[owner[id]].url), median(other.url)
		t.Logf("execute: owner %s, through a non-owner %s (ratio %.2f)", direct, hop, float64(hop)/float64(direct))
	})
	t.Run("forged hop header refused", func(t *testing.T) {
		status, out, _ := call(t, "POST", nodes[0].url+pg+"/execute", map[string]any{"sessionId": id, "code": "1"},
			"X-Servcraft-Hop", "v1;n2;"+fmt.Sprint(time.Now().Unix())+";10.1.2.3;"+strings.Repeat("ab", 32))
		if status != 403 {
			t.Fatalf("forged hop: %d %v", status, out)
		}
	})

	t.Run("concurrent creates of one id make one container", func(t *testing.T) {
		before := totalContainers()
		for round := range 20 {
			cid := fmt.Sprintf("race-%d", round)
			var wg sync.WaitGroup
			statuses := make([]int, len(nodes))
			for i, n := range nodes {
				wg.Go(func() {
					statuses[i], _, _ = call(t, "POST", n.url+pg+"/container", map[string]any{"sessionId": cid})
				})
			}
			wg.Wait()
			created := 0
			for _, s := range statuses {
				switch s {
				case 201:
					created++
				case 200, 503: // existing; or still being created on another node (retryable)
				default:
					t.Fatalf("round %d: statuses %v", round, statuses)
				}
			}
			if created != 1 || totalContainers() != before+1 {
				t.Fatalf("round %d: %d created (statuses %v), %d containers, want exactly one new", round, created, statuses, totalContainers()-before)
			}
			if status, out, _ := call(t, "DELETE", lbURL+pg+"/container?sessionId="+cid, nil); status != 200 {
				t.Fatalf("round %d: delete %d %v", round, status, out)
			}
			if totalContainers() != before {
				t.Fatalf("round %d: container kept after delete", round)
			}
		}
	})

	t.Run("drain", func(t *testing.T) {
		d := nodes[2]
		if status, out, _ := call(t, "POST", d.url+"/api/admin/drain", nil); status != 200 {
			t.Fatalf("drain: %d %v", status, out)
		}
		if resp, err := http.Get(d.url + "/readyz"); err != nil || resp.StatusCode != 503 {
			t.Fatalf("readyz of a draining node: %v %v", resp, err)
		}
		for i := range 3 {
			nid := fmt.Sprintf("after-drain-%d", i)
			status, out, hdr := call(t, "POST", d.url+pg+"/container", map[string]any{"sessionId": nid})
			if status != 201 || hdr.Get("X-Servcraft-Node") == d.id {
				t.Fatalf("create on a draining node: %d %v on %q", status, out, hdr.Get("X-Servcraft-Node"))
			}
			if status, out, _ := call(t, "DELETE", d.url+pg+"/container?sessionId="+nid, nil); status != 200 {
				t.Fatalf("delete %s through the draining node: %d %v", nid, status, out)
			}
		}
		for _, sid := range ids {
			if owner[sid] != d.id {
				continue
			}
			if status, out, _ := call(t, "POST", d.url+pg+"/execute", map[string]any{"sessionId": sid, "code": "console.log('still')"}); status != 200 || out["output"] != "still\n" {
				t.Fatalf("own session on a draining node: %d %v", status, out)
			}
		}
		if status, out, _ := call(t, "GET", d.url+"/status", nil); status != 200 || out["state"] == "accepting" {
			t.Fatalf("status of a draining node: %d %v", status, out)
		}
		if status, _, _ := call(t, "DELETE", d.url+"/api/admin/drain", nil); status != 200 {
			t.Fatalf("undrain: %d", status)
		}
	})

	t.Run("kill -9 of a node: 503 not 404, others unaffected, back on restart", func(t *testing.T) {
		victim := byID[owner[ids[1]]]
		victim.Kill()
		var survivor *clusterNode
		for _, n := range nodes {
			if n != victim {
				survivor = n
				break
			}
		}
		// The killed node's sessions first: all of them are asked before its
		// lease (4 s) can end, however many sessions the live nodes hold.
		for _, sid := range ids {
			if owner[sid] != victim.id {
				continue
			}
			status, out, hdr := call(t, "POST", survivor.url+pg+"/execute", map[string]any{"sessionId": sid, "code": "console.log('alive')"})
			if status != 503 || out["code"] != "owner_unavailable" || hdr.Get("Retry-After") == "" {
				t.Fatalf("session %s of the killed node: %d %v, want 503 owner_unavailable with Retry-After", sid, status, out)
			}
		}
		for _, sid := range ids {
			if owner[sid] == victim.id {
				continue
			}
			status, out, _ := call(t, "POST", survivor.url+pg+"/execute", map[string]any{"sessionId": sid, "code": "console.log('alive')"})
			if status != 200 || out["output"] != "alive\n" {
				t.Fatalf("session %s of a live node: %d %v", sid, status, out)
			}
		}
		victim.Start()
		for _, sid := range ids {
			if owner[sid] != victim.id {
				continue
			}
			status, out, _ := call(t, "POST", survivor.url+pg+"/execute", map[string]any{"sessionId": sid, "code": "console.log('back')"})
			if status != 200 || out["output"] != "back\n" {
				t.Fatalf("session %s after its node restarted: %d %v", sid, status, out)
			}
		}
	})

	for i, sid := range ids {
		if status, out, _ := call(t, "DELETE", entries[i%len(entries)]+pg+"/container?sessionId="+sid, nil); status != 200 {
			t.Fatalf("delete %s: %d %v", sid, status, out)
		}
		if status, _, _ := call(t, "GET", entries[(i+1)%len(entries)]+pg+"/container?sessionId="+sid, nil); status != 404 {
			t.Fatalf("info of deleted %s: %d, want 404", sid, status)
		}
	}
	if got := totalContainers(); got != 0 {
		t.Fatalf("%d containers left after deleting every session: %v", got, sessionContainers())
	}
}
