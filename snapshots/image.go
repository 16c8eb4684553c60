package snapshots

import (
	"context"
	"errors"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// Unpack makes sure image's layers are unpacked into snapshotter, so that
// WithRootFS can stack a container's rootfs on them.
func Unpack(ctx context.Context, image containerd.Image, snapshotter string) error {
	ok, err := image.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return fmt.Errorf("check unpack of %s: %w", image.Name(), err)
	}
	if ok {
		return nil
	}
	if err := image.Unpack(ctx, snapshotter); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		return fmt.Errorf("unpack %s: %w", image.Name(), err)
	}
	return nil
}
