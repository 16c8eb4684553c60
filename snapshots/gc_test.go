package snapshots

import (
	"context"
	"errors"
	"slices"
	"testing"

	ctrsnapshots "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// fakeSnapshotter holds snapshot keys; removing "stuck" fails.
type fakeSnapshotter struct {
	keys    []string
	walkErr error
}

func (f *fakeSnapshotter) Walk(ctx context.Context, fn ctrsnapshots.WalkFunc, _ ...string) error {
	for _, k := range f.keys {
		if err := fn(ctx, ctrsnapshots.Info{Name: k}); err != nil {
			return err
		}
	}
	return f.walkErr
}

func (f *fakeSnapshotter) Remove(_ context.Context, key string) error {
	switch {
	case key == "p-stuck":
		return errors.New("device busy")
	case !slices.Contains(f.keys, key):
		return errdefs.ErrNotFound
	}
	f.keys = slices.DeleteFunc(f.keys, func(k string) bool { return k == key })
	return nil
}

func TestStrayAndRemoveAll(t *testing.T) {
	ctx := context.Background()
	sn := &fakeSnapshotter{keys: []string{"p-b-rootfs", "other", "p-a-rootfs", "p-c-rootfs", "p-stuck"}}
	keys, err := Stray(ctx, sn, "p-", map[string]bool{RootFSKey("p-c"): true})
	if err != nil || !slices.Equal(keys, []string{"p-a-rootfs", "p-b-rootfs", "p-stuck"}) {
		t.Fatalf("stray %v %v", keys, err)
	}
	removed, err := RemoveAll(ctx, sn, append(keys, "p-gone"))
	if err == nil || !slices.Equal(removed, []string{"p-a-rootfs", "p-b-rootfs", "p-gone"}) {
		t.Fatalf("removed %v, err %v (the stuck one must fail, the gone one counts)", removed, err)
	}
	if !slices.Equal(sn.keys, []string{"other", "p-c-rootfs", "p-stuck"}) {
		t.Fatalf("left %v", sn.keys)
	}
	sn.walkErr = errors.New("snapshotter down")
	if keys, err := Stray(ctx, sn, "p-", nil); err == nil || len(keys) != 2 {
		t.Fatalf("a failed walk keeps what it found: %v %v", keys, err)
	}
}
