package runtime

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestAtGate tells a run still waiting at the gate (what a daemon killed
// between exec and placement leaves behind) from any other process.
func TestAtGate(t *testing.T) {
	cmd := exec.Command(shellGateArgs[0], append(shellGateArgs[1:], "/bin/true")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	defer stdin.Close()
	// The kernel lays out the new argv once the exec is done, some time
	// after Start returns: poll, with a deadline, rather than read once.
	deadline := time.Now().Add(5 * time.Second)
	for !atGate(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("a process started with the gate's arguments is not seen at the gate")
		}
		time.Sleep(time.Millisecond)
	}
	if atGate(os.Getpid()) {
		t.Errorf("the test process is taken for a run at the gate")
	}
	if atGate(1 << 30) {
		t.Errorf("a pid that does not exist is taken for a run at the gate")
	}
}
