package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// RebuildReport says what RebuildStore restored.
type RebuildReport struct {
	Restored []string // sessionIds whose record was rebuilt
	Skipped  []string // labelled containers that name no session, or whose record exists
}

// RebuildStore writes a record into db for every labelled session container
// of client's namespace, from the container's labels (identity, project
// type, creation time and the activity labels written every TouchInterval),
// its spec (limits), its workspace volume and its background processes
// still running (their run cgroups): what `servcraftd store rebuild` does
// when the session database was lost or damaged. Whatever
// the rebuilt records describe that is no longer usable (a stopped task, a
// missing volume) the next start's reconciliation cleans up as usual.
func RebuildStore(ctx context.Context, client *containerd.Client, db Store, vols *workspace.Volumes, idle time.Duration) (RebuildReport, error) {
	var rep RebuildReport
	containers, err := client.Containers(ctx, fmt.Sprintf("labels.%q", LabelSession))
	if err != nil {
		return rep, fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	now := time.Now().UTC()
	for _, c := range containers {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.ID(), err))
			continue
		}
		var limits store.Limits
		var containerCgroup string
		spec, err := c.Spec(ctx)
		if err == nil && spec.Linux != nil {
			containerCgroup = spec.Linux.CgroupsPath
		}
		if err == nil && spec.Linux != nil && spec.Linux.Resources != nil {
			r := spec.Linux.Resources
			if r.Memory != nil && r.Memory.Limit != nil {
				limits.MemoryBytes = *r.Memory.Limit
			}
			if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
				limits.CPUQuota, limits.CPUPeriod = *r.CPU.Quota, *r.CPU.Period
			}
			if r.Pids != nil && r.Pids.Limit != nil {
				limits.PidsLimit = *r.Pids.Limit
			}
		}
		id := info.Labels[LabelUUID]
		if _, total, err := vols.Usage(id); err == nil {
			limits.WorkspaceBytes = total
		}
		s, err := recordFromLabels(c.ID(), info.Image, vols.Dir(id), info.Labels, limits, now, idle)
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			rep.Skipped = append(rep.Skipped, c.ID())
			continue
		}
		if s.Processes, err = liveBackground(ctx, client, c, containerCgroup, now); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", c.ID(), err))
			continue
		}
		if err := db.Create(s); errdefs.IsAlreadyExists(err) {
			rep.Skipped = append(rep.Skipped, c.ID())
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Restored = append(rep.Restored, s.SessionID)
	}
	return rep, errors.Join(errs...)
}

// liveBackground lists the background processes still running in c, whose
// run cgroups (bg-…) sit below containerCgroup: a rebuilt record without them would
// make the next start take each for a run of a daemon gone, and kill it.
// The command comes from the process's command line, the start time from
// its /proc entry (now when that cannot be read).
func liveBackground(ctx context.Context, client *containerd.Client, c containerd.Container, containerCgroup string, now time.Time) ([]store.Process, error) {
	if containerCgroup == "" {
		return nil, nil
	}
	names, err := cgroup.RunNames(containerCgroup)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no task, no cgroup: nothing runs
	} else if err != nil {
		return nil, err
	}
	var out []store.Process
	for _, name := range names {
		if !strings.HasPrefix(name, backgroundPrefix) {
			continue
		}
		resp, err := client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: c.ID(), ExecID: name})
		if err != nil || resp.GetProcess().GetStatus() != task.Status_RUNNING {
			continue // gone or ending: the next start removes its cgroup
		}
		pid := resp.GetProcess().GetPid()
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // ended meanwhile
		}
		rec := store.Process{ID: name, StartedAt: now,
			Command: backgroundCommand(strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00"))}
		if at, ok := processStartedAt(pid); ok {
			rec.StartedAt = at
		}
		out = append(out, rec)
	}
	return out, nil
}

// processStartedAt reads when process pid started: its start time in clock
// ticks after boot (/proc/<pid>/stat) and the boot time (/proc/stat).
func processStartedAt(pid uint32) (time.Time, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, false
	}
	host, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	return startedAt(stat, host)
}
