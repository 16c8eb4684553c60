package api_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

// TestLanguageServerDiagnostics: GET /api/playground/lsp starts the
// TypeScript language server in the session for the socket, which answers
// initialize and publishes the type error of an opened document; before the
// socket, and after it closes, no language server runs in the session.
func TestLanguageServerDiagnostics(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	m := startManager(t, nil, nil)
	if !m.HasToolchain() {
		runtimetest.Unavailable(t, "no TypeScript toolchain (SERVCRAFT_TEST_TOOLCHAIN, scripts/build-toolchain.sh)")
	}
	opt := api.DefaultOptions()
	opt.TypeScript = true
	srv := httptest.NewServer(api.NewRouter(m, opt))
	t.Cleanup(srv.Close)
	c := client(t, srv)
	id := "lsp-session"
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "ts"}); status != 201 {
		t.Fatalf("create: %d %v", status, body)
	}
	servers := func() string {
		_, body := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "ps -o args | grep [t]ypescript-language-server || true"})
		return body["output"].(string)
	}
	if got := servers(); got != "" {
		t.Fatalf("a language server runs before any socket asked for one: %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/api/playground/lsp?sessionId="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(8 << 20)
	send := func(msg string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	type message struct {
		ID     *int            `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Params struct {
			URI         string `json:"uri"`
			Diagnostics []struct {
				Code    any    `json:"code"`
				Message string `json:"message"`
			} `json:"diagnostics"`
		} `json:"params"`
	}
	until := func(what string, done func(message) bool) {
		t.Helper()
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			var m message
			if json.Unmarshal(data, &m) == nil && done(m) {
				return
			}
		}
	}
	start := time.Now()
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":null,"rootUri":"file:///workspace","capabilities":{"textDocument":{"publishDiagnostics":{}}}}}`)
	until("the answer to initialize", func(m message) bool {
		return m.ID != nil && *m.ID == 1 && strings.Contains(string(m.Result), "capabilities")
	})
	t.Logf("initialize answered %v after the socket opened", time.Since(start))
	send(`{"jsonrpc":"2.0","method":"initialized","params":{}}`)
	send(`{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"file:///workspace/src/bad.ts","languageId":"typescript","version":1,"text":"const n: number = \"x\";\nexport {};\n"}}}`)
	var diagnostic string
	until("the type error's diagnostic", func(m message) bool {
		if m.Method != "textDocument/publishDiagnostics" || !strings.HasSuffix(m.Params.URI, "/src/bad.ts") {
			return false
		}
		for _, d := range m.Params.Diagnostics {
			if d.Code == float64(2322) {
				diagnostic = d.Message
				return true
			}
		}
		return false
	})
	t.Logf("diagnostic %q %v after the socket opened", diagnostic, time.Since(start))
	if !strings.Contains(diagnostic, "not assignable to type 'number'") {
		t.Fatalf("diagnostic %q", diagnostic)
	}
	if got := servers(); got == "" {
		t.Fatal("no language server in the session while its socket is open")
	}
	ws.Close(websocket.StatusNormalClosure, "done")
	deadline := time.Now().Add(10 * time.Second)
	for servers() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the language server still runs 10 s after its socket closed: %q", servers())
		}
		time.Sleep(200 * time.Millisecond) // polling the session's processes
	}
}
