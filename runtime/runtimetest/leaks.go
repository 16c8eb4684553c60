package runtimetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs"
)

// AssertNoLeaks checks that nothing of a destroyed session remains: no
// container, task, rootfs snapshot or lease in containerd, no mount in the
// host's mount table, no loop device backed by its workspace image, and no
// workspace on disk under workspaces.
func (e *Env) AssertNoLeaks(t testing.TB, containerID, uuid, workspaces string) {
	t.Helper()
	ctx := e.Context(t)
	if _, err := e.Client.LoadContainer(ctx, containerID); !errdefs.IsNotFound(err) {
		t.Errorf("leak: container %s still exists (%v)", containerID, err)
	}
	if _, err := e.Client.TaskService().Get(ctx, taskRequest(containerID)); err == nil {
		t.Errorf("leak: task %s still exists", containerID)
	}
	if _, err := e.Client.SnapshotService(e.Image.Snapshotter).Stat(ctx, containerID+"-rootfs"); !errdefs.IsNotFound(err) {
		t.Errorf("leak: snapshot %s-rootfs still exists (%v)", containerID, err)
	}
	leases, err := e.Client.LeasesService().List(ctx)
	if err != nil {
		t.Errorf("list leases: %v", err)
	}
	for _, l := range leases {
		if strings.Contains(l.ID, containerID) || strings.Contains(l.ID, uuid) {
			t.Errorf("leak: lease %s", l.ID)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, uuid) || strings.Contains(line, containerID) {
			t.Errorf("leak: mount %s", line)
		}
	}
	backing, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range backing {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), uuid) {
			t.Errorf("leak: loop device %s backed by %s", filepath.Base(filepath.Dir(filepath.Dir(f))), strings.TrimSpace(string(b)))
		}
	}
	if _, err := os.Stat(filepath.Join(workspaces, uuid)); !os.IsNotExist(err) {
		t.Errorf("leak: workspace %s still on disk (%v)", uuid, err)
	}
}

func taskRequest(id string) *tasks.GetRequest { return &tasks.GetRequest{ContainerID: id} }
