package main_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

const daemonNamespace = "servcraft-test-daemon"

// daemon is one servcraftd process over a state folder that outlives it;
// args are added to the flags that point it at the test's containerd.
type daemon struct {
	t     *testing.T
	env   *runtimetest.Env
	state string
	url   string
	args  []string
	proc  *apitest.Daemon
}

func newDaemon(t *testing.T, args ...string) *daemon {
	env := runtimetest.Start(t, daemonNamespace)
	d := &daemon{t: t, env: env, state: t.TempDir(), args: args}
	t.Cleanup(func() {
		d.stop(syscall.SIGKILL)
		// Leave nothing behind: a last start with --destroy-on-shutdown.
		d.args = append(d.args, "--destroy-on-shutdown")
		d.start()
		d.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log())
		}
	})
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	if d.proc == nil {
		d.proc = apitest.NewDaemon(d.t, daemonBinary(d.t))
	}
	d.proc.Args = append(append(apitest.EnvArgs(d.env, daemonNamespace), "--state-dir", d.state, "--workspace-size", "64MiB",
		"--touch-interval", "50ms", "--reap-interval", "200ms", "--pool-size", "0"), d.args...)
	d.proc.Start()
	d.url = d.proc.URL
}

// stop signals the daemon and waits for it; it returns the exit code.
func (d *daemon) stop(sig syscall.Signal) int {
	if d.proc == nil {
		return -1
	}
	return d.proc.Stop(sig)
}

// log is everything the daemon wrote, over all its starts.
func (d *daemon) log() string {
	if d.proc == nil {
		return ""
	}
	return d.proc.Log()
}

// call is one JSON call; the answer is checked against the OpenAPI document.
func (d *daemon) call(method, path string, body any) (int, map[string]any) {
	d.t.Helper()
	return apitest.NewClient(d.t, d.url, nil, api.OpenAPIDocument()).Call(method, path, body)
}

func (d *daemon) create(id string) map[string]any {
	d.t.Helper()
	status, body := d.call("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"})
	if status != 201 {
		d.t.Fatalf("create %s: %d %v", id, status, body)
	}
	return body
}

func (d *daemon) containerExists(id string) bool {
	_, err := d.env.Client.LoadContainer(d.env.Context(d.t), id)
	return err == nil
}

func TestKill9AndRestartKeepsSessions(t *testing.T) {
	d := newDaemon(t)
	ids := []string{"restart-a", "restart-b"}
	before := map[string]any{}
	for _, id := range ids {
		d.create(id)
		status, run := d.call("POST", "/api/playground/execute", map[string]any{"sessionId": id,
			"code": "require('fs').writeFileSync('/workspace/note.txt', 'kept ' + process.argv[1])"})
		if status != 200 || run["success"] != true {
			t.Fatalf("execute: %d %v", status, run)
		}
	}
	status, inst := d.call("POST", "/api/playground/install", map[string]any{"sessionId": ids[0], "packages": []string{"is-number@7.0.0"}})
	if status != 200 || inst["success"] != true {
		t.Fatalf("install: %d %v", status, inst)
	}
	status, bg := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": ids[0],
		"command": "while :; do echo tick; sleep 0.2; done", "background": true})
	if status != 200 {
		t.Fatalf("background: %d %v", status, bg)
	}
	bgID := bg["pid"].(string)
	time.Sleep(300 * time.Millisecond) // activity reaches the store (touch interval 50ms)
	for _, id := range ids {
		_, info := d.call("GET", "/api/playground/container?sessionId="+id, nil)
		before[id] = info["expiresAt"]
	}
	if code := d.stop(syscall.SIGKILL); code != -1 {
		t.Fatalf("kill -9 exit code %d", code)
	}
	d.start()
	for _, id := range ids {
		status, info := d.call("GET", "/api/playground/container?sessionId="+id, nil)
		if status != 200 || info["status"] != "running" || info["expiresAt"] != before[id] {
			t.Fatalf("%s after restart: %d %v (expiresAt before %v)", id, status, info, before[id])
		}
		status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "cat note.txt"})
		if status != 200 || sh["output"] != "kept /workspace/index.js" {
			t.Fatalf("%s files after restart: %d %v", id, status, sh)
		}
	}
	// The installed package is still there, and the background process runs on.
	status, run := d.call("POST", "/api/playground/execute", map[string]any{"sessionId": ids[0], "code": "console.log(require('is-number')(7))"})
	if status != 200 || run["output"] != "true\n" {
		t.Fatalf("package after restart: %d %v", status, run)
	}
	status, procs := d.call("GET", "/api/playground/processes?sessionId="+ids[0], nil)
	list, _ := procs["processes"].([]any)
	if status != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != bgID || list[0].(map[string]any)["running"] != true {
		t.Fatalf("processes after restart: %d %v", status, procs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, logs := d.call("GET", "/api/playground/processes/logs?sessionId="+ids[0]+"&id="+bgID, nil)
		if out, _ := logs["output"].(string); strings.Contains(out, "restarted") && strings.Contains(out, "tick") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output from the background process after restart: %v", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, killed := d.call("DELETE", "/api/playground/processes?sessionId="+ids[0]+"&id="+bgID, nil); status != 200 {
		t.Fatalf("kill after restart: %d %v", status, killed)
	}
	if !strings.Contains(d.log(), "kept=2") {
		t.Errorf("reconcile did not report both sessions kept:\n%s", d.log())
	}
}

