package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
)

// echoSessions is fakeSessions whose sessions all serve upstream: every
// preview reaches it, whatever the session and port.
type echoSessions struct {
	fakeSessions
	upstream string // host:port
	mu       sync.Mutex
	last     http.Header
	lastPort int
	lastPath string
}

func (e *echoSessions) DialSession(ctx context.Context, _ string, port int) (net.Conn, error) {
	e.mu.Lock()
	e.lastPort = port
	e.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", e.upstream)
}

// newEchoSessions starts the user's server of every session: it records
// what it was sent and answers with a cookie and a service-worker scope.
func newEchoSessions(t *testing.T) *echoSessions {
	e := &echoSessions{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.last, e.lastPath = r.Header.Clone(), r.URL.RequestURI()
		e.mu.Unlock()
		w.Header().Set("Set-Cookie", "app=1; Path=/")
		w.Header().Set("Service-Worker-Allowed", "/")
		fmt.Fprint(w, "hello from the session")
	}))
	t.Cleanup(srv.Close)
	e.upstream = strings.TrimPrefix(srv.URL, "http://")
	return e
}

func (e *echoSessions) seen() (http.Header, int, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last, e.lastPort, e.lastPath
}

func TestPreviewForwardsNothingOfTheAPIs(t *testing.T) {
	e := newEchoSessions(t)
	opt := DefaultOptions()
	opt.APIToken = testToken
	opt.PreviewDomain = "http://preview.test:8080"
	h := NewRouter(e, opt)
	creds := []string{"Authorization", "Bearer " + testToken, "Proxy-Authorization", "Basic eDp5",
		"Cookie", "servcraft_preview_3000=x; app=1", "X-Servcraft-Port", "3000", "X-Servcraft-Anything", "y",
		"Connection", "X-Private", "X-Private", "secret", "Keep-Alive", "timeout=5"}

	rec := send(h, "GET", "/p/abc/x", "", creds...)
	if rec.Code != 200 || rec.Body.String() != "hello from the session" {
		t.Fatalf("path preview: %d %q", rec.Code, rec.Body)
	}
	got, _, _ := e.seen()
	for _, name := range []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Servcraft-Port", "X-Servcraft-Anything", "X-Private", "Keep-Alive"} {
		if v := got.Get(name); v != "" {
			t.Errorf("path form: the user's server got %s: %q", name, v)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox ") || strings.Contains(csp, "allow-same-origin") {
		t.Errorf("path form: CSP %q, want a sandbox without allow-same-origin", csp)
	}
	if rec.Header().Get("Set-Cookie") != "" || rec.Header().Get("Service-Worker-Allowed") != "" {
		t.Errorf("path form passed Set-Cookie or Service-Worker-Allowed: %v", rec.Header())
	}

	req := newRequest("GET", "/x?y=1", nil)
	req.Host = "3000-abc.preview.test:8080"
	for i := 0; i+1 < len(creds); i += 2 {
		req.Header.Set(creds[i], creds[i+1])
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(closeNotifier{rec}, req)
	if rec.Code != 200 {
		t.Fatalf("host preview: %d %q", rec.Code, rec.Body)
	}
	got, port, path := e.seen()
	if got.Get("Authorization") != "" || got.Get("Proxy-Authorization") != "" || got.Get("X-Servcraft-Anything") != "" {
		t.Errorf("host form forwarded credentials: %v", got)
	}
	if c := got.Get("Cookie"); c != "app=1" {
		t.Errorf("host form: Cookie %q, want the app's own and not the preview's", c)
	}
	if port != 3000 || path != "/x?y=1" {
		t.Errorf("host form reached port %d path %q, want 3000 /x?y=1", port, path)
	}
	if rec.Header().Get("Set-Cookie") == "" || rec.Header().Get("Content-Security-Policy") != "" {
		t.Errorf("host form is its own origin: its cookies pass and it is not sandboxed: %v", rec.Header())
	}
}

func TestPreviewHostShape(t *testing.T) {
	d, err := ParsePreviewDomain("preview.example.com")
	if err != nil || d.Scheme != "https" || d.Host != "preview.example.com" {
		t.Fatalf("parse: %+v %v", d, err)
	}
	for _, bad := range []string{"ftp://x.example", "127.0.0.1", "localhost", "https://x.example/path"} {
		if _, err := ParsePreviewDomain(bad); err == nil {
			t.Errorf("ParsePreviewDomain(%q) accepted", bad)
		}
	}
	for host, want := range map[string]string{
		"3000-abc.preview.example.com":                             "abc:3000",
		"8080-my-app-1.preview.example.com":                        "my-app-1:8080",
		"3000-ABC.Preview.Example.com:443":                         "abc:3000", // DNS is case-insensitive: the id is read lower-case
		"3000-abc-.preview.example.com":                            "",
		"03000-abc.preview.example.com":                            "",
		"99999-abc.preview.example.com":                            "",
		"3000-a.b.preview.example.com":                             "",
		"3000-abc.preview.example.com.evil":                        "-",
		"preview.example.com":                                      "",
		"api.example.com":                                          "-",
		"3000-abc_d.preview.example.com":                           "",
		"3000-" + strings.Repeat("a", 58) + ".preview.example.com": "",
	} {
		ph, ok, ours := d.parse(host)
		got := "-"
		if ours {
			got = ""
		}
		if ok {
			got = fmt.Sprintf("%s:%d", ph.id, ph.port)
		}
		if got != want {
			t.Errorf("%s: %q, want %q", host, got, want)
		}
	}
	if !hostFormID("my-app-1") || hostFormID("MyApp") || hostFormID("a.b") || hostFormID("a_b") {
		t.Error("hostFormID")
	}
	opt := DefaultOptions()
	opt.PreviewDomain = "preview.example.com"
	h := &handlers{opt: opt}
	if u := h.previewURL("abc", ""); u != "https://3000-abc.preview.example.com/" {
		t.Errorf("previewURL host form: %s", u)
	}
	if u := h.previewURL("MyApp", ""); u != "/p/MyApp/" {
		t.Errorf("previewURL of an id a host name cannot hold: %s", u)
	}
}

// hostOnPreviewDomain: nothing of the API answers on a preview origin.
func TestPreviewHostServesOnlyThePreview(t *testing.T) {
	e := newEchoSessions(t)
	opt := DefaultOptions()
	opt.PreviewDomain = "preview.test"
	h := NewRouter(e, opt)
	req := newRequest("POST", "/api/playground/shell", strings.NewReader(`{"sessionId":"victim","command":"id"}`))
	req.Host = "3000-abc.preview.test"
	rec := httptest.NewRecorder()
	h.ServeHTTP(closeNotifier{rec}, req)
	if _, _, path := e.seen(); rec.Code != 200 || path != "/api/playground/shell" {
		t.Errorf("the preview host's /api went to %q (%d), want the session's own server", path, rec.Code)
	}
	req = newRequest("GET", "/", nil)
	req.Host = "nope.preview.test"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 404 {
		t.Errorf("a preview-domain host of no preview: %d", rec.Code)
	}
}

func TestPathPreviewRefusesServiceWorkers(t *testing.T) {
	e := newEchoSessions(t)
	for _, off := range []bool{false, true} {
		opt := DefaultOptions()
		opt.NoBrowserDefenses = off
		rec := send(NewRouter(e, opt), "GET", "/p/abc/sw.js", "", "Service-Worker", "script")
		if want := map[bool]int{false: 403, true: 200}[off]; rec.Code != want {
			t.Errorf("defenses off=%v: sw.js answered %d, want %d", off, rec.Code, want)
		}
	}
}

func TestHostAllowList(t *testing.T) {
	opt := DefaultOptions()
	opt.ListenAddr = "10.0.0.5:8080"
	opt.AllowedHosts = []string{"api.example.com"}
	opt.PreviewDomain = "preview.example.com"
	opt.Cluster.Secret = []byte("0123456789abcdef0123")
	h := NewRouter(&fakeSessions{}, opt)
	for host, want := range map[string]int{
		"localhost:8080": 200, "127.0.0.1:8080": 200, "[::1]:8080": 200, "10.0.0.5:8080": 200,
		"api.example.com": 200, "API.example.com:443": 200, "preview.example.com": 404, // the preview domain's apex is no preview
		"rebind.evil.example": 421, "10.0.0.6:8080": 421, "example.com": 421, "api.example.com.evil": 421,
		"": 200, // HTTP/1.0 without Host: a health check
	} {
		req := newRequest("GET", "/healthz", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: %d, want %d", host, rec.Code, want)
		}
	}
	// A request another node forwarded keeps its client's Host, checked there.
	req := newRequest("GET", "/healthz", nil)
	req.Host = "other-name.example"
	req.Header.Set(hopHeader, signHop(opt.Cluster.Secret, "n1", "192.0.2.1", "GET", "/healthz", time.Now()))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("a verified hop's Host: %d", rec.Code)
	}
	req.Header.Set(hopHeader, signHop([]byte("wrong-secret-0123456"), "n1", "192.0.2.1", "GET", "/healthz", time.Now()))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 421 {
		t.Errorf("a forged hop's Host: %d", rec.Code)
	}

	opt = DefaultOptions()
	opt.ListenAddr = "0.0.0.0:8080"
	h = NewRouter(&fakeSessions{}, opt)
	for host, want := range map[string]int{"192.0.2.7:8080": 200, "rebind.evil.example:8080": 421} {
		req := newRequest("GET", "/healthz", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("listening on every address, Host %s: %d, want %d", host, rec.Code, want)
		}
	}
	opt.NoBrowserDefenses = true
	req = newRequest("GET", "/healthz", nil)
	req.Host = "rebind.evil.example"
	rec = httptest.NewRecorder()
	NewRouter(&fakeSessions{}, opt).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("defenses off: a foreign Host answered %d", rec.Code)
	}
}

