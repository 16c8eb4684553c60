// Package statedir owns every path under the daemon's --state-dir. Nothing
// else joins a name onto the state folder: code asks a Dir for the path of
// what it keeps there.
//
// The layout (each entry is one method of Dir):
//
//	servcraftd.db   DB          the session database (bbolt)
//	workspaces/     Workspaces  one workspace per session (see snapshots/workspace)
//	fifo/           FIFOs       the FIFOs of runs started by runc exec
//	workspace-pool.btrfs  WorkspacePool  the btrfs pool of the workspaces, when there is one
//	spawner/        Spawner     the spawner binary, staged under its content hash
//	depcache/       DepCache    the dependency layers (see runtime/deplayer.go)
//	npm-cache/      NpmCache    the npm proxy's verified tarballs (see runtime/npmproxy)
//	node-id         NodeID      this node's id in a cluster
//	preview.key     PreviewKey  the key that signs preview links
package statedir

import "path/filepath"

// Dir is a state folder.
type Dir string

// DB is the session database.
func (d Dir) DB() string { return d.join("servcraftd.db") }

// Workspaces is the folder of the sessions' workspaces.
func (d Dir) Workspaces() string { return d.join("workspaces") }

// WorkspacePool is the btrfs pool file of the workspaces (--workspace-pool).
func (d Dir) WorkspacePool() string { return d.join("workspace-pool.btrfs") }

// FIFOs is the folder of the FIFOs of runs started by runc exec.
func (d Dir) FIFOs() string { return d.join("fifo") }

// Spawner is the folder the spawner binary is staged in.
func (d Dir) Spawner() string { return d.join("spawner") }

// DepCache is the folder of the dependency layers.
func (d Dir) DepCache() string { return d.join("depcache") }

// NpmCache is the folder of the npm proxy's tarball cache.
func (d Dir) NpmCache() string { return d.join("npm-cache") }

// NodeID is the file holding this node's id.
func (d Dir) NodeID() string { return d.join("node-id") }

// PreviewKey is the file holding the key that signs preview links.
func (d Dir) PreviewKey() string { return d.join("preview.key") }

func (d Dir) join(name string) string { return filepath.Join(string(d), name) }
