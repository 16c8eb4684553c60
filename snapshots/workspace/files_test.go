package workspace

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

func TestCleanPath(t *testing.T) {
	lim := PathLimits{MaxDepth: 4, MaxNameLen: 10, MaxPathLen: 40}
	for _, tc := range []struct {
		path  string
		cause error
	}{
		{"index.js", nil},
		{"src/app.ts", nil},
		{"a/b/c/d.js", nil},
		{".env", nil},
		{"", errdefs.ErrInvalidArgument},
		{"/etc/passwd", errdefs.ErrInvalidArgument},
		{"../x", errdefs.ErrInvalidArgument},
		{"a/../../x", errdefs.ErrInvalidArgument},
		{"a/./b", errdefs.ErrInvalidArgument},
		{"a//b", errdefs.ErrInvalidArgument},
		{"a/", errdefs.ErrInvalidArgument},
		{"..", errdefs.ErrInvalidArgument},
		{`a\..\b`, errdefs.ErrInvalidArgument},
		{"a\x00b", errdefs.ErrInvalidArgument},
		{"a\nb", errdefs.ErrInvalidArgument},
		{"a\x7fb", errdefs.ErrInvalidArgument},
		{"\xff\xfe", errdefs.ErrInvalidArgument},
		{"a/b/c/d/e", errdefs.ErrInvalidArgument},
		{"abcdefghijk", errdefs.ErrInvalidArgument},
		{strings.Repeat("abcdefghi/", 5), errdefs.ErrInvalidArgument},
		{"%2e%2e/x", nil}, // no decoding happens: this is a literal folder name
	} {
		_, err := CleanPath(tc.path, lim)
		if tc.cause == nil && err != nil || tc.cause != nil && !errors.Is(err, tc.cause) {
			t.Errorf("CleanPath(%q) = %v, want %v", tc.path, err, tc.cause)
		}
	}
}

func TestWriteFileStaysInside(t *testing.T) {
	testneeds.Root(t)
	ws, outside := t.TempDir(), t.TempDir()
	canary := filepath.Join(outside, "canary")
	if err := os.WriteFile(canary, []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(ws, "dirlink")))
	must(os.Symlink(canary, filepath.Join(ws, "filelink")))
	must(os.Symlink("../../../../../../"+outside, filepath.Join(ws, "rellink")))
	must(os.Mkdir(filepath.Join(ws, "inner"), 0o755))
	must(os.Symlink("inner", filepath.Join(ws, "innerlink")))
	must(syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644))

	for _, tc := range []struct {
		rel   string
		cause error
	}{
		{"dirlink/canary", errdefs.ErrInvalidArgument},
		{"dirlink/new", errdefs.ErrInvalidArgument},
		{"filelink", errdefs.ErrInvalidArgument},
		{"rellink/canary", errdefs.ErrInvalidArgument},
		{"fifo", errdefs.ErrInvalidArgument},
		{"inner", errdefs.ErrInvalidArgument},
		{"innerlink/ok.js", nil},
		{"deep/new/folder/file.js", nil},
	} {
		err := WriteFile(ws, tc.rel, []byte("pwned"), 0o644)
		if tc.cause == nil && err != nil || tc.cause != nil && !errors.Is(err, tc.cause) {
			t.Errorf("WriteFile(%q) = %v, want %v", tc.rel, err, tc.cause)
		}
		if err != nil && (strings.Contains(err.Error(), ws) || strings.Contains(err.Error(), outside)) {
			t.Errorf("error shows a host path: %v", err)
		}
	}
	if b, _ := os.ReadFile(canary); string(b) != "safe" {
		t.Fatalf("canary = %q", b)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("files appeared outside: %v", entries)
	}
	var st syscall.Stat_t
	must(syscall.Stat(filepath.Join(ws, "deep", "new"), &st))
	if st.Uid != Owner || st.Gid != Owner {
		t.Errorf("created folder owned by %d:%d", st.Uid, st.Gid)
	}
	must(syscall.Stat(filepath.Join(ws, "deep/new/folder/file.js"), &st))
	if st.Uid != Owner {
		t.Errorf("file owned by %d", st.Uid)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "inner", "ok.js")); string(b) != "pwned" {
		t.Errorf("write through an inside link: %q", b)
	}
	// Overwrite truncates.
	must(WriteFile(ws, "deep/new/folder/file.js", []byte("x"), 0o644))
	if b, _ := os.ReadFile(filepath.Join(ws, "deep/new/folder/file.js")); string(b) != "x" {
		t.Errorf("overwrite left %q", b)
	}
}

// TestRemoveWriteLeftovers: the new files of writes cut short go, at any
// depth; the user's files, names that only look alike, links (and what
// they point at, inside or out) and folders stay.
func TestRemoveWriteLeftovers(t *testing.T) {
	ws, outside := t.TempDir(), t.TempDir()
	leftover := writePrefix + "0123456789abcdef"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(ws, "src", "deep"), 0o755))
	for _, p := range []string{leftover, "src/deep/" + leftover, "app.js", writePrefix + "short", writePrefix + "0123456789abcdeg"} {
		must(os.WriteFile(filepath.Join(ws, p), []byte("x"), 0o644))
	}
	must(os.Mkdir(filepath.Join(ws, "src", writePrefix+"fedcba9876543210"), 0o755))
	must(os.WriteFile(filepath.Join(outside, leftover), []byte("outside"), 0o644))
	must(os.Symlink(outside, filepath.Join(ws, "out")))
	must(os.Symlink(filepath.Join(outside, leftover), filepath.Join(ws, "src", writePrefix+"aaaaaaaaaaaaaaaa")))

	n, err := RemoveWriteLeftovers(ws)
	if err != nil || n != 2 {
		t.Fatalf("RemoveWriteLeftovers = %d, %v; want 2", n, err)
	}
	for _, gone := range []string{leftover, "src/deep/" + leftover} {
		if _, err := os.Lstat(filepath.Join(ws, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s stays: %v", gone, err)
		}
	}
	for _, kept := range []string{"app.js", writePrefix + "short", writePrefix + "0123456789abcdeg", "src/" + writePrefix + "fedcba9876543210",
		"src/" + writePrefix + "aaaaaaaaaaaaaaaa", "out"} {
		if _, err := os.Lstat(filepath.Join(ws, kept)); err != nil {
			t.Errorf("%s removed: %v", kept, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, leftover)); err != nil {
		t.Errorf("a file outside the workspace was removed: %v", err)
	}
}
