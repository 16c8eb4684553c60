package runtime_test

// The attack suite of issue 6, runtime half: hostile code inside a session
// against the real containerd, runc and kernel. Each TestAttackNN is one
// numbered line of the issue; the API half is api/attack_integration_test.go.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// sh runs a shell command in the session and returns its result.
func (h *harness) sh(t *testing.T, s store.Session, timeout time.Duration, command string) runtime.ExecResult {
	t.Helper()
	return h.exec(t, s, timeout, "/bin/sh", "-c", command)
}

func randToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// statusFields parses the "Name:\tvalue" lines of /proc/<pid>/status.
func statusFields(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// checkSecurityStatus asserts the sandbox's credentials in one /proc/<pid>/status.
func checkSecurityStatus(t *testing.T, who, status string) {
	t.Helper()
	f := statusFields(status)
	for _, key := range []string{"Uid", "Gid"} {
		ids := strings.Fields(f[key])
		if len(ids) != 4 {
			t.Errorf("%s: %s line %q", who, key, f[key])
			continue
		}
		for _, id := range ids {
			if id != strconv.Itoa(runtime.SandboxUID) {
				t.Errorf("%s: %s %q, want the sandbox user's %d throughout (not root, not the gate's)", who, key, f[key], runtime.SandboxUID)
			}
		}
	}
	if g := strings.Fields(f["Groups"]); len(g) > 1 || slices.Contains(g, "0") {
		t.Errorf("%s: supplementary groups %q", who, f["Groups"])
	}
	if f["NoNewPrivs"] != "1" {
		t.Errorf("%s: NoNewPrivs %q, want 1", who, f["NoNewPrivs"])
	}
	for _, key := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if f[key] != "0000000000000000" {
			t.Errorf("%s: %s %q, want all zero", who, key, f[key])
		}
	}
	if f["Seccomp"] != "2" {
		t.Errorf("%s: Seccomp %q, want 2 (filter)", who, f["Seccomp"])
	}
}

// 1. uid ≠ 0, NoNewPrivs 1, CapEff = CapBnd = 0, Seccomp 2 — for a shell, a
// node program, a background process and the container's PID 1.
func TestAttack01_CredentialsOfEveryProcess(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	res := h.sh(t, s, 0, "cat /proc/self/status")
	checkSecurityStatus(t, "sh exec", res.Stdout)
	res = h.node(t, s, `process.stdout.write(require("fs").readFileSync("/proc/self/status", "utf8"))`, 0)
	checkSecurityStatus(t, "node exec", res.Stdout)
	res = h.sh(t, s, 0, "cat /proc/1/status")
	checkSpawnerStatus(t, res.Stdout)

	ctx := h.env.Context(t)
	p, err := h.m.StartBackground(ctx, s.SessionID, "cat /proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pl, err := h.m.Logs(ctx, s.SessionID, p.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		if !pl.Process.Running {
			checkSecurityStatus(t, "background process", string(pl.Output))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background process did not end")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The spawner is out of reach: its socket's folder, its signals, its memory.
	res = h.sh(t, s, 0, `ls /run/servcraft 2>&1; echo "ls=$?"; kill -9 1 2>&1; echo "kill=$?"; `+
		`node -e 'require("net").connect("/run/servcraft/spawner.sock").on("error", e => console.log(e.code))'; `+
		`cat /proc/1/environ >/dev/null 2>&1; echo "environ=$?"`)
	for _, want := range []string{"Permission denied", "ls=1", "kill=1", "EACCES", "environ=1"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("reaching the spawner: missing %q in %q", want, res.Stdout)
		}
	}
	if res := h.sh(t, s, 0, "echo still"); res.Stdout != "still\n" {
		t.Errorf("a run after the attempts: %+v", res)
	}
	// And nothing can win them back: su and setuid-root binaries are dead ends.
	res = h.sh(t, s, 0, `su -c id root </dev/null 2>&1; echo "su=$?"; id -u`)
	if !strings.Contains(res.Stdout, "1000") || strings.Contains(res.Stdout, "uid=0") {
		t.Errorf("su: %q", res.Stdout)
	}
}

// checkSpawnerStatus checks the /proc status of PID 1, the spawner: not
// root, and of all capabilities only CAP_SETGID, CAP_SETUID and
// CAP_SETPCAP (0x1c0), in every set: the gates it starts (as its uid, out
// of user code's reach) begin with them and give them all up, the bounding
// set included, before anything of a run's executes (checkSecurityStatus
// checks the runs).
func checkSpawnerStatus(t *testing.T, status string) {
	t.Helper()
	f := statusFields(status)
	if ids := strings.Fields(f["Uid"]); len(ids) != 4 || slices.Contains(ids, "0") {
		t.Errorf("PID 1: Uid %q, want no 0", f["Uid"])
	}
	want := map[string]string{"CapInh": "00000000000001c0", "CapPrm": "00000000000001c0", "CapEff": "00000000000001c0",
		"CapBnd": "00000000000001c0", "CapAmb": "00000000000001c0", "NoNewPrivs": "1", "Seccomp": "2"}
	for key, v := range want {
		if f[key] != v {
			t.Errorf("PID 1: %s %q, want %q", key, f[key], v)
		}
	}
}