func TestBrowserBorneAPICallsAreRefused(t *testing.T) {
	const app = "https://app.example.com"
	body := `{"sessionId":"a","command":"id"}`
	cases := []struct {
		name   string
		header []string
		want   int
	}{
		{"json, no origin", nil, 200},
		{"json, own origin", []string{"Origin", "http://localhost"}, 200},
		{"json, listed origin", []string{"Origin", app}, 200},
		{"text/plain", []string{"Content-Type", "text/plain"}, 415},
		{"text/plain;charset", []string{"Content-Type", "text/plain;charset=UTF-8"}, 415},
		{"urlencoded", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"multipart", []string{"Content-Type", "multipart/form-data; boundary=x"}, 415},
		{"no type", []string{"Content-Type", ""}, 415},
		{"foreign origin", []string{"Origin", "https://evil.example"}, 403},
		{"sandboxed preview", []string{"Origin", "null"}, 403},
		{"cross-site, no origin", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"cross-site, listed", []string{"Sec-Fetch-Site", "cross-site", "Origin", app}, 200},
	}
	for _, off := range []bool{false, true} {
		opt := DefaultOptions()
		opt.CORSOrigins = []string{app}
		opt.NoBrowserDefenses = off
		h := NewRouter(&fakeSessions{}, opt)
		for _, tc := range cases {
			rec := send(h, "POST", "/api/playground/shell", body, tc.header...)
			want := tc.want
			if off {
				want = 200
			}
			if rec.Code != want {
				t.Errorf("defenses off=%v, %s: %d %s, want %d", off, tc.name, rec.Code, rec.Body, want)
			}
		}
	}
	// The node's controls and /metrics: the same checks, on the default
	// loopback setup (no token: a loopback client may drain).
	adminCases := []struct {
		name, method, path string
		header             []string
		want               int
	}{
		{"drain, json, no origin", "POST", "/api/admin/drain", nil, 200},
		{"drain, own origin", "POST", "/api/admin/drain", []string{"Origin", "http://localhost"}, 200},
		{"undrain, bodiless", "DELETE", "/api/admin/drain", []string{"Content-Type", ""}, 200},
		{"drain, text/plain from a foreign page", "POST", "/api/admin/drain", []string{"Content-Type", "text/plain", "Origin", "https://evil.example"}, 403},
		{"drain, text/plain from a sandboxed preview", "POST", "/api/admin/drain", []string{"Content-Type", "text/plain", "Origin", "null"}, 403},
		{"drain, text/plain, no origin", "POST", "/api/admin/drain", []string{"Content-Type", "text/plain"}, 415},
		{"drain, urlencoded", "POST", "/api/admin/drain", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"drain, cross-site", "POST", "/api/admin/drain", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"metrics, no origin", "GET", "/metrics", nil, 200},
		{"metrics, foreign origin", "GET", "/metrics", []string{"Origin", "https://evil.example"}, 403},
		{"metrics, cross-site", "GET", "/metrics", []string{"Sec-Fetch-Site", "cross-site"}, 403},
	}
	for _, off := range []bool{false, true} {
		opt := DefaultOptions()
		opt.NoBrowserDefenses = off
		h := NewRouter(&fakeSessions{}, opt)
		for _, tc := range adminCases {
			body := `{}`
			if tc.method == "DELETE" {
				body = ""
			}
			req := newRequest(tc.method, tc.path, strings.NewReader(body))
			req.RemoteAddr = "127.0.0.1:40000"
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			want := tc.want
			if off {
				want = 200
			}
			if rec.Code != want {
				t.Errorf("defenses off=%v, %s: %d %s, want %d", off, tc.name, rec.Code, rec.Body, want)
			}
		}
	}
	// A bodiless DELETE needs no type.
	opt := DefaultOptions()
	if rec := send(NewRouter(&fakeSessions{}, opt), "DELETE", "/api/playground/container?sessionId=a", "", "Content-Type", ""); rec.Code == 415 {
		t.Errorf("bodiless DELETE: 415")
	}
}

