// Command servcraft-spawner is the PID 1 of every session container made
// with a spawner: it reaps the container's orphans, as an init does, and
// starts the session's runs for the daemon (see package runtime/spawn).
// Run as `servcraft-spawner gate <uid> <gid> <program> [args...]`, it is a
// run's first process (spawn.Gate). It is built static and bind-mounted
// read-only.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/servcraft/servcraftd/runtime/spawn"
)

func main() {
	// A few hundred idle sessions each hold one: keep it small.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(25)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "servcraft-spawner:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) > 1 && os.Args[1] == spawn.GateCommand {
		return spawn.Gate(os.Args[2:])
	}
	if err := spawn.Confine(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own path: %w", err)
	}
	s := spawn.NewServer(self)
	ln, err := spawn.Listen(spawn.SocketPath)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}
