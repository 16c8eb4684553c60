package runtime_test

import (
	"strings"
	"testing"
	"time"
)

// quotaIoctlSource tries, on the workspace folder, the ioctls that read a
// file's flags and project (allowed) and those that change them (refused,
// also with high bits set and in their 32-bit form), and prints each
// result.
const quotaIoctlSource = `package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	f, err := os.Open(".")
	if err != nil {
		panic(err)
	}
	var buf [64]byte
	for _, c := range []struct {
		name string
		cmd  uintptr
	}{
		{"getflags", 0x80086601},
		{"fsgetxattr", 0x801c581f},
		{"setflags", 0x40086602},
		{"setflags_high", 0x1_40086602},
		{"setflags32", 0x40046602},
		{"fssetxattr", 0x401c5820},
	} {
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), c.cmd, uintptr(unsafe.Pointer(&buf)))
		if errno == 0 {
			fmt.Println(c.name, "OK")
		} else {
			fmt.Println(c.name, errno == syscall.EPERM)
		}
	}
}
`

// A session's code cannot change its files' project ID or flags (which
// would move them out of a project-quota workspace's quota): the ioctls
// are refused (EPERM) however the request number is dressed, while
// reading flags and project still works.
func TestQuotaIoctlsRefused(t *testing.T) {
	h := newHarness(t)
	s := h.session(t, "")
	if err := h.m.WriteFile(h.env.Context(t), s.SessionID, "probe", staticBinary(t, quotaIoctlSource)); err != nil {
		t.Fatal(err)
	}
	res := h.sh(t, s, 20*time.Second, "chmod 755 probe && ./probe")
	want := "getflags OK\nfsgetxattr OK\nsetflags true\nsetflags_high true\nsetflags32 true\nfssetxattr true\n"
	if res.ExitCode != 0 || res.Stdout != want {
		t.Fatalf("probe: %+v\nwant %q", res, strings.TrimSpace(want))
	}
}
