package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/api/apitest"
)

// seedPreviewBound is how long after the create the starter's "/" must answer
// through the short preview address. It includes an npm install of the
// starter's dependencies from the registry through the daemon's proxy.
const seedPreviewBound = 120 * time.Second

// seedSessionID makes an id the way the seed page does:
// `session-${Date.now()}-${Math.random().toString(36).slice(2)}`.
func seedSessionID() string {
	random := strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
	return fmt.Sprintf("session-%d-%s", time.Now().UnixMilli(), random[:11])
}

// seedNode is the seed page's tree node, built from the flat listing: it
// keeps content only when the listing gave one (a JavaScript undefined is
// left out of the JSON), and echoes the other fields it holds.
type seedNode struct {
	Name     string      `json:"name"`
	Type     string      `json:"type"`
	Content  *string     `json:"content,omitempty"`
	Language string      `json:"language,omitempty"`
	Path     string      `json:"path"`
	Binary   bool        `json:"binary"`
	Size     int64       `json:"size"`
	Expanded bool        `json:"expanded"`
	Children []*seedNode `json:"children,omitempty"`
}

type listedFile struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Path     string  `json:"path"`
	Content  *string `json:"content"`
	Language string  `json:"language"`
	Size     int64   `json:"size"`
	Binary   bool    `json:"binary"`
}

