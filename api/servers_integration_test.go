package api_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
)

// serverJS is a small server with a health route, an echo, and a minimal
// WebSocket echo (handshake and one unmasked text frame back).
const serverJS = `
const http = require("http"), crypto = require("crypto");
const s = http.createServer((req, res) => {
  if (req.url === "/api/health") return res.end(JSON.stringify({ status: "ok" }));
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => res.end(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, test: req.headers["x-test"] || "", body })));
});
s.on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
  sock.on("data", (buf) => {
    const len = buf[1] & 0x7f, mask = buf.subarray(2, 6), data = Buffer.from(buf.subarray(6, 6 + len));
    for (let i = 0; i < data.length; i++) data[i] ^= mask[i % 4];
    sock.write(Buffer.concat([Buffer.from([0x81, data.length]), Buffer.from("echo:" + data)]).subarray(0, 2 + data.length + 5).fill(0x81, 0, 1).fill(data.length + 5, 1, 2));
  });
});
s.listen(3000, "127.0.0.1", () => console.log("listening on 3000"));
`

func get(t *testing.T, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	status, header, body := apitest.NewClient(t, "", nil, api.OpenAPIDocument()).Do("GET", url, nil, hdr...)
	return status, string(body), header
}

func waitStatus(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, body, _ := get(t, url)
		if status == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, want %d: %s", url, status, want, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wsEcho opens a WebSocket through the preview and sends one text frame.
func wsEcho(t *testing.T, srv *httptest.Server, path, msg string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var mask [4]byte
	rand.Read(mask[:])
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask[:]...)
	for i := range len(msg) {
		frame = append(frame, msg[i]^mask[i%4])
	}
	conn.Write(frame)
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, hdr[1]&0x7f)
	io.ReadFull(br, payload)
	return string(payload)
}

