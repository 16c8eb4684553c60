package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/leases"

	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/store"
)

const opsNamespace = "servcraft-test-ops"

// opsDaemon is one servcraftd process for the operations tests.
type opsDaemon struct {
	*apitest.Daemon
	t     *testing.T
	url   string
	token string
}

func startOpsDaemon(t *testing.T, env *runtimetest.Env, state string, extra ...string) *opsDaemon {
	t.Helper()
	token := "ops-test-token-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append(apitest.EnvArgs(env, opsNamespace), "--state-dir", state, "--workspace-size", "64MiB",
		"--touch-interval", "50ms", "--api-token-file", tokenFile, "--log-format", "json", "--pool-size", "0"), extra...)
	d := &opsDaemon{Daemon: apitest.NewDaemon(t, daemonBinary(t), args...), t: t, token: token}
	d.StopAtCleanup(syscall.SIGKILL)
	d.Start()
	d.url = d.URL
	return d
}

// parseServerTimingPhases reads "name;dur=1.5, ..." into milliseconds by name.
func parseServerTimingPhases(header string) map[string]float64 {
	out := map[string]float64{}
	for _, part := range strings.Split(header, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		if v, err := strconv.ParseFloat(dur, 64); ok && err == nil {
			out[name] = v
		}
	}
	return out
}

// parseServerTiming is the phases of a Server-Timing header and its total.
func parseServerTiming(t *testing.T, header string) (map[string]float64, float64) {
	t.Helper()
	phases := parseServerTimingPhases(header)
	total, ok := phases["total"]
	if !ok || len(phases) < 3 {
		t.Fatalf("Server-Timing %q: no phases and total", header)
	}
	delete(phases, "total")
	return phases, total
}

// awaitLogRecord waits (5 s at most) for a JSON log record of the daemon
// that match accepts: a request's line is written after its answer is sent.
func awaitLogRecord(t *testing.T, d *apitest.Daemon, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, line := range strings.Split(d.Log(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && match(rec) {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such record in the daemon's log:\n%s", apitest.Tail(d.Log(), 4000))
		}
	}
}

// logRecord is the first JSON log record of the daemon whose msg is msg.
func logRecord(t *testing.T, log, msg string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	t.Fatalf("no %q record in the daemon's log:\n%s", msg, apitest.Tail(log, 4000))
	return nil
}

// request sends an API call with the token (or without, if auth is false).
func (d *opsDaemon) request(method, path string, body any, auth bool) (*http.Response, []byte) {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.url+path, r)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "ops-test")
	if auth {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// servcraftd runs the binary with args and returns its exit code, stdout and stderr.
func servcraftd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return servcraftdIn(t, "", nil, args...)
}

