package workspace

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
)

// listSoon runs List and fails the test if it takes more than a few seconds
// (a FIFO opened for reading would block it forever).
func listSoon(t *testing.T, dir, sub string, lim ListLimits) ([]FileInfo, error) {
	t.Helper()
	type result struct {
		files []FileInfo
		err   error
	}
	done := make(chan result, 1)
	go func() {
		files, err := List(dir, sub, lim)
		done <- result{files, err}
	}()
	select {
	case r := <-done:
		return r.files, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("List(%q) hangs", sub)
		return nil, nil
	}
}

func paths(files []FileInfo) []string {
	var ps []string
	for _, f := range files {
		ps = append(ps, f.Path)
	}
	return ps
}

func byPath(files []FileInfo) map[string]FileInfo {
	m := map[string]FileInfo{}
	for _, f := range files {
		m[f.Path] = f
	}
	return m
}

func TestListSkipsHidden(t *testing.T) {
	ws := t.TempDir()
	tree(t, ws, map[string]string{
		"index.js":                      "console.log(1)",
		"package.json":                  "{}",
		"src/app.ts":                    "export {}",
		"src/.eslintrc":                 "hidden",
		"src/node_modules/x/index.js":   "hidden",
		"src-b/x.md":                    "# x",
		"node_modules/fastify/index.js": "hidden",
		".npmrc":                        "hidden",
		".git/config":                   "hidden",
		"empty/":                        "",
	})
	files, err := listSoon(t, ws, "", ListLimits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"empty", "index.js", "package.json", "src", "src/app.ts", "src-b", "src-b/x.md"}
	if got := paths(files); !slices.Equal(got, want) {
		t.Fatalf("paths %q, want %q", got, want)
	}
	m := byPath(files)
	if f := m["src/app.ts"]; f != (FileInfo{Name: "app.ts", Type: TypeFile, Path: "src/app.ts", Content: "export {}", Language: "typescript", Size: 9, HasContent: true}) {
		t.Errorf("src/app.ts = %+v", f)
	}
	if f := m["src"]; f != (FileInfo{Name: "src", Type: TypeFolder, Path: "src"}) {
		t.Errorf("src = %+v", f)
	}
}

func TestListDepth(t *testing.T) {
	ws := t.TempDir()
	tree(t, ws, map[string]string{"a/b/c/d/e/f.txt": "deep", "a/top.txt": "top"})
	for _, tc := range []struct {
		sub       string
		depth     int
		want      []string
		truncated string // the folder whose contents are cut by the depth
	}{
		{"", 0, []string{"a", "a/b", "a/b/c", "a/b/c/d", "a/top.txt"}, "a/b/c/d"},
		{"", 2, []string{"a", "a/b", "a/top.txt"}, "a/b"},
		{"", 1, []string{"a"}, "a"},
		{"", 6, []string{"a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b/c/d/e/f.txt", "a/top.txt"}, ""},
		{"a/b", 0, []string{"a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b/c/d/e/f.txt"}, ""},
		{"a/b", 2, []string{"a/b/c", "a/b/c/d"}, "a/b/c/d"},
	} {
		files, err := listSoon(t, ws, tc.sub, ListLimits{MaxDepth: tc.depth})
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(files); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, depth %d) = %q, want %q", tc.sub, tc.depth, got, tc.want)
		}
		for _, f := range files {
			if f.Truncated != (f.Path == tc.truncated) {
				t.Errorf("List(%q, depth %d): %s truncated = %v", tc.sub, tc.depth, f.Path, f.Truncated)
			}
		}
	}
}

