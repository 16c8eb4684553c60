package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// from sends one request as the client at ip.
func from(h http.Handler, ip, method, target, body string) *httptest.ResponseRecorder {
	req := newRequest(method, target, strings.NewReader(body))
	req.RemoteAddr = ip + ":40000"
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// assertLimited checks a 429 answer: code rate_limited and a Retry-After in whole seconds.
func assertLimited(t *testing.T, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429: %s", what, rec.Code, rec.Body)
	}
	body := jsonBody(t, rec)
	if body["success"] != false || body["code"] != "rate_limited" || !strings.Contains(body["error"].(string), "retry in") {
		t.Errorf("%s: body %v", what, body)
	}
	if secs, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("%s: Retry-After %q", what, rec.Header().Get("Retry-After"))
	}
}

func TestToHTTPKnowsAccessErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{errUnauthorized, 401, "unauthorized"},
		{fmt.Errorf("session %q: %w", "a", errRateLimited), 429, "rate_limited"},
	} {
		if status, code := ToHTTP(tc.err); status != tc.status || code != tc.code {
			t.Errorf("ToHTTP(%v) = %d %s, want %d %s (errors.go needs its case)", tc.err, status, code, tc.status, tc.code)
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", errRateLimited), errRateLimited) || !errdefs.IsResourceExhausted(errRateLimited) {
		t.Error("errRateLimited must match itself and the ResourceExhausted class")
	}
}