func TestSessionExpiredWhileDownIsDestroyedAtStart(t *testing.T) {
	d := newDaemon(t, "--idle-timeout", "2s")
	info := d.create("expire-me")
	cid := info["containerId"].(string)
	d.stop(syscall.SIGKILL)
	time.Sleep(2500 * time.Millisecond) // the session's deadline passes while the daemon is down
	d.args = []string{"--idle-timeout", "1h"}
	d.start()
	if status, _ := d.call("GET", "/api/playground/container?sessionId=expire-me", nil); status != 404 {
		t.Fatalf("expired session still answers %d", status)
	}
	if d.containerExists(cid) {
		t.Fatalf("container %s survives", cid)
	}
	if !strings.Contains(d.log(), "expired=[expire-me]") {
		t.Errorf("reconcile did not report the expiry:\n%s", d.log())
	}
}

func TestIdleSessionIsReaped(t *testing.T) {
	d := newDaemon(t, "--idle-timeout", "1s")
	info := d.create("idle")
	cid := info["containerId"].(string)
	deadline := time.Now().Add(15 * time.Second)
	for d.containerExists(cid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if d.containerExists(cid) {
		t.Fatal("idle session not reaped")
	}
	if status, _ := d.call("GET", "/api/playground/container?sessionId=idle", nil); status != 404 {
		t.Fatalf("reaped session answers %d", status)
	}
}

func TestOrphanContainerIsRemovedAtStart(t *testing.T) {
	d := newDaemon(t)
	d.stop(syscall.SIGKILL)
	ctx := d.env.Context(t)
	img, err := d.env.Client.GetImage(ctx, d.env.Image.Ref)
	if err != nil {
		t.Fatal(err)
	}
	orphan := runtime.ContainerPrefix + "orphan-" + fmt.Sprint(time.Now().UnixNano())
	_, err = d.env.Client.NewContainer(ctx, orphan, containerd.WithImage(img),
		containerd.WithNewSnapshot(orphan+"-rootfs", img),
		containerd.WithNewSpec(oci.WithImageConfig(img)),
		containerd.WithContainerLabels(map[string]string{runtime.LabelSession: "planted", runtime.LabelUUID: "no-such-uuid"}))
	if err != nil {
		t.Fatal(err)
	}
	d.start()
	if d.containerExists(orphan) {
		t.Fatal("orphan container survives the start")
	}
	d.env.AssertNoLeaks(t, orphan, "no-such-uuid", filepath.Join(d.state, "workspaces"))
}

func TestContainerDeletedBehindTheDaemonsBack(t *testing.T) {
	d := newDaemon(t)
	info := d.create("vanish")
	cid := info["containerId"].(string)
	ctx := d.env.Context(t)
	c, err := d.env.Client.LoadContainer(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
		t.Fatal(err)
	}
	// The reaper may notice the missing task and win the race to delete the container.
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	// The reaper (every 200ms here) notices the session has no task any more.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := d.call("GET", "/api/playground/container?sessionId=vanish", nil)
		if status == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET still answers %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	entries, _ := os.ReadDir(filepath.Join(d.state, "workspaces"))
	if len(entries) != 0 {
		t.Fatalf("workspace of the vanished session left: %v", entries)
	}
}

func TestGracefulShutdownKeepsOrDestroys(t *testing.T) {
	d := newDaemon(t)
	info := d.create("graceful")
	cid, _ := info["containerId"].(string)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM exit code %d:\n%s", code, d.log())
	}
	if !d.containerExists(cid) {
		t.Fatal("container destroyed by a plain shutdown")
	}
	d.start()
	if status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "graceful", "command": "echo back"}); status != 200 || sh["output"] != "back\n" {
		t.Fatalf("after restart: %d %v", status, sh)
	}
	_, got := d.call("GET", "/api/playground/container?sessionId=graceful", nil)
	d.args = []string{"--destroy-on-shutdown"}
	d.stop(syscall.SIGTERM)
	d.start() // picks up the flag for the next stop
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if d.containerExists(cid) {
		t.Fatal("--destroy-on-shutdown left the container")
	}
	uuid := strings.TrimPrefix(cid, runtime.ContainerPrefix)
	d.env.AssertNoLeaks(t, cid, uuid, filepath.Join(d.state, "workspaces"))
	_ = got
}

