// Package snapshots provides the filesystems a session gets: the image
// unpacked into containerd's snapshotter, each container's rootfs snapshot
// stacked on it (referenced by the container so garbage collection keeps
// it) and the listing of stray ones for gc; in the workspace sub-package,
// the per-session workspace volume with its quota; in templates, the
// starter projects a workspace is seeded with.
package snapshots
