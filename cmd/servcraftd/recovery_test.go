package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
)

// post sends a JSON request that the test does not wait on the answer of
// (the daemon is killed under it): errors are expected and ignored.
func (d *daemon) post(path string, body any) {
	b, _ := json.Marshal(body)
	if resp, err := http.Post(d.url+path, "application/json", bytes.NewReader(b)); err == nil {
		resp.Body.Close()
	}
}

// runCLI runs a servcraftd subcommand against the daemon's state and
// containerd, and returns its exit code and combined output.
func (d *daemon) runCLI(args ...string) (int, string) {
	d.t.Helper()
	args = append(args, "--state-dir", d.state)
	if args[0] != "sessions" {
		args = append(args, "--containerd-address", d.env.Address, "--namespace", daemonNamespace)
	}
	cmd := exec.Command(daemonBinary(d.t), args...)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		d.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// startRefused runs the daemon with its usual flags and expects it to exit
// at once with code; it returns what the daemon wrote.
func (d *daemon) startRefused(code int) string {
	d.t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0"}, d.proc.Args...)
	cmd := exec.Command(daemonBinary(d.t), args...)
	out, _ := cmd.CombinedOutput()
	if got := cmd.ProcessState.ExitCode(); got != code {
		d.t.Fatalf("daemon exit code %d, want %d:\n%s", got, code, out)
	}
	return string(out)
}

func expiresAt(t *testing.T, info map[string]any) time.Time {
	t.Helper()
	s, _ := info["expiresAt"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("expiresAt %q: %v", s, err)
	}
	return at
}

// TestDamagedStoreAndRebuild damages the session database under a daemon
// with running sessions: the daemon and `sessions ls` refuse it with exit
// code 3 and advice, no crash; `store rebuild` after deleting the file
// brings back every running session with its files, deadline (within the
// touch interval), projectType and running background process, which the
// next start leaves running.
func TestDamagedStoreAndRebuild(t *testing.T) {
	const touch = 200 * time.Millisecond
	d := newDaemon(t, "--touch-interval", touch.String())
	type want struct {
		projectType string
		extended    bool
		expires     time.Time
	}
	wants := map[string]*want{}
	for i, pt := range []string{"js", "ts", "js"} {
		id := fmt.Sprintf("rebuild-%d", i)
		status, body := d.call("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": pt})
		if status != 201 {
			t.Fatalf("create %s: %d %v", id, status, body)
		}
		status, body = d.call("POST", "/api/playground/sync", map[string]any{"sessionId": id,
			"files": []map[string]any{{"name": "note.txt", "type": "file", "path": "note.txt", "content": "note of " + id}}})
		if status != 200 {
			t.Fatalf("sync %s: %d %v", id, status, body)
		}
		wants[id] = &want{projectType: pt}
	}
	if status, body := d.call("PATCH", "/api/playground/container", map[string]any{"sessionId": "rebuild-1"}); status != 200 {
		t.Fatalf("extend: %d %v", status, body)
	}
	wants["rebuild-1"].extended = true
	const bgCommand = "sleep 3600 && echo never"
	status, started := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "rebuild-2", "command": bgCommand, "background": true})
	if status != 200 || started["pid"] == nil {
		t.Fatalf("background process: %d %v", status, started)
	}
	bg := started["pid"].(string)
	bgStarted, _ := time.Parse(time.RFC3339Nano, started["process"].(map[string]any)["startedAt"].(string))
	time.Sleep(3 * touch) // the activity reaches the store and the labels (one touch interval each)
	for id, w := range wants {
		_, info := d.call("GET", "/api/playground/container?sessionId="+id, nil)
		w.expires = expiresAt(t, info)
	}
	d.stop(syscall.SIGKILL)

	// A truncated database: the daemon and sessions ls refuse it, no crash.
	db := filepath.Join(d.state, "servcraftd.db")
	if err := os.Truncate(db, 8192+100); err != nil {
		t.Fatal(err)
	}
	out := d.startRefused(3)
	if !strings.Contains(out, "damaged") || !strings.Contains(out, "store rebuild") {
		t.Fatalf("the refusal does not say what to do:\n%s", out)
	}
	if code, out := d.runCLI("sessions", "ls"); code != 3 || !strings.Contains(out, "damaged") {
		t.Fatalf("sessions ls on a damaged file: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "fatal error") || strings.Contains(out, "SIGBUS") {
		t.Fatalf("a crash:\n%s", out)
	}

	// Deleted altogether: rebuild from containerd and the workspaces.
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}
	code, out := d.runCLI("store", "rebuild")
	t.Logf("store rebuild:\n%s", out)
	if code != 0 || !strings.Contains(out, "rebuilt") {
		t.Fatalf("store rebuild: exit %d:\n%s", code, out)
	}
	code, out = d.runCLI("sessions", "ls", "--json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != len(wants) {
		t.Fatalf("sessions ls after the rebuild: exit %d:\n%s", code, out)
	}
	d.start()
	for id, w := range wants {
		status, info := d.call("GET", "/api/playground/container?sessionId="+id, nil)
		if status != 200 || info["status"] != "running" || info["projectType"] != w.projectType || info["isExtended"] != w.extended {
			t.Fatalf("%s after the rebuild: %d %v, want %+v", id, status, info, w)
		}
		if got := expiresAt(t, info); got.Sub(w.expires).Abs() > touch {
			t.Fatalf("%s: deadline %v after the rebuild, %v before (touch interval %v)", id, got, w.expires, touch)
		}
		status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "cat note.txt"})
		if status != 200 || sh["output"] != "note of "+id {
			t.Fatalf("%s files after the rebuild: %d %v", id, status, sh)
		}
	}
	if strings.Contains(d.log(), "orphans=[servcraft") {
		t.Fatalf("a rebuilt session was taken for an orphan:\n%s", d.log())
	}
	if strings.Contains(d.log(), "stale_runs=[rebuild-2/"+bg) {
		t.Fatalf("the start killed the rebuilt session's background process:\n%s", d.log())
	}
	status, ps := d.call("GET", "/api/playground/processes?sessionId=rebuild-2", nil)
	procs, _ := ps["processes"].([]any)
	if status != 200 || len(procs) != 1 {
		t.Fatalf("background processes after the rebuild: %d %v", status, ps)
	}
	p := procs[0].(map[string]any)
	at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(p["startedAt"]))
	if p["id"] != bg || p["command"] != bgCommand || p["running"] != true || at.Sub(bgStarted).Abs() > 2*time.Second {
		t.Fatalf("background process after the rebuild: %v, want %s %q running, started near %v", p, bg, bgCommand, bgStarted)
	}
	status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "rebuild-2", "command": "ps -o args | grep -c '^[s]leep 3600' || true"})
	if status != 200 || strings.TrimSpace(fmt.Sprint(sh["output"])) != "1" {
		t.Fatalf("the background process in the session after the rebuild: %d %v", status, sh)
	}
}

