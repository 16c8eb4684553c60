package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

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
// its spec (limits) and its workspace volume: what `servcraftd store
// rebuild` does when the session database was lost or damaged. Whatever
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
		if spec, err := c.Spec(ctx); err == nil && spec.Linux != nil && spec.Linux.Resources != nil {
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