func TestServersInTheSandbox(t *testing.T) {
	srv := newServer(t)
	id := "servers-" + t.Name()
	other := "servers-other-" + t.Name()
	for _, s := range []string{id, other} {
		if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": s, "projectType": "js"}); status != 201 {
			t.Fatal("create failed")
		}
	}
	preview := srv.URL + "/api/playground/preview/" + id

	// Nothing listens yet: a page that says so.
	status, body, hdr := get(t, preview+"/api/health")
	if status != 503 || !strings.Contains(body, "Service not ready") || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("before the server: %d %s", status, body)
	}
	if status, body, _ := get(t, srv.URL+"/p/no-such-session/"); status != 404 || !strings.Contains(body, "No such session") {
		t.Fatalf("unknown session: %d %s", status, body)
	}

	status, synced := call(t, srv, "POST", "/api/playground/sync", map[string]any{"sessionId": id,
		"files": []map[string]any{{"name": "server.js", "type": "file", "content": serverJS}}})
	if status != 200 || synced["written"] != 1.0 {
		t.Fatalf("sync: %d %v", status, synced)
	}
	status, started := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "node server.js", "background": true})
	pid, _ := started["pid"].(string)
	if status != 200 || started["success"] != true || started["background"] != true || pid == "" {
		t.Fatalf("background: %d %v", status, started)
	}
	if body := waitStatus(t, preview+"/api/health", 200); body != `{"status":"ok"}` {
		t.Fatalf("health through the preview: %s", body)
	}
	// Method, path, query, body and headers pass; Host is rewritten.
	req, _ := http.NewRequest("POST", srv.URL+"/p/"+id+"/echo?x=1", strings.NewReader("payload"))
	req.Header.Set("X-Test", "yes")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	echoed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"method":"POST","url":"/echo?x=1","host":"127.0.0.1:3000","test":"yes","body":"payload"}`; string(echoed) != want {
		t.Fatalf("echo: %s", echoed)
	}
	if got := wsEcho(t, srv, "/api/playground/preview/"+id+"/ws", "hi"); got != "echo:hi" {
		t.Fatalf("websocket through the preview: %q", got)
	}

	// Isolation: another session's port 3000 and the host's own ports are not reachable.
	if status, _, _ := get(t, srv.URL+"/p/"+other+"/api/health"); status != 503 {
		t.Fatalf("other session's preview reached something: %d", status)
	}
	hostLn, _ := net.Listen("tcp", "127.0.0.1:0")
	defer hostLn.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := hostLn.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	hostPort := hostLn.Addr().(*net.TCPAddr).Port
	if status, _, _ := get(t, fmt.Sprintf("%s/api/health?port=%d", preview, hostPort)); status != 503 {
		t.Fatalf("preview of a host port: %d", status)
	}
	select {
	case <-accepted:
		t.Fatal("the preview reached a port on the host")
	case <-time.After(200 * time.Millisecond):
	}

	// Listing and logs, plain and streamed.
	status, procs := call(t, srv, "GET", "/api/playground/processes?sessionId="+id, nil)
	list, _ := procs["processes"].([]any)
	if status != 200 || len(list) != 1 || list[0].(map[string]any)["running"] != true {
		t.Fatalf("processes: %d %v", status, procs)
	}
	status, logs := call(t, srv, "GET", "/api/playground/processes/logs?sessionId="+id+"&id="+pid, nil)
	if status != 200 || logs["output"] != "listening on 3000\n" {
		t.Fatalf("logs: %d %v", status, logs)
	}
	streamReq, _ := http.NewRequest("GET", srv.URL+"/api/playground/processes/logs?sessionId="+id+"&id="+pid, nil)
	streamReq.Header.Set("Accept", "text/event-stream")
	streamResp, err := http.DefaultClient.Do(streamReq)
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewReader(streamResp.Body)
	first, _ := events.ReadString('\n')
	data, _ := events.ReadString('\n')
	if first != "event: output\n" || !strings.Contains(data, "listening on 3000") {
		t.Fatalf("stream: %q %q", first, data)
	}
	// Kill ends the process and its stream, and leaves nothing running.
	status, killed := call(t, srv, "DELETE", "/api/playground/processes?sessionId="+id+"&id="+pid, nil)
	if status != 200 || killed["process"].(map[string]any)["running"] != false {
		t.Fatalf("kill: %d %v", status, killed)
	}
	rest, _ := io.ReadAll(io.LimitReader(events, 1<<20))
	streamResp.Body.Close()
	if !strings.Contains(string(rest), "event: exit") {
		t.Fatalf("stream did not end with exit: %q", rest)
	}
	if status, _, _ := get(t, preview+"/api/health"); status != 503 {
		t.Fatalf("after kill the preview answers %d", status)
	}
	// Streaming the logs of a process that has ended answers at once and ends with its exit.
	endedReq, _ := http.NewRequest("GET", srv.URL+"/api/playground/processes/logs?sessionId="+id+"&id="+pid, nil)
	endedReq.Header.Set("Accept", "text/event-stream")
	endedClient := &http.Client{Timeout: 5 * time.Second}
	endedResp, err := endedClient.Do(endedReq)
	if err != nil {
		t.Fatal(err)
	}
	ended, err := io.ReadAll(endedResp.Body)
	endedResp.Body.Close()
	if err != nil || !strings.Contains(string(ended), "event: exit") {
		t.Fatalf("stream of an ended process: %q %v", ended, err)
	}
	_, ps := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"})
	if strings.Contains(ps["output"].(string), "server.js") {
		t.Fatalf("server survives the kill:\n%s", ps["output"])
	}
}

func TestStreamingAndStdin(t *testing.T) {
	srv := newServer(t)
	id := "stream-" + t.Name()
	if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatal("create failed")
	}
	status, run := call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id,
		"code": "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(s.toUpperCase()))", "stdin": "hello"})
	if status != 200 || run["output"] != "HELLO\n" {
		t.Fatalf("stdin: %d %v", status, run)
	}
	body, _ := jsonBody(map[string]any{"sessionId": id, "code": "console.log('a'); setTimeout(() => { console.error('b'); process.exit(2) }, 300)"})
	req, _ := http.NewRequest("POST", srv.URL+"/api/playground/execute", body)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	all, _ := io.ReadAll(resp.Body)
	want := []string{"event: stdout\ndata: {\"data\":\"a\\n\"}", "event: stderr\ndata: {\"data\":\"b\\n\"}", "event: exit\ndata: {\"success\":false,\"output\":\"a\\n\",\"error\":\"b\\n\",\"exitCode\":2"}
	last := -1
	for _, w := range want {
		i := strings.Index(string(all), w)
		if i <= last {
			t.Fatalf("stream lacks %q in order:\n%s", w, all)
		}
		last = i
	}
}

// TestShellOnTheRunner: with runners on, shell commands after the first
// run on the session's waiting shell; through the API they answer as before:
// stdin, exit codes, stderr, the working directory and uid, streamed events
// in order, timeouts.
func TestShellOnTheRunner(t *testing.T) {
	srv := startServer(t, nil, func(c *runtime.Config) { c.Runners = true }, nil)
	id := "shell-runner-" + t.Name()
	if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatal("create failed")
	}
	for i := range 3 { // cold, then on the runner
		status, sh := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
			"command": "cat; pwd; id -u; echo oops >&2\nexit 4\n", "stdin": "in\n"})
		if status != 200 || sh["output"] != "in\n/workspace\n1000\n" || sh["error"] != "oops\n" || sh["exitCode"] != float64(4) {
			t.Fatalf("run %d: %d %v", i, status, sh)
		}
	}
	body, _ := jsonBody(map[string]any{"sessionId": id, "command": "echo a; sleep 0.3; echo b >&2; exit 2"})
	req, _ := http.NewRequest("POST", srv.URL+"/api/playground/shell", body)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	last := -1
	for _, w := range []string{"event: stdout\ndata: {\"data\":\"a\\n\"}", "event: stderr\ndata: {\"data\":\"b\\n\"}",
		"event: exit\ndata: {\"success\":false,\"output\":\"a\\n\",\"error\":\"b\\n\",\"exitCode\":2"} {
		i := strings.Index(string(all), w)
		if i <= last {
			t.Fatalf("stream lacks %q in order:\n%s", w, all)
		}
		last = i
	}
	status, sh := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "sleep 100 & sleep 100", "timeoutMs": 500})
	if status != 200 || sh["timedOut"] != true || sh["signal"] != "SIGKILL" {
		t.Fatalf("timeout: %d %v", status, sh)
	}
	_, ps := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"})
	if strings.Contains(ps["output"].(string), "sleep 100") {
		t.Fatalf("a timed-out command's child survives:\n%s", ps["output"])
	}
}

func jsonBody(v any) (io.Reader, error) {
	var b bytes.Buffer
	err := jsonEncode(&b, v)
	return &b, err
}

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

// The starter project as a user meets it: install its dependencies, npm start
// in the background, and open it through the preview.
func TestFastifyStarterThroughThePreview(t *testing.T) {
	srv := newServer(t)
	for _, pt := range []string{"ts", "js"} {
		id := "starter-" + pt + "-" + t.Name()
		if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": pt}); status != 201 {
			t.Fatal("create failed")
		}
		status, inst := call(t, srv, "POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}})
		if status != 200 || inst["success"] != true {
			t.Fatalf("%s install: %d %v", pt, status, inst)
		}
		t.Logf("%s: npm install of the starter's dependencies took %v ms (cache hits %v, misses %v)",
			pt, inst["durationMs"], inst["cacheHits"], inst["cacheMisses"])
		status, started := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "npm start", "background": true})
		if status != 200 || started["success"] != true {
			t.Fatalf("%s npm start: %d %v", pt, status, started)
		}
		body := waitStatus(t, srv.URL+"/api/playground/preview/"+id+"/api/health", 200)
		if !strings.Contains(body, `"status":"ok"`) {
			t.Fatalf("%s health: %s", pt, body)
		}
	}
}

// A new session that repeats an earlier install (same package.json, same
// packages, no node_modules yet) gets its result from the dependency layer,
// built once from a private session: the starter's own dependencies, and a
// named package.
func TestStarterDependenciesFromTheLayer(t *testing.T) {
	srv := newServer(t)
	install := func(id string) map[string]any {
		t.Helper()
		if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "ts"}); status != 201 {
			t.Fatal("create failed")
		}
		status, inst := call(t, srv, "POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}})
		if status != 200 || inst["success"] != true {
			t.Fatalf("install: %d %v", status, inst)
		}
		return inst
	}
	first := install("layer-first")
	if first["fromLayer"] == true {
		t.Fatal("the first install cannot come from a layer")
	}
	var layered map[string]any
	for i := 0; i < 12 && layered == nil; i++ {
		time.Sleep(2 * time.Second) // the layer is built in the background
		id := fmt.Sprintf("layer-next-%d", i)
		if inst := install(id); inst["fromLayer"] == true {
			layered = inst
			status, started := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "npm start", "background": true})
			if status != 200 || started["success"] != true {
				t.Fatalf("npm start: %d %v", status, started)
			}
			if body := waitStatus(t, srv.URL+"/p/"+id+"/api/health", 200); !strings.Contains(body, `"status":"ok"`) {
				t.Fatalf("health: %s", body)
			}
			_, sh := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "stat -c %u node_modules/fastify/package.json package-lock.json"})
			if sh["output"] != "1000\n1000\n" {
				t.Fatalf("restored files owned by %v", sh["output"])
			}
		}
		call(t, srv, "DELETE", "/api/playground/container?sessionId="+id, nil)
	}
	if layered == nil {
		t.Fatal("no install came from the layer")
	}
	installed, _ := layered["installed"].([]any)
	if len(installed) == 0 {
		t.Fatalf("layer install lists nothing: %v", layered)
	}
	t.Logf("starter dependencies: npm install %v ms, from the layer %v ms", first["durationMs"], layered["durationMs"])

	// A named package, in fresh sessions of the same starter.
	named := func(id string) map[string]any {
		t.Helper()
		if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
			t.Fatal("create failed")
		}
		status, inst := call(t, srv, "POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{"is-number@7.0.0"}})
		if status != 200 || inst["success"] != true {
			t.Fatalf("install: %d %v", status, inst)
		}
		return inst
	}
	cold := named("named-first")
	for i := 0; i < 12; i++ {
		time.Sleep(2 * time.Second)
		id := fmt.Sprintf("named-next-%d", i)
		inst := named(id)
		if inst["fromLayer"] != true {
			continue
		}
		_, run := call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id,
			"code": "console.log(require('is-number')(3), require('/workspace/package.json').dependencies['is-number'])"})
		if run["output"] != "true ^7.0.0\n" {
			t.Fatalf("named package from the layer: %v", run)
		}
		t.Logf("is-number@7.0.0: npm install %v ms, from the layer %v ms", cold["durationMs"], inst["durationMs"])
		return
	}
	t.Fatal("no named install came from the layer")
}