// runCgroups lists the run cgroups of container id (one per run in flight).
func (d *daemon) runCgroups(id string) []string {
	d.t.Helper()
	c, err := d.env.Client.LoadContainer(d.env.Context(d.t), id)
	if err != nil {
		return nil
	}
	spec, err := c.Spec(d.env.Context(d.t))
	if err != nil {
		d.t.Fatal(err)
	}
	dir := filepath.Join("/sys/fs/cgroup", spec.Linux.CgroupsPath)
	if _, err := os.Stat("/sys/fs/cgroup/freezer"); err == nil {
		dir = filepath.Join("/sys/fs/cgroup/freezer", spec.Linux.CgroupsPath)
	}
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// waitFor polls cond every 2 ms until it holds, failing after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// uuidOf is the workspace UUID of a session container.
func uuidOf(containerID string) string {
	return strings.TrimPrefix(containerID, runtime.ContainerPrefix)
}

// TestKill9MidSync kills the daemon while a sync of 2000 files is being
// written: after the restart every file the workspace shows is whole (the
// old content or the new, never a part), no new file of a write cut short
// is left (one is planted too, in a subfolder, as a kill between creating
// and renaming it leaves it), the session is intact, and once destroyed
// nothing of it is left.
func TestKill9MidSync(t *testing.T) {
	d := newDaemon(t, "--max-sync-files", "2000")
	info := d.create("sync-kill")
	cid := info["containerId"].(string)
	mnt := filepath.Join(d.state, "workspaces", uuidOf(cid), "mnt")
	const n = 2000
	content := func(i int) string { return strings.Repeat(fmt.Sprintf("file %d; ", i), 400) } // ~4 KiB
	files := make([]map[string]any, n)
	for i := range files {
		name := fmt.Sprintf("f%04d.txt", i)
		files[i] = map[string]any{"name": name, "type": "file", "path": name, "content": content(i)}
	}
	for attempt := 1; ; attempt++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.post("/api/playground/sync", map[string]any{"sessionId": "sync-kill", "files": files})
		}()
		written := 0
		waitFor(t, 30*time.Second, "the sync to start writing", func() bool {
			entries, _ := os.ReadDir(mnt)
			written = 0
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "f") {
					written++
				}
			}
			return written > 0
		})
		d.stop(syscall.SIGKILL)
		<-done
		if written < n {
			t.Logf("killed after %d of %d files (attempt %d)", written, n, attempt)
			break
		}
		if attempt == 3 {
			t.Fatal("every sync finished before the kill")
		}
		d.start()
		for i := range files {
			files[i]["content"] = content(i + attempt*n)
		}
	}
	if err := os.MkdirAll(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "sub", ".servcraft-write-0123456789abcdef"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("new files of writes cut short before the restart: %v", writeLeftovers(t, mnt))
	d.start()
	if left := writeLeftovers(t, mnt); len(left) > 0 {
		t.Fatalf("files of writes cut short are left after the restart: %v", left)
	}
	if !strings.Contains(d.log(), "half_written=[sync-kill/") {
		t.Errorf("the start did not report the files it removed:\n%s", d.log())
	}
	status, list := d.call("GET", "/api/playground/files?sessionId=sync-kill", nil)
	if status != 200 {
		t.Fatalf("files after restart: %d %v", status, list)
	}
	whole := 0
	for _, f := range list["files"].([]any) {
		f := f.(map[string]any)
		name := f["name"].(string)
		if !strings.HasPrefix(name, "f") {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(name, "f%04d.txt", &i); err != nil {
			t.Fatalf("unexpected file %s", name)
		}
		got := f["content"].(string)
		if got != content(i) && got != content(i+n) && got != content(i+2*n) {
			t.Fatalf("%s is half written: %d bytes", name, len(got))
		}
		whole++
	}
	t.Logf("%d whole files after the restart", whole)
	if status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "sync-kill", "command": "echo alive"}); status != 200 || sh["output"] != "alive\n" {
		t.Fatalf("session after restart: %d %v", status, sh)
	}
	if status, _ := d.call("DELETE", "/api/playground/container?sessionId=sync-kill", nil); status != 200 {
		t.Fatalf("destroy: %d", status)
	}
	d.env.AssertNoLeaks(t, cid, uuidOf(cid), filepath.Join(d.state, "workspaces"))
}

