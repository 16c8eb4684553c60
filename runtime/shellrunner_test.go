package runtime

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestShellWaiterExecsTheCommandAsSent runs the waiter with the host's
// /bin/sh: whatever bytes the command holds (all but NUL), the shell it
// execs has exactly the argv a cold run has, and the rest of stdin. The
// session image's busybox sh is checked by the cold/warm suite.
func TestShellWaiterExecsTheCommandAsSent(t *testing.T) {
	var every []byte
	for b := 1; b < 256; b++ {
		every = append(every, byte(b))
	}
	for _, payload := range []string{
		"", "plain", "two\nlines", "trailing\n\n\n", "\n", `back\slash\\`, `\n\t\c\0101%b%s`,
		"'quotes' \"and\" `ticks` $HOME ${x%x} x", "ends in x", "ends in \\", string(every),
		strings.Repeat("long\\\n", 20000),
	} {
		// A command that prints the argv of the shell running it, then its
		// stdin, and holds the payload in a quoted word.
		command := `cat /proc/$$/cmdline; cat; : '` + strings.ReplaceAll(payload, `'`, `'\''`) + `'`
		cmd := exec.Command("/bin/sh", shellRunnerArgs[1:]...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.Stdin = strings.NewReader(encodeShellLine(command) + "rest\nof stdin")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("payload %q: %v", payload[:min(len(payload), 40)], err)
		}
		want := []byte("/bin/sh\x00-c\x00" + command + "\x00rest\nof stdin")
		if !bytes.Equal(out, want) {
			t.Errorf("payload %q:\ngot  %q\nwant %q", payload[:min(len(payload), 40)], out[:min(len(out), 200)], want[:min(len(want), 200)])
		}
	}
}

// TestShellWaiterExitsOnEOF: a runner stopped unused exits 0 and runs nothing.
func TestShellWaiterExitsOnEOF(t *testing.T) {
	for _, stdin := range []string{"", "echo partial line without newline"} {
		cmd := exec.Command("/bin/sh", shellRunnerArgs[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("stdin %q: %q %v", stdin, out, err)
		}
	}
}

func TestShellRunnable(t *testing.T) {
	for _, tc := range []struct {
		req  ExecRequest
		want bool
	}{
		{ExecRequest{Shell: "true"}, true},
		{ExecRequest{Shell: "true", Stdin: []byte("x")}, true},
		{ExecRequest{Shell: "true", Env: []string{"A=1"}}, false},
		{ExecRequest{Shell: strings.Repeat("x", maxArgStrlen-1)}, true},
		{ExecRequest{Shell: strings.Repeat("x", maxArgStrlen)}, false},
		{ExecRequest{Shell: "a\x00b"}, false},
		{ExecRequest{Shell: "echo \xc3\xa9"}, true},
		{ExecRequest{Shell: "echo \xff"}, false},
	} {
		if got := shellRunnable(tc.req); got != tc.want {
			t.Errorf("%.20q env %v: %v, want %v", tc.req.Shell, tc.req.Env, got, tc.want)
		}
	}
}
