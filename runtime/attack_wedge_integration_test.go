package runtime_test

// Issue 22's first case: a process the run did not place holds the run's
// output pipes open (here a background process opens them through
// /proc/<pid>/fd, as any same-uid process can). The run must still answer,
// DELETE of its session must answer, and the reaper must reap the other
// expired sessions on time.

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/store"
)

// fdHolderSource passes a run's stdout and stderr to a process outside the
// run: "hold" (a background process, in its own run cgroup) listens on a
// unix socket and keeps every descriptor it is sent for ten minutes, and
// touches /tmp/held when it has some; "send" (inside a run) sends its own
// stdout and stderr there and exits. The run's pipes then stay open after
// everything in the run has ended.
const fdHolderSource = `package main

import (
	"net"
	"os"
	"syscall"
	"time"
)

const sock = "/tmp/fdholder.sock"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "send" {
		c, err := net.Dial("unix", sock)
		if err != nil {
			os.Exit(2)
		}
		_, _, err = c.(*net.UnixConn).WriteMsgUnix([]byte("x"), syscall.UnixRights(1, 2), nil)
		if err != nil {
			os.Exit(3)
		}
		c.Close()
		return
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.Exit(4)
	}
	var kept []int
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		buf, oob := make([]byte, 16), make([]byte, 128)
		_, oobn, _, _, err := c.(*net.UnixConn).ReadMsgUnix(buf, oob)
		if err == nil {
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				fds, _ := syscall.ParseUnixRights(&m)
				kept = append(kept, fds...)
			}
			os.WriteFile("/tmp/held", nil, 0o644)
		}
		c.Close()
		if len(kept) > 0 {
			time.Sleep(10 * time.Minute)
		}
	}
}
`

// startFDHolder puts the holder in the session's workspace and starts it
// as a background process.
func (h *harness) startFDHolder(t *testing.T, s store.Session) {
	t.Helper()
	ctx := h.env.Context(t)
	if err := h.m.WriteFile(ctx, s.SessionID, "fdholder", staticBinary(t, fdHolderSource)); err != nil {
		t.Fatal(err)
	}
	h.sh(t, s, 0, "chmod 755 /workspace/fdholder")
	if _, err := h.m.StartBackground(ctx, s.SessionID, "/workspace/fdholder hold"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if res := h.sh(t, s, 0, "test -S /tmp/fdholder.sock && echo up"); res.Stdout == "up\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the descriptor holder did not start")
		}
	}
}

// heldRun is a run that hands its stdout and stderr to the holder, waits
// (5 s at most) until the holder says it has them, says so, then runs rest.
func heldRun(rest string) string {
	return `/workspace/fdholder send && i=0 && while [ ! -e /tmp/held ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; ` +
		`[ -e /tmp/held ] && echo held; ` + rest
}

// TestAttackWedgedRunHoldsNothing: a run whose pipes another process
// holds answers within its own time and the output bound; a run in flight
// never delays DELETE of its session; a session wedged that way never
// delays the reaping of others.
func TestAttackWedgedRunHoldsNothing(t *testing.T) {
	h := newHarness(t)
	ctx := h.env.Context(t)

	// 1. The run answers.
	s := h.session(t, "-run")
	h.startFDHolder(t, s)
	start := time.Now()
	var res runtime.ExecResult
	var err error
	within(t, time.Minute, "the run", func() {
		res, err = h.m.Exec(ctx, s.SessionID, runtime.ExecRequest{Shell: heldRun("echo done"), Timeout: 30 * time.Second})
	})
	took := time.Since(start)
	t.Logf("a run whose pipes a background process holds answered after %v: %+v %v", took, res, err)
	if err != nil || !strings.Contains(res.Stdout, "held\ndone") {
		t.Fatalf("run (its pipes must be held, then it ends): %+v %v", res, err)
	}
	if took > 15*time.Second {
		t.Errorf("the run answered after %v: its output wait is not bounded", took)
	}

	// 2. DELETE answers while a run is in flight and its pipes are held.
	w := h.session(t, "-delete")
	h.startFDHolder(t, w)
	ran := make(chan error, 1)
	go func() {
		_, err := h.m.Exec(ctx, w.SessionID, runtime.ExecRequest{Shell: heldRun("sleep 300"), Timeout: 10 * time.Minute})
		ran <- err
	}()
	time.Sleep(3 * time.Second) // the run is in flight, its pipes held
	start = time.Now()
	within(t, time.Minute, "DELETE", func() { err = h.m.Destroy(ctx, w.SessionID) })
	if err != nil {
		t.Fatalf("destroy: %v", err)
	}
	t.Logf("DELETE with a run in flight and its pipes held answered after %v", time.Since(start))
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("DELETE took %v", d)
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Errorf("the run in flight did not end with its session")
	}

	// 3. A wedged session does not hold back the reaping of the others.
	wedged := h.session(t, "-wedged")
	h.startFDHolder(t, wedged)
	others := []store.Session{h.session(t, "-idle1"), h.session(t, "-idle2")}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_, _ = h.m.Exec(wctx, wedged.SessionID, runtime.ExecRequest{Shell: heldRun("sleep 300"), Timeout: 10 * time.Minute})
	}()
	time.Sleep(3 * time.Second)                                                      // the run is in flight, its pipes held
	runtime.SetClock(h.m, func() time.Time { return time.Now().Add(2 * time.Hour) }) // all idle past the timeout
	start = time.Now()
	var reaped []string
	within(t, 2*time.Minute, "the reap", func() { reaped, err = h.m.Reap(ctx) })
	t.Logf("reap with one session wedged: %v after %v (%v)", reaped, time.Since(start), err)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if !slices.Contains(reaped, o.SessionID) {
			t.Errorf("%s was not reaped beside the wedged session", o.SessionID)
		}
	}
	if !slices.Contains(reaped, wedged.SessionID) {
		t.Errorf("the wedged session was not reaped: its run held it")
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("the reap took %v", d)
	}
}

// within runs fn and fails the test at once if it has not returned after d
// (a call that hangs must fail the test, not time it out).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not answer within %v", what, d)
	}
}
