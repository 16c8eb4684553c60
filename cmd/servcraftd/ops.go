package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
	"github.com/servcraft/servcraftd/store/statedir"
)

// gcTimeout bounds a whole gc run.
const gcTimeout = 10 * time.Minute

// subcommandFlags is a flag set of a subcommand holding the named daemon
// settings of cfg and --config, so that the config file and SERVCRAFT_*
// variables reach it as they reach the daemon.
func subcommandFlags(name, synopsis string, stderr io.Writer, cfg *config, settings ...string) *flag.FlagSet {
	all := flag.NewFlagSet("", flag.ContinueOnError)
	cfg.register(all)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range append(settings, "config") {
		f := all.Lookup(n)
		fs.Var(f.Value, f.Name, f.Usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags (also SERVCRAFT_<NAME> and --config keys, as for the daemon):\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseSubcommand parses args into fs; a non-nil code means stop with it.
func parseSubcommand(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) *int {
	code := 0
	if err := parseLayered(fs, args, getenv); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
			code = 2
		}
		return &code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments: %v\n", fs.Name(), fs.Args())
		code = 2
		return &code
	}
	return nil
}

// sessionsCommand is `servcraftd sessions ls`: the stored sessions as a table
// or JSON. It only reads the database, and works while the daemon runs
// (store.ListFile copies the file when the daemon holds its lock).
func sessionsCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const synopsis = "Usage: servcraftd sessions ls [--state-dir DIR] [--json]\n\nLists the sessions in the session database, read-only; safe while the daemon runs."
	if len(args) == 0 || args[0] != "ls" {
		fmt.Fprintln(stderr, synopsis)
		return 2
	}
	cfg := defaultConfig()
	fs := subcommandFlags("servcraftd sessions ls", synopsis, stderr, &cfg, "state-dir")
	asJSON := fs.Bool("json", false, "print the stored records as JSON instead of a table")
	if code := parseSubcommand(fs, args[1:], getenv, stderr); code != nil {
		return *code
	}
	list, err := store.ListFile(statedir.Dir(cfg.StateDir).DB())
	if err != nil {
		fmt.Fprintln(stderr, "servcraftd sessions ls:", err)
		if code, advice := storeRefusal(err); code != 0 {
			fmt.Fprintln(stderr, advice)
			return code
		}
		return 1
	}
	if *asJSON {
		if list == nil {
			list = []store.Session{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			fmt.Fprintln(stderr, "servcraftd sessions ls:", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tCONTAINER\tSTATE\tTYPE\tCREATED\tLAST ACTIVE\tEXPIRES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.SessionID, s.ContainerID, s.State, s.ProjectType,
			stamp(s.CreatedAt), stamp(s.LastActiveAt), stamp(s.ExpiresAt))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintln(stderr, "servcraftd sessions ls:", err)
		return 1
	}
	return 0
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// gcCommand is `servcraftd gc`: it removes everything of servcraftd's from
// containerd (session containers, their tasks and snapshots) and from the
// state folder (workspace volumes, FIFOs, the session database). Without
// --yes it lists what it would remove and removes nothing. It refuses while
// a daemon holds the session database, and holds that lock itself meanwhile,
// so no daemon starts during a gc.
func gcCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const synopsis = "Usage: servcraftd gc --yes [--state-dir DIR] [--containerd-address SOCK] [--namespace NS]\n\n" +
		"Removes every session container (tasks killed), their snapshots, every workspace volume and the\n" +
		"session database: for a host being retired. Stop the daemon first. Images and the npm cache stay.\n" +
		"Without --yes it only lists what it would remove."
	cfg := defaultConfig()
	fs := subcommandFlags("servcraftd gc", synopsis, stderr, &cfg, "state-dir", "containerd-address", "namespace", "snapshotter")
	yes := fs.Bool("yes", false, "remove (without it gc only lists)")
	if code := parseSubcommand(fs, args, getenv, stderr); code != nil {
		return *code
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "servcraftd gc:", err)
		return 1
	}
	if err := cfg.absPaths(); err != nil {
		return fail(err)
	}
	state := statedir.Dir(cfg.StateDir)
	dbPath := state.DB()
	ctx, client, done, err := offline(cfg, dbPath, gcTimeout)
	if err != nil {
		return fail(err)
	}
	defer done()
	var vols *workspace.Volumes
	wsRoot := state.Workspaces()
	if _, err := os.Stat(wsRoot); err == nil {
		if vols, err = openVolumes(ctx, cfg, state); err != nil {
			return fail(err)
		}
	}

	verb := "would remove"
	if *yes {
		verb = "removed"
	}
	rep, gcErr := runtime.GC(ctx, client, vols, cfg.Runtime.Image.Snapshotter, !*yes)
	n := 0
	for _, c := range rep.Containers {
		fmt.Fprintf(stdout, "%s container %s (namespace %s, session %q)\n", verb, c.ID, cfg.Namespace, c.SessionID)
		n++
	}
	for _, s := range rep.Snapshots {
		fmt.Fprintf(stdout, "%s snapshot %s (%s)\n", verb, s, cfg.Runtime.Image.Snapshotter)
		n++
	}
	for _, v := range rep.Volumes {
		fmt.Fprintf(stdout, "%s workspace %s\n", verb, filepath.Join(wsRoot, v))
		n++
	}
	for _, p := range []string{dbPath, state.FIFOs()} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if *yes {
			if gcErr != nil {
				continue // keep the records of what could not be removed
			}
			if err := os.RemoveAll(p); err != nil {
				gcErr = errors.Join(gcErr, err)
				continue
			}
		}
		fmt.Fprintf(stdout, "%s %s\n", verb, p)
		n++
	}
	if *yes && gcErr == nil {
		_ = os.Remove(wsRoot) // only if empty
	}
	switch {
	case gcErr != nil:
		return fail(gcErr)
	case n == 0:
		fmt.Fprintf(stdout, "nothing of servcraftd's in namespace %s or under %s\n", cfg.Namespace, state)
	case !*yes:
		fmt.Fprintln(stderr, "servcraftd gc: nothing was removed; run again with --yes to remove the above")
		return 1
	}
	return 0
}

