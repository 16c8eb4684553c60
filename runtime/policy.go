package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/spawn"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/store"
)

// The manager's decisions, as pure functions of their inputs and the time:
// what expires, what is reaped, what capacity allows, how the pool fills,
// which dependency layer an install maps to. They touch neither containerd
// nor the store, so they are tested without either.

// poolNever is the deadline of a pooled container: it is not idle, it waits.
var poolNever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// afterGate is what a gated command line runs once its gate lets it go
// (the spawner's, spawn.GateArgs, or the shell's, shellGateArgs), and
// whether argv has a gate at all.
func afterGate(argv []string) ([]string, bool) {
	if len(argv) > len(shellGateArgs) && slices.Equal(argv[:len(shellGateArgs)], shellGateArgs) {
		return argv[len(shellGateArgs):], true
	}
	if len(argv) > 4 && path.Base(argv[0]) == path.Base(spawnerPath) && argv[1] == spawn.GateCommand {
		return argv[4:], true
	}
	return argv, false
}

// backgroundCommand is the command of a background process whose command
// line is argv: what followed `sh -c` once the run's gate is passed or
// stripped; the whole command line when it has another shape.
func backgroundCommand(argv []string) string {
	argv, _ = afterGate(argv)
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		return argv[2]
	}
	return strings.Join(argv, " ")
}

// clockTicks is the unit of the start times in /proc: USER_HZ, 100 on
// every Linux the kernel ABI serves.
const clockTicks = 100

// startedAt is when the process whose /proc/<pid>/stat is stat started,
// given the host's /proc/stat (its btime line is the boot time).
func startedAt(stat, hostStat []byte) (time.Time, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(hostStat), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(boot, 0).Add(time.Duration(ticks) * time.Second / clockTicks).UTC(), true
		}
	}
	return time.Time{}, false
}

// workspaceRoom is what creates keep free on the state filesystem: the
// disk reserve, and what each cache may still take before its budget
// evicts (budget less what it takes now). A workspace image is allocated
// whole when made, so with the start check (disk.Plan) passed, the caches
// filling to their budgets and every session created never need more than
// the filesystem has.
func workspaceRoom(diskReserve int64, caches []disk.Reservation) int64 {
	return diskReserve + disk.Unclaimed(caches)
}

// newRecord is the record of a session about to be built at now.
func newRecord(sessionID, id, image, projectType, workspaceDir string, limits store.Limits, now time.Time, idle time.Duration) store.Session {
	s := store.Session{
		SessionID:    sessionID,
		UUID:         id,
		ContainerID:  ContainerPrefix + id,
		Image:        image,
		ProjectType:  projectType,
		Workspace:    workspaceDir,
		Limits:       limits,
		State:        store.StateCreating,
		CreatedAt:    now,
		LastActiveAt: now,
		ExpiresAt:    now.Add(idle),
	}
	if KindOf(sessionID) == KindPool {
		s.ExpiresAt = poolNever
	}
	return s
}

// withActivity shows s as activity at at leaves it: active then, and
// expiring no earlier than idle after it. Activity older than the record's
// changes nothing; a deadline pushed out by an extension is never pulled in.
func withActivity(s store.Session, at time.Time, idle time.Duration) store.Session {
	if at.After(s.LastActiveAt) {
		s.LastActiveAt = at
		if exp := at.Add(idle); exp.After(s.ExpiresAt) {
			s.ExpiresAt = exp
		}
	}
	return s
}

// extend pushes s's deadline out by by, once: errdefs.ErrFailedPrecondition
// the second time, errdefs.ErrNotFound for a session not running.
func extend(s *store.Session, by time.Duration) error {
	if s.State != store.StateRunning {
		return fmt.Errorf("session %q is %s: %w", s.SessionID, s.State, errdefs.ErrNotFound)
	}
	if s.Extended {
		return fmt.Errorf("session %q was extended already: %w", s.SessionID, errdefs.ErrFailedPrecondition)
	}
	s.Extended = true
	s.ExpiresAt = s.ExpiresAt.Add(by)
	return nil
}

// adoptRecord turns the record of a warm container into sessionID's, as
// new at now. errdefs.ErrFailedPrecondition if the container is not running.
func adoptRecord(s *store.Session, sessionID, projectType string, now time.Time, idle time.Duration) error {
	if s.State != store.StateRunning {
		return fmt.Errorf("pooled %s is %s: %w", s.SessionID, s.State, errdefs.ErrFailedPrecondition)
	}
	s.SessionID, s.ProjectType = sessionID, projectType
	s.CreatedAt, s.LastActiveAt, s.ExpiresAt = now, now, now.Add(idle)
	return nil
}

// checkCapacity refuses a new session when n sessions (warm containers
// included) already run and max is the most allowed (0: no limit).
func checkCapacity(n, max int) error {
	if max > 0 && n >= max {
		return fmt.Errorf("%w: %d sessions, the most this server runs; try again later", ErrCapacity, n)
	}
	return nil
}

// reapCandidate is the reaper's first, lock-free look at a record: true
// when it may have to go (its deadline passed, its task is not running, or
// it was left half made long enough ago that no create is still at work).
// The reaper looks again under the session's lock before acting.
func reapCandidate(s store.Session, taskRunning bool, now time.Time) bool {
	switch {
	case s.State == store.StateRunning && taskRunning:
		return now.After(s.ExpiresAt)
	case s.State == store.StateCreating:
		return now.Sub(s.CreatedAt) >= cleanupTimeout
	}
	return true
}