// probeSource is a static program run inside a session: it makes raw system
// calls a sandbox must refuse and prints "name errno-name" for each.
const probeSource = `package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func errName(e syscall.Errno) string {
	switch e {
	case 0:
		return "OK"
	case syscall.EPERM:
		return "EPERM"
	case syscall.EACCES:
		return "EACCES"
	case syscall.ENOSYS:
		return "ENOSYS"
	case syscall.EAFNOSUPPORT:
		return "EAFNOSUPPORT"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EROFS:
		return "EROFS"
	case syscall.ESRCH:
		return "ESRCH"
	case syscall.EBADF:
		return "EBADF"
	}
	return fmt.Sprintf("errno%d", int(e))
}

func str(s string) uintptr { p, _ := syscall.BytePtrFromString(s); return uintptr(unsafe.Pointer(p)) }

func report(name string, r uintptr, e syscall.Errno) {
	fmt.Printf("%s %s\n", name, errName(e))
	if e == 0 && name != "ptrace_attach_pid1" && int(r) > 2 {
		syscall.Close(int(r))
	}
}

func main() {
	r, _, e := syscall.RawSyscall6(165, str("none"), str("/tmp"), str("tmpfs"), 0, 0, 0) // mount
	report("mount", r, e)
	r, _, e = syscall.RawSyscall(272, syscall.CLONE_NEWUSER, 0, 0) // unshare
	report("unshare_newuser", r, e)
	r, _, e = syscall.RawSyscall(272, syscall.CLONE_NEWNS, 0, 0)
	report("unshare_newns", r, e)
	r, _, e = syscall.RawSyscall(272, syscall.CLONE_NEWNET, 0, 0)
	report("unshare_newnet", r, e)
	var params [120]byte
	r, _, e = syscall.RawSyscall(425, 4, uintptr(unsafe.Pointer(&params[0])), 0) // io_uring_setup
	report("io_uring_setup", r, e)
	r, _, e = syscall.RawSyscall(syscall.SYS_SOCKET, 38, syscall.SOCK_SEQPACKET, 0) // AF_ALG
	report("socket_af_alg", r, e)
	r, _, e = syscall.RawSyscall6(250, 0, ^uintptr(2), 1, 0, 0, 0) // keyctl(GET_KEYRING_ID, SESSION, create)
	report("keyctl", r, e)
	r, _, e = syscall.RawSyscall6(248, str("user"), str("servcraft"), str("x"), 1, ^uintptr(2), 0) // add_key
	report("add_key", r, e)
	r, _, e = syscall.RawSyscall6(101, syscall.PTRACE_ATTACH, 1, 0, 0, 0, 0) // ptrace(PTRACE_ATTACH, 1)
	report("ptrace_attach_pid1", r, e)
	if e == 0 { // never leave PID 1 stopped
		var ws syscall.WaitStatus
		syscall.Wait4(1, &ws, 0x40000000, nil) // __WALL
		syscall.RawSyscall6(101, syscall.PTRACE_DETACH, 1, 0, 0, 0, 0)
	}
	r, _, e = syscall.RawSyscall(321, 0, 0, 0) // bpf(BPF_MAP_CREATE, NULL)
	report("bpf", r, e)
	var attr [128]byte
	r, _, e = syscall.RawSyscall6(298, uintptr(unsafe.Pointer(&attr[0])), 0, ^uintptr(0), ^uintptr(0), 0, 0) // perf_event_open
	report("perf_event_open", r, e)
	r, _, e = syscall.RawSyscall(161, str("/tmp"), 0, 0) // chroot
	report("chroot", r, e)
	r, _, e = syscall.RawSyscall6(259, ^uintptr(99), str("/tmp/mem"), syscall.S_IFCHR|0o666, 1<<8|1, 0, 0) // mknodat /dev/mem
	report("mknod_chr", r, e)
	r, _, e = syscall.RawSyscall(105, 0, 0, 0) // setuid(0)
	report("setuid0", r, e)
	var handle [136]byte
	handle[0] = 8
	r, _, e = syscall.RawSyscall6(304, ^uintptr(99), uintptr(unsafe.Pointer(&handle[0])), 0, 0, 0, 0) // open_by_handle_at
	report("open_by_handle_at", r, e)
	r, _, e = syscall.RawSyscall(175, 0, 0, str("")) // init_module
	report("init_module", r, e)
	ns, err := os.Open("/proc/1/ns/mnt")
	if err == nil {
		r, _, e = syscall.RawSyscall(308, ns.Fd(), 0, 0) // setns
		report("setns_mnt", r, e)
	} else {
		fmt.Println("setns_mnt OPEN_FAILED")
	}
	if f, err := os.OpenFile("/proc/1/mem", os.O_RDWR, 0); err == nil {
		fmt.Println("open_proc1_mem OK")
		f.Close()
	} else {
		fmt.Println("open_proc1_mem", errName(err.(*os.PathError).Err.(syscall.Errno)))
	}
	for _, p := range []string{"/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches",
		"/sys/kernel/uevent_helper", "/sys/kernel/mm/ksm/run", "/sys/fs/cgroup/cgroup.procs", "/proc/1/mem", "/proc/kmsg"} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			fmt.Printf("write:%s %v\n", p, err.(*os.PathError).Err)
			continue
		}
		_, err = f.Write([]byte("0"))
		f.Close()
		if err != nil {
			fmt.Printf("write:%s %v\n", p, err)
		} else {
			fmt.Printf("write:%s OK\n", p)
		}
	}
}
`

var (
	staticMu   sync.Mutex
	staticBins = map[string][]byte{} // by source
)