// servcraftdIn runs the binary in dir (or the test's folder) with vars added
// to its environment.
func servcraftdIn(t *testing.T, dir string, vars []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(daemonBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), vars...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// metricLine returns the value of one series in a scrape, or "".
func metricLine(scrape, series string) string {
	for _, l := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

func TestHelpListsSubcommandsAndFlags(t *testing.T) {
	code, out, errOut := servcraftd(t, "--help")
	help := out + errOut
	if code != 0 || !strings.HasPrefix(help, "servcraftd: ") {
		t.Fatalf("exit %d:\n%s", code, help)
	}
	for _, want := range []string{"sessions ls", "gc --yes", "SERVCRAFT_", "--config",
		"-memory size", "(default 512MiB)", "-idle-timeout duration", "(default 30m0s)", "-create-rate rate", "(default 30/m:10)",
		"-api-token-file file", "-cors-origins origins", "-preview-public", "-max-concurrent-execs int", "(default 4)"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if code, _, errOut := servcraftd(t, "--memory", "-5"); code != 2 || !strings.Contains(errOut, "memory") {
		t.Errorf("bad memory: exit %d %q", code, errOut)
	}
	if code, _, errOut := servcraftd(t, "gc", "--help"); code != 0 || !strings.Contains(errOut, "--yes") {
		t.Errorf("gc --help: exit %d %q", code, errOut)
	}
}

func TestSessionsLsAndGCAgainstARealDaemon(t *testing.T) {
	env := runtimetest.Start(t, opsNamespace)
	state := t.TempDir()
	t.Cleanup(func() {
		servcraftd(t, "gc", "--yes", "--state-dir", state, "--containerd-address", env.Address, "--namespace", opsNamespace)
	})
	d := startOpsDaemon(t, env, state)

	// The start-up log says what the host is: cgroup layout, containerd and runc.
	host, connected := logRecord(t, d.Log(), "host"), logRecord(t, d.Log(), "containerd connected")
	for key, rec := range map[string]map[string]any{"cgroup": host, "runc": host, "libseccomp": host, "version": connected} {
		if v, _ := rec[key].(string); v == "" {
			t.Errorf("start-up log: no %s in %v", key, rec)
		}
	}

	// The API wants the token; /healthz does not.
	if resp, _ := d.request("POST", "/api/playground/container", map[string]any{"sessionId": "ops-a"}, false); resp.StatusCode != 401 {
		t.Fatalf("create without token: %d", resp.StatusCode)
	}
	if resp, _ := d.request("GET", "/healthz", nil, false); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	ids := []string{"ops-a", "ops-b"}
	for _, id := range ids {
		resp, body := d.request("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}, true)
		if resp.StatusCode != 201 || resp.Header.Get("X-Request-ID") != "ops-test" {
			t.Fatalf("create %s: %d %s", id, resp.StatusCode, body)
		}
	}
	resp, body := d.request("POST", "/api/playground/execute", map[string]any{"sessionId": "ops-a", "code": "console.log(6*7)"}, true)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"output":"42\n"`) {
		t.Fatalf("execute: %d %s", resp.StatusCode, body)
	}
	executeTiming := resp.Header.Get("Server-Timing")
	resp, body = d.request("POST", "/api/playground/shell", map[string]any{"sessionId": "ops-b", "command": "exit 3"}, true)
	if resp.StatusCode != 200 {
		t.Fatalf("shell: %d %s", resp.StatusCode, body)
	}
	// Each run answer carries its phases; they add up to their total, and
	// the total to the request's time in the log (which also ends with
	// writing the body) within 1 ms.
	for route, timing := range map[string]string{"/api/playground/execute": executeTiming, "/api/playground/shell": resp.Header.Get("Server-Timing")} {
		phases, total := parseServerTiming(t, timing)
		for _, name := range []string{"parse", "lock", "runner", "run", "finish", "answer"} {
			if _, ok := phases[name]; !ok {
				t.Errorf("%s: no %s phase in %q", route, name, timing)
			}
		}
		var sum float64
		for _, v := range phases {
			sum += v
		}
		if math.Abs(sum-total) > 0.01 {
			t.Errorf("%s: phases add up to %.3f ms, total %.3f ms (%q)", route, sum, total, timing)
		}
		rec := awaitLogRecord(t, d.Daemon, func(r map[string]any) bool { return r["msg"] == "request" && r["route"] == route })
		logged, _ := rec["durationMs"].(float64)
		if logged < total || logged-total > 1 {
			t.Errorf("%s: total %.3f ms, the request took %.3f ms in the log", route, total, logged)
		}
		if p, _ := rec["phases"].(string); !strings.Contains(p, "run=") {
			t.Errorf("%s: the log line has no phases: %v", route, rec)
		}
	}
	if _, ok := parseServerTimingPhases(executeTiming)["write"]; !ok {
		t.Errorf("execute: no write phase in %q", executeTiming)
	}

	// /metrics after that traffic (it wants the token too).
	if resp, _ := d.request("GET", "/metrics", nil, false); resp.StatusCode != 401 {
		t.Fatalf("metrics without token: %d", resp.StatusCode)
	}
	resp, body = d.request("GET", "/metrics", nil, true)
	scrape := string(body)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for series, want := range map[string]string{
		`servcraft_sessions_active`:                                                                   "2",
		`servcraft_session_creates_total{outcome="ok"}`:                                               "2",
		`servcraft_exec_results_total{result="ok"}`:                                                   "1",
		`servcraft_exec_results_total{result="nonzero"}`:                                              "1",
		`servcraft_http_requests_total{method="POST",route="/api/playground/container",status="201"}`: "2",
		`servcraft_http_requests_total{method="POST",route="/api/playground/container",status="401"}`: "1",
		`servcraft_operation_duration_seconds_count{operation="create"}`:                              "2",
		`servcraft_operation_duration_seconds_count{operation="execute"}`:                             "1",
		`servcraft_operation_duration_seconds_count{operation="shell"}`:                               "1",
	} {
		if got := metricLine(scrape, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	if testing.Verbose() {
		t.Logf("scrape excerpt:\n%s", grepServcraft(scrape))
	}
	if !strings.Contains(d.Log(), `"msg":"request"`) || !strings.Contains(d.Log(), `"requestId":"ops-test"`) ||
		strings.Contains(d.Log(), "console.log(6*7)") {
		t.Errorf("request log lines wrong:\n%s", d.Log())
	}

	// sessions ls reads the store while the daemon holds it.
	start := time.Now()
	code, out, errOut := servcraftd(t, "sessions", "ls", "--state-dir", state)
	if code != 0 || time.Since(start) > 10*time.Second {
		t.Fatalf("sessions ls while running: exit %d after %v: %s", code, time.Since(start), errOut)
	}
	t.Logf("servcraftd sessions ls (daemon running):\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SESSION") {
		t.Fatalf("table:\n%s", out)
	}
	code, out, errOut = servcraftd(t, "sessions", "ls", "--json", "--state-dir", state)
	var list []store.Session
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
		t.Fatalf("sessions ls --json: exit %d %s %s", code, out, errOut)
	}
	for i, s := range list {
		if s.SessionID != ids[i] || !strings.HasPrefix(s.ContainerID, runtime.ContainerPrefix) || s.State != store.StateRunning ||
			!strings.Contains(lines[i+1], s.ContainerID) {
			t.Fatalf("session %d: %+v / %q", i, s, lines[i+1])
		}
	}

	// gc refuses while the daemon runs.
	gcArgs := []string{"gc", "--state-dir", state, "--containerd-address", env.Address, "--namespace", opsNamespace}
	if code, _, errOut := servcraftd(t, append(gcArgs, "--yes")...); code != 1 || !strings.Contains(errOut, "is running") {
		t.Fatalf("gc with the daemon running: exit %d %s", code, errOut)
	}

	// The daemon dies without cleaning up; a stray rootfs snapshot joins what
	// it left, held by a lease as a create cut short leaves one (without a
	// lease or a container, containerd's own GC would take it).
	d.Kill()
	ctx := env.Context(t)
	lease, err := env.Client.LeasesService().Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.LeasesService().Delete(env.Context(t), lease) })
	stray := runtime.ContainerPrefix + "stray-rootfs"
	if _, err := env.Client.SnapshotService(env.Image.Snapshotter).Prepare(leases.WithLease(ctx, lease.ID), stray, ""); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := servcraftd(t, "sessions", "ls", "--state-dir", state); code != 0 || !strings.Contains(out, "ops-b") {
		t.Fatalf("sessions ls after the daemon: exit %d %s", code, out)
	}

	// Without --yes: a list, and nothing removed.
	code, out, errOut = servcraftd(t, gcArgs...)
	if code != 1 || !strings.Contains(errOut, "--yes") || strings.Count(out, "would remove container") != 2 ||
		!strings.Contains(out, "would remove snapshot "+stray) || strings.Count(out, "would remove workspace") != 2 {
		t.Fatalf("gc without --yes: exit %d\n%s%s", code, out, errOut)
	}
	for _, s := range list {
		if _, err := env.Client.LoadContainer(ctx, s.ContainerID); err != nil {
			t.Fatalf("gc without --yes removed %s: %v", s.ContainerID, err)
		}
	}

	code, out, errOut = servcraftd(t, append(gcArgs, "--yes")...)
	t.Logf("servcraftd gc --yes:\n%s", out)
	if code != 0 || strings.Count(out, "removed container") != 2 || !strings.Contains(out, "removed snapshot "+stray) ||
		!strings.Contains(out, "removed "+filepath.Join(state, "servcraftd.db")) {
		t.Fatalf("gc --yes: exit %d\n%s%s", code, out, errOut)
	}
	for _, s := range list {
		env.AssertNoLeaks(t, s.ContainerID, s.UUID, filepath.Join(state, "workspaces"))
	}
	for _, id := range env.Containers(t) {
		if strings.HasPrefix(id, runtime.ContainerPrefix) {
			t.Errorf("container %s left", id)
		}
	}
	if _, err := env.Client.SnapshotService(env.Image.Snapshotter).Stat(ctx, stray); err == nil {
		t.Error("stray snapshot left")
	}
	for _, p := range []string{"servcraftd.db", "workspaces", "fifo"} {
		if _, err := os.Stat(filepath.Join(state, p)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if code, out, _ := servcraftd(t, append(gcArgs, "--yes")...); code != 0 || !strings.Contains(out, "nothing of servcraftd's") {
		t.Errorf("second gc: exit %d %s", code, out)
	}
}

func grepServcraft(scrape string) string {
	var b strings.Builder
	for _, l := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(l, "servcraft_") && !strings.Contains(l, "_bucket{") {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}

func TestSessionsLs(t *testing.T) {
	state := t.TempDir()
	if code, _, errOut := servcraftd(t, "sessions", "ls", "--state-dir", state); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("no database: %d %q", code, errOut)
	}
	db, err := store.Open(filepath.Join(state, "servcraftd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	for _, id := range []string{"session-b", "session-a"} {
		if err := db.Create(store.Session{SessionID: id, ContainerID: "servcraft-playground-" + id, State: store.StateRunning,
			ProjectType: "ts", CreatedAt: at, LastActiveAt: at, ExpiresAt: at.Add(30 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	// The database stays open here, locked the way the daemon holds it.
	code, out, errOut := servcraftdIn(t, "", []string{"SERVCRAFT_STATE_DIR=" + state}, "sessions", "ls")
	if code != 0 {
		t.Fatalf("ls: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SESSION") || !strings.HasPrefix(lines[1], "session-a") ||
		!strings.Contains(lines[1], "servcraft-playground-session-a") || !strings.Contains(lines[1], "running") ||
		!strings.Contains(lines[1], "2026-11-25T18:30:00Z") {
		t.Fatalf("table:\n%s", out)
	}
	// A relative --state-dir is the working directory's.
	code, out, errOut = servcraftdIn(t, filepath.Dir(state), nil, "sessions", "ls", "--state-dir", filepath.Base(state), "--json")
	if code != 0 {
		t.Fatalf("ls --json: %d %s", code, errOut)
	}
	var list []store.Session
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[1].ContainerID != "servcraft-playground-session-b" {
		t.Fatalf("json: %v %s", err, out)
	}
	for _, args := range [][]string{{}, {"rm"}, {"ls", "extra"}, {"ls", "--no-such-flag"}} {
		if code, _, _ := servcraftd(t, append([]string{"sessions"}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestGCRefusesWhileTheDatabaseIsHeld(t *testing.T) {
	state := t.TempDir()
	db, err := store.Open(filepath.Join(state, "servcraftd.db"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := servcraftd(t, "gc", "--state-dir", state, "--containerd-address", "/nonexistent.sock", "--yes")
	if code != 1 || !strings.Contains(errOut, "is running") {
		t.Fatalf("gc with the database held: %d %q %q", code, out, errOut)
	}
	db.Close()
	if _, err := os.Stat(filepath.Join(state, "servcraftd.db")); err != nil {
		t.Fatalf("gc removed the database of a running daemon: %v", err)
	}
}

// A relative --containerd-address is a path from the working directory (gRPC
// read its first folder as a host name before).
func TestRelativeContainerdAddress(t *testing.T) {
	env := runtimetest.Start(t, opsNamespace)
	dir := t.TempDir()
	sock, err := filepath.Rel(dir, env.Address)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := servcraftdIn(t, dir, nil, "gc", "--state-dir", "state", "--containerd-address", sock,
		"--namespace", opsNamespace+"-relative")
	if code != 0 || !strings.Contains(out, "nothing of servcraftd's") || !strings.Contains(out, filepath.Join(dir, "state")) {
		t.Fatalf("gc with containerd at %s from %s: exit %d\n%s%s", sock, dir, code, out, errOut)
	}
}
