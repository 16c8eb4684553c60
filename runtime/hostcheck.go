package runtime

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/cgroup"
)

// HostReport is what the daemon learns about its host at start.
type HostReport struct {
	Runc       string // first line of `runc --version`, "" if runc is not on PATH
	Libseccomp string // libseccomp version runc was built with, "" if none
	Seccomp    bool   // the kernel filters system calls (Seccomp: in /proc/self/status)
	Cgroup     string // the cgroup layout: v2, v1 (hybrid), v1
}

// CheckHost reads runc's version and whether seccomp filtering is available.
// Without seccomp the default profile, and so most of the sandbox's syscall
// filtering, would silently not apply: refuse, unless allowNoSeccomp.
func CheckHost(ctx context.Context, allowNoSeccomp bool) (HostReport, error) {
	rep := HostReport{Cgroup: cgroup.ModeName()}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "runc", "--version").Output(); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case rep.Runc == "":
				rep.Runc = line
			case strings.HasPrefix(line, "libseccomp:"):
				rep.Libseccomp = strings.TrimSpace(strings.TrimPrefix(line, "libseccomp:"))
			}
		}
	}
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		rep.Seccomp = bytes.Contains(status, []byte("\nSeccomp:"))
	}
	if (!rep.Seccomp || rep.Libseccomp == "") && !allowNoSeccomp {
		return rep, fmt.Errorf("seccomp is not available (kernel filter: %v, runc libseccomp: %q); refusing to run sandboxes without it (--allow-no-seccomp overrides): %w",
			rep.Seccomp, rep.Libseccomp, errdefs.ErrFailedPrecondition)
	}
	return rep, nil
}
