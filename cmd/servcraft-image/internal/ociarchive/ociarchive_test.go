package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testTree builds a small rootfs with the entry kinds the image uses.
func testTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "home/node/.cache"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	must(os.WriteFile(filepath.Join(dir, "bin/busybox"), []byte("#!fake busybox\n"), 0o755))
	must(os.Symlink("busybox", filepath.Join(dir, "bin/sh")))
	must(os.Link(filepath.Join(dir, "bin/busybox"), filepath.Join(dir, "bin/zz-hardlink")))
	must(os.WriteFile(filepath.Join(dir, "home/node/.profile"), []byte("x=1\n"), 0o600))
	return dir
}

func build(t *testing.T, opts Options) ([]byte, Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Write(&buf, t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes(), res
}

func readTar(t *testing.T, r io.Reader) (map[string][]byte, []*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	var hdrs []*tar.Header
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, hdrs
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		files[h.Name] = b
		hdrs = append(hdrs, h)
	}
}

func TestWriteIsDeterministicAndImportable(t *testing.T) {
	dir := testTree(t)
	opts := Options{
		RootFS:    dir,
		Name:      "localhost/servcraft/node:20",
		Config:    ocispec.ImageConfig{Env: []string{"A=1"}, Cmd: []string{"node"}, WorkingDir: "/"},
		RootOwned: true,
		Chown:     map[string]Owner{"/home/node": {UID: 1000, GID: 1000}},
	}
	a, res := build(t, opts)
	b, _ := build(t, opts)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same tree differ")
	}

	files, _ := readTar(t, bytes.NewReader(a))
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", got)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(idx.Manifests))
	}
	m := idx.Manifests[0]
	if m.Annotations[ocispec.AnnotationRefName] != "20" || m.Annotations[AnnotationImageName] != "localhost/servcraft/node:20" {
		t.Errorf("annotations = %v", m.Annotations)
	}
	blob := func(d digest.Digest) []byte {
		t.Helper()
		p := "blobs/sha256/" + d.Encoded()
		bs, ok := files[p]
		if !ok {
			t.Fatalf("missing blob %s", p)
		}
		if digest.FromBytes(bs) != d {
			t.Fatalf("blob %s has wrong digest", p)
		}
		return bs
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(blob(m.Digest), &man); err != nil {
		t.Fatal(err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(blob(man.Config.Digest), &img); err != nil {
		t.Fatal(err)
	}
	if img.OS != "linux" || img.Architecture != "amd64" {
		t.Errorf("platform = %s/%s", img.OS, img.Architecture)
	}
	if len(man.Layers) != 1 || man.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("layers = %+v", man.Layers)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(man.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if d := digest.FromBytes(raw); len(img.RootFS.DiffIDs) != 1 || img.RootFS.DiffIDs[0] != d || res.DiffID != d {
		t.Errorf("diff ids = %v, layer tar digest %s", img.RootFS.DiffIDs, d)
	}

	_, hdrs := readTar(t, bytes.NewReader(raw))
	var names []string
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		names = append(names, h.Name)
		byName[h.Name] = h
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
	}
	want := []string{"bin/", "bin/busybox", "bin/sh", "bin/zz-hardlink", "home/", "home/node/",
		"home/node/.cache/", "home/node/.profile", "tmp/"}
	if len(names) != len(want) {
		t.Fatalf("entries = %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("entries = %q, want %q", names, want)
		}
	}
	checks := []struct {
		name     string
		typ      byte
		mode     int64
		uid, gid int
		linkname string
	}{
		{"bin/busybox", tar.TypeReg, 0o755, 0, 0, ""},
		{"bin/sh", tar.TypeSymlink, 0o777, 0, 0, "busybox"},
		{"bin/zz-hardlink", tar.TypeLink, 0o755, 0, 0, "bin/busybox"},
		{"home/", tar.TypeDir, 0o755, 0, 0, ""},
		{"home/node/", tar.TypeDir, 0o755, 1000, 1000, ""},
		{"home/node/.profile", tar.TypeReg, 0o600, 1000, 1000, ""},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, ""},
	}
	for _, c := range checks {
		h := byName[c.name]
		if h.Typeflag != c.typ || h.Mode != c.mode || h.Uid != c.uid || h.Gid != c.gid || h.Linkname != c.linkname {
			t.Errorf("%s: type %c mode %o uid %d gid %d link %q; want type %c mode %o uid %d gid %d link %q",
				c.name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, c.typ, c.mode, c.uid, c.gid, c.linkname)
		}
	}
}

func TestWriteChangesDigestWhenTreeChanges(t *testing.T) {
	dir := testTree(t)
	opts := Options{RootFS: dir, Name: "localhost/x:1", RootOwned: true}
	_, a := build(t, opts)
	if err := os.Chmod(filepath.Join(dir, "bin/busybox"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, b := build(t, opts)
	if a.Manifest.Digest == b.Manifest.Digest {
		t.Fatal("mode change did not change the manifest digest")
	}
}

func TestWriteErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts Options
	}{
		{"no rootfs", Options{Name: "a:b"}},
		{"no name", Options{RootFS: t.TempDir()}},
		{"digest name", Options{RootFS: t.TempDir(), Name: "a@sha256:00"}},
		{"missing rootfs", Options{RootFS: filepath.Join(t.TempDir(), "nope"), Name: "a:b"}},
		{"rootfs is a file", Options{RootFS: file, Name: "a:b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Write(io.Discard, t.TempDir(), c.opts); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func TestRefTag(t *testing.T) {
	cases := []struct{ in, want string }{
		{"localhost/servcraft/node:20", "20"},
		{"localhost:5000/servcraft/node", "latest"},
		{"localhost:5000/servcraft/node:v1.2", "v1.2"},
		{"node", "latest"},
	}
	for _, c := range cases {
		got, err := refTag(c.in)
		if err != nil || got != c.want {
			t.Errorf("refTag(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"node:", "x/:1", "node@sha256:abc"} {
		if _, err := refTag(bad); err == nil {
			t.Errorf("refTag(%q): want error", bad)
		}
	}
}

func TestOwnerFor(t *testing.T) {
	m := normalizeChown(map[string]Owner{"home/node": {1000, 1000}, "/home/node/root": {0, 0}})
	cases := []struct {
		path string
		want Owner
		ok   bool
	}{
		{"/home/node", Owner{1000, 1000}, true},
		{"/home/node/a", Owner{1000, 1000}, true},
		{"/home/node/root/x", Owner{0, 0}, true},
		{"/home/nodes", Owner{}, false},
		{"/home", Owner{}, false},
	}
	for _, c := range cases {
		got, ok := ownerFor(m, c.path)
		if got != c.want || ok != c.ok {
			t.Errorf("ownerFor(%q) = %v, %v; want %v, %v", c.path, got, ok, c.want, c.ok)
		}
	}
}
