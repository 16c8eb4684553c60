package snapshots

import (
	containerd "github.com/containerd/containerd/v2/client"
)

// RootFSKey is the snapshot key of a container's rootfs, so that operators
// find it under the container's own ID with `ctr snapshots ls`.
func RootFSKey(containerID string) string { return containerID + "-rootfs" }

// WithRootFS gives the container an overlay snapshot of image's unpacked
// layers, removed with the container (containerd.WithSnapshotCleanup). The
// snapshot is writable only so runc can create the mount points the spec
// needs (an image need not have /sbin/servcraft-init); the spec then makes
// the root read-only before any process of the session runs.
func WithRootFS(containerID string, image containerd.Image) containerd.NewContainerOpts {
	return containerd.WithNewSnapshot(RootFSKey(containerID), image)
}