func TestPreviewLinks(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Now()
	tok := signPreviewLink(key, "abc", "", 3000, now.Add(time.Minute))
	if _, _, ok := verifyPreviewLink(key, tok, "abc", 3000, now); !ok {
		t.Fatal("a fresh link does not verify")
	}
	for name, ok := range map[string]bool{
		"other session": func() bool { _, _, ok := verifyPreviewLink(key, tok, "abd", 3000, now); return ok }(),
		"other port":    func() bool { _, _, ok := verifyPreviewLink(key, tok, "abc", 3001, now); return ok }(),
		"expired":       func() bool { _, _, ok := verifyPreviewLink(key, tok, "abc", 3000, now.Add(time.Minute)); return ok }(),
		"other key":     func() bool { _, _, ok := verifyPreviewLink([]byte("x"), tok, "abc", 3000, now); return ok }(),
		"tampered": func() bool {
			_, sig, _ := strings.Cut(tok, ".")
			later := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("abc\n3000\n%d", now.Add(time.Hour).Unix())))
			_, _, ok := verifyPreviewLink(key, later+"."+sig, "abc", 3000, now)
			return ok
		}(),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}

	e := newEchoSessions(t)
	opt := DefaultOptions()
	opt.APIToken = testToken
	opt.PreviewKey = key
	h := NewRouter(e, opt)
	hh := &handlers{opt: opt}
	link := hh.previewURL("abc", "")
	if !strings.HasPrefix(link, "/p/abc/?servcraft_link=") {
		t.Fatalf("previewUrl with a token: %s", link)
	}
	if rec := send(h, "GET", "/p/abc/", ""); rec.Code != 401 {
		t.Errorf("no link, no token: %d", rec.Code)
	}
	// Path form: the link becomes a credential in the path, which the page's
	// relative subresources carry (a sandboxed page sends no cookie of ours).
	rec := send(h, "GET", link+"&x=1", "")
	loc := rec.Header().Get("Location")
	cred, rest, _ := strings.Cut(strings.TrimPrefix(loc, "/p/abc/~"), "/")
	if rec.Code != 303 || !strings.HasPrefix(loc, "/p/abc/~") || rest != "?x=1" || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("link exchange: %d %v", rec.Code, rec.Header())
	}
	if exp, _, ok := verifyPreviewLink(key, cred, "abc", 3000, now); !ok || exp.Before(now.Add(opt.PreviewCookieTTL-time.Minute)) {
		t.Errorf("the path credential %q: valid %v until %v, want PreviewCookieTTL", cred, ok, exp)
	}
	for _, sub := range []string{"", "pixel.png", "js/app.js?v=2"} {
		rec := send(h, "GET", "/p/abc/~"+cred+"/"+sub, "", "Referer", "http://localhost/p/abc/~"+cred+"/")
		got, port, path := e.seen()
		if rec.Code != 200 || port != 3000 || path != "/"+sub || got.Get("Referer") != "" {
			t.Errorf("with the path credential, %q: %d, the user's server got port %d %q Referer %q", sub, rec.Code, port, path, got.Get("Referer"))
		}
	}
	other := signPreviewLink(key, "abc", "", 3001, now.Add(time.Minute))
	if rec := send(h, "GET", "/p/abc/~"+other+"/x", ""); rec.Code != 200 {
		t.Errorf("a credential for port 3001: %d", rec.Code)
	} else if _, port, path := e.seen(); port != 3001 || path != "/x" {
		t.Errorf("a credential for port 3001 reached port %d %q", port, path)
	}
	if rec := send(h, "GET", "/p/abd/~"+cred+"/", ""); rec.Code != 403 {
		t.Errorf("the credential on another session: %d", rec.Code)
	}
	if rec := send(h, "GET", "/p/abc/~"+signPreviewLink(key, "abc", "", 3000, now.Add(-time.Second))+"/", ""); rec.Code != 403 {
		t.Errorf("an expired path credential: %d", rec.Code)
	}
	// A credential is for one instance of the session: after a DELETE and a
	// new create of the same sessionId, the old one opens nothing.
	e.instances = map[string]string{"abc": "u-new"}
	if rec := send(h, "GET", "/p/abc/~"+cred+"/", ""); rec.Code != 403 {
		t.Errorf("a credential of an earlier instance of the session: %d, want 403", rec.Code)
	}
	if rec := send(h, "GET", "/p/abc/~"+signPreviewLink(key, "abc", "u-new", 3000, now.Add(time.Minute))+"/", ""); rec.Code != 200 {
		t.Errorf("a credential of the live instance: %d, want 200", rec.Code)
	}
	e.instances = nil
	if rec := send(h, "GET", "/p/abc/", "", "Cookie", previewCookieName+"3000="+cred); rec.Code != 401 {
		t.Errorf("a preview cookie in path form (the API origin's): %d", rec.Code)
	}
	// Host form: a cookie of the preview's own origin.
	opt.PreviewDomain = "http://preview.test"
	hostRouter := NewRouter(e, opt)
	req := newRequest("GET", "/x?servcraft_link="+url.QueryEscape(signPreviewLink(key, "abc", "", 3000, now.Add(time.Minute))), nil)
	req.Host = "3000-abc.preview.test"
	hrec := httptest.NewRecorder()
	hostRouter.ServeHTTP(closeNotifier{hrec}, req)
	ck := hrec.Result().Cookies()
	if hrec.Code != 303 || hrec.Header().Get("Location") != "/x" || len(ck) != 1 || ck[0].Path != "/" || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode {
		t.Fatalf("host-form link exchange: %d %v %v", hrec.Code, hrec.Header(), ck)
	}
	req = newRequest("GET", "/x", nil)
	req.Host = "3000-abc.preview.test"
	req.Header.Set("Cookie", ck[0].Name+"="+ck[0].Value)
	hrec = httptest.NewRecorder()
	hostRouter.ServeHTTP(closeNotifier{hrec}, req)
	if hrec.Code != 200 {
		t.Errorf("host form with the cookie: %d", hrec.Code)
	}
	// A cookie of the same name tossed by another preview of the site comes
	// first: the valid one behind it still lets the page in.
	req = newRequest("GET", "/x", nil)
	req.Host = "3000-abc.preview.test"
	tossed := signPreviewLink(key, "evil", "", 3000, now.Add(time.Hour))
	req.Header.Set("Cookie", ck[0].Name+"="+tossed+"; "+ck[0].Name+"=junk; "+ck[0].Name+"="+ck[0].Value+"; app=1")
	hrec = httptest.NewRecorder()
	hostRouter.ServeHTTP(closeNotifier{hrec}, req)
	if hrec.Code != 200 {
		t.Errorf("host form with a tossed cookie before the valid one: %d", hrec.Code)
	} else if got, _, _ := e.seen(); got.Get("Cookie") != "app=1" {
		t.Errorf("the user's server got cookies %q, want only app=1", got.Get("Cookie"))
	}
	expired := "/p/abc/?servcraft_link=" + url.QueryEscape(signPreviewLink(key, "abc", "", 3000, now.Add(-time.Second)))
	if rec := send(h, "GET", expired, ""); rec.Code != 403 {
		t.Errorf("expired link: %d", rec.Code)
	}
	if rec := send(h, "GET", "/p/abc/", "", "Authorization", "Bearer "+testToken); rec.Code != 200 {
		t.Errorf("the token still works: %d", rec.Code)
	}
}

