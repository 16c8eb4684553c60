package workspace

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCleanPath: whatever CleanPath accepts is a plain relative path that
// stays inside the folder it is joined to: no ".." or "." element, no
// leading "/", no NUL, backslash, control character or empty element, and
// within the limits.
func FuzzCleanPath(f *testing.F) {
	for _, seed := range []string{
		"index.js", "src/app.ts", ".env", "a/b/c/d.js", "a..b", "...", ".a/..b/c..",
		"", "/", "/etc/passwd", "..", "../x", "a/../../x", "a/./b", "a//b", "a/", "./a", "a\\b", "..\\x",
		"a\x00b", "a\nb", "a\x7fb", "\xff", "a/\xc0\xaf", "é/ü.js", "\u202egnp.js", strings.Repeat("a/", 40) + "b",
		strings.Repeat("x", 300), "a/" + strings.Repeat("y", 256), "%2e%2e/x", "a/..", "a/.", ". /x", ".. ",
	} {
		f.Add(seed, uint8(16), uint8(255), uint16(1024))
	}
	f.Fuzz(func(t *testing.T, p string, depth, nameLen uint8, pathLen uint16) {
		lim := PathLimits{MaxDepth: int(depth%32) + 1, MaxNameLen: int(nameLen) + 1, MaxPathLen: int(pathLen%4096) + 1}
		got, err := CleanPath(p, lim)
		if err != nil {
			return
		}
		if got != p {
			t.Fatalf("CleanPath(%q) = %q: accepted paths come back unchanged", p, got)
		}
		switch {
		case p == "":
			t.Fatalf("accepted an empty path")
		case strings.HasPrefix(p, "/"):
			t.Fatalf("accepted an absolute path %q", p)
		case strings.ContainsAny(p, "\x00\\"):
			t.Fatalf("accepted a NUL or backslash in %q", p)
		case !utf8.ValidString(p):
			t.Fatalf("accepted invalid UTF-8 %q", p)
		case len(p) > lim.MaxPathLen:
			t.Fatalf("accepted %d bytes over MaxPathLen %d", len(p), lim.MaxPathLen)
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("accepted a control character in %q", p)
			}
		}
		elems := strings.Split(p, "/")
		if len(elems) > lim.MaxDepth {
			t.Fatalf("accepted %d levels over MaxDepth %d: %q", len(elems), lim.MaxDepth, p)
		}
		for _, e := range elems {
			if e == "" || e == "." || e == ".." || len(e) > lim.MaxNameLen {
				t.Fatalf("accepted element %q of %q", e, p)
			}
		}
		if path.Clean(p) != p {
			t.Fatalf("accepted %q, which path.Clean changes to %q", p, path.Clean(p))
		}
		const root = "/workspace"
		if j := filepath.Join(root, p); !strings.HasPrefix(j, root+"/") || j == root {
			t.Fatalf("%q joined to %s leaves it: %s", p, root, j)
		}
	})
}
