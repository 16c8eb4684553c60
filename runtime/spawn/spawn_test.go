package spawn

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
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

// server is the test process's one Server: it reaps every child of the process.
var server = sync.OnceValue(NewServer)

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
		Args: []string{"/bin/sh", "-c", `read line; echo "$line $(id -u):$(id -g):$(id -G) $PWD $X"; grep CapEff /proc/self/status >&2; exit 7`},
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
	_, _ = stdinW.WriteString("hello\n")
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
	if !strings.Contains(string(errOut), "CapEff:\t0000000000000000") {
		t.Errorf("the run has capabilities: %q", errOut)
	}

	// A death by signal is 128+n, as containerd reports it.
	p, err = Start(ctx, sock, Request{Args: []string{"/bin/sh", "-c", "kill -TERM $$"}, Dir: "/", UID: 65534, GID: 65534},
		mustOpen(t), mustOpen(t), mustOpen(t))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(); err != nil || code != 128+15 {
		t.Errorf("killed by SIGTERM: status %d, %v; want 143", code, err)
	}

	// A program that cannot be executed is an error, not a pid.
	_, err = Start(ctx, sock, Request{Args: []string{"/no/such/program"}, Dir: "/", UID: 65534, GID: 65534},
		mustOpen(t), mustOpen(t), mustOpen(t))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing program: %v", err)
	}
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