// writeLeftovers lists the new files of writes (.servcraft-write-…) under
// the workspace folder mnt.
func writeLeftovers(t *testing.T, mnt string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".servcraft-write-") {
			left = append(left, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// slowInstallPackage is a package.json with no dependencies (npm fetches
// nothing) whose own postinstall sleeps unless the workspace holds a file
// named fast.
const slowInstallPackage = `{"name":"slow","version":"1.0.0","private":true,"scripts":{"postinstall":"test -e fast || sleep 600"}}`

// TestKill9MidInstall kills the daemon while an npm install runs: the next
// start kills the install (its run cgroup says which), leaves the session
// running and, once destroyed, nothing behind.
func TestKill9MidInstall(t *testing.T) {
	d := newDaemon(t, "--runners=false")
	info := d.create("install-kill")
	cid := info["containerId"].(string)
	if status, body := d.call("POST", "/api/playground/sync", map[string]any{"sessionId": "install-kill",
		"files": []map[string]any{{"name": "package.json", "type": "file", "path": "package.json", "content": slowInstallPackage}}}); status != 200 {
		t.Fatalf("sync: %d %v", status, body)
	}
	go d.post("/api/playground/install", map[string]any{"sessionId": "install-kill", "packages": []string{}})
	d.killDuringRun(t, cid, "the install")
	status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "install-kill", "command": "ps -o args | grep -c '[s]leep 600' || true"})
	if status != 200 || strings.TrimSpace(sh["output"].(string)) != "0" {
		t.Fatalf("the install's processes after the restart: %d %v", status, sh)
	}
	if !strings.Contains(d.log(), "stale_runs=[install-kill/") {
		t.Errorf("the start did not report the install it killed:\n%s", d.log())
	}
	if status, _ := d.call("DELETE", "/api/playground/container?sessionId=install-kill", nil); status != 200 {
		t.Fatalf("destroy: %d", status)
	}
	d.env.AssertNoLeaks(t, cid, uuidOf(cid), filepath.Join(d.state, "workspaces"))
}

// TestKill9MidCreate kills the daemon while it creates a session: the next
// start finishes it off (no container, snapshot, mount, loop device or
// workspace left) and the session can be created afresh.
func TestKill9MidCreate(t *testing.T) {
	d := newDaemon(t)
	ws := filepath.Join(d.state, "workspaces")
	go d.post("/api/playground/container", map[string]any{"sessionId": "create-kill"})
	var uuid string
	waitFor(t, 30*time.Second, "the workspace of the create", func() bool {
		entries, _ := os.ReadDir(ws)
		if len(entries) > 0 {
			uuid = entries[0].Name()
		}
		return uuid != ""
	})
	d.stop(syscall.SIGKILL)
	d.start()
	d.env.AssertNoLeaks(t, runtime.ContainerPrefix+uuid, uuid, ws)
	if status, _ := d.call("GET", "/api/playground/container?sessionId=create-kill", nil); status != 404 {
		t.Fatalf("a half-made session answers %d", status)
	}
	d.create("create-kill")
}

