package snapshots

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	ctrsnapshots "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// Walker is the part of a containerd snapshotter that listing needs.
type Walker interface {
	Walk(ctx context.Context, fn ctrsnapshots.WalkFunc, filters ...string) error
}

// Remover is the part of a containerd snapshotter that removing needs.
type Remover interface {
	Remove(ctx context.Context, key string) error
}

// Stray lists, sorted, the snapshot keys in sn that start with prefix and
// are not in skip (the rootfs keys of containers being removed with their
// snapshots).
func Stray(ctx context.Context, sn Walker, prefix string, skip map[string]bool) ([]string, error) {
	var keys []string
	err := sn.Walk(ctx, func(_ context.Context, info ctrsnapshots.Info) error {
		if strings.HasPrefix(info.Name, prefix) && !skip[info.Name] {
			keys = append(keys, info.Name)
		}
		return nil
	})
	sort.Strings(keys)
	if err != nil {
		return keys, fmt.Errorf("list snapshots: %w", err)
	}
	return keys, nil
}

// RemoveAll removes keys from sn, tolerating those already gone, and returns
// the keys it removed.
func RemoveAll(ctx context.Context, sn Remover, keys []string) ([]string, error) {
	var removed []string
	var errs []error
	for _, key := range keys {
		if err := sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove snapshot %s: %w", key, err))
			continue
		}
		removed = append(removed, key)
	}
	return removed, errors.Join(errs...)
}
