package runtime

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// Paths inside every session container.
const (
	WorkspacePath = "/workspace"
	HomePath      = "/home/node"
	initPath      = "/sbin/servcraft-init"
	// ToolchainPath is where the shared, read-only TypeScript toolchain is mounted.
	ToolchainPath = "/opt/servcraft/toolchain"
	// TSLoader is the tsx loader that makes `node --import` run TypeScript.
	TSLoader = ToolchainPath + "/node_modules/tsx/dist/loader.mjs"
	// sandboxPath is PATH in every session: the toolchain's tsx first, then the image's folders.
	sandboxPath = "PATH=" + ToolchainPath + "/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// SandboxUID is the uid (and gid) every process of the user's runs as: "node".
	SandboxUID = 1000
	// initUID runs the container's PID 1 (the spawner, or the init and its
	// idle child) and every run's gate until it is placed: another uid than
	// the user's, so user code cannot signal, trace or write into them.
	initUID = 65534
)

// SpecLimits are the resource limits of one session container.
type SpecLimits struct {
	MemoryBytes int64
	CPUQuota    int64  // microseconds of CPU per period
	CPUPeriod   uint64 // microseconds
	Pids        int64
	TmpBytes    int64 // size of the /tmp and /home/node tmpfs mounts, each
	NoFile      uint64
	FileBytes   uint64 // largest file a process may write (RLIMIT_FSIZE)
}

// sessionSpecOpts builds a session container's spec: non-root, no
// capabilities, no new privileges, read-only rootfs, a fresh network
// namespace with only lo (from the default spec), resource limits, a reaping
// PID 1, and the default seccomp profile applied last. With hostSpawner the
// spawner is PID 1 (withSpawner replaces the init's argv: it reaps orphans
// and starts the runs); without, the init (tini) is PID 1 over an idle
// sleep and every run is a runc exec.
func sessionSpecOpts(image oci.Image, lim SpecLimits, workspaceDir, hostInit, hostSpawner, toolchainDir string) []oci.SpecOpts {
	if hostSpawner != "" {
		hostInit = "" // the spawner is PID 1 and reaps: no init is mounted
	}
	opts := append([]oci.SpecOpts{oci.WithDefaultSpec(), oci.WithDefaultUnixDevices, oci.WithImageConfig(image)},
		hardeningOpts(lim, workspaceDir, hostInit)...)
	if toolchainDir != "" {
		opts = append(opts, withReadOnlyBind(toolchainDir, ToolchainPath))
	}
	if hostSpawner != "" {
		opts = append(opts, withSpawner(hostSpawner))
	}
	return opts
}

// shimGroupAnnotation is the runc v2 shim's grouping key (containerd 1.6
// and 2.x): the containers whose specs carry the same value are served by
// one shim process.
const shimGroupAnnotation = "io.containerd.runc.v2.group"

// shimGroup is the shim group of a container: one of
// ceil(maxSessions/perShim) groups, by a hash of its ID, so that about
// perShim sessions share a shim when the host is full; "" (a shim of its
// own) when perShim is 1. A shim costs about 2.5 MiB of PSS, more than the
// idle session it serves; sharing it costs blast radius: a shim that dies
// takes the tasks of its group with it (each session is then restarted as
// after any lost task). The hash keeps the group across daemon restarts.
func shimGroup(containerID string, maxSessions, perShim int) string {
	if perShim <= 1 {
		return ""
	}
	groups := max(1, (maxSessions+perShim-1)/perShim)
	h := fnv.New32a()
	h.Write([]byte(containerID))
	return fmt.Sprintf("servcraft-shim-%d", h.Sum32()%uint32(groups))
}

// withShimGroup puts the container in a shim group ("": none).
func withShimGroup(group string) oci.SpecOpts {
	if group == "" {
		return func(context.Context, oci.Client, *containers.Container, *specs.Spec) error { return nil }
	}
	return oci.WithAnnotations(map[string]string{shimGroupAnnotation: group})
}

// hardeningOpts is everything of the session spec that does not come from
// the image. With hostInit, the init (tini) is mounted and is PID 1 over an
// idle sleep; without, the caller sets PID 1 (withSpawner).
func hardeningOpts(lim SpecLimits, workspaceDir, hostInit string) []oci.SpecOpts {
	var pid1 []oci.SpecOpts
	if hostInit != "" {
		pid1 = []oci.SpecOpts{withInit(hostInit), oci.WithProcessArgs(initPath, "--", "/bin/sleep", "2147483647")}
	}
	return append(pid1,
		oci.WithHostname("sandbox"),
		oci.WithProcessCwd(WorkspacePath),
		oci.WithEnv([]string{sandboxPath, "HOME=" + HomePath, "USER=node", "NPM_CONFIG_UPDATE_NOTIFIER=false"}),
		oci.WithUIDGID(initUID, initUID),
		withNoAdditionalGIDs,
		oci.WithCapabilities(nil),
		oci.WithNoNewPrivileges,
		oci.WithRootFSReadonly(),
		withTmpfs("/tmp", lim.TmpBytes, 0o1777),
		withTmpfs(HomePath, lim.TmpBytes, 0o755),
		withWorkspace(workspaceDir),
		oci.WithMemoryLimit(uint64(lim.MemoryBytes)),
		oci.WithMemorySwap(lim.MemoryBytes), // memory+swap = memory: no swap on top
		oci.WithCPUCFS(lim.CPUQuota, lim.CPUPeriod),
		oci.WithPidsLimit(lim.Pids),
		withRlimit("RLIMIT_NOFILE", lim.NoFile),
		withRlimit("RLIMIT_FSIZE", lim.FileBytes),
		withRlimit("RLIMIT_CORE", 0),
		seccomp.WithDefaultProfile(), // it reads the capabilities set above
		withoutSyscalls("ptrace", "process_vm_readv", "process_vm_writev"),
		withoutIoctls(workspace.IoctlSetProject, workspace.IoctlSetFlags, workspace.IoctlSetFlags32),
	)
}