// TestHostOnlyCookies: a host-form preview's server cannot set a cookie
// for the whole preview domain, nor one of the daemon's names.
func TestHostOnlyCookies(t *testing.T) {
	hd := http.Header{}
	hd.Add("Set-Cookie", "a=1; Domain=preview.test; Path=/; HttpOnly")
	hd.Add("Set-Cookie", "b=2; path=/; domain=.preview.test")
	hd.Add("Set-Cookie", "c=3; Secure")
	hd.Add("Set-Cookie", previewCookieName+"3000=forged; Domain=preview.test")
	hostOnlyCookies(hd)
	got := hd.Values("Set-Cookie")
	want := []string{"a=1; Path=/; HttpOnly", "b=2; path=/", "c=3; Secure"}
	if !slices.Equal(got, want) {
		t.Fatalf("Set-Cookie %q, want %q", got, want)
	}
}

func TestRandomMethodsLeaveMetricsFlat(t *testing.T) {
	// A real server and client, so that what the daemon's process keeps per
	// request (connections, buffers, series, log fields) shows in its RSS.
	srv := httptest.NewServer(NewRouter(&fakeSessions{}, DefaultOptions()))
	defer srv.Close()
	client := srv.Client()
	do := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%.20s… %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	scrape := func() int { _, b := do("GET", "/metrics"); return strings.Count(b, "\n") }
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	randomMethods := func(n int) {
		for i := range n {
			m := make([]byte, 20+rand.IntN(200))
			for j := range m {
				m[j] = letters[rand.IntN(len(letters))]
			}
			if code, _ := do(string(m), "/api/playground/container"); code != 501 {
				t.Fatalf("request %d with method %.20s…: %d", i, m, code)
			}
		}
	}
	randomMethods(1000) // the server's and client's buffers and pools are in place
	scrape()            // the scrape's own series appear
	before := scrape()
	heapBefore, rssBefore := memoryNow(t)
	randomMethods(10000)
	after := scrape()
	heapAfter, rssAfter := memoryNow(t)
	if after != before {
		t.Errorf("/metrics grew from %d to %d lines over 10,000 random methods", before, after)
	}
	if grew := int64(heapAfter) - int64(heapBefore); grew > 4<<20 {
		t.Errorf("heap grew %d bytes over 10,000 random methods", grew)
	}
	// RSS is flat within 8 MiB (what growth looked like: 10,000 series of
	// a histogram are tens of MiB). Under the race detector its shadow
	// memory alone grows the RSS by 8 to 18 MiB here, as much as the growth
	// this looks for: there the heap and the series above are the check,
	// and the RSS is checked by the plain build (make test).
	if grew := rssAfter - rssBefore; grew > 8<<20 && !raceEnabled {
		t.Errorf("RSS grew %d bytes (from %d) over 10,000 random methods, over %d", grew, rssBefore, 8<<20)
	}
	t.Logf("over 10,000 random methods: /metrics %d lines, heap %d → %d, RSS %d → %d bytes", after, heapBefore, heapAfter, rssBefore, rssAfter)
	if methodLabel("PROPFIND") != "other" || methodLabel("GET") != "GET" {
		t.Error("methodLabel")
	}
}

