package runtime

import (
	"os"
	"os/exec"
	"testing"
)

// TestAtGate tells a run still waiting at the gate (what a daemon killed
// between exec and placement leaves behind) from any other process.
func TestAtGate(t *testing.T) {
	cmd := exec.Command(gateArgs[0], append(gateArgs[1:], "/bin/true")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	defer stdin.Close()
	if !atGate(cmd.Process.Pid) {
		t.Errorf("a process started with the gate's arguments is not seen at the gate")
	}
	if atGate(os.Getpid()) {
		t.Errorf("the test process is taken for a run at the gate")
	}
	if atGate(1 << 30) {
		t.Errorf("a pid that does not exist is taken for a run at the gate")
	}
}