// withoutIoctls refuses (with the profile's default errno) the ioctl
// requests cmds, compared on the 32 bits the kernel reads of them, so a
// request with high bits set is refused too. These are the ones that move
// a file out of its workspace's project quota (its project ID, or its
// folder's inheritance of it). libseccomp lets an unconditional allow of a
// syscall win over any rule with arguments, so ioctl's allow is replaced
// by allows of every other request (allowedIoctls).
func withoutIoctls(cmds ...uint32) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		if err := withoutSyscalls("ioctl")(ctx, client, c, s); err != nil {
			return fmt.Errorf("withoutIoctls: %w", err)
		}
		for _, arg := range allowedIoctls(cmds) {
			s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{
				Names: []string{"ioctl"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{arg},
			})
		}
		return nil
	}
}

// allowedIoctls covers every 32-bit ioctl request but the refused ones
// with masked comparisons of ioctl's second argument, one rule each (a
// rule compares an argument once; rules add up): walking the bits from the
// top, each branch no refused request takes is allowed whole. At most 32
// rules per refused request.
func allowedIoctls(refused []uint32) []specs.LinuxSeccompArg {
	var out []specs.LinuxSeccompArg
	var walk func(mask, value uint32, left []uint32, bit int)
	walk = func(mask, value uint32, left []uint32, bit int) {
		if len(left) == 0 {
			out = append(out, specs.LinuxSeccompArg{Index: 1, Value: uint64(mask), ValueTwo: uint64(value), Op: specs.OpMaskedEqual})
			return
		}
		if bit < 0 {
			return // a refused request itself
		}
		b := uint32(1) << bit
		var zero, one []uint32
		for _, cmd := range left {
			if cmd&b == 0 {
				zero = append(zero, cmd)
			} else {
				one = append(one, cmd)
			}
		}
		walk(mask|b, value, zero, bit-1)
		walk(mask|b, value|b, one, bit-1)
	}
	walk(0, 0, slices.Compact(slices.Sorted(slices.Values(refused))), 31)
	return out
}

// withoutSyscalls removes names from every allow rule of the seccomp
// profile, so they fail with the profile's default errno. The default
// profile allows ptrace on new kernels; a sandbox has no use for it.
func withoutSyscalls(names ...string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil || s.Linux.Seccomp == nil {
			return fmt.Errorf("seccomp profile missing: withoutSyscalls must follow it")
		}
		rules := s.Linux.Seccomp.Syscalls[:0]
		for _, r := range s.Linux.Seccomp.Syscalls {
			if r.Action == specs.ActAllow {
				r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(names, n) })
				if len(r.Names) == 0 {
					continue
				}
			}
			rules = append(rules, r)
		}
		s.Linux.Seccomp.Syscalls = rules
		return nil
	}
}

// withInit bind-mounts a static init (tini) read-only as the container's PID 1,
// which reaps orphans the way `docker run --init` does.
func withInit(hostInit string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: initPath,
		Type:        "bind",
		Source:      hostInit,
		Options:     []string{"bind", "ro", "nosuid", "nodev"},
	}})
}

// withReadOnlyBind bind-mounts a shared host folder (the TypeScript
// toolchain) read-only at dest. No dependency layer is ever mounted: a
// session gets a copy of its own match only.
func withReadOnlyBind(hostDir, dest string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: dest,
		Type:        "bind",
		Source:      hostDir,
		Options:     []string{"rbind", "ro", "nosuid", "nodev"},
	}})
}

// withTmpfs mounts a size-limited tmpfs owned by the sandbox user at dest.
func withTmpfs(dest string, size int64, mode uint32) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: dest,
		Type:        "tmpfs",
		Source:      "tmpfs",
		Options: []string{"nosuid", "nodev", "noexec",
			fmt.Sprintf("size=%d", size), fmt.Sprintf("mode=%o", mode),
			fmt.Sprintf("uid=%d", SandboxUID), fmt.Sprintf("gid=%d", SandboxUID)},
	}})
}

// withWorkspace bind-mounts the session's workspace volume read-write at /workspace.
func withWorkspace(hostDir string) oci.SpecOpts {
	return oci.WithMounts([]specs.Mount{{
		Destination: WorkspacePath,
		Type:        "bind",
		Source:      hostDir,
		Options:     []string{"rbind", "rw", "nosuid", "nodev"},
	}})
}

// withRlimit sets soft and hard limit of one resource, replacing any earlier value.
func withRlimit(name string, limit uint64) oci.SpecOpts {
	return oci.WithRlimit(&specs.POSIXRlimit{Type: name, Hard: limit, Soft: limit})
}

// withNoAdditionalGIDs drops supplementary groups: the sandbox user is in its own group only.
func withNoAdditionalGIDs(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil {
		s.Process.User.AdditionalGids = nil
	}
	return nil
}
