package apitest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary builds cmd/servcraftd of the repository at root once per test
// binary and returns its path.
func Binary(t testing.TB, root string) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "servcraftd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "servcraftd")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/servcraftd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// EnvArgs are the flags that point servcraftd at env's containerd (in
// namespace), image, toolchain and init, without pulling and without the
// starter layer build at start.
func EnvArgs(env *runtimetest.Env, namespace string) []string {
	return []string{"--containerd-address", env.Address, "--namespace", namespace, "--pull=false",
		"--image", env.Image.Ref, "--fallback-archive", env.Image.FallbackArchive,
		"--toolchain-dir", env.ToolchainDir, "--init", env.InitPath, "--spawner", env.SpawnerPath,
		"--starter-deps=false"} // no background layer build (a private session running npm) in every test
}

// Daemon is one servcraftd process; it can be stopped and started again
// with the same arguments (and so the same state folder).
type Daemon struct {
	t   testing.TB
	bin string
	// Args are servcraftd's flags; Start adds --listen Addr.
	Args []string
	// Addr is the loopback address to listen on, kept over restarts (as a
	// cluster's advertised address must be); empty: a free port at each start.
	Addr string
	// Env is added to the daemon's environment (SERVCRAFT_* settings).
	Env []string
	// URL is the base URL of the running daemon.
	URL string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  syncBuffer
}

// NewDaemon returns a daemon of bin with args, not started.
func NewDaemon(t testing.TB, bin string, args ...string) *Daemon {
	return &Daemon{t: t, bin: bin, Args: args}
}

// Log is everything the daemon wrote, over all its starts.
func (d *Daemon) Log() string { return d.log.String() }

// readyTimeout bounds a start (recovery of the image and sessions included).
const readyTimeout = 60 * time.Second

// Start runs the daemon on a free loopback port and waits until /readyz
// answers 200; it fails the test if the daemon exits or is not ready in time.
func (d *Daemon) Start() {
	t := d.t
	t.Helper()
	addr := d.Addr
	if addr == "" {
		addr = freeAddr(t)
	}
	d.URL = "http://" + addr
	args := append([]string{"--listen", addr}, d.Args...)
	d.cmd = exec.Command(d.bin, args...)
	d.cmd.Env = append(os.Environ(), d.Env...)
	fmt.Fprintf(&d.log, "---- start %v\n", args)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	d.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(done) }(d.cmd)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); {
		if resp, err := http.Get(d.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("servcraftd exited during start:\n%s", d.Log())
		case <-tick.C:
		}
	}
	t.Fatalf("servcraftd did not become ready:\n%s", d.Log())
}

// stopTimeout is how long Stop waits for the daemon before it kills it.
const stopTimeout = 60 * time.Second

// Stop signals the daemon and waits for it to exit (killing it after
// stopTimeout); it returns the exit code, -1 when it was not running.
func (d *Daemon) Stop(sig syscall.Signal) int {
	if d.cmd == nil || d.cmd.Process == nil {
		return -1
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.t.Logf("servcraftd did not exit on %s within %v: killed", sig, stopTimeout)
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	code := d.cmd.ProcessState.ExitCode()
	d.cmd = nil
	return code
}

// Kill ends the daemon with SIGKILL (no shutdown work at all) and waits for it.
func (d *Daemon) Kill() { d.Stop(syscall.SIGKILL) }

// StopAtCleanup stops the daemon with sig when the test ends and, if the test
// failed, logs the end of its log.
func (d *Daemon) StopAtCleanup(sig syscall.Signal) {
	d.t.Cleanup(func() {
		d.Stop(sig)
		if d.t.Failed() {
			d.t.Logf("servcraftd log (%s):\n%s", d.URL, Tail(d.Log(), 8000))
		}
	})
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is the daemon's log, written by the process and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