// memoryNow is the Go heap in use and the process's resident set, after a
// collection that returns what it can to the OS.
func memoryNow(t *testing.T) (heap uint64, rss int64) {
	t.Helper()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read the process's RSS: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return ms.HeapAlloc, kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0, 0
}

func TestLookupFloodIsLimited(t *testing.T) {
	opt := DefaultOptions()
	opt.LookupRate = Rate{Events: 1, Per: time.Minute, Burst: 5}
	h := NewRouter(&fakeSessions{}, opt)
	codes := map[int]int{}
	for i := range 20 {
		codes[send(h, "GET", fmt.Sprintf("/api/playground/container?sessionId=guess%d", i), "").Code]++
	}
	if codes[404] != 5 || codes[429] != 15 {
		t.Errorf("20 lookups at 5 a burst: %v", codes)
	}
	if rec := send(h, "GET", "/api/playground/files?sessionId=x", ""); rec.Code != 429 {
		t.Errorf("files after the flood: %d", rec.Code)
	}
}

// TestSessionMissesAreLimited: on the routes that name a session but are
// not lookups, answers for a live session spend nothing, each "not there"
// spends a lookup token, and with none left every such request of the
// client is refused, whichever session it names (a refusal tells nothing).
func TestSessionMissesAreLimited(t *testing.T) {
	opt := DefaultOptions()
	opt.LookupRate = Rate{Events: 1, Per: time.Minute, Burst: 5}
	h := NewRouter(&fakeSessions{}, opt)
	for i := range 20 { // a live session's process list: never limited
		if rec := send(h, "GET", "/api/playground/processes?sessionId=live", ""); rec.Code != 200 {
			t.Fatalf("processes of a live session, request %d: %d", i, rec.Code)
		}
	}
	codes := map[int]int{}
	for i := range 10 {
		codes[send(h, "DELETE", fmt.Sprintf("/api/playground/container?sessionId=guess%d", i), "").Code]++
	}
	if codes[404] != 5 || codes[429] != 5 {
		t.Errorf("10 DELETEs of missing sessions at 5 a burst: %v", codes)
	}
	for _, path := range []string{"/p/guess/", "/api/playground/preview/guess/", "/api/playground/processes?sessionId=live"} {
		if rec := send(h, "GET", path, ""); rec.Code != 429 {
			t.Errorf("GET %s after the misses: %d, want 429", path, rec.Code)
		}
	}
}

