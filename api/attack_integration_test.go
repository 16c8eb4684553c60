package api_test

// The attack suite of issue 6, API half: hostile requests and hostile code
// against the real router, runtime and containerd (and, for the server's
// own timeouts, the real servcraftd binary). Each TestAttackNN is one
// numbered line of the issue; the runtime half is
// runtime/attack_integration_test.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// atkServer is newServer with a say in the runtime's config and the API's
// options (and the same cleanup).
func atkServer(t *testing.T, tweak func(*runtime.Config), tweakOpt func(*api.Options)) *httptest.Server {
	t.Helper()
	upstream, _ := url.Parse("http://127.0.0.1:9/") // nothing in this suite installs from a registry
	return startServer(t, upstream, tweak, tweakOpt)
}

func atkID(t *testing.T, suffix string) string {
	id := "atk-" + strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()) + suffix
	if len(id) > 128 {
		id = id[:128]
	}
	return id
}

func atkToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var atkClient = &http.Client{Timeout: 90 * time.Second}

// atkDo sends one request and returns status, headers and body. A 429 is
// retried after its Retry-After (a few times) unless noRetry.
func atkDo(t *testing.T, base, method, path string, body []byte, noRetry bool) (int, http.Header, []byte) {
	t.Helper()
	c := apitest.NewClient(t, base, atkClient, api.OpenAPIDocument())
	if !noRetry {
		c.RetryLimited = 8
	}
	return c.Do(method, path, body)
}

// atkCall is atkDo with a JSON body and a JSON answer.
func atkCall(t *testing.T, srv *httptest.Server, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	status, _, data := atkDo(t, srv.URL, method, path, b, false)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %.300q", method, path, status, data)
	}
	return status, out
}

func atkCreate(t *testing.T, srv *httptest.Server, id string) {
	t.Helper()
	if status, body := atkCall(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatalf("create %s: %d %v", id, status, body)
	}
}

