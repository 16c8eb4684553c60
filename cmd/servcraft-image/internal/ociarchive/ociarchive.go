// Package ociarchive writes a root filesystem directory as a deterministic,
// single-layer OCI image archive (a tar of an OCI image layout).
package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationImageName is the index annotation containerd's Import reads as
// the full image name (containerd's images.AnnotationImageName).
const AnnotationImageName = "io.containerd.image.name"

// Epoch is the modification time written for every tar entry, so that the
// same tree always gives the same digests.
var Epoch = time.Unix(0, 0).UTC()

// Owner is a numeric uid/gid pair.
type Owner struct {
	UID, GID int
}

// Options describe the image to build.
type Options struct {
	// RootFS is the directory that becomes the image's only layer.
	RootFS string
	// Name is the full image name, e.g. "localhost/servcraft/node:20".
	Name string
	// Config is the image's runtime configuration (Env, Cmd, WorkingDir, ...).
	Config ocispec.ImageConfig
	// OS and Architecture of the image; "linux" and "amd64" when empty.
	OS, Architecture string
	// RootOwned writes uid/gid 0 for every entry instead of the on-disk
	// owner; Chown entries still apply.
	RootOwned bool
	// Chown maps a path inside the rootfs ("/home/node") to the owner written
	// for it and everything below it. The longest matching path wins.
	Chown map[string]Owner
}

// Result describes what Write produced.
type Result struct {
	Manifest ocispec.Descriptor // the manifest descriptor placed in index.json
	Config   ocispec.Descriptor
	Layer    ocispec.Descriptor
	DiffID   digest.Digest
	// UncompressedSize is the size of the layer tar before gzip.
	UncompressedSize int64
}

// Write builds the image described by opts and writes the archive to out.
// Large blobs are staged in tmpDir ("" means os.TempDir()).
func Write(out io.Writer, tmpDir string, opts Options) (Result, error) {
	var res Result
	if opts.RootFS == "" {
		return res, errors.New("rootfs directory is required")
	}
	if opts.Name == "" {
		return res, errors.New("image name is required")
	}
	tag, err := refTag(opts.Name)
	if err != nil {
		return res, err
	}
	if opts.OS == "" {
		opts.OS = "linux"
	}
	if opts.Architecture == "" {
		opts.Architecture = "amd64"
	}

	layerFile, err := os.CreateTemp(tmpDir, "servcraft-layer-*.tar.gz")
	if err != nil {
		return res, fmt.Errorf("create layer temp file: %w", err)
	}
	defer func() {
		layerFile.Close()
		os.Remove(layerFile.Name())
	}()

	diffID, rawSize, err := WriteLayer(layerFile, opts.RootFS, opts.RootOwned, opts.Chown)
	if err != nil {
		return res, fmt.Errorf("layer from %s: %w", opts.RootFS, err)
	}
	if _, err := layerFile.Seek(0, io.SeekStart); err != nil {
		return res, fmt.Errorf("rewind layer temp file: %w", err)
	}
	layerDigest, layerSize, err := digestReader(layerFile)
	if err != nil {
		return res, fmt.Errorf("digest layer: %w", err)
	}
	res.DiffID, res.UncompressedSize = diffID, rawSize
	res.Layer = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    layerDigest,
		Size:      layerSize,
	}

	img := ocispec.Image{
		Platform: ocispec.Platform{OS: opts.OS, Architecture: opts.Architecture},
		Config:   opts.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []ocispec.History{{CreatedBy: "servcraft-image --rootfs " + filepath.Base(opts.RootFS)}},
	}
	configJSON, err := json.Marshal(img)
	if err != nil {
		return res, fmt.Errorf("encode image config: %w", err)
	}
	res.Config = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(configJSON),
		Size:      int64(len(configJSON)),
	}

	manifestJSON, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    res.Config,
		Layers:    []ocispec.Descriptor{res.Layer},
	})
	if err != nil {
		return res, fmt.Errorf("encode image manifest: %w", err)
	}
	res.Manifest = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestJSON),
		Size:      int64(len(manifestJSON)),
		Platform:  &ocispec.Platform{OS: opts.OS, Architecture: opts.Architecture},
		Annotations: map[string]string{
			ocispec.AnnotationRefName: tag,
			AnnotationImageName:       opts.Name,
		},
	}
	indexJSON, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{res.Manifest},
	})
	if err != nil {
		return res, fmt.Errorf("encode image index: %w", err)
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return res, fmt.Errorf("encode oci-layout: %w", err)
	}

	if _, err := layerFile.Seek(0, io.SeekStart); err != nil {
		return res, fmt.Errorf("rewind layer temp file: %w", err)
	}
	tw := tar.NewWriter(out)
	steps := []struct {
		name string
		size int64
		r    io.Reader
	}{
		{name: "blobs/", size: -1},
		{name: "blobs/sha256/", size: -1},
		{name: blobPath(layerDigest), size: layerSize, r: layerFile},
		{name: blobPath(res.Config.Digest), size: res.Config.Size, r: bytes.NewReader(configJSON)},
		{name: blobPath(res.Manifest.Digest), size: res.Manifest.Size, r: bytes.NewReader(manifestJSON)},
		{name: ocispec.ImageLayoutFile, size: int64(len(layoutJSON)), r: bytes.NewReader(layoutJSON)},
		{name: "index.json", size: int64(len(indexJSON)), r: bytes.NewReader(indexJSON)},
	}
	for _, s := range steps {
		hdr := &tar.Header{Name: s.name, ModTime: Epoch, Format: tar.FormatPAX}
		if s.size < 0 {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, s.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return res, fmt.Errorf("archive entry %s: %w", s.name, err)
		}
		if s.r != nil {
			if _, err := io.Copy(tw, s.r); err != nil {
				return res, fmt.Errorf("archive entry %s: %w", s.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return res, fmt.Errorf("finish archive: %w", err)
	}
	return res, nil
}

// WriteLayer writes dir as a gzip-compressed layer tar to w and returns the
// digest and size of the uncompressed tar (the layer's diff ID).
// Entries are sorted, times are Epoch, owners are numeric (on-disk, or 0 when
// rootOwned) with chown overrides applied, hard links are kept as links.
func WriteLayer(w io.Writer, dir string, rootOwned bool, chown map[string]Owner) (digest.Digest, int64, error) {
	gz, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return "", 0, fmt.Errorf("gzip writer: %w", err)
	}
	gz.ModTime = time.Time{} // no timestamp, no name: reproducible
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(gz, h)}
	tw := tar.NewWriter(cw)

	if err := walk(tw, dir, rootOwned, normalizeChown(chown)); err != nil {
		return "", 0, err
	}
	if err := tw.Close(); err != nil {
		return "", 0, fmt.Errorf("finish layer tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return "", 0, fmt.Errorf("finish layer gzip: %w", err)
	}
	return digest.NewDigest(digest.SHA256, h), cw.n, nil
}

type inode struct{ dev, ino uint64 }

func walk(tw *tar.Writer, root string, rootOwned bool, chown map[string]Owner) error {
	st, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("stat rootfs: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("rootfs %s: not a directory", root)
	}
	links := map[inode]string{}
	// filepath.WalkDir visits entries in lexical order, so the output order
	// depends only on the tree.
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk %s: %w", p, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("walk %s: %w", p, err)
		}
		if rel == "." {
			return nil // the root directory itself has no entry
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		hdr, err := header(p, rel, fi)
		if err != nil {
			return err
		}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(sys.Uid), int(sys.Gid)
			if fi.Mode().IsRegular() && sys.Nlink > 1 {
				key := inode{uint64(sys.Dev), sys.Ino}
				if first, seen := links[key]; seen {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					links[key] = rel
				}
			}
		}
		if rootOwned {
			hdr.Uid, hdr.Gid = 0, 0
		}
		if o, ok := ownerFor(chown, "/"+rel); ok {
			hdr.Uid, hdr.Gid = o.UID, o.GID
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer entry %s: %w", rel, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		defer f.Close()
		n, err := io.Copy(tw, f)
		if err != nil {
			return fmt.Errorf("copy %s: %w", p, err)
		}
		if n != hdr.Size {
			return fmt.Errorf("copy %s: size changed during build (%d != %d)", p, n, hdr.Size)
		}
		return nil
	})
}

