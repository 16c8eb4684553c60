package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/api/apitest"
)

// TestStopARun: an execute and a streamed shell named with a runId are
// stopped by DELETE /run at once, answering stopped with what they printed;
// the stop of a run no longer in flight is 404, a runId in flight twice 409,
// a malformed one 400 before anything is written.
func TestStopARun(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	c, srv := serveSession(t, nil, "stop-runs")
	id := "stop-runs"
	stopAfter := func(runID string, d time.Duration) chan [2]any {
		got := make(chan [2]any, 1)
		go func() {
			time.Sleep(d)
			status, body := c.Call("DELETE", "/api/playground/run?sessionId="+id+"&runId="+runID, nil)
			got <- [2]any{status, body}
		}()
		return got
	}

	// A plain execute, stopped 1 s into a 30 s run; meanwhile its runId is taken.
	stopped := stopAfter("r1", time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(500 * time.Millisecond)
		if status, body := c.Call("POST", "/api/playground/execute", map[string]any{"sessionId": id, "runId": "r1", "code": "1"}); status != 409 {
			t.Errorf("a second run r1 while r1 runs: %d %v, want 409", status, body)
		}
	})
	start := time.Now()
	status, body := c.Call("POST", "/api/playground/execute", map[string]any{"sessionId": id, "runId": "r1", "timeoutMs": 30000,
		"code": "let i = 0; setInterval(() => console.log('tick', i++), 50)"})
	took := time.Since(start)
	wg.Wait()
	if status != 200 || body["stopped"] != true || body["success"] != false || body["timedOut"] != false ||
		!strings.Contains(body["output"].(string), "tick 0\n") || body["exitCode"] != float64(137) {
		t.Fatalf("stopped execute: %d %v", status, body)
	}
	if took > 5*time.Second {
		t.Fatalf("the stopped execute answered after %v", took)
	}
	if s := <-stopped; s[0] != 200 || s[1].(map[string]any)["stopped"] != true {
		t.Fatalf("DELETE /run: %v", s)
	}
	if status, body := c.Call("DELETE", "/api/playground/run?sessionId="+id+"&runId=r1", nil); status != 404 {
		t.Fatalf("stop of a run that ended: %d %v, want 404", status, body)
	}
	for _, bad := range []string{"", "a/b", strings.Repeat("x", 65)} {
		if status, body := c.Call("DELETE", "/api/playground/run?sessionId="+id+"&runId="+bad, nil); status != 400 {
			t.Fatalf("stop of runId %q: %d %v, want 400", bad, status, body)
		}
	}
	if status, body := c.Call("POST", "/api/playground/execute", map[string]any{"sessionId": id, "runId": "no spaces", "code": "1", "filename": "never.js"}); status != 400 {
		t.Fatalf("execute with a bad runId: %d %v, want 400", status, body)
	}
	if _, body := c.Call("GET", "/api/playground/files?sessionId="+id, nil); strings.Contains(toJSON(body), "never.js") {
		t.Fatal("an execute refused for its runId wrote its file")
	}

	// A streamed shell: output comes, the stop ends the stream with its exit event.
	stopped = stopAfter("s1", time.Second)
	data, _ := json.Marshal(map[string]any{"sessionId": id, "runId": "s1", "timeoutMs": 30000, "command": "while true; do echo line; sleep 0.1; done"})
	req, _ := http.NewRequest("POST", srv.URL+"/api/playground/shell", bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		events.WriteString(sc.Text() + "\n")
	}
	if s := <-stopped; s[0] != 200 {
		t.Fatalf("DELETE /run of the stream: %v", s)
	}
	if !strings.Contains(events.String(), "line") || !strings.Contains(events.String(), "event: exit") || !strings.Contains(events.String(), `"stopped":true`) {
		t.Fatalf("the stopped stream:\n%s", events.String())
	}
	// The session works on.
	if status, body := c.Call("POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "console.log('after')"}); status != 200 || body["output"] != "after\n" {
		t.Fatalf("execute after the stops: %d %v", status, body)
	}
}