// staticBinary builds source (a main package) as a static linux/amd64
// binary, once per source, to run inside a session.
func staticBinary(t *testing.T, source string) []byte {
	t.Helper()
	staticMu.Lock()
	defer staticMu.Unlock()
	if bin, ok := staticBins[source]; ok {
		return bin
	}
	if _, err := exec.LookPath("go"); err != nil {
		testneeds.Unavailable(t, "go is not on PATH: it builds the program this test runs in a session")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "probe", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a static program: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	staticBins[source] = bin
	return bin
}

// probeBinary is probeSource, built.
func probeBinary(t *testing.T) []byte { return staticBinary(t, probeSource) }

// 2. mount, unshare, io_uring_setup, socket(AF_ALG), keyctl, ptrace of PID 1,
// writes to /proc/sysrq-trigger and /sys → all fail.
func TestAttack02_DangerousSyscallsFail(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	if err := h.m.WriteFile(h.env.Context(t), s.SessionID, "probe", probeBinary(t)); err != nil {
		t.Fatal(err)
	}
	res := h.sh(t, s, 20*time.Second, "chmod 755 probe && ./probe")
	if res.ExitCode != 0 {
		t.Fatalf("probe did not run: %+v", res)
	}
	t.Logf("probe:\n%s", res.Stdout)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			got[k] = v
		}
	}
	refused := []string{"EPERM", "EACCES", "ENOSYS"}
	want := map[string][]string{
		"mount":           refused,
		"unshare_newuser": refused,
		"unshare_newns":   refused,
		"unshare_newnet":  refused,
		"io_uring_setup":  refused,
		// EAFNOSUPPORT: a kernel without AF_ALG refuses it too.
		"socket_af_alg":      append(slices.Clone(refused), "EAFNOSUPPORT"),
		"keyctl":             refused,
		"add_key":            refused,
		"ptrace_attach_pid1": refused,
		"bpf":                refused,
		"perf_event_open":    refused,
		"chroot":             refused,
		"mknod_chr":          refused,
		"setuid0":            refused,
		"open_by_handle_at":  refused,
		"init_module":        refused,
		"setns_mnt":          append(slices.Clone(refused), "OPEN_FAILED"),
		"open_proc1_mem":     refused,
	}
	for name, ok := range want {
		v, present := got[name]
		if !present {
			t.Errorf("%s: not reported by the probe", name)
			continue
		}
		if !slices.Contains(ok, v) {
			t.Errorf("%s: %s, want one of %v", name, v, ok)
		}
	}
	for k, v := range got {
		if strings.HasPrefix(k, "write:") && strings.HasSuffix(v, "OK") {
			t.Errorf("%s succeeded", k)
		}
	}
	// The same through the tools a user reaches for.
	res = h.sh(t, s, 0, `unshare -r id 2>&1; echo "rc=$?"; unshare -n true 2>&1; echo "rc=$?"; mount -t tmpfs x /mnt 2>&1; echo "rc=$?"; `+
		`echo b > /proc/sysrq-trigger 2>&1; echo "rc=$?"; echo 1 > /sys/kernel/mm/ksm/run 2>&1; echo "rc=$?"`)
	if strings.Count(res.Stdout, "rc=0") != 0 || strings.Count(res.Stdout, "rc=") != 5 {
		t.Errorf("shell attempts: %q", res.Stdout)
	}
	// The session is still fine.
	if res := h.node(t, s, `console.log("ok")`, 0); res.Stdout != "ok\n" {
		t.Fatalf("after the probe: %+v", res)
	}
}

// 7. A hard link from the workspace to any file of another filesystem (the
// image's, the bind-mounted init or toolchain from the host) fails with
// EXDEV: the workspace is a filesystem of its own.
func TestAttack07_HardlinkToHostFileFails(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	targets := []string{"/etc/passwd", "/usr/local/bin/node", "/sbin/servcraft-spawner", "/tmp/x", "/home/node/x"}
	if h.env.ToolchainDir != "" {
		targets = append(targets, runtime.ToolchainPath+"/node_modules/tsx/package.json")
	}
	res := h.node(t, s, fmt.Sprintf(`
const fs = require("fs");
fs.writeFileSync("/tmp/x", "tmp"); fs.writeFileSync("/home/node/x", "home");
for (const [i, p] of %s.entries()) {
  try { fs.linkSync(p, "/workspace/hl" + i); console.log(p, "LINKED"); }
  catch (e) { console.log(p, e.code); }
}
console.log("dev", fs.statSync("/workspace").dev !== fs.statSync("/").dev, fs.statSync("/workspace").dev !== fs.statSync("/tmp").dev);
`, jsArray(targets)), 10*time.Second)
	t.Logf("%s", res.Stdout)
	for _, p := range targets {
		if !strings.Contains(res.Stdout, p+" EXDEV\n") {
			t.Errorf("link %s: want EXDEV in %q", p, res.Stdout)
		}
	}
	if !strings.Contains(res.Stdout, "dev true true") {
		t.Errorf("the workspace shares a filesystem: %q", res.Stdout)
	}
	// busybox ln says the same.
	res = h.sh(t, s, 0, "ln /etc/passwd x 2>&1; echo rc=$?")
	if !strings.Contains(res.Stdout, "rc=1") || !strings.Contains(strings.ToLower(res.Stdout), "cross-device") {
		t.Errorf("ln /etc/passwd: %q", res.Stdout)
	}
	// On the host, the workspace is a separate filesystem too.
	var ws, state syscall.Stat_t
	if err := syscall.Stat(s.Workspace, &ws); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(h.state, &state); err != nil {
		t.Fatal(err)
	}
	if ws.Dev == state.Dev {
		t.Errorf("workspace %s is on the state folder's filesystem", s.Workspace)
	}
}

