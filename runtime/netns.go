package runtime

import (
	"fmt"
	"net"
	"os"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread switched into the network namespace of
// pid, then switches the thread back. Sockets fn creates stay in that
// namespace: a listener made there is reachable only from inside the
// container, yet the daemon serves it from the host like any other.
func inNetns(pid uint32, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("open host netns: %w", err)
			return
		}
		defer host.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("open netns of pid %d: %w", pid, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns of pid %d: %w", pid, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread is left locked: Go ends it with this goroutine
			// instead of handing a thread in the wrong namespace to others.
			errc <- fmt.Errorf("return to host netns: %w", err)
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// listenInNetns opens a TCP listener on 127.0.0.1 (port 0: any free port)
// inside the network namespace of pid.
func listenInNetns(pid uint32) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(pid, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen in netns of pid %d: %w", pid, err)
	}
	return ln, nil
}
