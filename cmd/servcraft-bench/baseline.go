package main

import (
	"context"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/servcraft/servcraftd/runtime"
)

// bareContainer times a plain containerd create+start of the image (what a
// session costs at the least), then removes it untimed.
func (b *bench) bareContainer(ctx context.Context, i int) (time.Duration, error) {
	client, err := containerd.New(b.address)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, b.namespace)
	img, err := client.GetImage(ctx, b.image)
	if err != nil {
		return 0, fmt.Errorf("image %s in namespace %s (servcraftd imports it; run one first): %w", b.image, b.namespace, err)
	}
	id := fmt.Sprintf("%s-bare-%d", b.prefix, i)
	start := time.Now()
	c, err := client.NewContainer(ctx, id, containerd.WithImage(img), containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("/bin/sleep", "1000")))
	if err != nil {
		return 0, err
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err == nil {
		err = task.Start(ctx)
	}
	d := time.Since(start)
	if task != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
	}
	_ = c.Delete(ctx, containerd.WithSnapshotCleanup)
	return d, err
}

// ctrRun times the naive design: a new container per run, `ctr run --rm`.
func (b *bench) ctrRun(ctx context.Context, dir string) (time.Duration, error) {
	id := fmt.Sprintf("%s-ctr-%d", b.prefix, time.Now().UnixNano())
	return timeCmd(ctx, "ctr", "--address", b.address, "-n", b.namespace, "run", "--rm",
		"--mount", "type=bind,src="+dir+",dst=/bench,options=rbind:ro", b.image, id, runtime.DefaultConfig().NodePath, "/bench/hello.js")
}