func jsArray(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// canaries makes host canaries (runtimetest.HostCanaries) and returns a check that they are intact.
func canaries(t *testing.T) (file, dir string, intact func(t *testing.T)) {
	t.Helper()
	c := runtimetest.HostCanaries(t)
	return c.File, c.Dir, func(t *testing.T) { t.Helper(); c.AssertIntact(t) }
}

// plantLinks fills a workspace with links to the canaries in every place
// cleanup walks: top level, hidden names, node_modules, deep folders.
func (h *harness) plantLinks(t *testing.T, s store.Session, file, dir string) {
	t.Helper()
	res := h.sh(t, s, 0, fmt.Sprintf(`set -e
ln -sfn %[1]s file-link; ln -sfn %[2]s dir-link; ln -sfn %[2]s .hidden-link; ln -sfn / root-link
mkdir -p node_modules/pkg deep/a/b; ln -sfn %[2]s node_modules/.bin; ln -sfn %[1]s node_modules/pkg/index.js; ln -sfn %[2]s deep/a/b/c
ln -sfn %[2]s/inside.txt inside-link; rm -f fifo; mkfifo fifo; echo planted`, file, dir))
	if res.Stdout != "planted\n" {
		t.Fatalf("plant links: %+v", res)
	}
}

// 8. Destroy or reap a session whose workspace holds links to host canaries
// → canaries intact, nothing of the session left.
func TestAttack08_DestroyAndReapLeaveHostCanaries(t *testing.T) {
	h := newHarness(t, func(c *runtime.Config) { c.IdleTimeout = 2 * time.Second })
	ctx := h.env.Context(t)
	file, dir, intact := canaries(t)

	destroyed := h.session(t, "-destroyed")
	h.plantLinks(t, destroyed, file, dir)
	// A background process holds files open in the workspace while it goes.
	if _, err := h.m.StartBackground(ctx, destroyed.SessionID, "exec 3>/workspace/deep/a/held; cd /workspace/deep/a && exec sleep 600"); err != nil {
		t.Fatal(err)
	}
	// The sync below must find the file made: it would race the shell's open otherwise.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res := h.sh(t, destroyed, 0, "test -e /workspace/deep/a/held && echo made"); res.Stdout == "made\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background process did not open its file")
		}
	}
	// A replace sync deletes the links themselves, never their targets.
	if _, err := h.m.Sync(ctx, destroyed.SessionID, []workspace.Entry{{Path: "kept.js", Data: []byte("1")}}, true); err != nil {
		t.Fatalf("replace sync: %v", err)
	}
	intact(t)
	h.plantLinks(t, destroyed, file, dir)
	if err := h.m.Destroy(ctx, destroyed.SessionID); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	intact(t)
	h.env.AssertNoLeaks(t, destroyed.ContainerID, destroyed.UUID, filepath.Join(h.state, "workspaces"))

	reaped := h.session(t, "-reaped")
	h.plantLinks(t, reaped, file, dir)
	runtime.SetClock(h.m, func() time.Time { return time.Now().Add(2500 * time.Millisecond) }) // idle past the 2 s timeout
	ids, err := h.m.Reap(ctx)
	if err != nil || !slices.Contains(ids, reaped.SessionID) {
		t.Fatalf("reap: %v %v", ids, err)
	}
	intact(t)
	h.env.AssertNoLeaks(t, reaped.ContainerID, reaped.UUID, filepath.Join(h.state, "workspaces"))
}