func TestCreateRateIsPerClient(t *testing.T) {
	opt := DefaultOptions()
	opt.CreateRate = Rate{Events: 1, Per: time.Minute, Burst: 2}
	h := NewRouter(&fakeSessions{}, opt)
	body := `{"sessionId":"a"}`
	for i := range 2 {
		if rec := from(h, "198.51.100.7", "POST", "/api/playground/container", body); rec.Code != 201 {
			t.Fatalf("create %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := from(h, "198.51.100.7", "POST", "/api/playground/container", body)
	assertLimited(t, rec, "third create")
	if secs, _ := strconv.Atoi(rec.Header().Get("Retry-After")); secs < 59 || secs > 60 {
		t.Errorf("Retry-After %d, want a minute for 1/m", secs)
	}
	if rec := from(h, "198.51.100.8", "POST", "/api/playground/container", body); rec.Code != 201 {
		t.Errorf("another client: %d", rec.Code)
	}
	// Only creates count: other routes of the same client pass.
	if rec := from(h, "198.51.100.7", "GET", "/api/playground/container?sessionId=a", ""); rec.Code != 404 {
		t.Errorf("GET limited too: %d", rec.Code)
	}
	scrape := from(h, "127.0.0.1", "GET", "/metrics", "").Body.String()
	if !strings.Contains(scrape, `servcraft_rate_limited_total{limit="create"} 1`) {
		t.Errorf("refusal not counted:\n%s", grepLines(scrape, "rate_limited"))
	}
}

func TestClientExecRateCoversExecuteShellInstall(t *testing.T) {
	opt := DefaultOptions()
	opt.ClientExecRate = Rate{Events: 1, Per: time.Hour, Burst: 3}
	h := NewRouter(&fakeSessions{}, opt)
	ip := "203.0.113.9"
	for _, r := range []struct{ path, body string }{
		{"/api/playground/execute", `{"sessionId":"a","code":"1"}`},
		{"/api/playground/shell", `{"sessionId":"b","command":"true"}`},
		{"/api/playground/install", `{"sessionId":"c","packages":["is-number"]}`},
	} {
		if rec := from(h, ip, "POST", r.path, r.body); rec.Code != 200 {
			t.Fatalf("%s: %d %s", r.path, rec.Code, rec.Body)
		}
	}
	assertLimited(t, from(h, ip, "POST", "/api/playground/execute", `{"sessionId":"d","code":"1"}`), "fourth run of the client")
	if rec := from(h, "203.0.113.10", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1"}`); rec.Code != 200 {
		t.Errorf("another client: %d", rec.Code)
	}
}

func TestSessionRatesApplyPerSession(t *testing.T) {
	opt := Options{
		ExecRate:    Rate{Events: 1, Per: time.Hour, Burst: 2},
		InstallRate: Rate{Events: 1, Per: time.Hour, Burst: 1},
	}
	h := sessionEngine(opt, nil, nil)
	for i, path := range []string{"/api/playground/execute", "/api/playground/shell"} {
		if rec := send(h, "POST", path, `{"sessionId":"s1"}`); rec.Code != 200 {
			t.Fatalf("run %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	assertLimited(t, send(h, "POST", "/api/playground/execute", `{"sessionId":"s1"}`), "third run of s1")
	if rec := send(h, "POST", "/api/playground/execute", `{"sessionId":"s2"}`); rec.Code != 200 {
		t.Errorf("another session: %d", rec.Code)
	}
	// Installs have their own bucket.
	if rec := send(h, "POST", "/api/playground/install", `{"sessionId":"s1"}`); rec.Code != 200 {
		t.Errorf("install after runs: %d %s", rec.Code, rec.Body)
	}
	assertLimited(t, send(h, "POST", "/api/playground/install", `{"sessionId":"s1"}`), "second install of s1")
	// Routes without per-session limits never refuse.
	for range 5 {
		if rec := send(h, "POST", "/api/playground/sync", `{"sessionId":"s1"}`); rec.Code != 200 {
			t.Fatalf("sync limited: %d", rec.Code)
		}
	}
	scrape := send(h, "GET", "/metrics", "").Body.String()
	for _, want := range []string{`servcraft_rate_limited_total{limit="session_exec"} 1`, `servcraft_rate_limited_total{limit="session_install"} 1`} {
		if !strings.Contains(scrape, want) {
			t.Errorf("missing %s:\n%s", want, grepLines(scrape, "rate_limited"))
		}
	}
}

func TestConcurrentRunsPerSessionAreBounded(t *testing.T) {
	opt := Options{MaxConcurrentExecs: 4}
	block := make(chan struct{})
	entered := make(chan string, 16)
	h := sessionEngine(opt, block, entered)
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	paths := []string{"/api/playground/execute", "/api/playground/shell", "/api/playground/install", "/api/playground/execute"}
	for _, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- send(h, "POST", p, `{"sessionId":"busy"}`).Code
		}()
	}
	for range paths {
		<-entered // four runs are inside the handler, holding their slots
	}
	assertLimited(t, send(h, "POST", "/api/playground/execute", `{"sessionId":"busy"}`), "fifth concurrent run")
	// Another session is not affected.
	wg.Add(1)
	go func() {
		defer wg.Done()
		codes <- send(h, "POST", "/api/playground/execute", `{"sessionId":"calm"}`).Code
	}()
	<-entered
	close(block)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a run answered %d", c)
		}
	}
	// The slots are given back: the session runs again.
	if rec := send(h, "POST", "/api/playground/execute", `{"sessionId":"busy"}`); rec.Code != 200 {
		t.Fatalf("busy after its runs ended: %d %s", rec.Code, rec.Body)
	}
}

func TestSessionSlotsForgetIdleSessions(t *testing.T) {
	s := sessionSlots{max: 2, n: map[string]int{}}
	first, second, third := s.acquire("a"), s.acquire("a"), s.acquire("a")
	if !first || !second || third {
		t.Fatal("acquire past max")
	}
	s.release("a")
	s.release("a")
	if len(s.n) != 0 {
		t.Fatalf("entries left: %v", s.n)
	}
}

func TestLimiterMapsStayBounded(t *testing.T) {
	k := newKeyedLimiters(Rate{Events: 1, Per: time.Second, Burst: 5}, 100)
	now := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		k.take(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now)
	}
	if n := k.len(); n != 100 {
		t.Fatalf("%d keys held, want the cap 100", n)
	}
	// Buckets idle longer than a refill (5 s here) are full and dropped.
	k.take("fresh", now.Add(7*time.Second))
	if n := k.len(); n != 1 {
		t.Fatalf("%d keys after they all went idle, want 1", n)
	}
	// An active key keeps its state: its bucket empties and refuses.
	for range 5 {
		if w := k.take("hot", now); w != 0 {
			t.Fatalf("refused within burst: %v", w)
		}
	}
	if w := k.take("hot", now); w <= 0 || w > time.Second {
		t.Fatalf("wait %v past the burst, want up to 1s", w)
	}
	if newKeyedLimiters(Rate{}, 10) != nil || newKeyedLimiters(Rate{}, 10).take("x", now) != 0 {
		t.Fatal("a zero Rate must limit nothing")
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":              "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":   "2001:db8:1:2::/64",
		"::ffff:192.0.2.1":       "::ffff:192.0.2.1",
		"not an ip":              "not an ip",
		"2001:db8:1:3::1":        "2001:db8:1:3::/64",
		"fe80::1234:5678:9abc:1": "fe80::/64",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRateString(t *testing.T) {
	for _, tc := range []struct {
		r          Rate
		str, human string
	}{
		{Rate{30, time.Minute, 10}, "30/m:10", "30 per minute (bursts of 10)"},
		{Rate{0.5, time.Second, 1}, "0.5/s:1", "0.5 per second (bursts of 1)"},
		{Rate{6, 10 * time.Minute, 0}, "6/10m0s:1", "6 per 10m0s (bursts of 1)"},
		{Rate{}, "0", ""},
	} {
		if got := tc.r.String(); got != tc.str {
			t.Errorf("%+v: String %q, want %q", tc.r, got, tc.str)
		}
		if got := tc.r.human(); tc.human != "" && got != tc.human {
			t.Errorf("%+v: human %q, want %q", tc.r, got, tc.human)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The real handlers name their session with setSession, so the per-session
// limits and the log's sessionId work on every JSON route.
func TestHandlersApplySessionLimits(t *testing.T) {
	buf := captureLogs(t)
	opt := DefaultOptions()
	opt.ExecRate = Rate{Events: 1, Per: time.Hour, Burst: 1}
	opt.InstallRate = Rate{Events: 1, Per: time.Hour, Burst: 1}
	h := NewRouter(&fakeSessions{}, opt)
	for _, r := range []struct{ path, first, other string }{
		{"/api/playground/execute", `{"sessionId":"h1","code":"1"}`, `{"sessionId":"h2","code":"1"}`},
		{"/api/playground/shell", `{"sessionId":"h3","command":"true"}`, `{"sessionId":"h4","command":"true"}`},
		{"/api/playground/install", `{"sessionId":"h1","packages":["is-number"]}`, `{"sessionId":"h2","packages":["is-number"]}`},
	} {
		if rec := send(h, "POST", r.path, r.first); rec.Code != 200 {
			t.Fatalf("%s: %d %s", r.path, rec.Code, rec.Body)
		}
		assertLimited(t, send(h, "POST", r.path, r.first), r.path+" again")
		if rec := send(h, "POST", r.path, r.other); rec.Code != 200 {
			t.Errorf("%s of another session: %d %s", r.path, rec.Code, rec.Body)
		}
	}
	send(h, "POST", "/api/playground/container", `{"sessionId":"c1"}`)
	send(h, "PATCH", "/api/playground/container", `{"sessionId":"c2"}`)
	send(h, "POST", "/api/playground/sync", `{"sessionId":"c3","files":[]}`)
	lines := logLines(t, buf)
	for i, want := range []string{"c1", "c2", "c3"} {
		if got := lines[len(lines)-3+i]["sessionId"]; got != want {
			t.Errorf("log line %v: sessionId %v, want %s", lines[len(lines)-3+i], got, want)
		}
	}
}

// X-Forwarded-For names the client only when the peer is a trusted proxy.
func TestClientAddressAndTrustedProxies(t *testing.T) {
	create := func(h http.Handler, xff string) int {
		req := newRequest("POST", "/api/playground/container", strings.NewReader(`{"sessionId":"a"}`))
		req.RemoteAddr = "192.0.2.50:40000"
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	opt := DefaultOptions()
	opt.CreateRate = Rate{Events: 1, Per: time.Hour, Burst: 1}
	h := NewRouter(&fakeSessions{}, opt)
	if a, b := create(h, "203.0.113.1"), create(h, "203.0.113.2"); a != 201 || b != 429 {
		t.Errorf("untrusted peer: X-Forwarded-For must not make new clients: %d %d", a, b)
	}
	opt.TrustedProxies = []string{"192.0.2.0/24"}
	h = NewRouter(&fakeSessions{}, opt)
	if a, b, c := create(h, "203.0.113.1"), create(h, "203.0.113.2"), create(h, "203.0.113.1"); a != 201 || b != 201 || c != 429 {
		t.Errorf("trusted proxy: clients by X-Forwarded-For: %d %d %d", a, b, c)
	}
}
