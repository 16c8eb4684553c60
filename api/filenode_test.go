package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/runtime/runtimetest/testneeds"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

func file(name, content string) FileNode {
	return FileNode{Name: name, Type: "file", Content: &content}
}

// text is a node's content.
func text(s string) *string { return &s }

func folder(name string, children ...FileNode) FileNode {
	return FileNode{Name: name, Type: "folder", Children: children}
}

func TestFlattenTree(t *testing.T) {
	small := SyncLimits{MaxFiles: 4, MaxFileBytes: 10, MaxTotalBytes: 15,
		Path: workspace.PathLimits{MaxDepth: 3, MaxNameLen: 20, MaxPathLen: 40}}
	for _, tc := range []struct {
		name  string
		nodes []FileNode
		lim   SyncLimits
		want  []workspace.Entry
		cause error
		where string // the path the error must name
	}{
		{name: "empty", nodes: nil, want: nil},
		{name: "tree", nodes: []FileNode{
			file("index.js", "x"),
			folder("src", file("app.ts", "app"), folder("empty")),
			{Name: "logo.png", Type: "file", Content: text(base64.StdEncoding.EncodeToString([]byte{0, 0xff})), Encoding: "base64"},
			{Name: ".env", Type: "file", Content: text("A=1"), Language: "plaintext", Expanded: true},
			{Name: "withheld.bin", Type: "file", Binary: true, Language: "plaintext"},
			{Name: "withheld.txt", Type: "file"},
			{Name: "echoed.bin", Type: "file", Content: text(""), Binary: true, Encoding: "base64"},
			{Name: "big.txt", Type: "file", Content: text(""), Truncated: true},
			{Name: "empty.txt", Type: "file", Content: text(""), Language: "plaintext"},
		}, want: []workspace.Entry{
			{Path: "index.js", Data: []byte("x")},
			{Path: "src", Dir: true},
			{Path: "src/app.ts", Data: []byte("app")},
			{Path: "src/empty", Dir: true},
			{Path: "logo.png", Data: []byte{0, 0xff}},
			{Path: ".env", Data: []byte("A=1")},
			{Path: "withheld.bin", Keep: true},
			{Path: "withheld.txt", Keep: true},
			{Path: "echoed.bin", Keep: true},
			{Path: "big.txt", Keep: true},
			{Path: "empty.txt", Data: []byte{}},
		}},
		{name: "limits just met", lim: small, nodes: []FileNode{
			folder("a", folder("b", file("c", "0123456789"))), file("d", "01234"),
		}, want: []workspace.Entry{
			{Path: "a", Dir: true}, {Path: "a/b", Dir: true},
			{Path: "a/b/c", Data: []byte("0123456789")}, {Path: "d", Data: []byte("01234")},
		}},
		{name: "empty name", nodes: []FileNode{folder("src", file("", "x"))}, cause: errdefs.ErrInvalidArgument, where: `"src/"`},
		{name: "dot", nodes: []FileNode{file(".", "x")}, cause: errdefs.ErrInvalidArgument, where: `"."`},
		{name: "dot-dot", nodes: []FileNode{folder("src", file("..", "x"))}, cause: errdefs.ErrInvalidArgument, where: `"src/.."`},
		{name: "slash in a name", nodes: []FileNode{file("../../etc/passwd", "x")}, cause: errdefs.ErrInvalidArgument, where: `"../../etc/passwd"`},
		{name: "slash in a folder name", nodes: []FileNode{folder("a/b")}, cause: errdefs.ErrInvalidArgument, where: `"a/b"`},
		{name: "backslash", nodes: []FileNode{file(`..\x`, "x")}, cause: errdefs.ErrInvalidArgument, where: `..`},
		{name: "control character", nodes: []FileNode{file("a\nb", "x")}, cause: errdefs.ErrInvalidArgument, where: `"a\nb"`},
		{name: "top node_modules", nodes: []FileNode{folder("node_modules", file("x.js", "x"))}, cause: errdefs.ErrInvalidArgument, where: `"node_modules"`},
		{name: "nested node_modules", nodes: []FileNode{folder("pkg", folder("node_modules"))}, cause: errdefs.ErrInvalidArgument, where: `"pkg/node_modules"`},
		{name: "node_modules as a file", nodes: []FileNode{file("node_modules", "")}, cause: errdefs.ErrInvalidArgument, where: `"node_modules"`},
		{name: "bad type", nodes: []FileNode{{Name: "x", Type: "symlink"}}, cause: errdefs.ErrInvalidArgument, where: `"x"`},
		{name: "no type", nodes: []FileNode{{Name: "x"}}, cause: errdefs.ErrInvalidArgument, where: `"x"`},
		{name: "bad encoding", nodes: []FileNode{{Name: "x", Type: "file", Encoding: "utf16"}}, cause: errdefs.ErrInvalidArgument, where: `"x"`},
		{name: "bad base64", nodes: []FileNode{folder("img", FileNode{Name: "a.png", Type: "file", Content: text("!!!"), Encoding: "base64"})}, cause: errdefs.ErrInvalidArgument, where: `"img/a.png"`},
		{name: "file with children", nodes: []FileNode{{Name: "x", Type: "file", Children: []FileNode{file("y", "")}}}, cause: errdefs.ErrInvalidArgument, where: `"x"`},
		{name: "duplicate", nodes: []FileNode{folder("a", file("b", "1")), folder("a")}, cause: errdefs.ErrInvalidArgument, where: `"a"`},
		{name: "duplicate file", nodes: []FileNode{folder("a", file("b", "1"), file("b", "2"))}, cause: errdefs.ErrInvalidArgument, where: `"a/b"`},
		{name: "too many", lim: small, nodes: []FileNode{file("1", ""), file("2", ""), file("3", ""), file("4", ""), file("5", "")}, cause: errdefs.ErrInvalidArgument, where: `"5"`},
		{name: "file too large", lim: small, nodes: []FileNode{folder("a", file("big", "01234567890"))}, cause: errdefs.ErrInvalidArgument, where: `"a/big"`},
		{name: "decoded file too large", lim: small, nodes: []FileNode{{Name: "b", Type: "file", Encoding: "base64",
			Content: text(base64.StdEncoding.EncodeToString(make([]byte, 11)))}}, cause: errdefs.ErrInvalidArgument, where: `"b"`},
		{name: "total too large", lim: small, nodes: []FileNode{file("a", "0123456789"), file("b", "012345")}, cause: errdefs.ErrInvalidArgument, where: `"b"`},
		{name: "too deep", lim: small, nodes: []FileNode{folder("a", folder("b", folder("c", file("d", ""))))}, cause: errdefs.ErrInvalidArgument, where: `"a/b/c/d"`},
		{name: "name too long", lim: small, nodes: []FileNode{file(strings.Repeat("n", 21), "")}, cause: errdefs.ErrInvalidArgument, where: strings.Repeat("n", 21)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := flattenTree(tc.nodes, tc.lim)
			if tc.cause == nil && err != nil || tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Fatalf("flattenTree = %v, want %v", err, tc.cause)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.where) {
					t.Errorf("error %q does not name %s", err, tc.where)
				}
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("entries %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Path != tc.want[i].Path || got[i].Dir != tc.want[i].Dir || !bytes.Equal(got[i].Data, tc.want[i].Data) {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestFileNodeJSON(t *testing.T) {
	var nodes []FileNode
	body := `[{"name":"src","type":"folder","expanded":true,"id":"x1","children":[
		{"name":"a.ts","type":"file","content":"let a = 1","language":"typescript"},
		{"name":"b.bin","type":"file","content":"AAH/","encoding":"base64"}]}]`
	if err := json.Unmarshal([]byte(body), &nodes); err != nil {
		t.Fatal(err)
	}
	entries, err := flattenTree(nodes, DefaultOptions().SyncLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || entries[1].Path != "src/a.ts" || !bytes.Equal(entries[2].Data, []byte{0, 1, 0xff}) {
		t.Errorf("entries %+v", entries)
	}
	out, _ := json.Marshal(FileNode{Name: "n", Type: "file"})
	for _, key := range []string{"name", "type", "content", "encoding", "language", "children", "expanded"} {
		if !strings.Contains(string(out), `"`+key+`"`) {
			t.Errorf("%s lacks %q", out, key)
		}
	}
}

// TestSyncTreeRoundTrip writes a tree with a base64 file through
// workspace.Sync and reads it back with workspace.List.
func TestSyncTreeRoundTrip(t *testing.T) {
	testneeds.Root(t)
	ws := t.TempDir()
	png := []byte{0x89, 'P', 'N', 'G', 0, 0, 0xff}
	entries, err := flattenTree([]FileNode{
		folder("src", file("app.ts", "export const a = 1\n")),
		{Name: "logo.png", Type: "file", Content: text(base64.StdEncoding.EncodeToString(png)), Encoding: "base64"},
	}, DefaultOptions().SyncLimits)
	if err != nil {
		t.Fatal(err)
	}
	res, err := workspace.Sync(ws, entries, true)
	if err != nil || res != (workspace.SyncResult{Written: 3, Bytes: int64(19 + len(png))}) {
		t.Fatalf("Sync = %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "logo.png")); !bytes.Equal(b, png) {
		t.Errorf("logo.png = %v", b)
	}
	files, err := workspace.List(ws, "", workspace.ListLimits{})
	if err != nil || len(files) != 3 {
		t.Fatalf("List = %+v, %v", files, err)
	}
	if f := files[0]; f.Path != "logo.png" || !f.Binary || f.Content != "" {
		t.Errorf("logo.png listed as %+v", f)
	}
	if f := files[2]; f.Path != "src/app.ts" || f.Content != "export const a = 1\n" || f.Language != "typescript" {
		t.Errorf("src/app.ts listed as %+v", f)
	}
}
