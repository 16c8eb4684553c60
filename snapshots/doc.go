// Package snapshots provides the filesystems a session gets: the read-only
// rootfs view of the image (containerd's snapshotter, referenced by the
// container so garbage collection keeps it) and, in the workspace
// sub-package, the per-session workspace volume with its quota.
package snapshots