// seedTree nests the flat list (parents come before their children).
func seedTree(files []listedFile) []*seedNode {
	var roots []*seedNode
	byPath := map[string]*seedNode{}
	for _, f := range files {
		n := &seedNode{Name: f.Name, Type: f.Type, Content: f.Content, Language: f.Language, Path: f.Path, Binary: f.Binary, Size: f.Size}
		byPath[f.Path] = n
		if parent := byPath[path.Dir(f.Path)]; parent != nil {
			parent.Children = append(parent.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	return roots
}

// previewPage fetches a preview address and returns its status and body.
func previewPage(t *testing.T, c *apitest.Client, target string) (int, string) {
	t.Helper()
	status, _, body := c.Do("GET", target, nil)
	return status, string(body)
}

// TestSeedPageFlow replays the seed page's calls: create, the short preview
// id it builds, getFiles → edit → sync back of the whole tree (a binary file
// included), Run of `npm start`, and the preview answering the starter's "/".
func TestSeedPageFlow(t *testing.T) {
	srv := newServer(t)
	c := client(t, srv)
	id := seedSessionID()
	short := id[strings.LastIndex(id, "-")+1:]
	created := time.Now()
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}

	// The page opens `${origin}/p/${sessionId.split('-').pop()}`: it reaches the
	// session (nothing listens yet), under both preview paths.
	for _, target := range []string{"/p/" + short + "/", "/api/playground/preview/" + short} {
		if status, body := previewPage(t, c, target); status != http.StatusServiceUnavailable || !strings.Contains(body, "Service not ready") {
			t.Fatalf("GET %s before the server runs: %d %s", target, status, body)
		}
	}

	// A binary file in the project (as a user's upload would be).
	logo := []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0xff, 0xfe}
	logoB64 := base64.StdEncoding.EncodeToString(logo)
	if status, body := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": []any{
		map[string]any{"name": "public", "type": "folder", "children": []any{
			map[string]any{"name": "logo.png", "type": "file", "encoding": "base64", "content": logoB64}}}}}); status != 200 {
		t.Fatalf("upload the binary: %d %v", status, body)
	}

	// getFiles: the binary is listed without content.
	status, _, raw := c.Do("GET", "/api/playground/container?sessionId="+id+"&action=getFiles", nil)
	var listing struct {
		Files []map[string]json.RawMessage `json:"files"`
	}
	if err := json.Unmarshal(raw, &listing); status != 200 || err != nil {
		t.Fatalf("getFiles: %d %v %s", status, err, raw)
	}
	var files []listedFile
	for _, f := range listing.Files {
		var lf listedFile
		b, _ := json.Marshal(f)
		if err := json.Unmarshal(b, &lf); err != nil {
			t.Fatal(err)
		}
		_, hasContent := f["content"]
		if lf.Path == "public/logo.png" && (hasContent || !lf.Binary || lf.Size != int64(len(logo))) {
			t.Fatalf("the binary is listed as %s", b)
		}
		files = append(files, lf)
	}

	// The user edits src/app.js; the page syncs its whole tree back.
	tree := seedTree(files)
	edited := false
	for _, f := range files {
		if f.Path == "src/app.js" && f.Content != nil {
			edited = true
		}
	}
	if !edited {
		t.Fatalf("src/app.js not listed with its content: %+v", files)
	}
	var edit func([]*seedNode)
	edit = func(nodes []*seedNode) {
		for _, n := range nodes {
			if n.Path == "src/app.js" {
				s := strings.Replace(*n.Content, `{ hello: "world" }`, `{ hello: "round trip" }`, 1)
				n.Content = &s
			}
			edit(n.Children)
		}
	}
	edit(tree)
	status, synced := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": tree})
	if status != 200 || synced["success"] != true || synced["kept"] != 1.0 {
		t.Fatalf("sync back: %d %v", status, synced)
	}
	// A replacing sync of the same tree keeps it too.
	status, synced = c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": id, "files": tree, "mode": "replace"})
	if status != 200 || synced["deleted"] != 0.0 || synced["kept"] != 1.0 {
		t.Fatalf("replacing sync back: %d %v", status, synced)
	}
	status, sh := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": `node -e "process.stdout.write(require('fs').readFileSync('public/logo.png').toString('base64'))"`})
	if status != 200 || sh["output"] != logoB64 {
		t.Fatalf("the binary after the round trip: %d %v, want %s", status, sh, logoB64)
	}

	// Run: the starter's dependencies may not be in node_modules at create
	// yet, so install them through /install first, then `npm start` in the
	// background, as the page's Run does.
	status, inst := c.Call("POST", "/api/playground/install", map[string]any{"sessionId": id, "packages": []string{}})
	if status != 200 || inst["success"] != true {
		t.Fatalf("install: %d %v", status, inst)
	}
	if status, started := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "npm start", "background": true}); status != 200 || started["success"] != true {
		t.Fatalf("npm start: %d %v", status, started)
	}
	var body string
	for {
		status, body = previewPage(t, c, "/p/"+short+"/")
		if status == 200 {
			break
		}
		if status != http.StatusServiceUnavailable || time.Since(created) > seedPreviewBound {
			t.Fatalf("GET /p/%s/ %v after the create: %d %s", short, time.Since(created), status, body)
		}
		time.Sleep(100 * time.Millisecond) // the starter is still starting: poll, as the page's refresh does
	}
	t.Logf("the starter's / answered through /p/%s/ %v after the create (install took %v ms)", short, time.Since(created).Round(time.Millisecond), inst["durationMs"])
	if body != `{"hello":"round trip"}` {
		t.Fatalf("the starter's / = %s: the edit did not arrive", body)
	}
	if status, body := previewPage(t, c, "/api/playground/preview/"+short+"/"); status != 200 || body != `{"hello":"round trip"}` {
		t.Fatalf("the API preview path by short id: %d %s", status, body)
	}

	// A second live session ending the same way makes the short id ambiguous;
	// the full ids still work; when it goes, the short id is this one's again.
	other := "session-1-" + short
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": other, "projectType": "js"}); status != 201 {
		t.Fatalf("create %s: %d %v", other, status, body)
	}
	if status, body := previewPage(t, c, "/p/"+short+"/"); status != 404 || !strings.Contains(body, "Ambiguous preview address") {
		t.Fatalf("ambiguous short id: %d %s", status, body)
	}
	if status, body := previewPage(t, c, "/p/"+id+"/"); status != 200 || body != `{"hello":"round trip"}` {
		t.Fatalf("full id while the short one is ambiguous: %d %s", status, body)
	}
	if status, _ := c.Call("DELETE", "/api/playground/container?sessionId="+other, nil); status != 200 {
		t.Fatalf("destroy %s: %d", other, status)
	}
	if status, body := previewPage(t, c, "/p/"+short+"/"); status != 200 || body != `{"hello":"round trip"}` {
		t.Fatalf("short id after the other went: %d %s", status, body)
	}

	// Destroyed: the short id names nothing.
	if status, _ := c.Call("DELETE", "/api/playground/container?sessionId="+id, nil); status != 200 {
		t.Fatalf("destroy: %d", status)
	}
	if status, body := previewPage(t, c, "/p/"+short+"/"); status != 404 || !strings.Contains(body, "No such session") {
		t.Fatalf("short id after destroy: %d %s", status, body)
	}
}
