package workspace

import (
	"fmt"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// quotaBound runs fn on an OS thread of its own that lacks
// CAP_SYS_RESOURCE, and returns what fn returns. With that capability a
// root process ignores ext4's quota limits (the project backend's quota)
// and writes into the blocks an ext4 filesystem keeps for root (the image
// backend's), so what the daemon writes into a workspace for a client
// (sync, a file of an execute) is held to the quota like what the session
// writes. Capabilities belong to a thread: the others keep theirs, and
// this one is never handed back (it ends with fn's goroutine). fn must do
// its work on its own goroutine (no goroutine it starts is bound).
func quotaBound(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: Go ends the thread with this goroutine
		if err := dropThreadCapability(unix.CAP_SYS_RESOURCE); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dropThreadCapability removes capability c from the calling thread's
// effective set.
func dropThreadCapability(c uint) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read the thread's capabilities: %w", err)
	}
	data[c/32].Effective &^= 1 << (c % 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capability %d from the thread: %w", c, err)
	}
	return nil
}
