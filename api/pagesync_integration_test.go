package api_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/servcraft/servcraftd/api"
)

// pageNode is the ServCraft page's tree node as it syncs it: it rebuilds
// every file as {name, type, content: file.content || ”, language}, so a
// file listed without content (binary, over --list-file-bytes) comes back
// as content "" and without binary.
type pageNode struct {
	Name     string      `json:"name"`
	Type     string      `json:"type"`
	Content  *string     `json:"content,omitempty"`
	Language string      `json:"language,omitempty"`
	Children []*pageNode `json:"children,omitempty"`
}

// pageTree is the page's sync tree of a getFiles listing: seedTree's
// nesting, each file rebuilt as the page rebuilds it.
func pageTree(files []listedFile) []*pageNode {
	var rebuild func([]*seedNode) []*pageNode
	rebuild = func(nodes []*seedNode) []*pageNode {
		var out []*pageNode
		for _, n := range nodes {
			p := &pageNode{Name: n.Name, Type: n.Type, Language: n.Language, Children: rebuild(n.Children)}
			if n.Type == "file" {
				content := ""
				if n.Content != nil {
					content = *n.Content // file.content || ''
				}
				p.Content = &content
			}
			out = append(out, p)
		}
		return out
	}
	return rebuild(seedTree(files))
}

// TestPageSyncKeepsWhatItNeverSaw replays the ServCraft page over a tree with
// a PNG, a text file over --list-file-bytes and a normal file: getFiles, then
// a sync of the page's exact shapes, merging and replacing. The two files the
// page never had the content of keep every byte; the one it had and emptied
// is emptied; an explicit base64 "" empties the PNG.
func TestPageSyncKeepsWhatItNeverSaw(t *testing.T) {
	const listFileBytes = 4 << 10
	srv := startServer(t, nil, nil, func(o *api.Options) { o.ListLimits.MaxFileBytes = listFileBytes })
	c := client(t, srv)
	id := seedSessionID()
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	png := []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0x0d, 'I', 'H', 'D', 'R', 0xff, 0xfe}
	big := strings.Repeat("a line of a large text file\n", 2*listFileBytes/28)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	if status, body := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []any{
		map[string]any{"name": "assets", "type": "folder", "children": []any{
			map[string]any{"name": "logo.png", "type": "file", "encoding": "base64", "content": b64(png)},
			map[string]any{"name": "big.txt", "type": "file", "content": big}}},
		map[string]any{"name": "notes.txt", "type": "file", "content": "to be emptied\n"},
	}}); status != 200 {
		t.Fatalf("sync the tree: %d %v", status, body)
	}
	sums := func() map[string]string {
		t.Helper()
		status, out := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id,
			"command": "sha256sum assets/logo.png assets/big.txt notes.txt"})
		if status != 200 || out["success"] != true {
			t.Fatalf("sha256sum: %d %v", status, out)
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out["output"].(string)), "\n") {
			sum, name, _ := strings.Cut(line, "  ")
			got[name] = sum
		}
		return got
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	kept := map[string]string{"assets/logo.png": sum(png), "assets/big.txt": sum([]byte(big)), "notes.txt": sum(nil)}

	for _, mode := range []string{"merge", "replace"} {
		status, _, raw := c.Do("GET", "/api/playground/container?sessionId="+id+"&action=getFiles", nil)
		var listing struct {
			Files []listedFile `json:"files"`
		}
		if err := json.Unmarshal(raw, &listing); status != 200 || err != nil {
			t.Fatalf("getFiles: %d %v %s", status, err, raw)
		}
		var withheld []string
		for _, f := range listing.Files {
			if f.Type == "file" && f.Content == nil {
				withheld = append(withheld, f.Path)
			}
		}
		if strings.Join(withheld, " ") != "assets/big.txt assets/logo.png" {
			t.Fatalf("%s: listed without content: %v, want the PNG and the large file", mode, withheld)
		}
		tree := pageTree(listing.Files)
		// The user empties notes.txt in the editor (the first time round).
		for _, n := range tree {
			if n.Name == "notes.txt" {
				empty := ""
				n.Content = &empty
			}
		}
		status, synced := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": tree, "mode": mode})
		if status != 200 || synced["kept"] != 2.0 || synced["deleted"] != 0.0 {
			t.Fatalf("%s sync of the page's tree: %d %v, want the two withheld files kept", mode, status, synced)
		}
		if got := sums(); got["assets/logo.png"] != kept["assets/logo.png"] || got["assets/big.txt"] != kept["assets/big.txt"] || got["notes.txt"] != kept["notes.txt"] {
			t.Fatalf("%s: after the page's sync %v, want %v", mode, got, kept)
		}
	}

	// Emptying a file the listing withholds takes an explicit base64 "".
	if status, body := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []any{
		map[string]any{"name": "assets", "type": "folder", "children": []any{
			map[string]any{"name": "logo.png", "type": "file", "encoding": "base64", "content": ""}}}}}); status != 200 || body["written"] != 1.0 {
		t.Fatalf("empty the PNG: %d %v", status, body)
	}
	if got := sums(); got["assets/logo.png"] != sum(nil) || got["assets/big.txt"] != kept["assets/big.txt"] {
		t.Fatalf("after the explicit emptying: %v", got)
	}
}
