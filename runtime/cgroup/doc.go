// Package cgroup owns every cgroup the daemon makes or moves processes
// into inside a session container's own cgroup, on cgroup v1 and v2:
//
//   - run cgroups (Run): one per run, below the container's cgroup, holding
//     the run's whole process tree so it can be listed and killed at once
//     (the freezer hierarchy on v1, the single hierarchy on v2);
//   - the runner-boot CPU group (Boot, v1 only): where pre-started runners
//     boot when --runner-boot-cpus is set;
//   - the spawner's room outside the session's pids limit (SpareSpawner), so
//     a fork bomb at the limit cannot kill the container's PID 1: on v1 the
//     spawners' pids group, which every run leaves for the session's pids
//     cgroup (EnterSessionPids) before its gate opens; on v2 a child of the
//     container's cgroup holding every run under the limit.
//
// Containers are named by the cgroup path of their OCI spec
// (spec.Linux.CgroupsPath), relative to Root.
//
// The v1/v2 decision comes from containerd/cgroups/v3 (cgroups.Mode).
// The rest is one write to a control file each, done here: cgroup1's
// loader takes every hierarchy of a path, and the daemon touches one
// hierarchy at a time (a run cgroup exists in the freezer hierarchy only);
// cgroup2's manager would bring eBPF and D-Bus libraries into the daemon
// for a write to cgroup.kill.
package cgroup