// TestContainerdRestartUnderTheDaemon runs the daemon on a private containerd,
// restarts that containerd, and checks readiness drops and comes back and the
// session (whose shim outlives containerd) keeps working.
func TestContainerdRestartUnderTheDaemon(t *testing.T) {
	env := runtimetest.Start(t, daemonNamespace)
	private := t.TempDir()
	script := filepath.Join(env.RepoRoot, "scripts", "dev-containerd.sh")
	ctrd := func(arg string) string {
		cmd := exec.Command(script, arg)
		cmd.Env = append(os.Environ(), "SERVCRAFT_STATE="+private)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dev-containerd.sh %s: %v", arg, err)
		}
		return strings.TrimSpace(string(out))
	}
	sock := ctrd("start")
	t.Cleanup(func() { ctrd("stop") })
	penv := *env
	penv.Address = sock
	d := &daemon{t: t, env: &penv, state: t.TempDir()}
	t.Cleanup(func() {
		d.stop(syscall.SIGKILL)
		d.args = []string{"--destroy-on-shutdown"}
		d.start()
		d.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log())
		}
	})
	d.start()
	d.create("through-restart")

	ctrd("stop")
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _ := d.call("GET", "/readyz", nil)
		if status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz stays %d with containerd down", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctrd("start")
	deadline = time.Now().Add(30 * time.Second)
	for {
		status, _ := d.call("GET", "/readyz", nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz stays %d after containerd is back", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, sh := d.call("POST", "/api/playground/shell", map[string]any{"sessionId": "through-restart", "command": "echo still here"})
	if status != 200 || sh["output"] != "still here\n" {
		t.Fatalf("after containerd restart: %d %v", status, sh)
	}
}

// daemonBinary is servcraftd built once per test binary (this package is cmd/servcraftd of the repository).
func daemonBinary(t *testing.T) string {
	t.Helper()
	return apitest.Binary(t, filepath.Join("..", ".."))
}

// TestRequireDiskFitRefusesToStart: a plan the state filesystem cannot hold
// is a refusal naming it with --require-disk-fit, a warning without.
func TestRequireDiskFitRefusesToStart(t *testing.T) {
	env := runtimetest.Start(t, daemonNamespace)
	args := append(apitest.EnvArgs(env, daemonNamespace), "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--workspace-size", "1TiB", "--max-sessions", "1000", "--pool-size", "0", "--require-disk-fit")
	ctx, cancel := context.WithTimeout(env.Context(t), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, daemonBinary(t), args...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 ||
		!strings.Contains(string(out), "disk plan (--require-disk-fit)") || !strings.Contains(string(out), "workspaces (--max-sessions 1000") {
		t.Fatalf("start with a plan that does not fit: %v\n%s", err, out)
	}
}
