package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// send runs one request through h and returns the recorder.
func send(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := newRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(closeNotifier{rec}, req)
	return rec
}

// closeNotifier lets httputil.ReverseProxy (the previews) run on a recorder.
type closeNotifier struct{ *httptest.ResponseRecorder }

func (closeNotifier) CloseNotify() <-chan bool { return make(chan bool) }

func jsonBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("body is not JSON: %q", rec.Body.String())
	}
	return out
}

// captureLogs sends the default logger's JSON lines to a buffer for the test.
func captureLogs(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// sessionEngine is a router with the request middleware and handlers that,
// like the real ones, decode the body and name the session with setSession.
// block, when not nil, holds each run until it is closed.
func sessionEngine(opt Options, block chan struct{}, entered chan<- string) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	m := newMetrics(nil, nil)
	lim := newLimits(opt, m.rateLimited)
	r.Use(observe(m), errorMiddleware)
	a := access{opt: opt, lim: lim, cluster: newCluster(ClusterOptions{}, new(atomic.Bool), nil).middleware}
	run := func(c *gin.Context) {
		var req sessionRequest
		if err := decode(c, &req); err != nil {
			fail(c, err)
			return
		}
		if !setSession(c, req.SessionID) {
			return
		}
		if entered != nil {
			entered <- req.SessionID
		}
		if block != nil {
			<-block
		}
		c.JSON(http.StatusOK, gin.H{"success": true})
	}
	for p, class := range map[string]routeClass{"/api/playground/execute": classRun, "/api/playground/shell": classRun,
		"/api/playground/install": classInstall, "/api/playground/sync": classAPI} {
		r.POST(p, append(a.chain(class), run)...)
	}
	r.GET("/metrics", gin.WrapH(m.handler()))
	return r
}

func TestRequestIDIsEchoedOrMadeUp(t *testing.T) {
	h := NewRouter(&fakeSessions{}, DefaultOptions())
	if got := send(h, "GET", "/healthz", "", "X-Request-ID", "abc.DEF_123-x").Header().Get("X-Request-ID"); got != "abc.DEF_123-x" {
		t.Errorf("valid client ID not echoed: %q", got)
	}
	for _, bad := range []string{"", "has space", "semi;colon", strings.Repeat("a", 65), "é"} {
		got := send(h, "GET", "/healthz", "", "X-Request-ID", bad).Header().Get("X-Request-ID")
		if got == bad || !validRequestID(got) || len(got) != 24 {
			t.Errorf("client ID %q: answered %q, want a fresh one", bad, got)
		}
	}
	a := send(h, "GET", "/healthz", "").Header().Get("X-Request-ID")
	b := send(h, "GET", "/healthz", "").Header().Get("X-Request-ID")
	if a == b {
		t.Errorf("two requests got the same ID %q", a)
	}
}

func TestOneLogLinePerRequestWithoutBodies(t *testing.T) {
	buf := captureLogs(t)
	h := NewRouter(&fakeSessions{}, DefaultOptions())
	send(h, "GET", "/api/playground/container?sessionId=sess-1", "", "X-Request-ID", "req-1")
	send(h, "POST", "/api/playground/execute", `{"sessionId":"sess-2","code":"console.log('TOP-SECRET-CODE')"}`)
	send(h, "POST", "/api/playground/sync", `{"sessionId":"sess-3","files":[{"name":"a.js","type":"file","content":"FILE-CONTENTS"}]}`)
	send(h, "GET", "/no/such/path", "")
	send(h, "GET", "/api/playground/container?sessionId=bad%20id", "")
	lines := logLines(t, buf)
	if len(lines) != 5 {
		t.Fatalf("%d request lines, want 5:\n%s", len(lines), buf)
	}
	first := lines[0]
	for k, want := range map[string]any{"requestId": "req-1", "method": "GET", "route": "/api/playground/container",
		"status": float64(404), "sessionId": "sess-1", "client": "192.0.2.1"} {
		if first[k] != want {
			t.Errorf("log field %s = %v, want %v (%v)", k, first[k], want, first)
		}
	}
	if _, ok := first["durationMs"].(float64); !ok {
		t.Errorf("no durationMs: %v", first)
	}
	if lines[1]["route"] != "/api/playground/execute" || lines[1]["status"] != float64(200) {
		t.Errorf("execute line: %v", lines[1])
	}
	if lines[3]["route"] != "" || lines[3]["path"] != "/no/such/path" || lines[3]["status"] != float64(404) {
		t.Errorf("unmatched line: %v", lines[3])
	}
	if _, ok := lines[4]["sessionId"]; ok {
		t.Errorf("an invalid sessionId was logged: %v", lines[4])
	}
	for _, secret := range []string{"TOP-SECRET-CODE", "FILE-CONTENTS"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log holds request body content %q:\n%s", secret, buf)
		}
	}
}