func TestTerminalsPerSessionAreCapped(t *testing.T) {
	opt := DefaultOptions()
	opt.MaxTerminals = 4
	opt.TerminalRate = Rate{Events: 100, Per: time.Second, Burst: 100}
	l := newLimits(opt, nil)
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(errorMiddleware)
	open, release := make(chan struct{}, 8), make(chan struct{})
	r.GET("/t", l.limitTerminals, func(c *gin.Context) { open <- struct{}{}; <-release; c.Status(200) })
	srv := httptest.NewServer(r)
	defer srv.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/t?sessionId=a")
			if err == nil {
				resp.Body.Close()
			}
		}()
		<-open
	}
	resp, err := http.Get(srv.URL + "/t?sessionId=a")
	if err != nil || resp.StatusCode != 429 {
		t.Fatalf("the 5th terminal: %v %v", resp, err)
	}
	resp.Body.Close()
	go func() {
		resp, err := http.Get(srv.URL + "/t?sessionId=b")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-open // another session's terminal is not held back
	close(release)
	wg.Wait()

	opt.TerminalRate = Rate{Events: 1, Per: time.Minute, Burst: 2}
	l = newLimits(opt, nil)
	codes := []int{}
	for range 3 {
		rec := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(rec)
		c.Request = newRequest("GET", "/t?sessionId=a", nil)
		l.limitTerminals(c)
		codes = append(codes, map[bool]int{true: 429, false: 200}[c.IsAborted()])
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("terminal opens at 2 a burst: %v", codes)
	}
}

