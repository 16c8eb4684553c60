package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// ImageConfig says which image sessions run and where it may come from.
type ImageConfig struct {
	Ref             string // preferred image, e.g. docker.io/library/node:20-alpine
	Pull            bool   // pull Ref when it is missing
	FallbackRef     string // offline image used when Ref can be neither found nor pulled
	FallbackArchive string // OCI archive imported when FallbackRef is missing
	Snapshotter     string
}

// ensureImage returns an unpacked image for sessions, pulling or importing it
// when missing, and logs which image was chosen and why.
func ensureImage(ctx context.Context, client *containerd.Client, cfg ImageConfig) (containerd.Image, error) {
	img, err := client.GetImage(ctx, cfg.Ref)
	switch {
	case err == nil:
		slog.Info("session image present", "image", cfg.Ref)
		return img, unpack(ctx, img, cfg.Snapshotter)
	case !errdefs.IsNotFound(err):
		return nil, fmt.Errorf("look up image %s: %w", cfg.Ref, err)
	}
	why := fmt.Sprintf("%s is not present and pulling is off", cfg.Ref)
	if cfg.Pull {
		img, err = client.Pull(ctx, cfg.Ref, containerd.WithPullUnpack, containerd.WithPullSnapshotter(cfg.Snapshotter))
		if err == nil {
			slog.Info("session image pulled", "image", cfg.Ref)
			return img, nil
		}
		why = fmt.Sprintf("pulling %s failed: %v", cfg.Ref, err)
	}
	if cfg.FallbackRef == "" {
		return nil, fmt.Errorf("session image: %s: %w", why, errdefs.ErrNotFound)
	}
	img, err = client.GetImage(ctx, cfg.FallbackRef)
	if errdefs.IsNotFound(err) && cfg.FallbackArchive != "" {
		img, err = importArchive(ctx, client, cfg.FallbackArchive, cfg.FallbackRef)
	}
	if err != nil {
		return nil, fmt.Errorf("session image: %s; offline image %s: %w", why, cfg.FallbackRef, err)
	}
	if cfg.FallbackRef != cfg.Ref {
		slog.Warn("using the offline session image", "image", cfg.FallbackRef, "instead_of", cfg.Ref, "reason", why)
	}
	return img, unpack(ctx, img, cfg.Snapshotter)
}

func importArchive(ctx context.Context, client *containerd.Client, archive, ref string) (containerd.Image, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	if _, err := client.Import(ctx, f); err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	img, err := client.GetImage(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("archive %s does not hold %s: %w", archive, ref, err)
	}
	slog.Info("imported offline session image", "image", ref, "archive", archive)
	return img, nil
}

func unpack(ctx context.Context, img containerd.Image, snapshotter string) error {
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return fmt.Errorf("check unpack of %s: %w", img.Name(), err)
	}
	if ok {
		return nil
	}
	if err := img.Unpack(ctx, snapshotter); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		return fmt.Errorf("unpack %s: %w", img.Name(), err)
	}
	return nil
}