// TestStdinOfARun: a run started with stdinOpen reads what POST /run/stdin
// sends while it runs, sees EOF on eof, and past --stdin-buffer bytes its
// program has not read the sender gets a 429; a run without stdinOpen, one
// not in flight, and stdinOpen without a runId are refused.
func TestStdinOfARun(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	c, _ := serveSession(t, nil, "stdin-runs")
	id := "stdin-runs"
	send := func(runID, data string, eof bool) (int, map[string]any) {
		return c.Call("POST", "/api/playground/run/stdin", map[string]any{"sessionId": id, "runId": runID, "data": data, "eof": eof})
	}
	// A question and its answers, typed while the program runs.
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, line := range []string{"ann\n", "bye\n"} {
			for {
				time.Sleep(200 * time.Millisecond)
				status, body := send("q1", line, false)
				if status == 200 {
					break
				}
				if status != 404 { // 404: not started yet
					t.Errorf("stdin %q: %d %v", line, status, body)
					return
				}
			}
		}
	})
	status, body := c.Call("POST", "/api/playground/execute", map[string]any{"sessionId": id, "runId": "q1", "stdinOpen": true, "timeoutMs": 20000,
		"code": `const rl = require("readline").createInterface({ input: process.stdin });
console.log("name?");
rl.on("line", (l) => { console.log("hi " + l); if (l === "bye") { rl.close(); process.stdin.destroy(); } });`})
	wg.Wait()
	if status != 200 || body["output"] != "name?\nhi ann\nhi bye\n" || body["exitCode"] != float64(0) {
		t.Fatalf("interactive execute: %d %v", status, body)
	}
	// eof: cat ends.
	wg.Go(func() {
		time.Sleep(500 * time.Millisecond)
		if status, body := send("cat1", "typed\n", true); status != 200 || body["eof"] != true {
			t.Errorf("stdin with eof: %d %v", status, body)
		}
	})
	status, body = c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "runId": "cat1", "stdinOpen": true, "stdin": "given\n", "command": "cat", "timeoutMs": 20000})
	wg.Wait()
	if status != 200 || body["output"] != "given\ntyped\n" || body["exitCode"] != float64(0) {
		t.Fatalf("cat with stdin sent and closed: %d %v", status, body)
	}
	// A program that reads nothing: the buffer fills, then 429.
	chunk := strings.Repeat("x", 400<<10)
	var statuses []int
	wg.Go(func() {
		time.Sleep(500 * time.Millisecond)
		for range 3 {
			status, _ := send("idle1", chunk, false)
			statuses = append(statuses, status)
		}
		c.Call("DELETE", "/api/playground/run?sessionId="+id+"&runId=idle1", nil)
	})
	status, body = c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "runId": "idle1", "stdinOpen": true, "command": "sleep 20", "timeoutMs": 20000})
	wg.Wait()
	if status != 200 || body["stopped"] != true || len(statuses) != 3 || statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 429 {
		t.Fatalf("stdin sends to a program that reads none: %v (want 200 200 429); the run: %d %v", statuses, status, body)
	}
	// Refusals.
	if status, body := send("nothing", "x", false); status != 404 {
		t.Fatalf("stdin to no run: %d %v, want 404", status, body)
	}
	wg.Go(func() {
		time.Sleep(500 * time.Millisecond)
		if status, body := send("closed1", "x", false); status != 409 {
			t.Errorf("stdin to a run without stdinOpen: %d %v, want 409", status, body)
		}
	})
	c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "runId": "closed1", "command": "sleep 1"})
	wg.Wait()
	if status, body := c.Call("POST", "/api/playground/shell", map[string]any{"sessionId": id, "stdinOpen": true, "command": "cat"}); status != 400 {
		t.Fatalf("stdinOpen without a runId: %d %v, want 400", status, body)
	}
}

// serveSession serves the API over a real runtime (npm's registry at
// upstream; nil: none) and creates the js session id in it.
func serveSession(t *testing.T, upstream *url.URL, id string) (*apitest.Client, *httptest.Server) {
	t.Helper()
	m := startManager(t, upstream, nil)
	srv := httptest.NewServer(api.NewRouter(m, api.DefaultOptions()))
	t.Cleanup(srv.Close)
	c := client(t, srv)
	if status, body := c.Call("POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"}); status != 201 {
		t.Fatalf("create %s: %d %v", id, status, body)
	}
	return c, srv
}

func toJSON(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

// TestStopAnInstall: an install named with a runId, waiting on a registry
// that never answers, is stopped by DELETE /run: a 200 with stopped and
// success false, long before its timeout.
func TestStopAnInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	hang := make(chan struct{})
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(registry.Close)
	t.Cleanup(func() { close(hang) })
	upstream, _ := url.Parse(registry.URL)
	c, _ := serveSession(t, upstream, "stop-install")
	id := "stop-install"
	stopped := make(chan int, 1)
	go func() {
		time.Sleep(2 * time.Second)
		status, _ := c.Call("DELETE", "/api/playground/run?sessionId="+id+"&runId=i1", nil)
		stopped <- status
	}()
	start := time.Now()
	status, body := c.Call("POST", "/api/playground/install", map[string]any{"sessionId": id, "runId": "i1", "packages": []string{"never-answered"}, "timeoutMs": 60000})
	took := time.Since(start)
	if s := <-stopped; s != 200 {
		t.Fatalf("DELETE /run of the install: %d", s)
	}
	if status != 200 || body["stopped"] != true || body["success"] != false || took > 15*time.Second {
		t.Fatalf("stopped install after %v: %d %v", took, status, body)
	}
}
