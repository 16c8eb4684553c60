package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/servcraft/servcraftd/cmd/servcraft-image/internal/ociarchive"
)

func TestChownFlag(t *testing.T) {
	cases := []struct {
		in   string
		want ociarchive.Owner
		ok   bool
	}{
		{"/home/node=1000:1000", ociarchive.Owner{UID: 1000, GID: 1000}, true},
		{"/workspace=1000:0", ociarchive.Owner{UID: 1000}, true},
		{"/home/node=1000", ociarchive.Owner{}, false},
		{"=1:1", ociarchive.Owner{}, false},
		{"/x=a:1", ociarchive.Owner{}, false},
		{"/x=1:-1", ociarchive.Owner{}, false},
	}
	for _, c := range cases {
		f := chownFlag{}
		err := f.Set(c.in)
		if (err == nil) != c.ok {
			t.Errorf("Set(%q) err = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if c.ok {
			p, _, _ := strings.Cut(c.in, "=")
			if f[p] != c.want {
				t.Errorf("Set(%q) = %v, want %v", c.in, f[p], c.want)
			}
		}
	}
}

func TestRunWritesSameArchiveTwice(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	var archives [][]byte
	for i := 0; i < 2; i++ {
		out := filepath.Join(outDir, "img.tar")
		var stdout, stderr bytes.Buffer
		err := run([]string{"--rootfs", root, "--name", "localhost/servcraft/node:20", "--out", out,
			"--root-owned", "--chown", "/hello=1000:1000", "--env", "X=1"}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("run: %v (stderr %s)", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "manifest sha256:") {
			t.Errorf("stdout = %q", stdout.String())
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, b)
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Fatal("archives differ")
	}
	if left, _ := filepath.Glob(filepath.Join(outDir, ".servcraft-image-*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestRunRequiresFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--rootfs", t.TempDir()},
		{"--out", "x.tar"},
		{"--rootfs", t.TempDir(), "--out", filepath.Join(t.TempDir(), "x.tar"), "--env", "NOEQUALS"},
	} {
		if err := run(args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q): want error", args)
		}
	}
}