// 11. The registry proxy asked for absolute URLs, "..", encoded paths,
// CONNECT, other hosts → refused, and upstream never asked. First raw
// requests from the host, then the same from an install script inside a
// session, against the proxy listening in its network namespace.
func TestAttack11_RegistryProxyRefusesTricks(t *testing.T) {
	var upstreamHits atomic.Int64
	var upMu sync.Mutex
	var upstreamSeen []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		upMu.Lock()
		upstreamSeen = append(upstreamSeen, r.Method+" "+r.RequestURI)
		upMu.Unlock()
		http.NotFound(w, r)
	}))
	defer upstream.Close()
	upURL, _ := url.Parse(upstream.URL + "/registry/")
	attacks := []struct{ method, target, host string }{
		{"GET", "http://127.0.0.1:1/evil", ""},
		{"GET", upstream.URL + "/registry/is-number", ""},
		{"GET", "http://169.254.169.254/latest/meta-data/", ""},
		{"GET", "//" + strings.TrimPrefix(upstream.URL, "http://") + "/x", ""},
		{"CONNECT", strings.TrimPrefix(upstream.URL, "http://"), ""},
		{"CONNECT", "127.0.0.1:22", ""},
		{"GET", "/../../etc/passwd", ""},
		{"GET", "/is-number/../../admin", ""},
		{"GET", "/%2e%2e/%2e%2e/etc/passwd", ""},
		{"GET", "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", ""},
		{"GET", "/is-number%2f..%2f..%2fx", ""},
		{"GET", "/@scope%2f..%2f..%2fx", ""},
		{"GET", "/is-number%00", ""},
		{"GET", "/is%2dnumber", ""},
		{"GET", `/is-number\..\..\x`, ""},
		{"GET", "/is-number/-/../../../x.tgz", ""},
		{"GET", "*", ""},
		{"GET", "other.example:80", ""},
		{"POST", "/is-number", ""},
		{"PUT", "/is-number", ""},
		{"DELETE", "/-/user/token/x", ""},
	}
	isRefused := func(code int) bool { return code >= 400 && code < 500 }

	// From the host, against the handler on a loopback listener.
	p, err := npmproxy.New(npmproxy.Config{Upstream: upURL, CacheDir: t.TempDir(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p.Handler("http://"+ln.Addr().String(), nil), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	for _, a := range attacks {
		for _, host := range []string{ln.Addr().String(), strings.TrimPrefix(upstream.URL, "http://"), "registry.npmjs.org"} {
			code, line := rawHTTP(t, ln.Addr().String(), a.method, a.target, host)
			if !isRefused(code) {
				t.Errorf("host: %s %q (Host %s) = %q, want 4xx", a.method, a.target, host, line)
			}
		}
	}
	if n := upstreamHits.Load(); n != 0 {
		t.Fatalf("rejected requests reached upstream %d times: %v", n, upstreamSeen)
	}

	// From inside a session: an install script attacks the proxy npm was given.
	h := newHarness(t, withRegistry(t, upURL))
	s := h.session(t, "")
	var script strings.Builder
	script.WriteString(`const net = require("net");
const reg = new URL(process.env.npm_config_registry || process.env.NPM_CONFIG_REGISTRY || "http://invalid:1/");
console.log("REGISTRY", reg.host);
const attacks = ` + "[")
	for _, a := range attacks {
		fmt.Fprintf(&script, "[%q,%q],", a.method, a.target)
	}
	script.WriteString(`];
(async () => {
  for (const [m, target] of attacks) {
    const line = await new Promise((resolve) => {
      const c = net.connect(Number(reg.port), reg.hostname);
      let buf = "";
      c.setTimeout(5000, () => { c.destroy(); resolve("TIMEOUT"); });
      c.on("error", (e) => resolve("ERR " + e.code));
      c.on("data", (d) => { buf += d; if (buf.includes("\r\n")) { c.destroy(); resolve(buf.split("\r\n")[0]); } });
      c.on("close", () => resolve(buf.split("\r\n")[0] || "CLOSED"));
      c.write(m + " " + target + " HTTP/1.1\r\nHost: registry.npmjs.org\r\nConnection: close\r\n\r\n");
    });
    console.log("ATTACK", JSON.stringify(m + " " + target), "=>", line);
  }
})();
`)
	pkg := `{"name":"attack","version":"1.0.0","scripts":{"postinstall":"node attack.js"}}`
	for name, data := range map[string]string{"package.json": pkg, "attack.js": script.String()} {
		if err := h.m.WriteFile(h.env.Context(t), s.SessionID, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.m.Install(h.env.Context(t), s.SessionID, runtime.InstallRequest{Timeout: 60 * time.Second})
	t.Logf("install: err=%v exit=%d\nstdout:\n%s\nstderr:\n%s", err, res.ExitCode, res.Stdout, res.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	out := res.Stdout + res.Stderr
	if !strings.Contains(out, "REGISTRY 127.0.0.1:") {
		t.Fatalf("the install script did not find the in-netns proxy: %q", out)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, "ATTACK ")
		if !ok {
			continue
		}
		n++
		_, answer, _ := strings.Cut(rest, " => ")
		f := strings.Fields(answer)
		code := 0
		if len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
			code, _ = strconv.Atoi(f[1])
		}
		if !isRefused(code) {
			t.Errorf("inside: %s, want a 4xx", rest)
		}
	}
	if n != len(attacks) {
		t.Errorf("%d of %d attacks reported", n, len(attacks))
	}
	if n := upstreamHits.Load(); n != 0 {
		t.Errorf("attacks from the session reached upstream %d times: %v", n, upstreamSeen)
	}
}

// rawHTTP sends one request line with a Host header and returns the status
// code and the status line (code 0 if the connection closed without one).
func rawHTTP(t *testing.T, addr, method, target, host string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, host)
	line, _ := bufio.NewReader(c).ReadString('\n')
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, line
	}
	code, _ := strconv.Atoi(f[1])
	return code, strings.TrimSpace(line)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// execLatency runs `node -e 0` n times in s and returns the durations.
func (h *harness) execLatency(t *testing.T, s store.Session, n int) []time.Duration {
	t.Helper()
	var out []time.Duration
	for range n {
		start := time.Now()
		res := h.exec(t, s, 10*time.Second, "/usr/local/bin/node", "-e", "0")
		if res.ExitCode != 0 {
			t.Fatalf("node -e 0: %+v", res)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// 12. A fork bomb is contained at the pids limit, and a second session's
// execute latency stays within 2× of normal while it rages.
func TestAttack12_ForkBombContained(t *testing.T) {
	const pids = 128
	h := newHarness(t, func(c *runtime.Config) { c.Limits.Pids = pids })
	bomb := h.session(t, "-bomb")
	other := h.session(t, "-other")
	h.execLatency(t, other, 2) // warm up
	before := h.execLatency(t, other, 7)

	ctx := h.env.Context(t)
	// busybox sh exits when a fork fails, so a shell bomb collapses by
	// itself; node keeps lighting new ones, which holds the session at its limit.
	if err := h.m.WriteFile(ctx, bomb.SessionID, "bomb.js", []byte(`
const { spawn } = require("child_process");
function go() {
  try { spawn("/bin/sh", ["-c", "b() { b | b & }; b; exec sleep 60"], { stdio: "ignore" }).on("error", () => {}); } catch (e) {}
  setImmediate(go);
}
go();
`)); err != nil {
		t.Fatal(err)
	}
	done := make(chan runtime.ExecResult, 1)
	go func() {
		res, err := h.m.Exec(ctx, bomb.SessionID, runtime.ExecRequest{
			Args: []string{"/usr/local/bin/node", "/workspace/bomb.js"}, Timeout: 7 * time.Second})
		if err != nil {
			t.Errorf("bomb: %v", err)
		}
		done <- res
	}()
	var maxPids atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if info, err := h.m.Get(ctx, bomb.SessionID); err == nil && info.Usage.Pids > maxPids.Load() {
				maxPids.Store(info.Usage.Pids)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	time.Sleep(time.Second) // let it reach the limit
	during := h.execLatency(t, other, 7)
	close(stopSampling)
	<-sampled
	res := <-done
	// Normal is measured on both sides of the bomb, so that load from
	// elsewhere on the host (other test packages) weighs on both sides alike.
	normal := append(before, h.execLatency(t, other, 7)...)
	t.Logf("bomb session: at most %d pids (limit %d); bomb run: timedOut=%v exit=%d %v", maxPids.Load(), pids, res.TimedOut, res.ExitCode, res.Duration)
	t.Logf("other session node -e 0: median %v normal, %v during the bomb (normal %v, during %v)", median(normal), median(during), normal, during)
	if maxPids.Load() > pids {
		t.Errorf("pids %d over the limit %d", maxPids.Load(), pids)
	}
	if maxPids.Load() < pids*3/4 {
		t.Errorf("the bomb never got near the limit (%d pids): the test did not test", maxPids.Load())
	}
	if median(during) > 2*median(normal) {
		t.Errorf("latency of the other session: %v during the bomb, over 2× the normal %v", median(during), median(normal))
	}
	if !res.TimedOut {
		t.Errorf("bomb run did not time out: %+v", res)
	}
	if res := h.node(t, bomb, `console.log("recovered")`, 0); res.Stdout != "recovered\n" {
		t.Fatalf("bomb session after: %+v", res)
	}
	// An idle session holds what an idle one does (on cgroup v1 not even its
	// spawner: it is kept out of the pids limit); one more is the slack of a
	// last task still exiting.
	idle, _ := h.m.Get(ctx, other.SessionID)
	if info, _ := h.m.Get(ctx, bomb.SessionID); info.Usage.Pids > idle.Usage.Pids+1 {
		t.Errorf("bomb session still holds %d pids after the run (an idle one %d)", info.Usage.Pids, idle.Usage.Pids)
	}
}

// 13. Allocating 10× the memory limit → oomKilled; the session keeps working.
func TestAttack13_MemoryHog(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	start := time.Now()
	res := h.node(t, s, `const a = []; for (let i = 0; i < 80; i++) a.push(Buffer.alloc(64 << 20, i)); console.log("survived 5 GiB");`, 30*time.Second)
	t.Logf("hog: exit=%d signal=%s oom=%v in %v", res.ExitCode, res.Signal, res.OOMKilled, time.Since(start))
	if !res.OOMKilled || res.ExitCode != 137 || res.Signal != "SIGKILL" || res.TimedOut || strings.Contains(res.Stdout, "survived") {
		t.Fatalf("hog: %+v", res)
	}
	if res := h.node(t, s, `console.log("alive", Buffer.alloc(64 << 20, 1).length)`, 0); res.Stdout != "alive 67108864\n" {
		t.Fatalf("after OOM: %+v", res)
	}
	// A hog in a forked child is caught the same way (the whole cgroup counts).
	res = h.sh(t, s, 30*time.Second, `node -e 'const a=[]; for(;;) a.push(Buffer.alloc(64<<20,1))'; echo "child exit $?"`)
	if !strings.Contains(res.Stdout, "child exit 137") {
		t.Errorf("hog in a child: %+v", res)
	}
}

// procEntry is one line of /proc/<pid>/stat: pid, comm, ppid.
type procEntry struct {
	pid, ppid int
	comm      string
}

// listProcs lists the container's processes with shell builtins only (the
// glob is expanded once, so the lister adds no child of its own).
func (h *harness) listProcs(t *testing.T, s store.Session) (procs []procEntry, self int) {
	t.Helper()
	res := h.sh(t, s, 0, `for p in /proc/[0-9]*; do read -r st < "$p/stat" 2>/dev/null && echo "$st"; done; echo "self $$"`)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if rest, ok := strings.CutPrefix(line, "self "); ok {
			self, _ = strconv.Atoi(rest)
			continue
		}
		open, close := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
		if open < 0 || close < open {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(line[:open]))
		f := strings.Fields(line[close+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		procs = append(procs, procEntry{pid: pid, ppid: ppid, comm: line[open+1 : close]})
	}
	return procs, self
}

// 14. An infinite loop with detached children (setsid, double fork, nohup,
// signal-ignoring daemons) → all killed at the timeout; the process list
// holds only PID 1 (the spawner) and the lister itself.
func TestAttack14_DetachedChildrenDieAtTimeout(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	slow := time.Duration(runtimetest.Slowdown(t))
	start := time.Now()
	res := h.node(t, s, `
const { spawn } = require("child_process");
const opts = { detached: true, stdio: "ignore" };
spawn("/bin/sh", ["-c", "setsid sh -c 'while :; do sleep 1; done' & setsid sleep 1001 &"], opts).unref();
spawn("/bin/sh", ["-c", "( ( sleep 1002 & ) & ); exit 0"], opts).unref();
spawn("/bin/sh", ["-c", "trap '' HUP TERM INT; exec sleep 1003"], opts).unref();
spawn(process.execPath, ["-e", "for (const s of ['SIGTERM','SIGHUP','SIGINT']) process.on(s, () => {}); setInterval(() => {}, 1000)"], opts).unref();
spawn("/bin/sh", ["-c", "cd /workspace && exec sleep 1004 < /dev/null > /dev/null 2>&1"], opts).unref();
setTimeout(() => { console.log("spawned"); for (;;) {} }, 300);
`, 2*time.Second*slow) // the run's timeout: node and five spawns must fit in it on an emulated machine too
	t.Logf("run: timedOut=%v exit=%d in %v; stdout %q", res.TimedOut, res.ExitCode, time.Since(start), res.Stdout)
	if !res.TimedOut || res.Stdout != "spawned\n" {
		t.Fatalf("run: %+v", res)
	}
	if d := time.Since(start); d > 6*time.Second*slow {
		t.Errorf("the timeout took %v to end the run", d)
	}
	procs, self := h.listProcs(t, s)
	var rest []procEntry
	for _, p := range procs {
		if p.pid != 1 && p.pid != self {
			rest = append(rest, p)
		}
	}
	if len(rest) > 0 || self == 0 {
		t.Fatalf("after the timeout the container holds more than PID 1 (the spawner) and the lister (self %d): %+v", self, procs)
	}
	res = h.sh(t, s, 0, `for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; done`)
	for _, n := range []string{"1001", "1002", "1003", "1004", "setInterval"} {
		if strings.Contains(res.Stdout, n) {
			t.Errorf("a child of the run survives (%s):\n%s", n, res.Stdout)
		}
	}
}

func statfsFree(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// 16. Filling the workspace with one huge file, and with as many tiny ones
// as it holds → ENOSPC inside, the host disk untouched beyond the volume's
// size, host-side writes say "full", and the session works after cleanup.
func TestAttack16_FillTheWorkspace(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)
	s := h.session(t, "")
	volume := h.vols.Size()
	freeBefore := statfsFree(t, h.state)

	res := h.node(t, s, `
const fs = require("fs");
const fd = fs.openSync("/workspace/huge", "w"); const chunk = Buffer.alloc(1 << 20, 7); let n = 0;
try { for (;;) { fs.writeSync(fd, chunk); n++; } } catch (e) { console.log(e.code, n); }
`, 60*time.Second)
	t.Logf("huge file: %q", res.Stdout)
	if !strings.HasPrefix(res.Stdout, "ENOSPC ") && !strings.HasPrefix(res.Stdout, "EDQUOT ") {
		t.Fatalf("huge file: %+v", res)
	}
	freeFull := statfsFree(t, h.state)
	if drop := freeBefore - freeFull; drop > volume+16<<20 {
		t.Errorf("host free space dropped by %d MiB for a %d MiB workspace", drop>>20, volume>>20)
	}
	if err := h.m.WriteFile(ctx, s.SessionID, "more.js", make([]byte, 4<<20)); !errors.Is(err, workspace.ErrFull) {
		t.Errorf("host-side write into a full workspace: %v, want workspace.ErrFull", err)
	}
	if res := h.sh(t, s, 0, "rm -f huge && echo hi > hi.txt && cat hi.txt"); res.Stdout != "hi\n" {
		t.Fatalf("after removing the huge file: %+v", res)
	}

	// Tiny files until the inodes run out.
	start := time.Now()
	res = h.node(t, s, `
const fs = require("fs"); fs.mkdirSync("/workspace/tiny"); let i = 0;
try { for (;; i++) fs.closeSync(fs.openSync("/workspace/tiny/" + i, "w")); } catch (e) { console.log(e.code, i); }
`, 60*time.Second)
	t.Logf("tiny files: %q in %v", res.Stdout, time.Since(start))
	if !strings.HasPrefix(res.Stdout, "ENOSPC ") && !strings.HasPrefix(res.Stdout, "EDQUOT ") {
		t.Fatalf("tiny files: %+v", res)
	}
	if err := h.m.WriteFile(ctx, s.SessionID, "new.js", []byte("1")); !errors.Is(err, workspace.ErrFull) {
		t.Errorf("host-side write with no inodes left: %v, want workspace.ErrFull", err)
	}
	if drop := freeBefore - statfsFree(t, h.state); drop > volume+16<<20 {
		t.Errorf("host free space dropped by %d MiB for a %d MiB workspace", drop>>20, volume>>20)
	}
	if res := h.sh(t, s, 60*time.Second, "rm -rf tiny && echo cleaned"); res.Stdout != "cleaned\n" {
		t.Fatalf("cleanup: %+v", res)
	}
	if err := h.m.WriteFile(ctx, s.SessionID, "after.js", []byte(`console.log("works again")`)); err != nil {
		t.Fatalf("host-side write after cleanup: %v", err)
	}
	if res := h.exec(t, s, 0, "/usr/local/bin/node", "/workspace/after.js"); res.Stdout != "works again\n" {
		t.Fatalf("after cleanup: %+v", res)
	}
}

// 17. Opening files without end → EMFILE at RLIMIT_NOFILE, which cannot be
// raised; writing past RLIMIT_FSIZE → EFBIG (or SIGXFSZ), the file capped.
func TestAttack17_FileLimits(t *testing.T) {
	const fileBytes = 1 << 20
	h := newHarness(t, func(c *runtime.Config) { c.Limits.FileBytes = fileBytes })
	s := h.session(t, "")
	res := h.node(t, s, `
const fs = require("fs"); let n = 0;
try { for (; n < 100000; n++) fs.openSync("/dev/null", "r"); console.log("OPENED", n); } catch (e) { console.log(e.code, n); }
`, 30*time.Second)
	t.Logf("open files: %q", res.Stdout)
	f := strings.Fields(res.Stdout)
	if len(f) != 2 || f[0] != "EMFILE" {
		t.Fatalf("open without end: %+v", res)
	}
	if n, _ := strconv.Atoi(f[1]); n > 4096 || n < 4000 {
		t.Errorf("opened %d files with RLIMIT_NOFILE 4096", n)
	}
	res = h.sh(t, s, 0, `ulimit -n 100000 2>&1; echo "rc=$?"; ulimit -Hn`)
	if strings.Contains(res.Stdout, "rc=0") || !strings.HasSuffix(res.Stdout, "4096\n") {
		t.Errorf("raising the file limit: %q", res.Stdout)
	}

	res = h.node(t, s, `
const fs = require("fs");
try { fs.writeFileSync("/workspace/big", Buffer.alloc(2 << 20, 1)); console.log("WROTE"); } catch (e) { console.log(e.code); }
console.log("size", fs.statSync("/workspace/big").size);
`, 10*time.Second)
	t.Logf("write past FSIZE: exit=%d signal=%q %q", res.ExitCode, res.Signal, res.Stdout)
	if !(strings.HasPrefix(res.Stdout, "EFBIG\n") || res.Signal == "SIGXFSZ") || strings.Contains(res.Stdout, "WROTE") {
		t.Errorf("write past RLIMIT_FSIZE: %+v", res)
	}
	res = h.sh(t, s, 10*time.Second, `dd if=/dev/zero of=big2 bs=1M count=2 2>&1; echo "rc=$?"; stat -c %s big big2`)
	t.Logf("dd: %q", res.Stdout)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if n, err := strconv.Atoi(line); err == nil && n > fileBytes {
			t.Errorf("a file of %d bytes with RLIMIT_FSIZE %d", n, fileBytes)
		}
	}
	if strings.Contains(res.Stdout, "rc=0") {
		t.Errorf("dd past RLIMIT_FSIZE succeeded: %q", res.Stdout)
	}
}

// 18. Two sessions: neither sees the other's processes, files or workspace,
// and each gets its CPU share while the other spins.
func TestAttack18_SessionsAreIsolated(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)
	a := h.session(t, "-a")
	b := h.session(t, "-b")
	token := randToken(t)
	if _, err := h.m.StartBackground(ctx, b.SessionID, "exec sleep 4242"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.WriteFile(ctx, b.SessionID, "secret-"+token+".txt", []byte(token)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	// B sees its own, as a control.
	if res := h.sh(t, b, 0, `cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' '; ls`); !strings.Contains(res.Stdout, "sleep 4242") || !strings.Contains(res.Stdout, token) {
		t.Fatalf("control: B does not see its own process and file: %q", res.Stdout)
	}
	// The secrets are spelled backwards in the command, so that A's own
	// command line (which it can read) does not hold them.
	res := h.sh(t, a, 20*time.Second, fmt.Sprintf(`T=$(echo %[1]s | rev); W=$(echo %[2]s | rev); U=$(echo %[3]s | rev)
for p in /proc/[0-9]*; do [ "${p#/proc/}" = "$$" ] || { tr '\0' ' ' < $p/cmdline 2>/dev/null; echo; }; done | grep -c 'sleep 424[2]' | sed 's/^/PROCS /'
find / -xdev -name "secret-$T*" 2>/dev/null | sed 's/^/FOUND /'
find /workspace /tmp /home/node /run /dev/shm -name "secret-*" 2>/dev/null | sed 's/^/FOUND /'
grep -rl "$T" /workspace /tmp /home/node /dev/shm 2>/dev/null | sed 's/^/FOUND /'
[ -e "$W" ] && echo "VISIBLE workspace"; [ -e "${W%%/mnt}" ] && echo "VISIBLE volume"
grep -c "$U" /proc/self/mountinfo | sed 's/^/MOUNTS /'
echo done`, reverse(token), reverse(b.Workspace), reverse(b.UUID)))
	t.Logf("A looking for B: %q", res.Stdout)
	if res.Stdout != "PROCS 0\nMOUNTS 0\ndone\n" {
		t.Errorf("session A sees something of session B (want no process, file, path or mount of B): %q", res.Stdout)
	}

	// CPU: both spin for 2 s at once; each gets about its 0.5 CPU.
	// Only the spin's own CPU counts: Node's start-up is measured out.
	spin := `const c0 = process.cpuUsage(); const t0 = Date.now(); while (Date.now() - t0 < 2000); const u = process.cpuUsage(c0); console.log((u.user + u.system) / 1e6);`
	for _, s := range []store.Session{a, b} {
		if err := h.m.WriteFile(ctx, s.SessionID, "spin.js", []byte(spin)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	cpu := make([]float64, 2)
	for i, s := range []store.Session{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Args: []string{"/usr/local/bin/node", "/workspace/spin.js"}, Timeout: 20 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			cpu[i], _ = strconv.ParseFloat(strings.TrimSpace(res.Stdout), 64)
		}()
	}
	wg.Wait()
	t.Logf("CPU seconds in 2 s of spinning side by side: A %.3f, B %.3f (quota: 1 s each)", cpu[0], cpu[1])
	// Each is held to its quota and neither starves the other. (On an idle
	// host each gets about 1.05 s; other load on the host may lower both.)
	for i, c := range cpu {
		if c > 1.15 || c < 0.35 {
			t.Errorf("session %c got %.3f s CPU in 2 s, want about 1 s (0.5 CPU)", 'A'+i, c)
		}
	}
	if lo, hi := min(cpu[0], cpu[1]), max(cpu[0], cpu[1]); lo < 0.7*hi {
		t.Errorf("unfair share: %.3f s against %.3f s", lo, hi)
	}
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}
