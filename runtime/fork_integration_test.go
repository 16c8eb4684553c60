package runtime_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime"
)

// TestForkOntoAWarmContainer: on a btrfs pool a fork takes a warm
// container: a snapshot of the source's workspace replaces the warm one's
// and the running container's /workspace is moved onto it (nosuid, nodev,
// one mount), so the fork sees exactly the source's files, not the warm
// starter it held, and the warm workspace is deleted. A fork of a missing
// session uses no warm container.
func TestForkOntoAWarmContainer(t *testing.T) {
	h := newHarnessOnPool(t, func(c *runtime.Config) { c.PoolSize, c.ReapInterval = 1, time.Hour })
	ctx := h.env.Context(t)
	if err := h.m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitWarm := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for runtime.WarmReady(h.m) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("the warm pool did not fill")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitWarm()
	src, _, err := h.m.Create(ctx, "fork-source", "js")
	if err != nil {
		t.Fatal(err)
	}
	// The source differs from any starter: a file of its own, one written
	// by its code, and the starter's program deleted.
	if err := os.WriteFile(filepath.Join(src.Workspace, "keep.txt"), []byte("the source's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := h.exec(t, src, 10*time.Second, "/bin/sh", "-c", "echo by-code > made.txt && rm src/app.js && mkdir -p node_modules/dep && echo 1 > node_modules/dep/index.js"); res.ExitCode != 0 {
		t.Fatalf("prepare the source: %+v", res)
	}
	if _, _, err := h.m.Fork(ctx, "fork-none", "no-such-session"); !errdefs.IsNotFound(err) {
		t.Fatalf("fork of a missing session: %v, want not found", err)
	}
	waitWarm()
	pooledBefore := h.m.Stats().Creates["pool"]
	start := time.Now()
	dst, created, err := h.m.Fork(ctx, "fork-dst", src.SessionID)
	took := time.Since(start)
	if err != nil || !created || dst.ProjectType != "js" {
		t.Fatalf("fork: %+v %v %v", dst, created, err)
	}
	t.Logf("fork onto a warm container took %v", took)
	if got := h.m.Stats().Creates["pool"]; got != pooledBefore+1 {
		t.Fatalf("fork not served by the warm pool: creates %+v", h.m.Stats().Creates)
	}
	res := h.exec(t, dst, 10*time.Second, "/bin/sh", "-c",
		`cat keep.txt made.txt; test ! -e src/app.js && test -f node_modules/dep/index.js && echo deps; grep -c ' /workspace ' /proc/self/mountinfo; grep ' /workspace ' /proc/self/mountinfo | grep -q 'nosuid,nodev' && echo nosuid-nodev; pwd; id -u`)
	if want := "the source'sby-code\ndeps\n1\nnosuid-nodev\n/workspace\n1000\n"; res.Stdout != want || res.ExitCode != 0 {
		t.Fatalf("the fork's workspace: %+v\nwant %q", res, want)
	}
	// They go their own ways.
	if res := h.exec(t, dst, 10*time.Second, "/bin/sh", "-c", "echo fork > made.txt"); res.ExitCode != 0 {
		t.Fatalf("write in the fork: %+v", res)
	}
	if b, err := os.ReadFile(filepath.Join(src.Workspace, "made.txt")); err != nil || string(b) != "by-code\n" {
		t.Fatalf("the source after a write to the fork: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst.Workspace, "made.txt")); err != nil || string(b) != "fork\n" {
		t.Fatalf("the fork's write seen from the host: %q %v", b, err)
	}
	// The warm workspace the fork replaced is deleted.
	displaced := filepath.Join(filepath.Dir(dst.Workspace), "displaced")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Lstat(displaced)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replaced warm workspace is still there: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, err := h.m.Get(ctx, dst.SessionID)
	if err != nil || info.Usage.WorkspaceLimitBytes != 64<<20 {
		t.Fatalf("the fork's usage: %+v %v", info.Usage, err)
	}
	if err := h.m.Destroy(ctx, dst.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Dir(dst.Workspace)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the fork's workspace after destroy: %v", err)
	}
	if !strings.HasPrefix(dst.ContainerID, runtime.ContainerPrefix) {
		t.Fatalf("container %q", dst.ContainerID)
	}
}