func TestListContent(t *testing.T) {
	ws := t.TempDir()
	tree(t, ws, map[string]string{
		"a-text.txt":   "hello",
		"b-nul.bin":    "abc\x00def",
		"c-latin1.txt": "caf\xe9",
		"d-big.txt":    strings.Repeat("x", 101),
		"e-empty.js":   "",
		"f-late.bin":   strings.Repeat("y", 90) + "\xff", // invalid UTF-8 after the NUL window would still count
		"g-text.txt":   strings.Repeat("z", 60),
		"h-text.txt":   strings.Repeat("w", 60),
	})
	files, err := listSoon(t, ws, "", ListLimits{MaxFileBytes: 100, MaxTotalBytes: 220})
	if err != nil {
		t.Fatal(err)
	}
	m := byPath(files)
	for _, tc := range []struct {
		path              string
		content           string
		size              int64
		truncated, binary bool
	}{
		{"a-text.txt", "hello", 5, false, false},
		{"b-nul.bin", "", 7, false, true},
		{"c-latin1.txt", "", 4, false, true},
		{"d-big.txt", "", 101, true, false},
		{"e-empty.js", "", 0, false, false},
		{"f-late.bin", "", 91, false, true},
		// 5+7+4+91 = 107 bytes read so far; 113 left: one 60-byte file fits, the next not.
		{"g-text.txt", strings.Repeat("z", 60), 60, false, false},
		{"h-text.txt", "", 60, true, false},
	} {
		f, ok := m[tc.path]
		if !ok {
			t.Errorf("%s not listed", tc.path)
			continue
		}
		if read := !tc.truncated && !tc.binary; f.HasContent != read {
			t.Errorf("%s: HasContent %v, want %v", tc.path, f.HasContent, read)
		}
		if f.Content != tc.content || f.Size != tc.size || f.Truncated != tc.truncated || f.Binary != tc.binary {
			t.Errorf("%s = content %q size %d truncated %v binary %v; want %q %d %v %v", tc.path,
				f.Content, f.Size, f.Truncated, f.Binary, tc.content, tc.size, tc.truncated, tc.binary)
		}
	}
}