// atkShell runs a command in the session and fails the test unless it exits 0.
func atkShell(t *testing.T, srv *httptest.Server, id, command string) string {
	t.Helper()
	status, res := atkCall(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": command, "timeoutMs": 20000})
	if status != 200 || res["exitCode"] != 0.0 {
		t.Fatalf("shell %q: %d %v", command, status, res)
	}
	return res["output"].(string)
}

// atkNode runs code with node in the session and returns stdout.
func atkNode(t *testing.T, srv *httptest.Server, id, code string, timeoutMs int) map[string]any {
	t.Helper()
	status, res := atkCall(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": code, "filename": "attack.js", "timeoutMs": timeoutMs})
	if status != 200 {
		t.Fatalf("execute: %d %v", status, res)
	}
	return res
}

// hostListener listens on the host's 127.0.0.1 until the test ends and
// counts the connections it accepts: none may come from a session.
func hostListener(t *testing.T) (port int, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

// hostCanaries makes host canaries (runtimetest.HostCanaries) and returns a check that they are intact.
func hostCanaries(t *testing.T) (file, dir, token string, intact func()) {
	t.Helper()
	c := runtimetest.HostCanaries(t)
	return c.File, c.Dir, c.Token, func() { t.Helper(); c.AssertIntact(t) }
}

func fileNode(name, content string) map[string]any {
	return map[string]any{"name": name, "type": "file", "content": content}
}

func folderNode(name string, children ...map[string]any) map[string]any {
	if children == nil {
		children = []map[string]any{}
	}
	return map[string]any{"name": name, "type": "folder", "children": children}
}

// 3. Links planted where the API writes (a file and a folder) and pointing
// at host canaries: writes through /sync and /execute → canaries intact and
// a clear 4xx that names no host path.
func TestAttack03_PlantedSymlinksStopHostWrites(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	file, dir, _, intact := hostCanaries(t)
	atkShell(t, srv, id, fmt.Sprintf(`set -e
ln -s %[1]s link.js; ln -s %[2]s dir; mkdir real; ln -s %[1]s real/inner.js; ln -s %[2]s/inside.txt inside.js
ln -s /etc etc; ln -s %[2]s .hidden; ln -s ../../../../../../../../%[2]s up`, file, dir))

	merge := []struct {
		name  string
		files []map[string]any
	}{
		{"file link", []map[string]any{fileNode("link.js", "PWNED")}},
		{"file link to a file in the folder", []map[string]any{fileNode("inside.js", "PWNED")}},
		{"folder link", []map[string]any{folderNode("dir", fileNode("x.js", "PWNED"))}},
		{"folder link, deeper", []map[string]any{folderNode("dir", folderNode("sub", fileNode("x.js", "PWNED")))}},
		{"folder link alone", []map[string]any{folderNode("dir")}},
		{"link in a real folder", []map[string]any{folderNode("real", fileNode("inner.js", "PWNED"))}},
		{"/etc link", []map[string]any{folderNode("etc", fileNode("passwd.js", "PWNED"))}},
		{"hidden folder link", []map[string]any{folderNode(".hidden", fileNode("x.js", "PWNED"))}},
		{"relative link up", []map[string]any{folderNode("up", fileNode("x.js", "PWNED"))}},
	}
	for _, tc := range merge {
		status, _, body := atkDo(t, srv.URL, "POST", "/api/playground/sync", mustJSON(map[string]any{"sessionId": id, "files": tc.files}), false)
		if status < 400 || status >= 500 {
			t.Errorf("sync (%s): %d %s, want a 4xx", tc.name, status, body)
		}
		if strings.Contains(string(body), filepath.Dir(file)) {
			t.Errorf("sync (%s): the answer names the host path: %s", tc.name, body)
		}
		intact()
	}
	for _, name := range []string{"link.js", "inside.js", "dir/x.js", "dir/sub/x.js", "real/inner.js", "etc/passwd.js", ".hidden/x.js", "up/x.js"} {
		status, _, body := atkDo(t, srv.URL, "POST", "/api/playground/execute", mustJSON(map[string]any{"sessionId": id, "code": "console.log('PWNED')", "filename": name}), false)
		if status < 400 || status >= 500 {
			t.Errorf("execute %s: %d %s, want a 4xx", name, status, body)
		}
		if strings.Contains(string(body), filepath.Dir(file)) {
			t.Errorf("execute %s: the answer names the host path: %s", name, body)
		}
		intact()
	}
	// Replace mode removes the links themselves (never their targets) and writes in the workspace.
	for _, tc := range merge {
		status, _, body := atkDo(t, srv.URL, "POST", "/api/playground/sync", mustJSON(map[string]any{"sessionId": id, "files": tc.files, "mode": "replace"}), false)
		if status >= 500 {
			t.Errorf("replace sync (%s): %d %s", tc.name, status, body)
		}
		intact()
	}
	if _, err := os.Stat("/etc/passwd.js"); !os.IsNotExist(err) {
		t.Fatal("/etc/passwd.js was created on the host")
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// 4. User code swaps a folder for a link to a host folder (and a file for a
// link to a host file) as fast as it can while /sync writes thousands of
// files there → nothing lands outside the workspace.
func TestAttack04_SymlinkSwapRaceDuringSync(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	file, dir, _, intact := hostCanaries(t)
	swap := fmt.Sprintf(`
const fs = require("fs");
const W = "/workspace/";
fs.mkdirSync(W + "race_dir/sub", { recursive: true });
for (const [target, link] of [[%[1]q, "race_link"], [%[2]q, "racefile_link"], [%[1]q, "race_dir/sub_link"]]) {
  try { fs.symlinkSync(target, W + link); } catch (e) {}
}
fs.writeFileSync(W + "racefile_real", "x");
const mv = (a, b) => { try { fs.renameSync(W + a, W + b); } catch (e) {} };
let n = 0;
for (;;) {
  mv("race_dir", "race"); mv("racefile_real", "racefile.js");
  mv("race_dir/sub", "race_dir/sub_real"); mv("race/sub", "race/sub_real");
  mv("race", "race_dir"); mv("racefile.js", "racefile_real");
  mv("race_link", "race"); mv("racefile_link", "racefile.js");
  mv("race_dir/sub_link", "race_dir/sub");
  mv("race", "race_link"); mv("racefile.js", "racefile_link");
  mv("race_dir/sub", "race_dir/sub_link"); mv("race_dir/sub_real", "race_dir/sub");
  if (++n %% 1000 === 0) console.log("swaps", n);
}
`, dir, file)
	status, synced := atkCall(t, srv, "POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []map[string]any{fileNode("swap.js", swap)}})
	if status != 200 {
		t.Fatalf("sync swap.js: %d %v", status, synced)
	}
	status, started := atkCall(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "node swap.js", "background": true})
	pid, _ := started["pid"].(string)
	if status != 200 || pid == "" {
		t.Fatalf("start the swapper: %d %v", status, started)
	}
	time.Sleep(300 * time.Millisecond)

	statuses := map[int]int{}
	attempted := 0
	raceStart := time.Now()
	deadline := raceStart.Add(15 * time.Second)
	for req := 0; (attempted < 6000 || time.Since(raceStart) < 3*time.Second) && time.Now().Before(deadline); req++ {
		var files []map[string]any
		for i := range 300 {
			files = append(files, fileNode(fmt.Sprintf("f%d-%d.txt", req, i), "PWNED"))
		}
		var sub []map[string]any
		for i := range 100 {
			sub = append(sub, fileNode(fmt.Sprintf("s%d-%d.txt", req, i), "PWNED"))
		}
		files = append(files, folderNode("sub", sub...))
		body := map[string]any{"sessionId": id, "files": []map[string]any{folderNode("race", files...), fileNode("racefile.js", "PWNED")}}
		status, _, data := atkDo(t, srv.URL, "POST", "/api/playground/sync", mustJSON(body), false)
		statuses[status]++
		attempted += len(files) + len(sub) + 1
		if status >= 500 {
			t.Errorf("sync during the race: %d %s", status, data)
		}
		// And the single-file write path of execute, racing the file link.
		status, _, data = atkDo(t, srv.URL, "POST", "/api/playground/sync", mustJSON(map[string]any{"sessionId": id,
			"files": []map[string]any{fileNode("racefile.js", "PWNED")}}), false)
		statuses[status]++
		if status >= 500 {
			t.Errorf("file sync during the race: %d %s", status, data)
		}
	}
	_, logs := atkCall(t, srv, "GET", "/api/playground/processes/logs?sessionId="+id+"&id="+pid, nil)
	if status, killed := atkCall(t, srv, "DELETE", "/api/playground/processes?sessionId="+id+"&id="+pid, nil); status != 200 {
		t.Fatalf("kill the swapper: %d %v", status, killed)
	}
	t.Logf("sync statuses during the race: %v (%d files attempted); swapper: %q", statuses, attempted, logs["output"])
	if !strings.Contains(fmt.Sprint(logs["output"]), "swaps") {
		t.Errorf("the swapper did not run: %v", logs)
	}
	intact()
}

// 5. Reading a link to a host file through the API → nothing of the host
// file in the answer (refused, or listed as a link without content).
func TestAttack05_ReadThroughSymlinkLeaksNothing(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	file, dir, token, intact := hostCanaries(t)
	shadow, _ := os.ReadFile("/etc/shadow")
	atkShell(t, srv, id, fmt.Sprintf(`set -e
ln -s %[1]s link.txt; ln -s %[2]s dir; ln -s /etc/shadow shadow.txt; ln -s %[2]s/inside.txt inside.txt
mkdir -p node_modules/pkg; ln -s %[1]s node_modules/pkg/package.json; ln -s %[2]s .hidden`, file, dir))
	planted := map[string]bool{"link.txt": true, "dir": true, "shadow.txt": true, "inside.txt": true, ".hidden": true, "node_modules/pkg/package.json": true}
	paths := []string{"", "link.txt", "dir", "shadow.txt", "inside.txt", "dir/inside.txt", ".hidden", ".hidden/inside.txt",
		"node_modules/pkg", "node_modules/pkg/package.json", "../../../../../../" + strings.TrimPrefix(file, "/"), file}
	for _, p := range paths {
		for _, route := range []string{"/api/playground/files?sessionId=" + id, "/api/playground/container?action=getFiles&sessionId=" + id} {
			target := route
			if p != "" {
				target += "&path=" + url.QueryEscape(p)
			}
			start := time.Now()
			status, _, body := atkDo(t, srv.URL, "GET", target, nil, false)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("GET %s took %v", target, d)
			}
			if status >= 500 {
				t.Errorf("GET %s: %d %s", target, status, body)
			}
			if strings.Contains(string(body), token) {
				t.Errorf("GET %s: host canary content in the answer: %s", target, body)
			}
			if len(shadow) > 16 && bytes.Contains(body, shadow[:16]) {
				t.Errorf("GET %s: the host's /etc/shadow in the answer", target)
			}
			if strings.Contains(string(body), filepath.Dir(file)) && !strings.Contains(p, filepath.Dir(file)[1:]) {
				t.Errorf("GET %s: the answer names the host path: %s", target, body)
			}
			if status == 200 {
				var out struct {
					Files []struct{ Path, Type, Content string } `json:"files"`
				}
				json.Unmarshal(body, &out)
				for _, f := range out.Files {
					if planted[f.Path] && (f.Content != "" || f.Type != workspace.TypeFile) {
						t.Errorf("GET %s: the link %s is listed as a %s with content %q", target, f.Path, f.Type, f.Content)
					}
				}
			}
		}
	}
	intact()
}

// 6. A FIFO and a listening unix socket in the workspace: listing and
// reading them through the API answers at once, with no content; writing
// over them is refused without opening them.
func TestAttack06_FIFOAndSocketNeverOpened(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	atkShell(t, srv, id, `set -e; mkfifo fifo fifo.js; mkdir d; mkfifo d/pipe d/pipe.js`)
	status, started := atkCall(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "background": true,
		"command": `node -e "require('net').createServer(c => c.end('SOCKET-DATA')).listen('/workspace/sock.js'); require('net').createServer().listen('/workspace/d/sock')"`})
	if status != 200 {
		t.Fatalf("socket server: %d %v", status, started)
	}
	atkShell(t, srv, id, `for i in $(seq 50); do [ -S sock.js ] && [ -S d/sock ] && exit 0; sleep 0.1; done; exit 1`)

	special := map[string]bool{"fifo": true, "fifo.js": true, "pipe": true, "pipe.js": true, "sock.js": true, "sock": true}
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(target string) (int, []byte) {
		resp, err := client.Get(srv.URL + target)
		if err != nil {
			t.Errorf("GET %s: %v (a hang on a FIFO or socket?)", target, err)
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, p := range []string{"", "fifo", "fifo.js", "d", "d/pipe", "d/pipe.js", "sock.js", "d/sock"} {
		target := "/api/playground/files?sessionId=" + id
		if p != "" {
			target += "&path=" + url.QueryEscape(p)
		}
		status, body := get(target)
		if status != 200 && (status < 400 || status >= 500) {
			t.Errorf("GET %s: %d %s", target, status, body)
		}
		if strings.Contains(string(body), "SOCKET-DATA") {
			t.Errorf("GET %s read the socket: %s", target, body)
		}
		var out struct {
			Files []struct{ Path, Type, Content string } `json:"files"`
		}
		json.Unmarshal(body, &out)
		for _, f := range out.Files {
			if special[path.Base(f.Path)] && f.Content != "" {
				t.Errorf("GET %s: %s has content %q", target, f.Path, f.Content)
			}
		}
	}
	post := func(path string, body any) (int, []byte) {
		resp, err := client.Post(srv.URL+path, "application/json", bytes.NewReader(mustJSON(body)))
		if err != nil {
			t.Errorf("POST %s: %v (a hang on a FIFO or socket?)", path, err)
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, files := range [][]map[string]any{
		{fileNode("fifo", "x")}, {fileNode("fifo.js", "x")}, {fileNode("sock.js", "x")},
		{folderNode("d", fileNode("pipe", "x"))}, {folderNode("d", fileNode("sock", "x"))},
		{folderNode("fifo", fileNode("x", "x"))}, {folderNode("sock.js")},
	} {
		if status, body := post("/api/playground/sync", map[string]any{"sessionId": id, "files": files}); status < 400 || status >= 500 {
			t.Errorf("sync over a FIFO/socket %v: %d %s", files, status, body)
		}
	}
	for _, name := range []string{"fifo.js", "d/pipe.js", "sock.js"} {
		if status, body := post("/api/playground/execute", map[string]any{"sessionId": id, "code": "1", "filename": name}); status < 400 || status >= 500 {
			t.Errorf("execute over %s: %d %s", name, status, body)
		}
	}
	// Replace mode takes them away instead.
	if status, body := post("/api/playground/sync", map[string]any{"sessionId": id, "mode": "replace",
		"files": []map[string]any{fileNode("fifo.js", "console.log('replaced')"), folderNode("d", fileNode("pipe.js", "1"))}}); status != 200 {
		t.Errorf("replace sync over FIFOs: %d %s", status, body)
	}
	if out := atkShell(t, srv, id, "[ -f fifo.js ] && [ -f d/pipe.js ] && cat fifo.js"); out != "console.log('replaced')" {
		t.Errorf("after replace: %q", out)
	}
}

// 9. An install script that writes outside the workspace and opens sockets
// to the host: nothing lands on the host, no connection arrives, and the
// install answer tells the script's outcome as it was.
func TestAttack09_HostileInstallScript(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	_, canaryDir, _, intact := hostCanaries(t)
	hostPort, accepted := hostListener(t)
	daemonPort := srv.Listener.Addr().(*net.TCPAddr).Port
	marker := "pwned-" + atkToken(t)
	script := fmt.Sprintf(`
const fs = require("fs"), net = require("net");
const results = [];
for (const p of ["/etc/%[1]s", %[2]q + "/%[1]s", "/%[1]s", "/usr/local/lib/%[1]s", "/proc/%[1]s", "/sys/%[1]s", "/tmp/%[1]s"]) {
  try { fs.writeFileSync(p, "x"); results.push("WRITE " + p + " OK"); } catch (e) { results.push("WRITE " + p + " " + e.code); }
}
const tries = [[%[3]d, "127.0.0.1"], [%[4]d, "127.0.0.1"], [%[3]d, "localhost"]];
let left = tries.length;
for (const [port, host] of tries) {
  const c = net.connect(port, host);
  const done = (r) => { results.push("CONNECT " + host + ":" + port + " " + r); c.destroy(); if (--left === 0) finish(); };
  c.setTimeout(3000, () => done("TIMEOUT"));
  c.on("connect", () => done("CONNECTED"));
  c.on("error", (e) => done(e.code));
}
function finish() {
  for (const r of results) console.log("RESULT", r);
  process.exit(Number(process.env.ATTACK_EXIT || %[5]s));
}
`, marker, canaryDir, hostPort, daemonPort, "3")
	pkg := `{"name":"hostile","version":"1.0.0","private":true,"scripts":{"postinstall":"node hostile.js"}}`
	status, synced := atkCall(t, srv, "POST", "/api/playground/sync", map[string]any{"sessionId": id,
		"files": []map[string]any{fileNode("package.json", pkg), fileNode("hostile.js", script)}})
	if status != 200 {
		t.Fatalf("sync: %d %v", status, synced)
	}
	status, inst := atkCall(t, srv, "POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}, "timeoutMs": 60000})
	out := fmt.Sprint(inst["output"]) + fmt.Sprint(inst["error"])
	t.Logf("failing install script: %d success=%v exitCode=%v\n%s", status, inst["success"], inst["exitCode"], out)
	if status != 200 || inst["success"] != false || inst["exitCode"] == 0.0 || inst["exitCode"] == nil {
		t.Errorf("an install whose script exits 3 must answer success:false with npm's exit code: %d %v", status, inst)
	}
	for _, want := range []string{"RESULT WRITE /etc/" + marker + " EROFS", "RESULT WRITE " + canaryDir + "/" + marker + " ENOENT",
		"RESULT WRITE /" + marker + " EROFS", "RESULT WRITE /tmp/" + marker + " OK",
		fmt.Sprintf("RESULT CONNECT 127.0.0.1:%d ECONNREFUSED", hostPort), fmt.Sprintf("RESULT CONNECT 127.0.0.1:%d ECONNREFUSED", daemonPort)} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q", want)
		}
	}
	if strings.Contains(out, "CONNECTED") || strings.Contains(out, "/sys/"+marker+" OK") || strings.Contains(out, "/proc/"+marker+" OK") {
		t.Errorf("the script got out: %s", out)
	}

	// The same script succeeding is reported as a success.
	status, synced = atkCall(t, srv, "POST", "/api/playground/sync", map[string]any{"sessionId": id,
		"files": []map[string]any{fileNode("hostile.js", strings.Replace(script, `|| 3)`, `|| 0)`, 1))}})
	if status != 200 {
		t.Fatalf("sync: %d %v", status, synced)
	}
	status, inst = atkCall(t, srv, "POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}, "timeoutMs": 60000})
	if status != 200 || inst["success"] != true || inst["exitCode"] != 0.0 || !strings.Contains(fmt.Sprint(inst["output"]), "RESULT WRITE /etc/"+marker+" EROFS") {
		t.Errorf("a succeeding install script: %d %v", status, inst)
	}

	for _, p := range []string{"/etc/" + marker, "/" + marker, "/usr/local/lib/" + marker, filepath.Join(canaryDir, marker)} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists on the host", p)
		}
	}
	intact()
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host listener accepted %d connections from the install script", n)
	}
}

// 10. From a container: the daemon's port, other host loopback services,
// host unix sockets (by path and abstract) → all unreachable.
func TestAttack10_NoWayToHostServices(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	var accepted atomic.Int64
	serve := func(ln net.Listener) {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	serve(tcp)
	sockPath := filepath.Join(t.TempDir(), "host.sock")
	unixLn, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer unixLn.Close()
	serve(unixLn)
	abstract := "servcraft-attack-" + atkToken(t)
	absLn, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer absLn.Close()
	serve(absLn)
	containerdSock := os.Getenv("SERVCRAFT_TEST_CONTAINERD")
	if containerdSock == "" {
		wd, _ := os.Getwd()
		containerdSock = filepath.Join(filepath.Dir(wd), ".servcraft", "containerd", "containerd.sock")
	}
	daemonPort := srv.Listener.Addr().(*net.TCPAddr).Port
	type target struct {
		Port int    `json:"port,omitempty"`
		Host string `json:"host,omitempty"`
		Path string `json:"path,omitempty"`
	}
	targets := []target{
		{Port: daemonPort, Host: "127.0.0.1"}, {Port: tcp.Addr().(*net.TCPAddr).Port, Host: "127.0.0.1"},
		{Port: daemonPort, Host: "localhost"}, {Port: daemonPort, Host: "::1"}, {Port: daemonPort, Host: "127.1.2.3"},
		{Path: sockPath}, {Path: containerdSock}, {Path: containerdSock + ".ttrpc"}, {Path: "/run/containerd/containerd.sock"},
		{Path: "/var/run/docker.sock"}, {Path: "\x00" + abstract},
	}
	// Abstract sockets of the host's network namespace, as listed by the host.
	if data, err := os.ReadFile("/proc/net/unix"); err == nil {
		n := 0
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 8 && strings.HasPrefix(f[7], "@") && n < 20 {
				targets = append(targets, target{Path: "\x00" + f[7][1:]})
				n++
			}
		}
	}
	code := `
const net = require("net");
const targets = ` + string(mustJSON(targets)) + `;
let left = targets.length;
for (const t of targets) {
  const c = t.path !== undefined ? net.connect({ path: t.path }) : net.connect(t.port, t.host);
  const name = JSON.stringify(t);
  const done = (r) => { console.log(r, name); c.destroy(); if (--left === 0) process.exit(0); };
  c.setTimeout(3000, () => done("TIMEOUT"));
  c.on("connect", () => done("CONNECTED"));
  c.on("error", (e) => done(e.code));
}
`
	res := atkNode(t, srv, id, code, 20000)
	out := fmt.Sprint(res["output"])
	t.Logf("connection attempts from the sandbox:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(targets) {
		t.Fatalf("%d answers for %d targets: %v", len(lines), len(targets), res)
	}
	for _, line := range lines {
		r, name, _ := strings.Cut(line, " ")
		ok := false
		switch {
		case strings.Contains(name, `"path"`):
			ok = r == "ENOENT" || r == "ECONNREFUSED" // a path not there; an abstract name nobody listens on in this netns
		default:
			ok = r == "ECONNREFUSED" || r == "EADDRNOTAVAIL" || r == "ENETUNREACH" || r == "EAFNOSUPPORT"
		}
		if !ok {
			t.Errorf("%s: %s", name, r)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("host listeners accepted %d connections from the sandbox", n)
	}
}

// 15. Endless stdout and stderr → cut at the cap, the process killed, and the
// daemon's memory flat (it runs in this process: its RSS is ours). A
// streaming client that stops reading must not pin the session either.
func TestAttack15_EndlessOutput(t *testing.T) {
	srv := newServer(t)
	id := atkID(t, "")
	atkCreate(t, srv, id)
	const outputCap = 1 << 20 // newServer's OutputLimit
	runs := []struct {
		name, route string
		body        map[string]any
	}{
		{"node writeSync both", "/api/playground/execute", map[string]any{"sessionId": id, "filename": "flood.js",
			"code": `const fs = require("fs"), b = Buffer.alloc(65536, 120); for (;;) { fs.writeSync(1, b); fs.writeSync(2, b); }`}},
		{"node stream writes", "/api/playground/execute", map[string]any{"sessionId": id, "filename": "flood2.js",
			"code": `const b = "y".repeat(65536); (function f() { process.stdout.write(b); process.stderr.write(b, f); })();`}},
		{"shell yes", "/api/playground/shell", map[string]any{"sessionId": id, "command": "yes & yes >&2; wait"}},
		{"stderr only", "/api/playground/shell", map[string]any{"sessionId": id, "command": "yes >&2"}},
		{"control bytes", "/api/playground/execute", map[string]any{"sessionId": id, "filename": "flood3.js",
			"code": `const fs = require("fs"), b = Buffer.alloc(65536, 1); for (;;) fs.writeSync(1, b);`}},
	}
	check := func(name string, res map[string]any, took time.Duration) {
		t.Helper()
		outLen, errLen := len(fmt.Sprint(res["output"])), len(fmt.Sprint(res["error"]))
		if res["truncated"] != true || res["timedOut"] == true || outLen > outputCap || errLen > outputCap ||
			(outLen != outputCap && errLen != outputCap) || res["success"] != false {
			t.Errorf("%s: truncated=%v timedOut=%v stdout %d stderr %d bytes exit=%v", name, res["truncated"], res["timedOut"], outLen, errLen, res["exitCode"])
		}
		if took > 10*time.Second {
			t.Errorf("%s: took %v to stop", name, took)
		}
	}
	// Warm up, then measure.
	status, res := atkCall(t, srv, "POST", runs[0].route, runs[0].body)
	if status != 200 {
		t.Fatalf("warm-up: %d %v", status, res)
	}
	before := runtimetest.VmRSS(t)
	for round := range 5 {
		r := runs[round%len(runs)]
		start := time.Now()
		status, res := atkCall(t, srv, "POST", r.route, r.body)
		if status != 200 {
			t.Fatalf("%s: %d %v", r.name, status, res)
		}
		check(r.name, res, time.Since(start))
	}
	// Streamed: every event arrives, then the end, and nothing more than the cap.
	body := mustJSON(runs[0].body)
	req, _ := http.NewRequest("POST", srv.URL+"/api/playground/execute", bytes.NewReader(body))
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Content-Type", "application/json") // a JSON call, as every client sends it (a body without a type is 415)
	resp, err := atkClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if !bytes.Contains(stream, []byte("event: exit")) || len(stream) > 6*outputCap {
		t.Errorf("streamed flood: %d bytes, exit event %v", len(stream), bytes.Contains(stream, []byte("event: exit")))
	}
	after := runtimetest.VmRSS(t)
	t.Logf("daemon (this process) RSS: %d MiB before 5 floods and a streamed one, %d MiB after", before>>20, after>>20)
	if after-before > 50<<20 {
		t.Errorf("RSS grew by %d MiB over 6 floods", (after-before)>>20)
	}

	// A client that asks for a stream of control bytes (6 bytes of JSON each)
	// and then reads nothing: the run still ends at its timeout, and the
	// session can be destroyed.
	// A small receive buffer, so that the server's writes block soon.
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := dialer.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stuck := mustJSON(map[string]any{"sessionId": id, "filename": "flood3.js", "timeoutMs": 2000,
		"code": `const fs = require("fs"), b = Buffer.alloc(65536, 1); for (;;) { fs.writeSync(1, b); fs.writeSync(2, b); }`})
	fmt.Fprintf(conn, "POST /api/playground/execute HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(stuck), stuck)
	time.Sleep(4 * time.Second) // past the run's timeout, reading nothing
	delDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", srv.URL+"/api/playground/container?sessionId="+id, nil)
		resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
		if err != nil {
			delDone <- 0
			return
		}
		resp.Body.Close()
		delDone <- resp.StatusCode
	}()
	delStart := time.Now()
	select {
	case status := <-delDone:
		t.Logf("DELETE while a streaming client reads nothing: %d in %v", status, time.Since(delStart))
		if status != 200 {
			t.Errorf("DELETE while a stream client reads nothing: %d", status)
		}
	case <-time.After(16 * time.Second):
		t.Errorf("DELETE hangs while a streaming client reads nothing: the run holds the session")
	}
	conn.Close()
}

func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// 19. Floods: 1000 creates from one client → 429s with Retry-After, the
// daemon healthy, no more sessions than its capacity; 200 executes at once
// across 4 sessions → each answered 200 or 429, none lost, and no goroutine
// or fd left behind.
func TestAttack19_Floods(t *testing.T) {
	// Capacity below the create burst, so that the flood meets both limits.
	const capacity = 8
	// 4 sessions made first, then the flood: 6 creates pass the create
	// limit's burst of 10, 4 of them fit, 2 must be refused as over capacity.
	srv := atkServer(t, func(c *runtime.Config) { c.MaxSessions = capacity },
		func(o *api.Options) { o.CreateRate = api.Rate{Events: 30, Per: time.Minute, Burst: 10} })
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	defer tr.CloseIdleConnections()

	var ids []string
	for i := range 4 {
		id := atkID(t, fmt.Sprintf("-exec%d", i))
		atkCreate(t, srv, id)
		atkNode(t, srv, id, "console.log(1)", 10000) // warm up
		ids = append(ids, id)
	}

	// The create flood.
	var created, limited, full, missingRetry atomic.Int64
	var otherMu sync.Mutex
	other := map[int]int{}
	fullMessage := ""
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := mustJSON(map[string]any{"sessionId": fmt.Sprintf("flood-%d", i), "projectType": "js"})
				resp, err := client.Post(srv.URL+"/api/playground/container", "application/json", bytes.NewReader(body))
				if err != nil {
					otherMu.Lock()
					other[0]++
					otherMu.Unlock()
					continue
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 201:
					created.Add(1)
				case 429:
					limited.Add(1)
					if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
						missingRetry.Add(1)
					}
				case 503:
					full.Add(1)
					var out map[string]any
					json.Unmarshal(data, &out)
					otherMu.Lock()
					fullMessage = fmt.Sprint(out["error"])
					otherMu.Unlock()
				default:
					otherMu.Lock()
					other[resp.StatusCode]++
					otherMu.Unlock()
				}
			}
		}()
	}
	start := time.Now()
	for i := 0; i < 1000; i++ {
		// A server without limits would make a thousand sessions: stop early then.
		if created.Load() > 40 {
			t.Errorf("more than 40 sessions created by one client in a flood: no create rate limit")
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("1000 creates in %v: %d created, %d answered 429, %d answered 503 (full), other %v",
		time.Since(start), created.Load(), limited.Load(), full.Load(), other)
	if limited.Load() == 0 {
		t.Errorf("no create was refused with 429")
	}
	if missingRetry.Load() > 0 {
		t.Errorf("%d 429 answers without a Retry-After of at least 1 s", missingRetry.Load())
	}
	if len(other) > 0 {
		t.Errorf("creates answered other than 201, 429 or 503: %v", other)
	}
	if n := created.Load() + int64(len(ids)); n > capacity {
		t.Errorf("%d sessions live, over the capacity %d", n, capacity)
	}
	t.Logf("503 message: %q", fullMessage)
	if full.Load() == 0 || !strings.Contains(fullMessage, "capacity") {
		t.Errorf("no create was refused with a 503 naming the capacity (%d sessions live, capacity %d): %q", created.Load()+int64(len(ids)), capacity, fullMessage)
	}
	if status, _, _ := atkDo(t, srv.URL, "GET", "/healthz", nil, true); status != 200 {
		t.Errorf("healthz after the create flood: %d", status)
	}

	// The execute flood.
	time.Sleep(time.Second)
	tr.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	goBefore, fdBefore := goruntime.NumGoroutine(), countFDs(t)
	var answered, ok200, ok429 atomic.Int64
	var bad sync.Map
	ready := make(chan struct{})
	var ewg sync.WaitGroup
	for i := range 200 {
		ewg.Add(1)
		go func() {
			defer ewg.Done()
			<-ready
			body := mustJSON(map[string]any{"sessionId": ids[i%4], "code": fmt.Sprintf("console.log(%d)", i), "filename": fmt.Sprintf("f%d.js", i)})
			resp, err := client.Post(srv.URL+"/api/playground/execute", "application/json", bytes.NewReader(body))
			if err != nil {
				bad.Store(i, err.Error())
				return
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answered.Add(1)
			switch resp.StatusCode {
			case 200:
				var out map[string]any
				json.Unmarshal(data, &out)
				if out["success"] == true && out["output"] != fmt.Sprintf("%d\n", i) {
					bad.Store(i, fmt.Sprintf("ran someone else's code: %v", out["output"]))
				}
				ok200.Add(1)
			case 429:
				if resp.Header.Get("Retry-After") == "" {
					bad.Store(i, "429 without Retry-After")
				}
				ok429.Add(1)
			default:
				bad.Store(i, fmt.Sprintf("%d %.200s", resp.StatusCode, data))
			}
		}()
	}
	start = time.Now()
	close(ready)
	ewg.Wait()
	t.Logf("200 executes at once over 4 sessions in %v: %d answered (%d 200, %d 429)", time.Since(start), answered.Load(), ok200.Load(), ok429.Load())
	nbad := 0
	bad.Range(func(k, v any) bool {
		if nbad < 10 {
			t.Errorf("execute %v: %v", k, v)
		}
		nbad++
		return true
	})
	if nbad > 0 || answered.Load() != 200 || ok200.Load()+ok429.Load() != 200 {
		t.Errorf("%d executes lost or answered other than 200/429", 200-ok200.Load()-ok429.Load())
	}
	if status, _, _ := atkDo(t, srv.URL, "GET", "/healthz", nil, true); status != 200 {
		t.Errorf("healthz after the execute flood: %d", status)
	}
	for _, id := range ids {
		if res := atkNode(t, srv, id, "console.log('after')", 10000); res["output"] != "after\n" {
			t.Errorf("session %s after the flood: %v", id, res)
		}
	}

	// Leaks: wait for connections and runs to wind down, then count.
	tr.CloseIdleConnections()
	atkClient.CloseIdleConnections()
	var goAfter, fdAfter int
	for deadline := time.Now().Add(15 * time.Second); ; {
		goAfter, fdAfter = goruntime.NumGoroutine(), countFDs(t)
		if (goAfter <= goBefore+10 && fdAfter <= fdBefore+10) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("goroutines %d before the execute flood, %d after; fds %d before, %d after", goBefore, goAfter, fdBefore, fdAfter)
	if goAfter > goBefore+10 {
		buf := make([]byte, 1<<20)
		n := goruntime.Stack(buf, true)
		t.Errorf("goroutine leak: %d before, %d after\n%.20000s", goBefore, goAfter, buf[:n])
	}
	if fdAfter > fdBefore+10 {
		t.Errorf("fd leak: %d before, %d after", fdBefore, fdAfter)
	}
}

// 20. Garbage in every POST route and every field: random bytes, a 5 MB
// body, 10000-deep nesting, wrong types, control and unicode characters →
// 4xx every time (free-text fields may run: never a 5xx), daemon healthy.
func TestAttack20_Garbage(t *testing.T) {
	// No rate limits here: every request must reach the decoder and validation.
	srv := atkServer(t, nil, func(o *api.Options) {
		o.CreateRate, o.ClientExecRate, o.ExecRate, o.InstallRate, o.MaxConcurrentExecs = api.Rate{}, api.Rate{}, api.Rate{}, api.Rate{}, 0
	})
	id := atkID(t, "")
	atkCreate(t, srv, id)
	fresh := atkID(t, "-never")

	rng := mrand.New(mrand.NewPCG(20, 6))
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	deepObj := strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)
	big := `"` + strings.Repeat("a", 5<<20) + `"`
	routes := []struct{ method, path string }{
		{"POST", "/api/playground/container"}, {"PATCH", "/api/playground/container"}, {"POST", "/api/playground/execute"},
		{"POST", "/api/playground/shell"}, {"POST", "/api/playground/sync"}, {"POST", "/api/playground/install"},
	}
	type gcase struct {
		name, method, path string
		body               []byte
		free               bool // a free-text field: it may run, but never a 5xx
	}
	var cases []gcase
	for _, r := range routes {
		for i, n := range []int{1, 17, 1000, 64 << 10} {
			cases = append(cases, gcase{fmt.Sprintf("random %d", i), r.method, r.path, randomBytes(n), false})
		}
		for _, b := range []string{"", "null", "[]", `"x"`, "123", "{}", "{", "}", `{"sessionId":`, deep, deepObj,
			`{"sessionId":` + deep + `}`, `{"sessionId":` + big + `}`, "[" + strings.Repeat("1,", 2<<20) + "1]",
			`{"sessionId":"` + id + `"} trailing`, "\xef\xbb\xbf{}", `{"sessionId":"` + id + "\x00\"}"} {
			cases = append(cases, gcase{"body " + trunc(b), r.method, r.path, []byte(b), false})
		}
	}
	// Field by field: a valid request with one field broken.
	bad := []string{`1`, `-1`, `true`, `{}`, `[]`, `[1]`, `1.5`, `"\u0000"`, `"a\u0000b"`, `"a\nb"`, `"\u001b[31m"`, `"\t"`,
		`"../x"`, `"/etc/passwd"`, `".."`, `"a\\b"`, "\"\xff\xfe\"", `"` + strings.Repeat("a", 100000) + `"`, deep, big}
	// ".." and "." are sessionIds by the contract's pattern ([A-Za-z0-9._-]{1,128}); not garbage here.
	var idLike []string
	for _, v := range bad {
		if v != `".."` {
			idLike = append(idLike, v)
		}
	}
	idLike = append(idLike, `"é"`, `"\u202e"`, `"\ud800"`, `"a b"`, `"a/b"`, `"%2e%2e"`)
	required := append(slices.Clone(idLike), `""`)
	fields := []struct {
		method, path string
		base         map[string]any
		field        string
		values       []string
	}{
		{"POST", "/api/playground/container", map[string]any{"sessionId": fresh, "projectType": "js"}, "sessionId", required},
		{"POST", "/api/playground/container", map[string]any{"sessionId": fresh, "projectType": "js"}, "projectType", append(slices.Clone(idLike), `"py"`, `"JS"`)},
		{"PATCH", "/api/playground/container", map[string]any{"sessionId": id}, "sessionId", required},
		{"POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "1", "filename": "a.js"}, "sessionId", required},
		{"POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "1", "filename": "a.js"}, "filename",
			append(bad, `"\u0000.js"`, `"a\nb.js"`, `"\u001b.js"`, `"../x.js"`, `"/etc/x.js"`, `"a//b.js"`, `"a\\b.js"`, `"./a.js"`, "\"\xff.js\"")},
		{"POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "1", "filename": "a.js"}, "timeoutMs",
			[]string{`"abc"`, `true`, `{}`, `[]`, `-1`, `0`, `1.5`, `1e400`, deep}},
		{"POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "1", "filename": "a.js"}, "code", []string{`1`, `{}`, `[]`, `true`, deep}},
		{"POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "1", "filename": "a.js"}, "stdin", []string{`1`, `{}`, `[]`, deep}},
		{"POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "true"}, "sessionId", required},
		{"POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "true"}, "command",
			[]string{`1`, `{}`, `[]`, `true`, `""`, `"   "`, `"a\u0000b"`, `"` + strings.Repeat("a", 100000) + `"`, deep, big}},
		{"POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "true"}, "background", []string{`"yes"`, `1`, `{}`, `[]`, deep}},
		{"POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "true"}, "timeoutMs", []string{`"abc"`, `true`, `-5`, `0`, `1.5`, deep}},
		{"POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []any{}}, "sessionId", required},
		{"POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []any{}}, "mode", append(slices.Clone(idLike), `"nuke"`, `"REPLACE"`)},
		{"POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []any{}}, "files",
			[]string{`1`, `"x"`, `{}`, `[1]`, `[[]]`, `[{"name":1}]`, `[{"name":"a","type":"file","content":1}]`, `[{"name":"a","type":"file","children":[{"name":"b","type":"file"}]}]`,
				`[{"name":"a","type":"file","encoding":"base64","content":"%%%"}]`, `[{"name":"a","type":"symlink"}]`, `[{"name":"a","type":"file\u0000"}]`,
				`[{"name":"a","type":"file","encoding":"hex"}]`, `[{"name":"a\u0000","type":"file"}]`, `[{"name":"..","type":"folder"}]`,
				`[{"name":"a/b","type":"file"}]`, `[{"name":"a\\b","type":"file"}]`, `[{"name":"\u001b[2J","type":"file"}]`, `[{"name":"node_modules","type":"folder"}]`,
				`[{"name":"a","type":"file"},{"name":"a","type":"file"}]`, "[{\"name\":\"\xff\",\"type\":\"file\"}]", `[{"name":"","type":"file"}]`,
				deepTree(600), `[` + strings.Repeat(`{"name":"x","type":"file"},`, 3000) + `{"name":"y","type":"file"}]`, deep}},
		{"POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}}, "sessionId", required},
		{"POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}}, "packages",
			[]string{`1`, `"fastify"`, `{}`, `[1]`, `[null]`, `[[]]`, `[""]`, `["\u0000"]`, `["a\nb"]`, `["é"]`, `["../x"]`, `["/etc"]`, `["file:/etc"]`,
				`["git+ssh://x"]`, `["-g"]`, `["a@npm:b"]`, `["http://127.0.0.1:1/x.tgz"]`, `["` + strings.Repeat("a", 300) + `"]`, deep}},
		{"POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}}, "timeoutMs", []string{`"abc"`, `true`, `-1`, `0`, `1.5`, deep}},
	}
	for _, f := range fields {
		for _, v := range f.values {
			body := map[string]json.RawMessage{}
			for k, val := range f.base {
				body[k] = mustJSON(val)
			}
			body[f.field] = json.RawMessage(v)
			raw, err := json.Marshal(body)
			if err != nil { // invalid JSON on purpose (bad UTF-8 survives, a broken value does not): splice by hand
				raw = spliceField(f.base, f.field, v)
			}
			cases = append(cases, gcase{fmt.Sprintf("%s %s=%s", f.path, f.field, trunc(v)), f.method, f.path, raw, false})
		}
	}
	// Free text: any characters at all are a program, a command or input. They run; no 5xx.
	for _, v := range []string{`"\u0000\u202e\u001b[2J\r\n\ud800"`, "\"\xff\xfe\xfd\"", `"` + strings.Repeat("\u0007", 1000) + `"`} {
		cases = append(cases,
			gcase{"code " + trunc(v), "POST", "/api/playground/execute", spliceField(map[string]any{"sessionId": id, "filename": "g.js"}, "code", v), true},
			gcase{"stdin " + trunc(v), "POST", "/api/playground/execute", spliceField(map[string]any{"sessionId": id, "filename": "g.js", "code": "process.stdin.pipe(process.stdout)"}, "stdin", v), true},
			gcase{"command " + trunc(v), "POST", "/api/playground/shell", spliceField(map[string]any{"sessionId": id}, "command", strings.Replace(v, `"`, `"echo `, 1)), true},
			gcase{"content " + trunc(v), "POST", "/api/playground/sync", []byte(`{"sessionId":"` + id + `","files":[{"name":"g.txt","type":"file","content":` + v + `}]}`), true},
		)
	}
	// Query parameters of the other routes.
	for _, q := range []string{"%00", "..%2F..", "%2Fetc", "a%0Ab", "%C3%A9", "%FF", strings.Repeat("a", 200)} {
		for _, p := range []string{"/api/playground/container?sessionId=", "/api/playground/files?sessionId=" + id + "&path=", "/api/playground/processes?sessionId=",
			"/api/playground/terminal?sessionId=" + id + "&cols=", "/api/playground/processes/logs?sessionId=" + id + "&id="} {
			cases = append(cases, gcase{"GET " + p + trunc(q), "GET", p + q, nil, false})
		}
		cases = append(cases, gcase{"DELETE " + trunc(q), "DELETE", "/api/playground/container?sessionId=" + q, nil, false})
	}

	start := time.Now()
	counts := map[int]int{}
	for _, c := range cases {
		status, _, body := atkDo(t, srv.URL, c.method, c.path, c.body, true)
		counts[status]++
		switch {
		case status >= 500:
			t.Errorf("%s %s (%s): %d %.300s", c.method, c.path, c.name, status, body)
		case !c.free && (status < 400 || status >= 500):
			t.Errorf("%s %s (%s): %d %.300s, want a 4xx", c.method, c.path, c.name, status, body)
		}
		if !json.Valid(body) {
			t.Errorf("%s %s (%s): %d, answer is not JSON: %.200q", c.method, c.path, c.name, status, body)
		}
	}
	t.Logf("%d garbage requests in %v: %v", len(cases), time.Since(start), counts)
	if status, _, _ := atkDo(t, srv.URL, "GET", "/healthz", nil, true); status != 200 {
		t.Fatalf("healthz after the garbage: %d", status)
	}
	if status, _ := atkCall(t, srv, "GET", "/api/playground/container?sessionId="+fresh, nil); status != 404 {
		t.Errorf("a garbage create made session %s: %d", fresh, status)
	}
	if res := atkNode(t, srv, id, "console.log('still fine')", 10000); res["output"] != "still fine\n" {
		t.Errorf("session after the garbage: %v", res)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…(%d bytes)", s[:40], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// spliceField writes base as JSON with field set to the raw (possibly
// invalid) JSON value v.
func spliceField(base map[string]any, field, v string) []byte {
	b := mustJSON(base)
	if len(base) == 0 {
		return []byte(`{"` + field + `":` + v + `}`)
	}
	return append([]byte(`{"`+field+`":`+v+`,`), b[1:]...)
}

// deepTree is a file tree n folders deep.
func deepTree(n int) string {
	return "[" + strings.Repeat(`{"name":"d","type":"folder","children":[`, n) + `{"name":"f","type":"file","content":"x"}` + strings.Repeat("]}", n) + "]"
}

// startDaemon builds and starts the real servcraftd on a free loopback port
// and returns its base URL; it is stopped (SIGTERM) at the end of the test.
func startDaemon(t *testing.T, args ...string) string {
	t.Helper()
	const namespace = "servcraft-test-attack"
	env := runtimetest.Start(t, namespace)
	d := apitest.NewDaemon(t, apitest.Binary(t, env.RepoRoot), append(append(apitest.EnvArgs(env, namespace),
		"--state-dir", t.TempDir(), "--workspace-size", "64MiB", "--destroy-on-shutdown", "--registry", "http://127.0.0.1:9/"), args...)...)
	t.Cleanup(func() {
		d.Stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("servcraftd log:\n%s", d.Log())
		}
	})
	d.Start()
	return d.URL
}

// slowHeaders sends a request's headers one byte per 100 ms and returns how
// long the server let it go on before cutting the connection (0: never,
// within limit) and what it answered.
func slowHeaders(addr string, limit time.Duration) (time.Duration, string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err.Error()
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(conn)
		closed <- string(b)
	}()
	msg := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000) + "\r\n\r\n"
	for i := 0; time.Since(start) < limit; i++ {
		select {
		case answer := <-closed:
			return time.Since(start), answer
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := conn.Write([]byte{msg[i%len(msg)]}); err != nil {
			select {
			case answer := <-closed:
				return time.Since(start), answer
			case <-time.After(time.Second):
				return time.Since(start), "write failed: " + err.Error()
			}
		}
	}
	return 0, ""
}

// 21. Preview and terminal: a preview for another session or a host port
// reaches nothing; slow headers, huge headers and huge bodies are cut off
// by the server; a terminal left open does not keep a destroyed session alive.
func TestAttack21_PreviewTerminalAndServerLimits(t *testing.T) {
	// The real daemon's server limits, checked while the rest runs.
	base := startDaemon(t)
	addr := strings.TrimPrefix(base, "http://")
	type slowResult struct {
		after  time.Duration
		answer string
	}
	slow := make(chan slowResult, 1)
	go func() {
		d, a := slowHeaders(addr, 20*time.Second)
		slow <- slowResult{d, a}
	}()
	for _, tc := range []struct {
		name string
		req  func() (*http.Request, error)
	}{
		{"body over the limit", func() (*http.Request, error) {
			return http.NewRequest("POST", base+"/api/playground/sync", bytes.NewReader(make([]byte, 11<<20)))
		}},
		{"declared huge body", func() (*http.Request, error) {
			r, err := http.NewRequest("POST", base+"/api/playground/sync", io.LimitReader(zeroReader{}, 1<<30))
			if r != nil {
				r.ContentLength = 1 << 30
			}
			return r, err
		}},
		{"chunked huge body", func() (*http.Request, error) {
			r, err := http.NewRequest("POST", base+"/api/playground/execute", io.MultiReader(strings.NewReader(`{"sessionId":"x","code":"`), io.LimitReader(zeroReader{'a'}, 64<<20)))
			if r != nil {
				r.ContentLength = -1
				r.Header.Set("Content-Type", "application/json")
			}
			return r, err
		}},
	} {
		req, err := tc.req()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			// The server may close the connection while the client still sends: acceptable if it was quick.
			if time.Since(start) > 10*time.Second {
				t.Errorf("%s: %v after %v", tc.name, err, time.Since(start))
			}
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d, want 413", tc.name, resp.StatusCode)
		}
	}
	{
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Header.Set("X-Huge", strings.Repeat("a", 1<<20))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("1 MiB header: %d, want 431", resp.StatusCode)
			}
		}
	}

	srv := newServer(t)
	a, b := atkID(t, "-a"), atkID(t, "-b")
	atkCreate(t, srv, a)
	atkCreate(t, srv, b)
	status, started := atkCall(t, srv, "POST", "/api/playground/sync", map[string]any{"sessionId": a, "files": []map[string]any{fileNode("server.js", serverJS)}})
	if status != 200 {
		t.Fatalf("sync: %d %v", status, started)
	}
	if status, started = atkCall(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": a, "command": "node server.js", "background": true}); status != 200 {
		t.Fatalf("server: %d %v", status, started)
	}
	waitStatus(t, srv.URL+"/p/"+a+"/api/health", 200)

	hostPort, accepted := hostListener(t)
	daemonPort := srv.Listener.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		path   string
		hdr    []string
		status []int
	}{
		{"/p/" + b + "/api/health", nil, []int{503}},
		{"/api/playground/preview/" + b + "/api/health", nil, []int{503}},
		{"/p/no-such-" + b + "/", nil, []int{404}},
		{fmt.Sprintf("/p/%s/api/health?port=%d", a, hostPort), nil, []int{503}},
		{fmt.Sprintf("/p/%s/api/health?port=%d", a, daemonPort), nil, []int{503}},
		{fmt.Sprintf("/p/%s/api/health?port=%d", b, hostPort), nil, []int{503}},
		{"/p/" + a + "/api/health", []string{"X-Servcraft-Port", strconv.Itoa(hostPort)}, []int{503}},
		{"/p/" + a + "/api/health?port=0", nil, []int{400}},
		{"/p/" + a + "/api/health?port=70000", nil, []int{400}},
		{"/p/" + a + "/api/health?port=-1", nil, []int{400}},
		{"/p/" + a + "/api/health?port=3000abc", nil, []int{400}},
		{"/p/" + b + "%2F..%2F" + a + "/api/health", nil, []int{400, 404, 503}},
		{"/p/..%2F" + a + "/api/health", nil, []int{400, 404}},
		{"/p/" + b + "/..%2F..%2F" + a + "/api/health", nil, []int{503}},
	} {
		status, body, _ := get(t, srv.URL+tc.path, tc.hdr...)
		ok := false
		for _, s := range tc.status {
			ok = ok || status == s
		}
		if !ok || strings.Contains(body, `"status":"ok"`) {
			t.Errorf("GET %s %v: %d %.200s, want %v and nothing of session A's server", tc.path, tc.hdr, status, body, tc.status)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("previews reached a host port %d times", n)
	}

	// A terminal left open in B while B is destroyed.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/api/playground/terminal?sessionId="+b, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageBinary, []byte("sleep 1000 & echo started-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ctx, ws, "started-42")
	delStart := time.Now()
	if status, body := atkCall(t, srv, "DELETE", "/api/playground/container?sessionId="+b, nil); status != 200 {
		t.Fatalf("delete with an open terminal: %d %v", status, body)
	}
	t.Logf("DELETE with an open terminal took %v", time.Since(delStart))
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	select {
	case err := <-closed:
		t.Logf("terminal closed %v after the delete: %v", time.Since(delStart), err)
	case <-time.After(10 * time.Second):
		t.Errorf("the terminal stays open 10 s after its session was destroyed")
	}
	_ = ws.Write(ctx, websocket.MessageBinary, []byte("echo still-here\n")) // keystrokes after the end must not revive anything
	time.Sleep(300 * time.Millisecond)
	if status, got := atkCall(t, srv, "GET", "/api/playground/container?sessionId="+b, nil); status != 404 || got["exists"] != false {
		t.Errorf("GET after the delete: %d %v", status, got)
	}
	if status, _, _ := atkDo(t, srv.URL, "GET", "/api/playground/terminal?sessionId="+b, nil, true); status != 404 {
		t.Errorf("a new terminal in the destroyed session: %d, want 404", status)
	}
	if status, _ := atkCall(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": b, "command": "true"}); status != 404 {
		t.Errorf("shell in the destroyed session: %d, want 404", status)
	}

	r := <-slow
	t.Logf("slow headers: cut after %v (answer %.80q)", r.after, r.answer)
	if r.after == 0 {
		t.Errorf("a request sending headers at 10 bytes/s was not cut off within 20 s")
	} else if r.after > 15*time.Second {
		t.Errorf("slow headers cut after %v: ReadHeaderTimeout is too long", r.after)
	}
	if strings.Contains(r.answer, "200 OK") {
		t.Errorf("slow headers got an answer: %q", r.answer)
	}
}

type zeroReader struct{ b byte }

func (z zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = z.b
	}
	return len(p), nil
}
