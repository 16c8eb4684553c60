package runtime

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/cgroup"
	"github.com/servcraft/servcraftd/snapshots"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// GCReport lists what GC removed, or in a dry run would remove.
type GCReport struct {
	Containers []GCContainer
	Snapshots  []string // rootfs snapshots left without their container
	Volumes    []string // workspace volume IDs (session UUIDs)
}

// GCContainer is a session container found by GC.
type GCContainer struct {
	ID        string
	SessionID string // its LabelSession label ("" if it has none)
}

// GC removes everything of servcraftd's from containerd and disk, for a host
// being retired: every container in the client's namespace that carries
// LabelSession or whose ID starts with ContainerPrefix (its task killed
// first, its rootfs snapshot with it), every snapshot in snapshotter whose
// key starts with ContainerPrefix, and every workspace volume in vols
// (unmounted; vols may be nil). Images are kept. With dryRun it only lists.
// No daemon may use the namespace meanwhile: it would recreate what goes.
func GC(ctx context.Context, client *containerd.Client, vols *workspace.Volumes, snapshotter string, dryRun bool) (GCReport, error) {
	var rep GCReport
	var errs []error
	containers, err := client.Containers(ctx)
	if err != nil {
		return rep, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range containers {
		labels, err := c.Labels(ctx)
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("labels of container %s: %w", c.ID(), err))
			continue
		}
		session, ours := labels[LabelSession]
		if !ours && !strings.HasPrefix(c.ID(), ContainerPrefix) {
			continue
		}
		if !dryRun {
			if err := deleteContainer(ctx, c); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		rep.Containers = append(rep.Containers, GCContainer{ID: c.ID(), SessionID: session})
	}
	sort.Slice(rep.Containers, func(i, j int) bool { return rep.Containers[i].ID < rep.Containers[j].ID })

	// Snapshots of containers removed above went with them (in a dry run they are listed with them).
	listed := map[string]bool{}
	for _, c := range rep.Containers {
		listed[snapshots.RootFSKey(c.ID)] = true
	}
	sn := client.SnapshotService(snapshotter)
	keys, err := snapshots.Stray(ctx, sn, ContainerPrefix, listed)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", snapshotter, err))
	}
	if dryRun {
		rep.Snapshots = keys
	} else {
		rep.Snapshots, err = snapshots.RemoveAll(ctx, sn, keys)
		errs = append(errs, err)
	}

	if vols != nil {
		ids, err := vols.List()
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range ids {
			if !dryRun {
				if err := vols.Remove(ctx, id); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			rep.Volumes = append(rep.Volumes, id)
		}
	}
	return rep, errors.Join(errs...)
}

// deleteContainer kills and deletes the task of c (its runs' cgroups
// first, see cgroup.Release), then c with its snapshot.
func deleteContainer(ctx context.Context, c containerd.Container) error {
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		if cgroup.Unified() {
			if spec, err := c.Spec(ctx); err == nil && spec.Linux != nil {
				if err := cgroup.Release(spec.Linux.CgroupsPath); err != nil {
					return fmt.Errorf("release cgroups of %s: %w", c.ID(), err)
				}
			}
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", c.ID(), err)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("load task %s: %w", c.ID(), err)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", c.ID(), err)
	}
	return nil
}