func TestSetSessionNamesTheSessionInTheLog(t *testing.T) {
	buf := captureLogs(t)
	h := sessionEngine(Options{}, nil, nil)
	if rec := send(h, "POST", "/api/playground/sync", `{"sessionId":"from-body"}`); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	lines := logLines(t, buf)
	if len(lines) != 1 || lines[0]["sessionId"] != "from-body" {
		t.Fatalf("lines %v", lines)
	}
}

const testToken = "s3cret-token-of-enough-length"

func TestAPITokenGuardsAPIAndMetrics(t *testing.T) {
	opt := DefaultOptions()
	opt.APIToken = testToken
	h := NewRouter(&fakeSessions{}, opt)
	bearer := "Bearer " + testToken
	for _, tc := range []struct {
		name, method, target, auth string
		status                     int
	}{
		{"api without token", "GET", "/api/playground/container?sessionId=a", "", 401},
		{"api wrong token", "GET", "/api/playground/container?sessionId=a", "Bearer nope", 401},
		{"api token prefix", "GET", "/api/playground/container?sessionId=a", bearer[:len(bearer)-1], 401},
		{"api basic scheme", "GET", "/api/playground/container?sessionId=a", "Basic " + testToken, 401},
		{"api right token", "GET", "/api/playground/container?sessionId=a", bearer, 404},
		{"api scheme any case", "GET", "/api/playground/container?sessionId=a", "bearer " + testToken, 404},
		{"unknown api route", "GET", "/api/nope", "", 401},
		{"execute without token", "POST", "/api/playground/execute", "", 401},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with token", "GET", "/metrics", bearer, 200},
		{"preview without token", "GET", "/api/playground/preview/a/", "", 401},
		{"short preview without token", "GET", "/p/a/index.html", "", 401},
		{"short preview with token", "GET", "/p/a/index.html", bearer, 404},
		{"healthz open", "GET", "/healthz", "", 200},
		{"readyz open", "GET", "/readyz", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := send(h, tc.method, tc.target, `{"sessionId":"a","code":"1"}`, "Authorization", tc.auth)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != 401 {
				return
			}
			body := jsonBody(t, rec)
			if body["success"] != false || body["code"] != "unauthorized" || body["error"] == "" {
				t.Errorf("body %v", body)
			}
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
	opt.PreviewPublic = true
	h = NewRouter(&fakeSessions{}, opt)
	for _, target := range []string{"/p/a/", "/api/playground/preview/a/x"} {
		if rec := send(h, "GET", target, ""); rec.Code != http.StatusNotFound { // the fake has no sessions
			t.Errorf("public preview %s: %d", target, rec.Code)
		}
	}
	if rec := send(h, "GET", "/api/playground/container?sessionId=a", ""); rec.Code != 401 {
		t.Errorf("--preview-public opened the API: %d", rec.Code)
	}
}

func TestCORS(t *testing.T) {
	const app = "https://app.example.com"
	opt := DefaultOptions()
	opt.CORSOrigins = []string{app, "http://localhost:3000"}
	opt.APIToken = testToken
	h := NewRouter(&fakeSessions{}, opt)

	rec := send(h, "GET", "/api/playground/container?sessionId=a", "", "Origin", app, "Authorization", "Bearer "+testToken)
	if rec.Header().Get("Access-Control-Allow-Origin") != app || !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "X-Request-ID") {
		t.Errorf("allowed origin: headers %v", rec.Header())
	}
	rec = send(h, "GET", "/api/playground/container?sessionId=a", "", "Origin", app)
	if rec.Code != 401 || rec.Header().Get("Access-Control-Allow-Origin") != app {
		t.Errorf("a 401 must carry CORS headers, or the page cannot read it: %d %v", rec.Code, rec.Header())
	}
	rec = send(h, "GET", "/api/playground/container?sessionId=a", "", "Origin", "https://evil.example.com", "Authorization", "Bearer "+testToken)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin got CORS headers: %v", rec.Header())
	}

	// Preflights need no token and are answered here.
	rec = send(h, "OPTIONS", "/api/playground/execute", "", "Origin", app, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type")
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("preflight: %d %v", rec.Code, rec.Header())
	}
	rec = send(h, "OPTIONS", "/api/playground/execute", "", "Origin", "https://evil.example.com", "Access-Control-Request-Method", "POST")
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight of another origin: %d %v", rec.Code, rec.Header())
	}
	// Previews are the session's own answers: no API CORS headers there.
	rec = send(h, "GET", "/api/playground/preview/a/", "", "Origin", app, "Authorization", "Bearer "+testToken)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preview got API CORS headers: %v", rec.Header())
	}

	// "*" allows any origin, but never together with a token.
	opt.CORSOrigins = []string{"*"}
	opt.APIToken = ""
	rec = send(NewRouter(&fakeSessions{}, opt), "GET", "/healthz", "", "Origin", "https://x.example")
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS outside /api: %v", rec.Header())
	}
	rec = send(NewRouter(&fakeSessions{}, opt), "GET", "/api/playground/container?sessionId=a", "", "Origin", "https://x.example")
	if rec.Header().Get("Access-Control-Allow-Origin") != "https://x.example" {
		t.Errorf("* without token: %v", rec.Header())
	}
	opt.APIToken = testToken
	rec = send(NewRouter(&fakeSessions{}, opt), "GET", "/api/playground/container?sessionId=a", "", "Origin", "https://x.example")
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("* with a token must allow nothing: %v", rec.Header())
	}
}

