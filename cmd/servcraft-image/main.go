package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/servcraft/servcraftd/cmd/servcraft-image/internal/ociarchive"
)

// defaultPath is the PATH of the image's config.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "servcraft-image:", err)
		os.Exit(1)
	}
}

// chownFlag collects repeated --chown PATH=UID:GID values.
type chownFlag map[string]ociarchive.Owner

func (c chownFlag) String() string { return fmt.Sprint(map[string]ociarchive.Owner(c)) }

func (c chownFlag) Set(v string) error {
	p, ids, ok := strings.Cut(v, "=")
	u, g, ok2 := strings.Cut(ids, ":")
	if !ok || !ok2 || p == "" {
		return fmt.Errorf("chown %q: want PATH=UID:GID", v)
	}
	uid, err := strconv.Atoi(u)
	if err != nil || uid < 0 {
		return fmt.Errorf("chown %q: bad uid", v)
	}
	gid, err := strconv.Atoi(g)
	if err != nil || gid < 0 {
		return fmt.Errorf("chown %q: bad gid", v)
	}
	c[p] = ociarchive.Owner{UID: uid, GID: gid}
	return nil
}

// listFlag collects repeated string values.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("servcraft-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		rootfs      = fs.String("rootfs", "", "root filesystem `DIR` that becomes the image's only layer (required)")
		name        = fs.String("name", "localhost/servcraft/node:20", "full image `NAME` to register in containerd")
		out         = fs.String("out", "", "output archive `FILE` (required)")
		nodeVersion = fs.String("node-version", "20.20.2", "value of NODE_VERSION in the image config")
		rootOwned   = fs.Bool("root-owned", false, "write uid/gid 0 for every entry instead of the on-disk owner (--chown still applies)")
		chown       = chownFlag{}
		env         listFlag
	)
	fs.Var(chown, "chown", "`PATH=UID:GID` owner for PATH and everything below it (repeatable)")
	fs.Var(&env, "env", "extra `KEY=VALUE` for the image config (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rootfs == "" || *out == "" {
		fs.Usage()
		return errors.New("--rootfs and --out are required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("env %q: want KEY=VALUE", e)
		}
	}

	opts := ociarchive.Options{
		RootFS: *rootfs,
		Name:   *name,
		Config: ocispec.ImageConfig{
			Env:        append([]string{defaultPath, "NODE_VERSION=" + *nodeVersion}, env...),
			WorkingDir: "/",
			Cmd:        []string{"node"},
		},
		RootOwned: *rootOwned,
		Chown:     chown,
	}
	res, err := writeAtomic(*out, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image    %s\nmanifest %s\nconfig   %s\nlayer    %s (%d bytes gzip, %d bytes tar)\narchive  %s\n",
		opts.Name, res.Manifest.Digest, res.Config.Digest, res.Layer.Digest, res.Layer.Size, res.UncompressedSize, *out)
	return nil
}

// writeAtomic writes the archive next to out and renames it into place, so
// a failed build never leaves a partial archive behind.
func writeAtomic(out string, opts ociarchive.Options) (ociarchive.Result, error) {
	dir := filepath.Dir(out)
	f, err := os.CreateTemp(dir, ".servcraft-image-*.tar")
	if err != nil {
		return ociarchive.Result{}, fmt.Errorf("create archive in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	res, err := ociarchive.Write(f, dir, opts)
	if err != nil {
		f.Close()
		return res, fmt.Errorf("image %s: %w", opts.Name, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return res, fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return res, fmt.Errorf("rename archive to %s: %w", out, err)
	}
	return res, nil
}