// TestKill9MidLayerBuild kills the daemon while it builds a dependency
// layer in a private session: the next start kills the build and removes
// its session, and no layer that was never finished is left in the cache.
func TestKill9MidLayerBuild(t *testing.T) {
	d := newDaemon(t, "--runners=false")
	d.create("layer-kill")
	if status, body := d.call("POST", "/api/playground/sync", map[string]any{"sessionId": "layer-kill", "files": []map[string]any{
		{"name": "package.json", "type": "file", "path": "package.json", "content": slowInstallPackage},
		{"name": "fast", "type": "file", "path": "fast", "content": ""},
	}}); status != 200 {
		t.Fatalf("sync: %d %v", status, body)
	}
	// The session's own install is fast; the layer builder's (without the
	// file named fast) sleeps in its postinstall.
	if status, body := d.call("POST", "/api/playground/install", map[string]any{"sessionId": "layer-kill", "packages": []string{}}); status != 200 {
		t.Fatalf("install: %d %v", status, body)
	}
	ctx := d.env.Context(t)
	var builder string
	waitFor(t, 60*time.Second, "the layer builder's install", func() bool {
		cs, err := d.env.Client.Containers(ctx, fmt.Sprintf("labels.%q", runtime.LabelSession))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			labels, _ := c.Labels(ctx)
			if strings.HasPrefix(labels[runtime.LabelSession], "~deps-") && len(d.runCgroups(c.ID())) > 0 {
				builder = c.ID()
				return true
			}
		}
		return false
	})
	d.stop(syscall.SIGKILL)
	// A copy cut short, as a kill during the copy leaves it.
	cache := filepath.Join(d.state, "depcache")
	if err := os.MkdirAll(filepath.Join(cache, ".build-cut"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.start()
	d.env.AssertNoLeaks(t, builder, uuidOf(builder), filepath.Join(d.state, "workspaces"))
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(cache, e.Name(), "package-lock.json")); err != nil {
			t.Errorf("an unfinished layer is left in the cache: %s", e.Name())
		}
	}
	if !bytes.Contains([]byte(d.log()), []byte("unfinished=[~deps-")) {
		t.Errorf("the start did not report the builder it finished off:\n%s", d.log())
	}
}

// killDuringRun waits until a run of container cid (what, for messages) has
// its run cgroup, kills the daemon with SIGKILL, starts it again, and checks
// that the run's cgroup did not survive the start.
func (d *daemon) killDuringRun(t *testing.T, cid, what string) {
	t.Helper()
	var runs []string
	waitFor(t, 30*time.Second, what+"'s run cgroup", func() bool { runs = d.runCgroups(cid); return len(runs) > 0 })
	d.stop(syscall.SIGKILL)
	d.start()
	for _, r := range runs {
		if _, err := os.Stat(r); !os.IsNotExist(err) {
			t.Fatalf("%s's run cgroup %s survives the restart (%v)", what, r, err)
		}
	}
}

// TestKill9MidExecute kills the daemon while a shell command runs: the next
// start kills the run (its run cgroup says which), keeps the session, which
// serves, and once destroyed nothing of it is left.
func TestKill9MidExecute(t *testing.T) {
	d := newDaemon(t, "--runners=false")
	info := d.create("execute-kill")
	cid := info["containerId"].(string)
	go d.post("/api/playground/shell", map[string]any{"sessionId": "execute-kill", "command": "sleep 300"})
	d.killDuringRun(t, cid, "the command")
	if !strings.Contains(d.log(), "execute-kill/run-") { // in stale_runs=[…]
		t.Errorf("the start did not report the run it killed:\n%s", d.log())
	}
	if !strings.Contains(d.log(), "kept=1") {
		t.Errorf("the session was not kept:\n%s", d.log())
	}
	status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "execute-kill", "command": "ps -o args | grep -c -e '^[s]leep 300' -e '[s]ervcraft-run' || true"})
	if status != 200 || strings.TrimSpace(fmt.Sprint(sh["output"])) != "0" {
		t.Fatalf("the command's processes after the restart: %d %v", status, sh)
	}
	if status, body := d.call("POST", "/api/playground/execute", map[string]any{"sessionId": "execute-kill", "code": "console.log(6*7)"}); status != 200 || body["output"] != "42\n" {
		t.Fatalf("execute after the restart: %d %v", status, body)
	}
	if status, _ := d.call("DELETE", "/api/playground/container?sessionId=execute-kill", nil); status != 200 {
		t.Fatalf("destroy: %d", status)
	}
	d.env.AssertNoLeaks(t, cid, uuidOf(cid), filepath.Join(d.state, "workspaces"))
}
