package api_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// TestForkOnTheBtrfsPool: a session forked from another starts with a
// copy of its workspace (installed packages included) taken while the
// source is being written, then the two go their own ways; a fork of a
// missing session is 404 and of itself 400.
func TestForkOnTheBtrfsPool(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.btrfs missing (scripts/deps.sh installs btrfs-progs)")
		}
		t.Skip("mkfs.btrfs missing (apt-get install btrfs-progs)")
	}
	m := startManagerOn(t, nil, nil, func(state string) []workspace.Option {
		return []workspace.Option{workspace.WithPool(filepath.Join(state, "pool.btrfs"), 1<<30, 64<<20)}
	})
	opt := api.DefaultOptions()
	opt.TypeScript = m.HasToolchain()
	srv := httptest.NewServer(api.NewRouter(m, opt))
	t.Cleanup(srv.Close)
	c := client(t, srv)
	src, dst := "fork-src", "fork-dst"
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": src, "projectType": "js"}); status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	if status, body := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": src,
		"files": []map[string]any{{"name": "keep.txt", "type": "file", "content": "before the fork"}}}); status != 200 {
		t.Fatalf("sync: %d %v", status, body)
	}
	// The source keeps writing while it is forked.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	writes := 0
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if status, _ := c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": src,
				"files": []map[string]any{{"name": fmt.Sprintf("w%d.txt", i%20), "type": "file", "content": strings.Repeat("x", 1000)}}}); status == 200 {
				writes++
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": dst, "from": src})
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if status != 201 || body["projectType"] != "js" {
		t.Fatalf("fork: %d %v", status, body)
	}
	t.Logf("fork answered in %v; %d writes to the source went on meanwhile", took, writes)
	if writes == 0 {
		t.Fatal("no write to the source while it was forked")
	}
	status, run := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": dst, "command": "cat keep.txt; echo; test -f w0.txt && echo w"})
	if status != 200 || run["output"] != "before the fork\nw\n" {
		t.Fatalf("fork's workspace: %d %v", status, run)
	}
	// Each goes its own way.
	c.Call("POST", "/api/playground/sync", map[string]any{"sessionId": dst, "files": []map[string]any{{"name": "keep.txt", "type": "file", "content": "fork's"}}})
	if _, run := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": src, "command": "cat keep.txt"}); run["output"] != "before the fork" {
		t.Fatalf("the source after a write to the fork: %v", run)
	}
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": "fork-none", "from": "no-such-session"}); status != 404 {
		t.Fatalf("fork of a missing session: %d %v", status, body)
	}
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": "fork-self", "from": "fork-self"}); status != 400 {
		t.Fatalf("fork into itself: %d %v", status, body)
	}
	if status, body := c.Call("GET", "/api/playground/container?sessionId=fork-none", nil); status != 404 {
		t.Fatalf("a failed fork left a session: %d %v", status, body)
	}
}