func TestWSOriginPatterns(t *testing.T) {
	got := wsOriginPatterns([]string{"https://app.example.com/", "http://[::1]:3000", "*"})
	want := []string{"https://app.example.com", `http://\[::1\]:3000`, "*"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%q, want %q", got, want)
	}
}

func TestDeepJSONIsRefusedEarly(t *testing.T) {
	h := NewRouter(&fakeSessions{}, DefaultOptions())
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	start := time.Now()
	for _, body := range []string{
		`{"sessionId":"a","code":` + deep + `}`,
		`{"sessionId":"a","x":` + strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000) + `}`,
		strings.Repeat("[", 10000), // malformed too: depth is found first
	} {
		rec := send(h, "POST", "/api/playground/execute", body)
		b := jsonBody(t, rec)
		if rec.Code != 400 || b["code"] != "invalid_argument" || !strings.Contains(b["error"].(string), "nested deeper than 64") {
			t.Errorf("deep body: %d %v", rec.Code, b)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing deep JSON took %v", d)
	}
	// Brackets inside strings (code) are not nesting.
	rec := send(h, "POST", "/api/playground/execute", `{"sessionId":"a","code":"`+strings.Repeat("[{", 5000)+`\"\\"}`)
	if rec.Code != 200 {
		t.Errorf("brackets in a string: %d %s", rec.Code, rec.Body)
	}
	// 64 levels pass.
	ok := `{"sessionId":"a","x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`
	if rec := send(h, "POST", "/api/playground/execute", ok); rec.Code != 200 {
		t.Errorf("64 levels: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h, "POST", "/api/playground/execute", `{"sessionId":"a","x":`+strings.Repeat("[", 64)+strings.Repeat("]", 64)+`}`); rec.Code != 400 {
		t.Errorf("65 levels: %d %s", rec.Code, rec.Body)
	}
}

func TestDeepestSyncTreeFitsTheJSONDepth(t *testing.T) {
	for _, depth := range []int{16, 64} {
		opt := DefaultOptions()
		opt.PathLimits.MaxDepth = depth
		opt.SyncLimits.Path.MaxDepth = depth
		tree := `{"name":"f.js","type":"file","content":"1"}`
		for range depth - 1 {
			tree = `{"name":"d","type":"folder","children":[` + tree + `]}`
		}
		rec := send(NewRouter(&fakeSessions{}, opt), "POST", "/api/playground/sync", `{"sessionId":"a","files":[`+tree+`]}`)
		if rec.Code != 200 {
			t.Errorf("path depth %d: %d %s", depth, rec.Code, rec.Body)
		}
	}
}

// newRequest is httptest.NewRequest as a JSON client sends it: addressed to
// localhost, a Host the daemon answers by default (httptest's example.com
// is not), with Content-Type: application/json when there is a body.
func newRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "localhost"
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}
