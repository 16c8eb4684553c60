package api_test

// Issue 21's bound on held connections: previews (pages and WebSockets),
// log followers and terminals, opened by the thousand from one client.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

// holdServerJS never answers /hold, drips /drip one byte every 300 ms for
// 2.4 s, upgrades any WebSocket and then says nothing, and answers the rest.
const holdServerJS = `
const http = require("http"), crypto = require("crypto");
const s = http.createServer((req, res) => {
  if (req.url === "/hold") return;
  if (req.url === "/drip") {
    let n = 0;
    res.writeHead(200, { "Content-Type": "text/plain" });
    const t = setInterval(() => { res.write("."); if (++n === 8) { clearInterval(t); res.end("done"); } }, 300);
    return;
  }
  res.end("ok");
});
s.on("upgrade", (req, sock) => {
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n");
  sock.on("error", () => {});
});
s.listen(3000, "127.0.0.1", () => console.log("listening"));
`

// startHoldServer creates a session running holdServerJS, and a background
// process that prints nothing, and returns that process's id.
func startHoldServer(t *testing.T, srv *httptest.Server, id string) (processID string) {
	t.Helper()
	atkCreate(t, srv, id)
	if status, res := atkCall(t, srv, "POST", "/api/playground/sync", map[string]any{"sessionId": id,
		"files": []any{fileNode("hold.js", holdServerJS)}}); status != 200 {
		t.Fatalf("sync: %d %v", status, res)
	}
	for _, cmd := range []string{"node /workspace/hold.js", "sleep 600"} {
		status, res := atkCall(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": cmd, "background": true})
		if status != 200 {
			t.Fatalf("background %q: %d %v", cmd, status, res)
		}
		if p, ok := res["process"].(map[string]any); ok {
			processID, _ = p["id"].(string)
		}
	}
	if processID == "" {
		t.Fatal("no process id for the background process")
	}
	waitStatus(t, srv.URL+"/p/"+id+"/", 200)
	return processID
}

// daemonState is what the in-process daemon holds.
type daemonState struct {
	goroutines, fds int
	rss             int64
}

func readDaemonState(t *testing.T) daemonState {
	t.Helper()
	return daemonState{goroutines: goruntime.NumGoroutine(), fds: countFDs(t), rss: runtimetest.VmRSS(t)}
}

// openHeld opens n connections to srv, each sending request, and sorts
// them into refused (a 429 came back, and the daemon closed the
// connection) and held (nothing came within a second and a half, or the
// head of a stream or a WebSocket that stays open). The held ones stay
// open until the test closes them.
func openHeld(t *testing.T, srv *httptest.Server, n int, request string) (held []net.Conn, refused int, other []string) {
	t.Helper()
	addr := strings.TrimPrefix(srv.URL, "http://")
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	type outcome struct {
		c       net.Conn
		held    bool
		refused bool
		other   string
	}
	results := make(chan outcome, n)
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err != nil && os.IsTimeout(err):
				results <- outcome{c: c, held: true}
			case err != nil:
				results <- outcome{c: c, other: err.Error()}
			case resp.StatusCode == http.StatusTooManyRequests:
				// The daemon closes a refused connection: it holds nothing of it.
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, _ = io.Copy(io.Discard, resp.Body)
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					results <- outcome{c: c, other: "a refused connection left open: " + fmt.Sprint(err)}
					return
				}
				results <- outcome{c: c, refused: true}
			case resp.StatusCode == http.StatusSwitchingProtocols,
				resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
				results <- outcome{c: c, held: true} // a WebSocket or an event stream: open by design
			default:
				results <- outcome{c: c, other: resp.Status}
			}
		}()
	}
	for range conns {
		o := <-results
		switch {
		case o.held:
			_ = o.c.SetReadDeadline(time.Time{})
			held = append(held, o.c)
			continue
		case o.refused:
			refused++
		default:
			other = append(other, o.other)
		}
		o.c.Close()
	}
	return held, refused, other
}