// rebuildTimeout bounds a whole store rebuild.
const rebuildTimeout = 5 * time.Minute

// storeCommand is `servcraftd store rebuild`: it moves the session database
// aside (kept as servcraftd.db.damaged-<unix time>) and writes a new one
// from what containerd and the workspaces hold: one record per labelled
// session container (runtime.RebuildStore). It refuses while a daemon runs.
func storeCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	synopsis := "Usage: servcraftd store rebuild [--state-dir DIR] [--containerd-address SOCK] [--namespace NS]\n\n" +
		"Rebuilds the session database from the session containers' labels and the workspace volumes, after\n" +
		"the database was damaged or lost. Stop the daemon first. The old file is kept beside the new one as\n" +
		filepath.Base(statedir.Dir("/").DB()) + ".damaged-<unix time>. Deadlines come back within one --touch-interval."
	if len(args) == 0 || args[0] != "rebuild" {
		fmt.Fprintln(stderr, synopsis)
		return 2
	}
	cfg := defaultConfig()
	fs := subcommandFlags("servcraftd store rebuild", synopsis, stderr, &cfg, "state-dir", "containerd-address", "namespace",
		"idle-timeout", "workspace-size")
	if code := parseSubcommand(fs, args[1:], getenv, stderr); code != nil {
		return *code
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "servcraftd store rebuild:", err)
		return 1
	}
	if err := cfg.absPaths(); err != nil {
		return fail(err)
	}
	dbPath := statedir.Dir(cfg.StateDir).DB()
	ctx, client, done, err := offline(cfg, dbPath, rebuildTimeout)
	if err != nil {
		return fail(err)
	}
	defer done()
	if _, err := client.Version(ctx); err != nil {
		return fail(fmt.Errorf("containerd at %s: %w", cfg.ContainerdAddress, err))
	}
	vols, err := openVolumes(ctx, cfg, statedir.Dir(cfg.StateDir))
	if err != nil {
		return fail(err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		aside := fmt.Sprintf("%s.damaged-%d", dbPath, time.Now().Unix())
		if err := os.Rename(dbPath, aside); err != nil {
			return fail(fmt.Errorf("move the old database aside: %w", err))
		}
		fmt.Fprintf(stdout, "moved %s to %s\n", dbPath, aside)
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return fail(err)
	}
	rep, err := runtime.RebuildStore(ctx, client, db, vols, cfg.Runtime.IdleTimeout)
	for _, id := range rep.Restored {
		fmt.Fprintf(stdout, "restored session %q\n", id)
	}
	for _, id := range rep.Skipped {
		fmt.Fprintf(stdout, "skipped container %s (labels name no session, or its record exists)\n", id)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "rebuilt %s: %d sessions\n", dbPath, len(rep.Restored))
	return 0
}

// offline prepares a command that works on the state while no daemon runs:
// it locks the session database at dbPath (refused while a daemon holds it),
// gives a context that ends at SIGINT/SIGTERM or after timeout, and connects
// to containerd. done undoes all of it.
func offline(cfg config, dbPath string, timeout time.Duration) (context.Context, *containerd.Client, func(), error) {
	unlock, err := lockDatabase(dbPath)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	client, err := containerd.New(cfg.ContainerdAddress, containerd.WithDefaultNamespace(cfg.Namespace),
		containerd.WithTimeout(10*time.Second))
	if err != nil {
		cancel()
		stop()
		unlock()
		return nil, nil, nil, fmt.Errorf("connect to containerd at %s: %w", cfg.ContainerdAddress, err)
	}
	return ctx, client, func() { client.Close(); cancel(); stop(); unlock() }, nil
}

// lockDatabase takes the session database's lock (bbolt's flock) so that no
// daemon runs, or starts, while gc works; an error names a running daemon.
func lockDatabase(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	} else if err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("a servcraftd is running on %s (it holds %s): stop it first", filepath.Dir(path), path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
