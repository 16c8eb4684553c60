package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// readUntil reads terminal output until it contains want.
func readUntil(t *testing.T, ctx context.Context, ws *websocket.Conn, want string) string {
	t.Helper()
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %q, got %q: %v", want, got.String(), err)
		}
		if typ == websocket.MessageBinary {
			got.Write(data)
		}
	}
	return got.String()
}

func TestTerminalRoundTrip(t *testing.T) {
	srv := newServer(t)
	id := "tty-" + t.Name()
	if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatal("create failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/playground/terminal?sessionId=" + id + "&cols=80&rows=24"
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	send := func(s string) {
		if err := ws.Write(ctx, websocket.MessageBinary, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send("echo hi-$((40+2)) $(id -u) $PWD\n")
	readUntil(t, ctx, ws, "hi-42 1000 /workspace")
	// The shell's terminal is its user's (the gate handed it over), so a
	// program can open it by name; and the shell has no capability left.
	send("echo tty-$(stat -c %u $(tty))-$(grep CapBnd /proc/self/status | tr -d '\\t')\n")
	readUntil(t, ctx, ws, "tty-1000-CapBnd:0000000000000000")
	resize, _ := json.Marshal(map[string]any{"type": "resize", "cols": 100, "rows": 40})
	if err := ws.Write(ctx, websocket.MessageText, resize); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // resize is asynchronous to the shell
	send("stty size\n")
	readUntil(t, ctx, ws, "40 100")
	// A child left running dies with the terminal.
	send("sleep 777 &\n")
	send("exit 3\n")
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("no exit message: %v", err)
		}
		if typ == websocket.MessageText {
			var msg struct {
				Type     string `json:"type"`
				ExitCode int    `json:"exitCode"`
			}
			json.Unmarshal(data, &msg)
			if msg.Type != "exit" || msg.ExitCode != 3 {
				t.Fatalf("exit message %s", data)
			}
			break
		}
	}
	_, ps := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"})
	if strings.Contains(ps["output"].(string), "sleep 777") {
		t.Fatalf("the terminal's child survives:\n%s", ps["output"])
	}

	// Closing the socket (not exiting) ends the shell too.
	ws2, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws2.Write(ctx, websocket.MessageBinary, []byte("sleep 888\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	ws2.Close(websocket.StatusNormalClosure, "bye")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ps = call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
			"command": "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"})
		if !strings.Contains(ps["output"].(string), "sleep 888") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closing the socket left the shell's child:\n%s", ps["output"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