// apiLatency is the median and the slowest of 10 GET /healthz and GET
// container calls on fresh connections.
func apiLatency(t *testing.T, srv *httptest.Server, id string) (median, slowest time.Duration) {
	t.Helper()
	var ds []time.Duration
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 10 {
		path := "/healthz"
		if i%2 == 1 {
			path = "/api/playground/container?sessionId=" + id
		}
		start := time.Now()
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s while connections are held: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s while connections are held: %d", path, resp.StatusCode)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)-1]
}

// TestAttackHeldConnections: one client opens 2,000 of each kind of held
// connection (preview requests the server never answers, preview
// WebSockets, log followers of a silent process, terminals). Past the
// per-client cap each gets a 429 and is closed; the daemon's goroutines,
// descriptors and memory stay within what the cap allows, and the API
// answers meanwhile.
func TestAttackHeldConnections(t *testing.T) {
	const n, perClient = 2000, 256
	srv := atkServer(t, nil, func(o *api.Options) { o.MaxHeldPerClient = perClient; o.MaxHeldPerSession = 2 * perClient })
	id := atkID(t, "")
	pid := startHoldServer(t, srv, id)
	ws := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	kinds := []struct{ name, request string }{
		{"preview requests", "GET /p/" + id + "/hold HTTP/1.1\r\nHost: localhost\r\n\r\n"},
		{"preview WebSockets", "GET /p/" + id + "/ws HTTP/1.1\r\nHost: localhost\r\n" + ws + "\r\n"},
		{"log followers", "GET /api/playground/processes/logs?sessionId=" + id + "&id=" + pid + " HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"},
		{"terminals", "GET /api/playground/terminal?sessionId=" + id + " HTTP/1.1\r\nHost: localhost\r\n" + ws + "\r\n"},
	}
	goruntime.GC()
	base := readDaemonState(t)
	for _, k := range kinds {
		held, refused, other := openHeld(t, srv, n, k.request)
		during := readDaemonState(t)
		median, slowest := apiLatency(t, srv, id)
		// The test's own ends of the held connections are in this process too.
		daemonFDs := during.fds - len(held)
		t.Logf("%d %s from one client: %d held, %d refused; goroutines %d → %d, fds %d → %d (the daemon's), RSS %d → %d MiB; API median %v, slowest %v",
			n, k.name, len(held), refused, base.goroutines, during.goroutines, base.fds, daemonFDs, base.rss>>20, during.rss>>20, median, slowest)
		if len(other) > 0 {
			t.Errorf("%s: %d answers neither held nor 429, e.g. %q", k.name, len(other), other[0])
		}
		if len(held) > perClient {
			t.Errorf("%s: %d held, over the per-client cap %d", k.name, len(held), perClient)
		}
		if len(held)+refused != n-len(other) {
			t.Errorf("%s: %d held and %d refused of %d", k.name, len(held), refused, n)
		}
		if k.name != "terminals" && len(held) < perClient*9/10 {
			t.Errorf("%s: only %d held of a cap of %d: the test did not test", k.name, len(held), perClient)
		}
		// Per held connection: its handler and proxy goroutines (at most
		// 8) and descriptors (the client's and the server's side, at most 3).
		if g := during.goroutines - base.goroutines; g > 8*perClient+200 {
			t.Errorf("%s: %d more goroutines, over 8 per held connection", k.name, g)
		}
		if f := daemonFDs - base.fds; f > 3*perClient+100 {
			t.Errorf("%s: %d more descriptors, over 3 per held connection", k.name, f)
		}
		if r := during.rss - base.rss; r > 256<<20 {
			t.Errorf("%s: RSS grew by %d MiB", k.name, r>>20)
		}
		if median > 100*time.Millisecond {
			t.Errorf("%s: the API's median answer took %v while they were held (slowest %v)", k.name, median, slowest)
		}
		for _, c := range held {
			c.Close()
		}
		// Closed, they free their slots: the next kind starts from none.
		deadline := time.Now().Add(20 * time.Second)
		for {
			after := readDaemonState(t)
			if after.goroutines-base.goroutines < 100 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d goroutines 20 s after the clients closed (%d before)", k.name, after.goroutines, base.goroutines)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestPreviewIdleTimeout: a preview exchange on which nothing moves for
// --preview-idle-timeout is closed (a silent WebSocket), and one on which
// bytes keep moving outlives it (a page that drips for longer).
func TestPreviewIdleTimeout(t *testing.T) {
	const idle = time.Second
	srv := atkServer(t, nil, func(o *api.Options) { o.PreviewIdleTimeout = idle })
	id := atkID(t, "")
	startHoldServer(t, srv, id)

	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /p/%s/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", id)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = br.ReadByte()
	closedAfter := time.Since(start)
	t.Logf("a silent preview WebSocket was closed after %v (idle timeout %v): %v", closedAfter, idle, err)
	if err == nil || os.IsTimeout(err) || closedAfter < idle/2 || closedAfter > 5*idle {
		t.Errorf("silent WebSocket: read ended after %v with %v, want it closed about %v in", closedAfter, err, idle)
	}

	status, body, _ := get(t, srv.URL+"/p/"+id+"/drip")
	if status != 200 || body != "........done" {
		t.Errorf("a page dripping for 2.4 s through a 1 s idle timeout: %d %q", status, body)
	}
}