// A host-form preview passes a WebSocket through to the session's server,
// with nothing of the API's on it.
func TestHostPreviewWebSocket(t *testing.T) {
	var mu sync.Mutex
	var got http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err == nil {
			_ = c.Write(r.Context(), typ, append([]byte("echo "), msg...))
		}
	}))
	defer upstream.Close()
	opt := DefaultOptions()
	opt.PreviewDomain = "http://preview.test"
	e := &echoSessions{upstream: strings.TrimPrefix(upstream.URL, "http://")}
	srv := httptest.NewServer(NewRouter(e, opt))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http", "ws", 1)+"/live", &websocket.DialOptions{
		Host: "3000-abc.preview.test",
		HTTPHeader: http.Header{"Origin": {"http://3000-abc.preview.test"}, "Authorization": {"Bearer " + testToken},
			"X-Servcraft-Port": {"4000"}},
	})
	if err != nil {
		t.Fatalf("host-form WebSocket: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo hi" {
		t.Fatalf("through the preview: %q %v", msg, err)
	}
	if _, port, _ := e.seen(); port != 3000 {
		t.Errorf("the WebSocket reached port %d, want the host's 3000", port)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Get("Authorization") != "" || got.Get("X-Servcraft-Port") != "" || got.Get("Origin") != "http://3000-abc.preview.test" {
		t.Errorf("the session's server got %v", got)
	}
}