func TestListMaxEntries(t *testing.T) {
	ws := t.TempDir()
	tree(t, ws, map[string]string{
		"a/1.txt": "", "a/2.txt": "", "a/3.txt": "",
		"b/1.txt": "", "b/c/1.txt": "",
		"z.txt": "",
	})
	files, err := listSoon(t, ws, "", ListLimits{MaxEntries: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Breadth first: the top level is whole, then a is cut after two entries, b never opened.
	want := []string{"a", "a/1.txt", "a/2.txt", "b", "z.txt"}
	if got := paths(files); !slices.Equal(got, want) {
		t.Fatalf("paths %q, want %q", got, want)
	}
	m := byPath(files)
	if !m["a"].Truncated || !m["b"].Truncated || m["z.txt"].Truncated {
		t.Errorf("truncated marks: %+v", files)
	}
}

func TestListSpecialFiles(t *testing.T) {
	file, folder, check := canaries(t)
	ws := t.TempDir()
	tree(t, ws, map[string]string{"real.txt": "real"})
	for link, target := range map[string]string{
		"host-file":       file,
		"host-folder":     folder,
		"host-folder-rel": "../../../../../../../../.." + folder,
		"inner-link":      "real.txt",
		"dangling":        "/nonexistent",
	} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(ws, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	files, err := listSoon(t, ws, "", ListLimits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dangling", "fifo", "host-file", "host-folder", "host-folder-rel", "inner-link", "real.txt", "sock"}
	if got := paths(files); !slices.Equal(got, want) {
		t.Fatalf("paths %q, want %q", got, want)
	}
	for _, f := range files {
		if f.Type != TypeFile {
			t.Errorf("%s listed as %s", f.Path, f.Type)
		}
		if f.Path != "real.txt" && (f.Content != "" || f.HasContent) {
			t.Errorf("%s read: %q (HasContent %v)", f.Path, f.Content, f.HasContent)
		}
	}
	// Each one named by sub: the same, alone.
	for _, p := range want {
		files, err := listSoon(t, ws, p, ListLimits{})
		if err != nil || len(files) != 1 || files[0].Path != p || p != "real.txt" && files[0].Content != "" {
			t.Errorf("List(%q) = %+v, %v", p, files, err)
		}
	}
	check()
}

func TestListSub(t *testing.T) {
	_, folder, _ := canaries(t)
	ws := t.TempDir()
	tree(t, ws, map[string]string{
		"src/app.ts":                        "app",
		"src/lib/util.ts":                   "util",
		"node_modules/fastify/package.json": "{}",
		"node_modules/fastify/.hidden":      "x",
		"node_modules/.bin/":                "",
		".git/HEAD":                         "ref",
		"inner/x/y.txt":                     "y",
	})
	for link, target := range map[string]string{"link": folder, "inner-link": "inner"} {
		if err := os.Symlink(target, filepath.Join(ws, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sub   string
		want  []string
		cause error
	}{
		{"src", []string{"src/app.ts", "src/lib", "src/lib/util.ts"}, nil},
		{"src/lib", []string{"src/lib/util.ts"}, nil},
		{"src/app.ts", []string{"src/app.ts"}, nil},
		{"node_modules", []string{"node_modules/fastify", "node_modules/fastify/package.json"}, nil},
		{"node_modules/fastify", []string{"node_modules/fastify/package.json"}, nil},
		{"node_modules/fastify/.hidden", []string{"node_modules/fastify/.hidden"}, nil},
		{".git", []string{".git/HEAD"}, nil},
		{"link", []string{"link"}, nil}, // the link itself, as a file
		{"missing", nil, errdefs.ErrNotFound},
		{"src/missing/x", nil, errdefs.ErrNotFound},
		{"src/app.ts/x", nil, errdefs.ErrNotFound},
		{"../x", nil, errdefs.ErrInvalidArgument},
		{"src/../../x", nil, errdefs.ErrInvalidArgument},
		{"/etc", nil, errdefs.ErrInvalidArgument},
		{"link/secret.txt", nil, errdefs.ErrInvalidArgument},
		{"link/inner", nil, errdefs.ErrInvalidArgument},
		{"inner-link/x", nil, errdefs.ErrInvalidArgument}, // links are not followed, even inside
	} {
		files, err := listSoon(t, ws, tc.sub, ListLimits{})
		if tc.cause == nil && err != nil || tc.cause != nil && !errors.Is(err, tc.cause) {
			t.Errorf("List(%q) = %v, want %v", tc.sub, err, tc.cause)
			continue
		}
		if err != nil && strings.Contains(err.Error(), ws) {
			t.Errorf("List(%q): error shows a host path: %v", tc.sub, err)
		}
		if got := paths(files); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.sub, got, tc.want)
		}
	}
}

func TestLanguage(t *testing.T) {
	for name, want := range map[string]string{
		"a.ts": "typescript", "a.tsx": "typescript", "a.js": "javascript", "a.mjs": "javascript",
		"a.cjs": "javascript", "A.JSX": "javascript", "package.json": "json", "README.md": "markdown",
		"a.css": "css", "a.html": "html", "a.yml": "yaml", "a.yaml": "yaml", "run.sh": "shell",
		"Makefile": "plaintext", "a.txt": "plaintext", ".env": "plaintext",
	} {
		if got := Language(name); got != want {
			t.Errorf("Language(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestSyncListRace swaps a folder for a link to a host folder, over and
// over, while Sync (replacing) and List run: neither may touch or show the
// host folder.
func TestSyncListRace(t *testing.T) {
	testneeds.Root(t)
	_, folder, check := canaries(t)
	ws := t.TempDir()
	tree(t, ws, map[string]string{"d/a.txt": "a", "d/drop.txt": "x", "d/sub/b.txt": "b", "keep.txt": "k"})
	// .swap is hidden, so Sync leaves it alone; d and .swap trade places atomically.
	if err := os.Symlink(folder, filepath.Join(ws, ".swap")); err != nil {
		t.Fatal(err)
	}
	entries := []Entry{
		{Path: "d", Dir: true},
		{Path: "d/a.txt", Data: []byte("a")},
		{Path: "keep.txt", Data: []byte("k")},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	swaps := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// A replacing Sync turns a link at d into a real folder: plant the link again.
			if !isLink(filepath.Join(ws, "d")) && !isLink(filepath.Join(ws, ".swap")) {
				_ = os.RemoveAll(filepath.Join(ws, ".swap"))
				_ = os.Symlink(folder, filepath.Join(ws, ".swap"))
			}
			if unix.Renameat2(unix.AT_FDCWD, filepath.Join(ws, "d"), unix.AT_FDCWD, filepath.Join(ws, ".swap"), unix.RENAME_EXCHANGE) == nil {
				swaps++
			}
		}
	}()
	secret := map[string]bool{"secret.txt": true, "inner": true, "deeper.txt": true}
	deadline := time.Now().Add(time.Second)
	runs := 0
	for time.Now().Before(deadline) {
		_, _ = Sync(ws, entries, true) // errors are expected: the user's code is racing us
		files, _ := listSoon(t, ws, "", ListLimits{})
		for _, f := range files {
			if secret[f.Name] || strings.Contains(f.Content, "secret") {
				t.Errorf("listed from the host folder: %+v", f)
			}
		}
		files, _ = listSoon(t, ws, "d", ListLimits{})
		for _, f := range files {
			if secret[f.Name] || strings.Contains(f.Content, "secret") {
				t.Errorf("listed from the host folder via sub: %+v", f)
			}
		}
		runs++
	}
	close(stop)
	wg.Wait()
	t.Logf("%d sync+list rounds, %d swaps", runs, swaps)
	if swaps == 0 || runs == 0 {
		t.Fatalf("no race happened: %d swaps, %d runs", swaps, runs)
	}
	check()
}

func isLink(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// TestJSONStringLenIsWhatJSONWrites: the listing's budget counts content as
// encoding/json writes it, escapes included.
func TestJSONStringLenIsWhatJSONWrites(t *testing.T) {
	var all []byte
	for b := 0; b < 0x80; b++ {
		all = append(all, byte(b))
	}
	for _, s := range []string{"", "plain text", "\x01\x02\x1f", "<a href=\"x\">&amp;</a>\\", "tab\tnew\nline\r\b\f", "\u2028\u2029 é 日本", string(all)} {
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := JSONStringLen([]byte(s)), int64(len(enc)-2); got != want {
			t.Errorf("JSONStringLen(%q) = %d, json.Marshal writes %d", s, got, want)
		}
	}
}

// TestListBoundsWhatItWritesAndReads: control characters cost the budget
// what their escapes cost, and a folder of many names is read only as far
// as the listing can use.
func TestListBoundsWhatItWritesAndReads(t *testing.T) {
	dir := t.TempDir()
	ctrl := bytes.Repeat([]byte{1}, 100<<10) // 100 KiB that JSON writes as 600 KiB
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%d.txt", i)), ctrl, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := List(dir, "", ListLimits{MaxTotalBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	withContent := 0
	for _, f := range files {
		if f.HasContent {
			withContent++
		}
	}
	if withContent != 1 {
		t.Errorf("%d files of 600 KiB escaped listed with content under a 1 MiB budget, want 1", withContent)
	}
	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if err := os.WriteFile(filepath.Join(many, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := os.OpenRoot(many)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names, more, err := readNamesUpTo(d, 100, 400)
	if err != nil || !more || len(names) > 400 || len(names) < 100 {
		t.Fatalf("read %d names (more %v, %v) of 3000, want 100 to 400 and more", len(names), more, err)
	}
	all, more, err := readNamesUpTo(d, 5000, 20000)
	if err != nil || more || len(all) != 3000 {
		t.Fatalf("read %d names (more %v, %v), want all 3000", len(all), more, err)
	}
	files, err = List(dir, "many", ListLimits{MaxEntries: 50})
	if err != nil || len(files) != 50 {
		t.Fatalf("listing a folder of 3000 at 50 entries: %d %v", len(files), err)
	}
}
