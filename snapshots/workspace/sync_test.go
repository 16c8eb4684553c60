package workspace

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

// tree makes files (path -> content; a path ending in "/" is a folder)
// under dir.
func tree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot returns every path under dir (folders end in "/") with its
// content, following no link.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == ".":
		case d.IsDir():
			got[rel+"/"] = ""
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			got[rel] = "-> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok || g != w {
			t.Errorf("%s: %q = %q (present %v), want %q", what, p, g, ok, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %q", what, p)
		}
	}
}

// canaries makes, outside any workspace, a file and a folder with content
// that no workspace operation may touch, and returns their paths and a check.
func canaries(t *testing.T) (file, folder string, check func()) {
	t.Helper()
	outside := t.TempDir()
	file = filepath.Join(outside, "canary.txt")
	folder = filepath.Join(outside, "canary-folder")
	tree(t, outside, map[string]string{
		"canary.txt":                     "host secret",
		"canary-folder/secret.txt":       "folder secret",
		"canary-folder/inner/deeper.txt": "deeper secret",
	})
	want := snapshot(t, outside)
	return file, folder, func() {
		t.Helper()
		sameTree(t, "outside the workspace", snapshot(t, outside), want)
	}
}

func TestSyncWrites(t *testing.T) {
	testneeds.Root(t)
	ws := t.TempDir()
	tree(t, ws, map[string]string{"index.js": "old", "keep.txt": "untouched"})
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	res, err := Sync(ws, []Entry{
		{Path: "src/app.ts", Data: []byte("app")}, // before its folder: Sync orders parents first
		{Path: "src", Dir: true},
		{Path: "index.js", Data: []byte("new")},
		{Path: "empty", Dir: true},
		{Path: "logo.png", Data: bin},
		{Path: "dup.txt", Data: []byte("first")},
		{Path: "dup.txt", Data: []byte("last")},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := (SyncResult{Written: 6, Deleted: 0, Bytes: 3 + 3 + 5 + 4}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	sameTree(t, "workspace", snapshot(t, ws), map[string]string{
		"src/": "", "src/app.ts": "app", "index.js": "new", "empty/": "", "logo.png": string(bin),
		"dup.txt": "last", "keep.txt": "untouched",
	})
	for _, p := range []string{"src", "src/app.ts", "empty", "logo.png"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(ws, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != Owner || st.Gid != Owner {
			t.Errorf("%s owned by %d:%d", p, st.Uid, st.Gid)
		}
	}
	// Again: folders exist now, files are overwritten.
	res, err = Sync(ws, []Entry{{Path: "src", Dir: true}, {Path: "src/app.ts", Data: []byte("v2")}}, false)
	if err != nil || res != (SyncResult{Written: 1, Bytes: 2}) {
		t.Errorf("second sync: %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "src/app.ts")); string(b) != "v2" {
		t.Errorf("overwrite left %q", b)
	}
}

func TestSyncRefuses(t *testing.T) {
	testneeds.Root(t)
	file, folder, check := canaries(t)
	for _, tc := range []struct {
		name    string
		entries []Entry
		replace bool
		cause   error
	}{
		{"dot-dot", []Entry{{Path: "../x", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"absolute", []Entry{{Path: "/etc/x", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"through a folder link", []Entry{{Path: "hostdir/x", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"over a file link", []Entry{{Path: "hostfile", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"over a FIFO", []Entry{{Path: "fifo", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"file over a folder", []Entry{{Path: "dir", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"into a file", []Entry{{Path: "file.txt/x", Data: []byte("x")}}, false, errdefs.ErrInvalidArgument},
		{"into a dot-folder link, replacing", []Entry{{Path: ".hidden", Dir: true}, {Path: ".hidden/x", Data: []byte("x")}}, true, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := t.TempDir()
			tree(t, ws, map[string]string{"dir/": "", "file.txt": "f"})
			for link, target := range map[string]string{"hostdir": folder, "hostfile": file, ".hidden": folder} {
				if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
					t.Fatal(err)
				}
			}
			if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Sync(ws, tc.entries, tc.replace)
			if !errors.Is(err, tc.cause) {
				t.Errorf("Sync = %v, want %v", err, tc.cause)
			}
			check()
		})
	}
}

func TestSyncReplace(t *testing.T) {
	testneeds.Root(t)
	file, folder, check := canaries(t)
	ws := t.TempDir()
	tree(t, ws, map[string]string{
		"index.js":                       "old",
		"gone.js":                        "x",
		"src/app.ts":                     "old app",
		"src/old.ts":                     "x",
		"src/.eslintrc":                  "kept: dot-file inside a kept folder",
		"src/node_modules/x/index.js":    "kept: nested node_modules",
		"oldfolder/a/b.txt":              "x",
		"oldfolder/.hidden":              "goes with its folder",
		"node_modules/fastify/index.js":  "kept",
		"node_modules/.bin/":             "",
		".npmrc":                         "kept",
		".git/config":                    "kept",
		".git/objects/ab":                "kept",
		"was-a-folder/inside.txt":        "x",
		"was-a-file":                     "x",
		"linked-folder-target/inner.txt": "x",
	})
	for link, target := range map[string]string{
		"hostfile":     file,
		"hostdir":      folder,
		"hostdir-rel":  "../../../../../../../../.." + folder,
		"dangling":     "/nonexistent/x",
		"inner-link":   "linked-folder-target",
		"src/hostlink": folder,
		"as-folder":    folder, // the entries want a real folder here
	} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Sync(ws, []Entry{
		{Path: "index.js", Data: []byte("new")},
		{Path: "src", Dir: true},
		{Path: "src/app.ts", Data: []byte("new app")},
		{Path: "was-a-folder", Data: []byte("now a file")},
		{Path: "was-a-file", Dir: true},
		{Path: "as-folder", Dir: true},
		{Path: "as-folder/f.txt", Data: []byte("in a real folder")},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	sameTree(t, "workspace", snapshot(t, ws), map[string]string{
		"index.js":                      "new",
		"src/":                          "",
		"src/app.ts":                    "new app",
		"src/.eslintrc":                 "kept: dot-file inside a kept folder",
		"src/node_modules/":             "",
		"src/node_modules/x/":           "",
		"src/node_modules/x/index.js":   "kept: nested node_modules",
		"node_modules/":                 "",
		"node_modules/fastify/":         "",
		"node_modules/fastify/index.js": "kept",
		"node_modules/.bin/":            "",
		".npmrc":                        "kept",
		".git/":                         "",
		".git/config":                   "kept",
		".git/objects/":                 "",
		".git/objects/ab":               "kept",
		"was-a-folder":                  "now a file",
		"was-a-file/":                   "",
		"as-folder/":                    "",
		"as-folder/f.txt":               "in a real folder",
	})
	// Deleted: gone.js, src/old.ts, src/hostlink, oldfolder, hostfile, hostdir,
	// hostdir-rel, dangling, inner-link, linked-folder-target, fifo (11), and the
	// three replaced: was-a-folder, was-a-file, as-folder.
	if want := (SyncResult{Written: 6, Deleted: 14, Bytes: 3 + 7 + 10 + 16}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	check()

	// Without replace nothing is deleted.
	tree(t, ws, map[string]string{"extra.txt": "stays"})
	res, err = Sync(ws, []Entry{{Path: "index.js", Data: []byte("v3")}}, false)
	if err != nil || res.Deleted != 0 {
		t.Fatalf("merge: %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(ws, "extra.txt")); err != nil {
		t.Errorf("merge deleted: %v", err)
	}
	// An empty replace keeps only hidden names.
	res, err = Sync(ws, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for p := range snapshot(t, ws) {
		if !strings.HasPrefix(p, ".") && !strings.HasPrefix(p, "node_modules/") {
			left = append(left, p)
		}
	}
	if len(left) != 0 || res.Deleted != 6 {
		t.Errorf("empty replace left %v, deleted %d", left, res.Deleted)
	}
}

func TestComparePaths(t *testing.T) {
	paths := []string{"a-b", "a/b/c", "b", "a", "a/b", "a.js", "a/c", "A"}
	slices.SortFunc(paths, comparePaths)
	want := []string{"A", "a", "a/b", "a/b/c", "a/c", "a-b", "a.js", "b"}
	if !slices.Equal(paths, want) {
		t.Errorf("sorted %v, want %v", paths, want)
	}
}

func TestSyncKeepLeavesFilesAlone(t *testing.T) {
	testneeds.Root(t)
	bin := string([]byte{0, 1, 2, 0xff, 0xfe})
	for _, replace := range []bool{false, true} {
		ws := t.TempDir()
		tree(t, ws, map[string]string{"logo.png": bin, "big.txt": "large", "lib/": "", "lib/inner.txt": "inner", "gone.txt": "x"})
		res, err := Sync(ws, []Entry{
			{Path: "logo.png", Keep: true},
			{Path: "big.txt", Data: []byte("ignored")},
			{Path: "big.txt", Keep: true}, // the last entry for a path wins
			{Path: "lib", Keep: true},     // a folder where the tree says file: left as it is, contents too
			{Path: "missing.bin", Keep: true},
			{Path: "index.js", Data: []byte("new")},
		}, replace)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"logo.png": bin, "big.txt": "large", "lib/": "", "lib/inner.txt": "inner", "index.js": "new"}
		wantRes := SyncResult{Written: 1, Bytes: 3, Kept: 4}
		if replace {
			wantRes.Deleted = 1 // gone.txt: not in the tree
		} else {
			want["gone.txt"] = "x"
		}
		if res != wantRes {
			t.Errorf("replace=%v: result %+v, want %+v", replace, res, wantRes)
		}
		sameTree(t, "workspace", snapshot(t, ws), want)
	}
}

// TestSyncKeepsWithheldFilesSentAsEmptyText: an empty text entry marked
// KeepIfWithheld leaves a binary file, one over the bound and a link as
// they are (merging or replacing), and empties a text file within it.
func TestSyncKeepsWithheldFilesSentAsEmptyText(t *testing.T) {
	testneeds.Root(t)
	bin := string([]byte{0x89, 'P', 'N', 'G', 0, 1})
	for _, replace := range []bool{false, true} {
		ws := t.TempDir()
		tree(t, ws, map[string]string{"logo.png": bin, "big.txt": "0123456789", "small.txt": "text", "latin1.txt": "caf\xe9"})
		if err := os.Symlink("small.txt", filepath.Join(ws, "link.txt")); err != nil {
			t.Fatal(err)
		}
		var entries []Entry
		for _, p := range []string{"logo.png", "big.txt", "small.txt", "latin1.txt", "link.txt", "new.txt"} {
			entries = append(entries, Entry{Path: p, KeepIfWithheld: 8})
		}
		res, err := Sync(ws, entries, replace)
		if err != nil {
			t.Fatal(err)
		}
		if want := (SyncResult{Written: 2, Kept: 4}); res != want {
			t.Errorf("replace=%v: result %+v, want %+v (logo.png, big.txt, latin1.txt and link.txt kept)", replace, res, want)
		}
		want := map[string]string{"logo.png": bin, "big.txt": "0123456789", "small.txt": "", "latin1.txt": "caf\xe9", "new.txt": ""}
		got := snapshot(t, ws)
		delete(got, "link.txt")
		sameTree(t, "workspace", got, want)
		if target, err := os.Readlink(filepath.Join(ws, "link.txt")); err != nil || target != "small.txt" {
			t.Errorf("replace=%v: link.txt = %q, %v", replace, target, err)
		}
	}
}
