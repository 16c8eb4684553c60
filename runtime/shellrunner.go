package runtime

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/servcraft/servcraftd/runtime/phases"
)

// shellKind is the waiting runner of shell commands: a /bin/sh started as
// a cold `/bin/sh -c <command>` run is (same uid, environment, working
// directory, run cgroup and output buffers), waiting on stdin for the
// command line.
const shellKind scriptKind = "sh"

// shellArgs is the argv of a shell command run cold, and what the shell
// runner execs into once it has the command: the same process, $0, exit
// status and the rest of stdin either way.
func shellArgs(command string) []string { return []string{"/bin/sh", "-c", command} }

// shellWaiter is the program of a waiting shell runner. It reads one line
// (byte by byte: `read` of busybox ash and dash does on a pipe, so the rest
// of stdin stays the command's), decodes it with printf's %b (the command
// with backslash and newline escaped; the x after it keeps trailing
// newlines from command substitution), and execs the shell a cold run
// starts. The waiter is one more shell level than a cold run has: busybox
// ash, the image's sh, counts levels in SHLVL, so it gives back the one it
// added (the cold/warm suite compares SHLVL and the whole environment). servcraft_line is no variable of the container's
// environment, so setting and unsetting it leaves the command's as a cold
// run's. EOF before a line (the runner is stopped unused): exit 0.
const shellWaiter = `IFS= read -r servcraft_line || exit 0; ` +
	`set -- "$(printf '%bx' "$servcraft_line")"; unset servcraft_line; ` +
	`SHLVL=$((SHLVL-1)); exec /bin/sh -c "${1%x}"`

// shellRunnerArgs is the argv of a waiting shell runner.
var shellRunnerArgs = shellArgs(shellWaiter)

// encodeShellLine is command as the one line shellWaiter decodes back to it.
func encodeShellLine(command string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(command) + "\n"
}

// maxArgStrlen is the kernel's bound on one argument of execve
// (MAX_ARG_STRLEN, its NUL included). A longer command fails to start cold,
// so it is run cold, where it fails the same way.
const maxArgStrlen = 32 * 4096

// shellRunnable reports whether the shell runner can run req as a cold
// run would: it was started with no environment of the request's own, and
// a cold run's argv goes to runc as JSON, which makes it valid UTF-8 (the
// API's commands, JSON themselves, always are).
func shellRunnable(req ExecRequest) bool {
	return len(req.Env) == 0 && len(req.Shell) < maxArgStrlen && utf8.ValidString(req.Shell) && !strings.ContainsRune(req.Shell, 0)
}

// runShell runs req.Shell as `/bin/sh -c <command>` would: on the session's
// waiting shell runner when there is one (see takeRunner), else cold. As
// for a script's, the next shell runner starts once this run has ended: a
// runc exec in flight in the container holds up the
// end of a run that takes milliseconds (measured on a loaded 2-core host,
// spaced `shell true`: median 137 ms with the next runner starting during
// the run, 31 ms with it starting after).
func (rs *runners) runShell(ctx context.Context, sessionID string, l *liveSession, req ExecRequest) (ExecResult, error) {
	if !shellRunnable(req) {
		req.Args = shellArgs(req.Shell)
		return l.exec(ctx, req)
	}
	rn, err := rs.takeRunner(ctx, sessionID, "", l, shellKind, req)
	phases.Mark(ctx, "runner") // a waiting runner taken (and ready), or none
	if err != nil {
		return ExecResult{}, err
	}
	defer rs.prestart(sessionID, "", shellKind, l)
	if rn == nil {
		req.Args = shellArgs(req.Shell)
		return l.exec(ctx, req)
	}
	return rn.run(ctx, encodeShellLine(req.Shell), req)
}