// reapReason names why a session (seen with its latest activity) goes:
// "unfinished" when it was left half destroyed, or half made for longer
// than any create takes; "idle" when its deadline passed; else "gone" (its
// task is not running). "" when it stays.
// taskRunning is asked only when the answer depends on it.
func reapReason(s store.Session, now time.Time, taskRunning func() bool) string {
	switch {
	case s.State == store.StateDestroying,
		s.State == store.StateCreating && now.Sub(s.CreatedAt) >= cleanupTimeout:
		return "unfinished"
	case s.State == store.StateCreating:
		return ""
	case now.After(s.ExpiresAt):
		return "idle"
	case !taskRunning():
		return "gone"
	}
	return ""
}

// verdict is what reconciliation does with a record found at start.
type verdict int

const (
	keep       verdict = iota
	unfinished         // left creating or destroying, or a layer builder cut short
	expired            // its deadline passed while the daemon was down
	gone               // its container or task disappeared
)

// reconcileVerdict decides a record's fate at start; taskRunning is asked
// only when the answer depends on it.
func reconcileVerdict(s store.Session, now time.Time, taskRunning func() bool) verdict {
	switch {
	case s.State != store.StateRunning, KindOf(s.SessionID) == KindLayerBuilder:
		// A dependency layer's builder cut short by the restart is of no further use.
		return unfinished
	case now.After(s.ExpiresAt):
		return expired
	case !taskRunning():
		return gone
	}
	return keep
}

// runnerIdle reports whether a session last active at lastActive has been
// idle long enough at now to lose its waiting runner.
func runnerIdle(lastActive, now time.Time, idle time.Duration) bool {
	return now.Sub(lastActive) >= idle
}

// execBounds fills in a run's timeout and output cap: the defaults when
// unset, never more than the most allowed.
func execBounds(req ExecRequest, def, most time.Duration, outputLimit int) ExecRequest {
	if req.Timeout <= 0 {
		req.Timeout = def
	}
	req.Timeout = min(req.Timeout, most)
	if req.OutputLimit <= 0 || req.OutputLimit > outputLimit {
		req.OutputLimit = outputLimit
	}
	return req
}

// installBound is an install's timeout: most when unset or larger.
func installBound(asked, most time.Duration) time.Duration {
	if asked <= 0 || asked > most {
		return most
	}
	return asked
}

// layerKey names the dependency layer of an install of specs over pkg (a
// package.json) by npm from the image of imageDigest. The order of specs
// does not matter.
func layerKey(pkg []byte, imageDigest, npm string, specs []string) string {
	sorted := slices.Clone(specs)
	slices.Sort(sorted)
	h := sha256.New()
	for _, part := range append([]string{string(pkg), imageDigest, npm}, sorted...) {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// buildsLayer reports whether a successful install in recordID should leave
// a dependency layer: only clients' sessions do (warm containers install
// nothing, and a builder is the layer's own install).
func buildsLayer(recordID string) bool { return KindOf(recordID) == KindSession }

// endedBeyond is what goes of a session's ended background processes when
// only the keep most recently ended stay.
func endedBeyond(ended []Process, keep int) []Process {
	if len(ended) <= keep {
		return nil
	}
	sorted := slices.Clone(ended)
	slices.SortFunc(sorted, func(a, b Process) int { return endTime(b).Compare(endTime(a)) })
	return sorted[keep:]
}

// endTime is when p ended, or when it started if that is unknown.
func endTime(p Process) time.Time {
	if p.ExitedAt != nil {
		return *p.ExitedAt
	}
	return p.StartedAt
}

// activityLabels are the container labels of s's activity and deadline.
func activityLabels(s store.Session) map[string]string {
	return map[string]string{
		LabelLastActive: s.LastActiveAt.UTC().Format(time.RFC3339Nano),
		LabelExpiresAt:  s.ExpiresAt.UTC().Format(time.RFC3339Nano),
		LabelExtended:   strconv.FormatBool(s.Extended),
	}
}

// recordFromLabels rebuilds the record of a session container from its
// labels (see sessionLabels), for `servcraftd store rebuild`. The deadline
// is the expires-at label, written at most one TouchInterval after the
// activity it reflects; a container labelled by a build without it gets
// the last-active label (else the creation time) plus idle, and never a
// deadline before now+idle when neither exists: a rebuild loses no session.
// errdefs.ErrInvalidArgument when the labels cannot name a session.
func recordFromLabels(containerID, image, workspaceDir string, labels map[string]string, limits store.Limits, now time.Time, idle time.Duration) (store.Session, error) {
	sessionID, id := labels[LabelSession], labels[LabelUUID]
	if sessionID == "" || id == "" || containerID != ContainerPrefix+id {
		return store.Session{}, fmt.Errorf("container %s: labels name no session (session %q, uuid %q): %w",
			containerID, sessionID, id, errdefs.ErrInvalidArgument)
	}
	stamp := func(key string) (time.Time, bool) {
		t, err := time.Parse(time.RFC3339Nano, labels[key])
		return t.UTC(), err == nil
	}
	created, ok := stamp(LabelCreatedAt)
	if !ok {
		created = now
	}
	s := newRecord(sessionID, id, image, labels[LabelProjectType], workspaceDir, limits, created, idle)
	s.State = store.StateRunning
	s.Extended = labels[LabelExtended] == "true"
	if KindOf(sessionID) == KindPool {
		return s, nil
	}
	last, ok := stamp(LabelLastActive)
	if !ok {
		last = now
	}
	s.LastActiveAt = last
	if exp, ok := stamp(LabelExpiresAt); ok {
		s.ExpiresAt = exp
	} else {
		s.ExpiresAt = last.Add(idle)
	}
	return s, nil
}
