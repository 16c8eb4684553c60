package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunGroupFiles(t *testing.T) {
	dir := t.TempDir()
	g := RunAt(dir)
	if err := g.Add(42); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a group without its procs file is gone, not made: %v", err)
	}
	procsFile := filepath.Join(dir, "cgroup.procs")
	writeFile(t, procsFile, "7\n")
	if err := g.Add(42); err != nil {
		t.Fatal(err)
	}
	if pids, err := g.Pids(); err != nil || !slices.Equal(pids, []int{42}) {
		t.Fatalf("pids %v %v", pids, err)
	}
	writeFile(t, procsFile, "1\n2\nx\n")
	if pids, _ := g.Pids(); !slices.Equal(pids, []int{1, 2}) {
		t.Fatalf("pids %v", pids)
	}
	writeFile(t, procsFile, "")
	if err := g.waitEmpty(); err != nil {
		t.Fatal(err)
	}
	if err := RunAt(filepath.Join(dir, "gone")).waitEmpty(); err != nil {
		t.Fatalf("a group removed meanwhile is empty: %v", err)
	}
	gone := RunAt(filepath.Join(dir, "gone"))
	if err := gone.Kill(); err != nil {
		t.Fatalf("a group already gone is empty: %v", err)
	}
	if err := gone.Remove(); err != nil {
		t.Fatalf("removing a group already gone: %v", err)
	}
	if _, err := gone.Pids(); err == nil {
		t.Fatal("no procs file")
	}
	if OOMKills("servcraft-test/does-not-exist") != -1 {
		t.Fatal("unreadable counter is -1")
	}
	if ExistingRun("c", "run-1").Dir() != RunDir("c", "run-1") {
		t.Fatal("existing group dir")
	}
	if _, err := Members("servcraft-test/does-not-exist"); err == nil {
		t.Fatal("members of a container that is not there")
	}
}

func TestPathsFollowTheHierarchy(t *testing.T) {
	run := RunDir("ns/c", "r")
	if Unified() {
		if run != filepath.Join(Root, "ns/c/r") {
			t.Fatalf("v2 run dir %s", run)
		}
	} else if run != filepath.Join(Root, "freezer", "ns/c/r") {
		t.Fatalf("v1 run dir %s", run)
	}
	if BootDir("ns/c") != filepath.Join(Root, "cpu", "ns/c", BootName) {
		t.Fatalf("boot dir %s", BootDir("ns/c"))
	}
	if PidsDir("ns/c") != filepath.Join(Root, "pids", "ns/c") {
		t.Fatalf("pids dir %s", PidsDir("ns/c"))
	}
	if NewBoot(0, 100000).Enabled() {
		t.Fatal("no boot quota, no boot group")
	}
	if NewBoot(0.5, 100000).Enabled() == Unified() {
		t.Fatal("a boot quota makes a boot group on v1 only")
	}
}

func TestBootLeaveNeedsAProcess(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cgroup.procs"), "")
	if err := NewBoot(0.5, 100000).Leave("ns/c", RunAt(dir)); err == nil {
		t.Fatal("a runner with no process left cannot leave its boot group")
	}
}

func TestModeName(t *testing.T) {
	name := ModeName()
	if name == "unavailable" {
		t.Fatalf("no cgroup filesystem at %s", Root)
	}
	if (name == "v2") != Unified() {
		t.Fatalf("mode %q, unified %v", name, Unified())
	}
}

// TestSeparateRunsAt plays the kernel's files of a container cgroup v2:
// the runs' group gets the session's limit, the container's own is raised,
// and a second call changes nothing.
func TestSeparateRunsAt(t *testing.T) {
	for _, tc := range []struct{ limit, raised string }{{"256", "320"}, {"max", "max"}} {
		dir := t.TempDir()
		user := filepath.Join(dir, UserName)
		if err := os.Mkdir(user, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "pids.max"), tc.limit)
		writeFile(t, filepath.Join(dir, "cgroup.subtree_control"), "")
		writeFile(t, filepath.Join(user, "pids.max"), "")
		writeFile(t, filepath.Join(user, "cgroup.type"), "domain")
		if err := separateRunsAt(dir); err != nil {
			t.Fatal(err)
		}
		read := func(path string) string {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		if got := read(filepath.Join(user, "pids.max")); got != tc.limit {
			t.Errorf("runs' limit %q, want %q", got, tc.limit)
		}
		if got := read(filepath.Join(dir, "pids.max")); got != tc.raised {
			t.Errorf("container's limit %q, want %q", got, tc.raised)
		}
		if got := read(filepath.Join(user, "cgroup.type")); got != "threaded" {
			t.Errorf("runs' group type %q", got)
		}
		if got := read(filepath.Join(dir, "cgroup.subtree_control")); got != "+pids" {
			t.Errorf("subtree_control written %q", got)
		}
		// The kernel then lists the controller: nothing more is done.
		writeFile(t, filepath.Join(dir, "cgroup.subtree_control"), "pids\n")
		writeFile(t, filepath.Join(dir, "pids.max"), "7")
		if err := separateRunsAt(dir); err != nil || read(filepath.Join(dir, "pids.max")) != "7" {
			t.Errorf("a second call changed the limit: %v", err)
		}
	}
	if err := separateRunsAt(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Error("a container cgroup that is not there")
	}
}
