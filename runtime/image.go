package runtime

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/servcraft/servcraftd/snapshots"
)

// ImageConfig says which image sessions run and where it may come from.
type ImageConfig struct {
	Ref             string        // preferred image, e.g. docker.io/library/node:20-alpine
	Pull            bool          // pull Ref when it is missing
	PullTimeout     time.Duration // longest pull of Ref (DefaultConfig holds the default)
	FallbackRef     string        // offline image used when Ref can be neither found nor pulled
	FallbackArchive string        // OCI archive that holds FallbackRef, imported when missing or changed
	Snapshotter     string
}

// ensureImage returns an unpacked image for sessions, pulling or importing it
// when missing, and logs which image was chosen and why.
func ensureImage(ctx context.Context, client *containerd.Client, cfg ImageConfig) (containerd.Image, error) {
	if cfg.Ref == cfg.FallbackRef {
		return ensureOffline(ctx, client, cfg, "")
	}
	img, err := client.GetImage(ctx, cfg.Ref)
	switch {
	case err == nil:
		slog.Info("session image present", "image", cfg.Ref)
		return img, snapshots.Unpack(ctx, img, cfg.Snapshotter)
	case !errdefs.IsNotFound(err):
		return nil, fmt.Errorf("look up image %s: %w", cfg.Ref, err)
	}
	why := fmt.Sprintf("%s is not present and pulling is off", cfg.Ref)
	if cfg.Pull {
		pctx, cancel := context.WithTimeout(ctx, cfg.PullTimeout)
		img, err = client.Pull(pctx, cfg.Ref, containerd.WithPullUnpack, containerd.WithPullSnapshotter(cfg.Snapshotter))
		cancel()
		if err == nil {
			slog.Info("session image pulled", "image", cfg.Ref)
			return img, nil
		}
		why = fmt.Sprintf("pulling %s failed: %v", cfg.Ref, err)
	}
	if cfg.FallbackRef == "" {
		return nil, fmt.Errorf("session image: %s: %w", why, errdefs.ErrNotFound)
	}
	return ensureOffline(ctx, client, cfg, why)
}

// ensureOffline returns the offline image, importing its archive when the
// image is missing or the archive holds a different build of it.
func ensureOffline(ctx context.Context, client *containerd.Client, cfg ImageConfig, why string) (containerd.Image, error) {
	img, err := client.GetImage(ctx, cfg.FallbackRef)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("look up image %s: %w", cfg.FallbackRef, err)
	}
	if cfg.FallbackArchive != "" {
		want, aerr := archiveDigest(cfg.FallbackArchive, cfg.FallbackRef)
		switch {
		case aerr != nil && img == nil:
			return nil, fmt.Errorf("session image: %s; offline image %s: %w", why, cfg.FallbackRef, aerr)
		case aerr != nil:
			slog.Warn("offline image archive unreadable; using the image present", "archive", cfg.FallbackArchive, "err", aerr)
		case img == nil || img.Target().Digest != want:
			if img, err = importArchive(ctx, client, cfg.FallbackArchive, cfg.FallbackRef); err != nil {
				return nil, err
			}
		}
	}
	if img == nil {
		return nil, fmt.Errorf("session image: %s; offline image %s: %w", why, cfg.FallbackRef, errdefs.ErrNotFound)
	}
	if why != "" {
		slog.Warn("using the offline session image", "image", cfg.FallbackRef, "instead_of", cfg.Ref, "reason", why)
	} else {
		slog.Info("session image present", "image", cfg.FallbackRef, "digest", img.Target().Digest)
	}
	return img, snapshots.Unpack(ctx, img, cfg.Snapshotter)
}

// archiveDigest reads the manifest digest an OCI archive holds for ref.
func archiveDigest(archive, ref string) (digest.Digest, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("image archive %s has no index.json", archive)
		} else if err != nil {
			return "", fmt.Errorf("read image archive %s: %w", archive, err)
		}
		if hdr.Name != "index.json" && hdr.Name != "./index.json" {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
			return "", fmt.Errorf("decode index.json of %s: %w", archive, err)
		}
		for _, m := range idx.Manifests {
			if m.Annotations["io.containerd.image.name"] == ref {
				return m.Digest, nil
			}
		}
		return "", fmt.Errorf("image archive %s does not hold %s", archive, ref)
	}
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
	slog.Info("imported offline session image", "image", ref, "archive", archive, "digest", img.Target().Digest)
	return img, nil
}
