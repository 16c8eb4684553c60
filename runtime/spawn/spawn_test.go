package spawn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		ws   syscall.WaitStatus
		want uint32
	}{
		{0, 0},
		{3 << 8, 3},      // exit 3
		{255 << 8, 255},  // exit 255
		{9, 128 + 9},     // killed by SIGKILL
		{15 | 0x80, 143}, // SIGTERM with a core dump
	} {
		if got := exitCode(c.ws); got != c.want {
			t.Errorf("exitCode(%#x) = %d, want %d", int(c.ws), got, c.want)
		}
	}
}

// TestMain makes the test binary a gate when it is started as one: the
// test server runs it as each process's gate, as the spawner runs itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == GateCommand {
		if err := Gate(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// server is the test process's one Server: it reaps every child of the
// process, and starts each process behind this binary as its gate.
var server = sync.OnceValue(func() *Server {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return NewServer(self)
})

// serve starts serving on a socket in a temporary folder and returns the socket's path.
func serve(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "spawner.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { _ = server().Serve(ln) }()
	return sock
}

// send writes a raw request with n descriptors (/dev/null) and returns the first answer.
func send(t *testing.T, sock string, body []byte, n int) Started {
	t.Helper()
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var fds []int
	for range n {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fds = append(fds, int(f.Fd()))
	}
	var oob []byte
	if n > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := conn.WriteMsgUnix(body, oob, nil); err != nil {
		t.Fatal(err)
	}
	var st Started
	if err := readJSON(conn, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestBadRequestsAreRefused(t *testing.T) {
	sock := serve(t)
	good, _ := json.Marshal(Request{Args: []string{"/bin/true"}, Dir: "/", UID: 65534, GID: 65534})
	for name, c := range map[string]struct {
		body []byte
		fds  int
		want string
	}{
		"no descriptors":   {good, 0, "0 descriptors"},
		"two descriptors":  {good, 2, "2 descriptors"},
		"not JSON":         {[]byte("{"), 3, "decode request"},
		"no argv":          {[]byte(`{"uid":65534,"gid":65534}`), 3, "absolute path"},
		"relative program": {[]byte(`{"args":["true"],"uid":65534,"gid":65534}`), 3, "absolute path"},
		"as root":          {[]byte(`{"args":["/bin/true"],"uid":0,"gid":65534}`), 3, "root"},
		"root group":       {[]byte(`{"args":["/bin/true"],"uid":65534,"gid":0}`), 3, "root"},
	} {
		st := send(t, sock, c.body, c.fds)
		if st.Pid != 0 || !strings.Contains(st.Error, c.want) {
			t.Errorf("%s: answer %+v, want an error with %q", name, st, c.want)
		}
	}
}

func TestStartRunsAsTheUserWithItsStreams(t *testing.T) {
	testneeds.Root(t)
	sock := serve(t)
	stdinR, stdinW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Start(ctx, sock, Request{
		Args: []string{"/bin/sh", "-c", `read line; echo "$line $(id -u):$(id -g):$(id -G) $PWD $X"; grep ^Cap /proc/self/status >&2; exit 7`},
		Env:  []string{"X=y", "PATH=/usr/bin:/bin"}, Dir: "/tmp", UID: 65534, GID: 65534,
	}, stdinR, outW, errW)
	stdinR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid <= 0 {
		t.Fatalf("pid %d", p.Pid)
	}
	_, _ = stdinW.WriteString("\nhello\n") // the gate's line, then the program's
	stdinW.Close()
	out, _ := io.ReadAll(outR)
	errOut, _ := io.ReadAll(errR)
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("status %d, want 7", code)
	}
	if got := strings.TrimSpace(string(out)); got != "hello 65534:65534:65534 /tmp y" {
		t.Errorf("stdout %q", got)
	}
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if !strings.Contains(string(errOut), set+":\t0000000000000000") {
			t.Errorf("the run has capabilities in %s: %q", set, errOut)
		}
	}

	// A death by signal is 128+n, as containerd reports it.
	if code := startOpened(t, sock, Request{Args: []string{"/bin/sh", "-c", "kill -TERM $$"}, Dir: "/", UID: 65534, GID: 65534}); code != 128+15 {
		t.Errorf("killed by SIGTERM: status %d; want 143", code)
	}
	// A program that is not there ends as a shell reports it: 127.
	if code := startOpened(t, sock, Request{Args: []string{"/no/such/program"}, Dir: "/", UID: 65534, GID: 65534}); code != 127 {
		t.Errorf("missing program: status %d, want 127", code)
	}
}

// TestGateHoldsTheRunUntilLetGo: a process waits at its gate, as the
// spawner's uid with no other, until its line comes; stdin closed before
// that ends it without running the program.
func TestGateHoldsTheRunUntilLetGo(t *testing.T) {
	testneeds.Root(t)
	sock := serve(t)
	stdinR, stdinW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Start(ctx, sock, Request{Args: []string{"/bin/sh", "-c", "echo ran"}, Dir: "/", UID: 65534, GID: 65534},
		stdinR, outW, mustOpen(t))
	stdinR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Until it is let go it is the gate, as this process's uid (root here).
	status := waitForStatus(t, p.Pid, "Uid:")
	if f := strings.Fields(status); len(f) < 2 || f[1] != strconv.Itoa(os.Getuid()) {
		t.Errorf("the waiting gate runs as %q, want uid %d", status, os.Getuid())
	}
	stdinW.Close() // given up
	out, _ := io.ReadAll(outR)
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || len(out) != 0 {
		t.Errorf("a gate given up ran its program: status %d, stdout %q", code, out)
	}
}

// waitForStatus polls /proc/<pid>/status until the gate has exec'd (its
// comm is no longer the test binary's is not required: a gate is the test
// binary) and returns the line that starts with field.
func waitForStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "\x00"+GateCommand+"\x00") {
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, field) {
					return line
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never showed its gate's %s", pid, field)
		}
		time.Sleep(time.Millisecond)
	}
}

// startOpened starts req with /dev/null for its streams, lets it go and returns its status.
func startOpened(t *testing.T, sock string, req Request) uint32 {
	t.Helper()
	stdinR, stdinW, _ := os.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := Start(ctx, sock, req, stdinR, mustOpen(t), mustOpen(t))
	stdinR.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = stdinW.WriteString("\n")
	stdinW.Close()
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestStartWithNoSpawner(t *testing.T) {
	ctx := context.Background()
	_, err := Start(ctx, filepath.Join(t.TempDir(), "none.sock"), Request{}, mustOpen(t), mustOpen(t), mustOpen(t))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no socket: %v, want ErrUnreachable", err)
	}
}

func mustOpen(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