// header builds the tar header of one entry, without owner.
func header(p, rel string, fi fs.FileInfo) (*tar.Header, error) {
	mode := int64(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	hdr := &tar.Header{Name: rel, Mode: mode, ModTime: Epoch, Format: tar.FormatPAX}
	switch t := fi.Mode().Type(); {
	case fi.Mode().IsRegular():
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
	case t == fs.ModeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case t == fs.ModeSymlink:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("readlink %s: %w", p, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	default:
		return nil, fmt.Errorf("layer entry %s: unsupported file type %s", rel, t)
	}
	return hdr, nil
}

// normalizeChown cleans the keys of m to absolute slash paths.
func normalizeChown(m map[string]Owner) map[string]Owner {
	out := make(map[string]Owner, len(m))
	for k, v := range m {
		out[path.Clean("/"+k)] = v
	}
	return out
}

// ownerFor returns the owner of the longest chown prefix covering p.
func ownerFor(m map[string]Owner, p string) (Owner, bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		if k == "/" || p == k || strings.HasPrefix(p, k+"/") {
			return m[k], true
		}
	}
	return Owner{}, false
}

// refTag returns the tag of a full image name ("host/repo:tag" -> "tag"),
// "latest" when there is none. Digest references are rejected.
func refTag(name string) (string, error) {
	if strings.Contains(name, "@") {
		return "", fmt.Errorf("image name %q: digest references are not supported", name)
	}
	last := name[strings.LastIndex(name, "/")+1:]
	i := strings.LastIndex(last, ":")
	if i < 0 {
		return "latest", nil
	}
	if i == len(last)-1 || i == 0 {
		return "", fmt.Errorf("image name %q: empty tag or repository", name)
	}
	return last[i+1:], nil
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

func digestReader(r io.Reader) (digest.Digest, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", 0, err
	}
	return digest.NewDigest(digest.SHA256, h), n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
