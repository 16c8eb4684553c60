package api_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

const chromiumPath = "/usr/bin/chromium"

// attackerServer is the user's server of the attacking session: every page
// it serves is the same script-bearing page with an image and a script of
// its own (relative addresses), which tells a framing page whether they
// loaded; sw.js is a service worker that claims the whole origin.
const attackerServer = `const pixel = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");
require("http").createServer((req, res) => {
  if (req.url.startsWith("/sw.js")) {
    res.writeHead(200, {"Content-Type": "text/javascript", "Service-Worker-Allowed": "/"});
    return res.end("self.addEventListener('fetch', () => {});");
  }
  if (req.url.startsWith("/pixel.png")) {
    res.writeHead(200, {"Content-Type": "image/png"});
    return res.end(pixel);
  }
  if (req.url.startsWith("/app.js")) {
    res.writeHead(200, {"Content-Type": "text/javascript"});
    return res.end("window.appRan = true;");
  }
  res.writeHead(200, {"Content-Type": "text/html", "Set-Cookie": "app=1; Path=/"});
  res.end("<!doctype html><title>attacker</title><p>attacker</p><img id=px src=pixel.png><script src=app.js></script>" +
    "<script>addEventListener('load', () => { if (parent !== self) parent.postMessage('loaded ' + px.naturalWidth + ' ' + (window.appRan === true), '*') })</script>");
}).listen(3000, "127.0.0.1", () => console.log("listening"));
`

// victimServer is the user's server of the victim's session.
const victimServer = `require("http").createServer((req, res) => res.end("victim-secret")).listen(3000, "127.0.0.1");
`

// TestBrowserOriginAttacks drives a real headless Chromium against routers
// over one real runtime: one with the browser defenses switched off (each
// attack works), one with them on and a preview domain (each fails), and one
// with a token and preview links.
func TestBrowserOriginAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		runtimetest.Unavailable(t, "%s missing (scripts/deps-browser.sh installs Debian's chromium)", chromiumPath)
	}
	upstream, _ := url.Parse("http://127.0.0.1:9/") // nothing here installs from a registry
	m := startManager(t, upstream, nil)
	router := func(tls bool, tweak func(*api.Options, string)) *httptest.Server {
		srv := httptest.NewUnstartedServer(nil)
		opt := api.DefaultOptions()
		opt.TypeScript = m.HasToolchain()
		opt.ListenAddr = srv.Listener.Addr().String()
		tweak(&opt, srv.Listener.Addr().String())
		srv.Config.Handler = api.NewRouter(m, opt)
		if tls {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		return srv
	}
	off := router(false, func(o *api.Options, _ string) { o.NoBrowserDefenses = true })
	on := router(false, func(o *api.Options, addr string) { o.PreviewDomain = "http://preview.test:" + port(addr) })
	token := atkToken(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	linked := router(false, func(o *api.Options, addr string) {
		o.PreviewDomain = "http://preview.test:" + port(addr)
		o.APIToken, o.PreviewKey, o.PreviewLinkTTL = token, key, 4*time.Second
	})
	pathLinked := router(false, func(o *api.Options, _ string) { o.APIToken, o.PreviewKey = token, key })
	tlsLinked := router(true, func(o *api.Options, addr string) {
		o.PreviewDomain = "https://preview.test:" + port(addr)
		o.APIToken, o.PreviewKey = token, key
	})

	atkCreate(t, on, "attacker")
	atkCreate(t, on, "victim")
	atkShell(t, on, "attacker", "cat > server.js <<'EOF'\n"+attackerServer+"EOF")
	if status, res := atkCall(t, on, "POST", "/api/playground/shell", map[string]any{"sessionId": "attacker", "command": "node server.js", "background": true}); status != 200 {
		t.Fatalf("start the attacker's server: %d %v", status, res)
	}
	atkShell(t, on, "victim", "cat > victim.js <<'EOF'\n"+victimServer+"EOF")
	if status, res := atkCall(t, on, "POST", "/api/playground/shell", map[string]any{"sessionId": "victim", "command": "node victim.js", "background": true}); status != 200 {
		t.Fatalf("start the victim's server: %d %v", status, res)
	}
	for _, id := range []string{"attacker", "victim"} {
		for deadline := time.Now().Add(30 * time.Second); ; {
			if resp, err := http.Get(on.URL + "/p/" + id + "/"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the %s's server did not come up", id)
			}
			time.Sleep(200 * time.Millisecond) // polling the server's readiness
		}
	}
	victimHas := func(file string) bool {
		return strings.TrimSpace(atkShell(t, on, "victim", "test -e "+file+" && echo yes || echo no")) == "yes"
	}
	// evil is a foreign site: a page with a text/plain form, whose body is JSON.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		if r.URL.Path == "/top" { // a page that frames a preview (on the preview domain's site, or on evil.test)
			fmt.Fprint(w, `<!doctype html><iframe id="f"></iframe><script>window.msgs=[];addEventListener("message",e=>msgs.push(e.data))</script>`)
			return
		}
		target, file := r.URL.Query().Get("target"), r.URL.Query().Get("file")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="POST" enctype="text/plain" action="%s/api/playground/shell">`+
			`<input name='{"sessionId":"victim","command":"touch %s","x":"' value='"}'></form><script>f.submit()</script>`, target, file)
	}))
	t.Cleanup(evil.Close)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP *.preview.test 127.0.0.1, MAP evil.test 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.UserDataDir(t.TempDir()))
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	var mu sync.Mutex
	statuses := map[string]int64{} // response status by URL, of every frame of the page
	if err := chromedp.Listen(browser, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok {
			mu.Lock()
			statuses[e.Response.URL] = e.Response.Status
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(what, js string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return out
	}

	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		attack bool // the attacks work
	}{{"off", off, true}, {"on", on, false}} {
		t.Logf("defenses %s", tc.name)
		run("open the API origin", chromedp.Navigate(tc.srv.URL+"/healthz"))
		eval("API origin storage", `localStorage.setItem("api", "secret"); document.cookie = "apicookie=1; path=/"; "ok"`)
		run("open the attacker's path preview", chromedp.Navigate(tc.srv.URL+"/p/attacker/"))

		sw := eval("register a service worker", `(async () => { try { await navigator.serviceWorker.register("/p/attacker/sw.js", {scope: "/"}); return "registered" } catch (e) { return "refused: " + e } })()`)
		if got := sw == "registered"; got != tc.attack {
			t.Errorf("%s: service worker from a path preview: %s", tc.name, sw)
		}
		storage := eval("read the API's storage", `(() => { try { return String(localStorage.getItem("api")) + " " + document.cookie } catch (e) { return "refused: " + e } })()`)
		if got := strings.HasPrefix(storage, "secret"); got != tc.attack {
			t.Errorf("%s: the path preview read the API origin's storage: %s", tc.name, storage)
		}
		file := "pwned-fetch-" + tc.name
		eval("fetch the API", fmt.Sprintf(`fetch("%s/api/playground/shell", {method: "POST", mode: "no-cors", credentials: "include", body: JSON.stringify({sessionId: "victim", command: "touch %s"})}).then(() => "sent", e => "error " + e)`, tc.srv.URL, file))
		if got := victimHas(file); got != tc.attack {
			t.Errorf("%s: a preview page's fetch ran a command in another session: %v", tc.name, got)
		}
		ws := eval("open the terminal", fmt.Sprintf(`new Promise(r => { const ws = new WebSocket("%s/api/playground/terminal?sessionId=victim"); ws.onopen = () => { ws.close(); r("open") }; ws.onerror = () => r("refused") })`,
			strings.Replace(tc.srv.URL, "http", "ws", 1)))
		if got := ws == "open"; got != tc.attack {
			t.Errorf("%s: a preview page opened another session's terminal: %s", tc.name, ws)
		}
		// Reading another session: its files through the API, its preview.
		files := eval("read another session's files", `fetch("/api/playground/files?sessionId=victim", {credentials: "include"}).then(r => r.text(), e => "blocked: " + e)`)
		if got := strings.Contains(files, `"success":true`) && strings.Contains(files, "victim.js"); got != tc.attack {
			t.Errorf("%s: a path preview read another session's files: %.200s", tc.name, files)
		}
		page := eval("read another session's preview", `fetch("/p/victim/", {credentials: "include"}).then(r => r.text(), e => "blocked: " + e)`)
		if got := strings.Contains(page, "victim-secret"); got != tc.attack {
			t.Errorf("%s: a path preview read another session's preview: %.200s", tc.name, page)
		}
		// A form POST from the preview page itself.
		file = "pwned-preview-form-" + tc.name
		eval("a form POST from the preview", fmt.Sprintf(`new Promise(r => { const sink = document.createElement("iframe"); sink.name = "sink"; document.body.appendChild(sink);
			const f = document.createElement("form"); f.method = "POST"; f.enctype = "text/plain"; f.action = "/api/playground/shell"; f.target = "sink";
			const i = document.createElement("input"); i.name = '{"sessionId":"victim","command":"touch %s","x":"'; i.value = '"}'; f.appendChild(i);
			document.body.appendChild(f); sink.onload = () => r("landed"); f.submit() })`, file))
		if got := victimHas(file); got != tc.attack {
			t.Errorf("%s: a form POST from a preview page ran a command in another session: %v", tc.name, got)
		}
		file = "pwned-form-" + tc.name
		run("a foreign page's form POST", chromedp.Navigate(evil.URL+"/form?target="+tc.srv.URL+"&file="+file),
			chromedp.Poll[chromedp.Void](`location.pathname === "/api/playground/shell" && document.readyState === "complete"`))
		if got := victimHas(file); got != tc.attack {
			t.Errorf("%s: a foreign page's form POST ran a command: %v", tc.name, got)
		}
	}

	// Host form: the preview's own origin, with cookies and storage of its
	// own, none of the API's, and no way to read the API. The control: a
	// path preview without the defenses shares the API's.
	host := "http://3000-attacker.preview.test:" + port(strings.TrimPrefix(on.URL, "http://"))
	for _, hc := range []struct {
		name, page, api string
		shared          bool // the preview sees the API's cookies and storage and reads the API
	}{{"off, path form", off.URL + "/p/attacker/", off.URL, true}, {"on, host form", host + "/", on.URL, false}} {
		run("open the preview ("+hc.name+")", chromedp.Navigate(hc.page))
		var seen struct{ Cookie, Own, API, Fetch string }
		raw := eval("preview storage ("+hc.name+")", fmt.Sprintf(`(async () => {
			document.cookie = "own=1; path=/"; localStorage.setItem("own", "1");
			let f; try { f = await (await fetch("%s/api/playground/container?sessionId=victim", {credentials: "include"})).text() } catch (e) { f = "blocked" }
			return JSON.stringify({cookie: document.cookie, own: localStorage.getItem("own"), api: String(localStorage.getItem("api")), fetch: f}) })()`, hc.api))
		if err := json.Unmarshal([]byte(raw), &seen); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(seen.Cookie, "own=1") || !strings.Contains(seen.Cookie, "app=1") || seen.Own != "1" {
			t.Errorf("%s: %+v, want cookies and storage of its own", hc.name, seen)
		}
		for what, got := range map[string]bool{
			"the API's cookie": strings.Contains(seen.Cookie, "apicookie"), "the API's storage": seen.API == "secret",
			"the API's answer": strings.Contains(seen.Fetch, `"success":true`),
		} {
			if got != hc.shared {
				t.Errorf("%s: the preview saw %s: %v, want %v (%+v)", hc.name, what, got, hc.shared, seen)
			}
		}
	}

	// A path-form link (a token, no preview domain): the sandboxed page's
	// relative image and script load with the credential in the path.
	status, info := atkCallToken(t, http.DefaultClient, pathLinked.URL, token, "/api/playground/container?sessionId=attacker")
	link, _ := info["previewUrl"].(string)
	if status != 200 || !strings.HasPrefix(link, "/p/attacker/?servcraft_link=") {
		t.Fatalf("path-form previewUrl with a token: %d %v", status, info)
	}
	run("open the path-form link", chromedp.Navigate(pathLinked.URL+link), chromedp.Poll[chromedp.Void](`document.readyState === "complete"`))
	loaded := eval("the path-form page's subresources", `JSON.stringify({img: px.naturalWidth, js: window.appRan === true, path: location.pathname, sandboxed: origin})`)
	var sub struct {
		Img             int
		JS              bool
		Path, Sandboxed string
	}
	if err := json.Unmarshal([]byte(loaded), &sub); err != nil {
		t.Fatal(err)
	}
	if sub.Img != 1 || !sub.JS || !strings.HasPrefix(sub.Path, "/p/attacker/~") || sub.Sandboxed != "null" {
		t.Errorf("path-form link: %s, want the image and the script loaded in a sandboxed page under /p/attacker/~<credential>/", loaded)
	}
	mu.Lock()
	pixel := statuses[pathLinked.URL+sub.Path+"pixel.png"]
	mu.Unlock()
	if pixel != http.StatusOK {
		t.Errorf("path-form link: pixel.png answered %d", pixel)
	}

	// A signed link in a CROSS-SITE iframe (a playground on another site):
	// over HTTPS the preview's cookie is SameSite=None; Secure; Partitioned.
	status, info = atkCallToken(t, tlsLinked.Client(), tlsLinked.URL, token, "/api/playground/container?sessionId=attacker")
	link, _ = info["previewUrl"].(string)
	if status != 200 || !strings.HasPrefix(link, "https://3000-attacker.preview.test:") {
		t.Fatalf("previewUrl over https: %d %v", status, info)
	}
	run("the link in a cross-site iframe", chromedp.Navigate("http://evil.test:"+port(evil.URL)+"/top"),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById("f").src = %q; undefined`, link)),
		chromedp.Poll[chromedp.Void](`msgs.some(m => m.startsWith("loaded"))`))
	if msgs := eval("the cross-site frame's report", `msgs.join(",")`); !strings.Contains(msgs, "loaded 1 true") {
		t.Errorf("the link in a cross-site iframe: %s, want the page, its image and its script loaded", msgs)
	}

	// A signed link in an iframe: let in, then expired.
	status, info = atkCallToken(t, http.DefaultClient, linked.URL, token, "/api/playground/container?sessionId=attacker")
	link, _ = info["previewUrl"].(string)
	if status != 200 || !strings.Contains(link, "3000-attacker.preview.test") || !strings.Contains(link, "servcraft_link=") {
		t.Fatalf("previewUrl with a token: %d %v", status, info)
	}
	top := "http://top.preview.test:" + port(strings.TrimPrefix(evil.URL, "http://")) + "/top"
	run("the link in an iframe", chromedp.Navigate(top),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById("f").src = %q; undefined`, link)),
		chromedp.Poll[chromedp.Void](`msgs.some(m => m.startsWith("loaded"))`))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for deadline := time.Now().Add(10 * time.Second); ; { // the link's 4s run out
		req, _ := http.NewRequest("GET", linked.URL+link[strings.Index(link[len("http://"):], "/")+len("http://"):], nil)
		req.Host = "3000-attacker.preview.test"
		resp, err := noFollow.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the preview link did not expire")
		}
		time.Sleep(250 * time.Millisecond) // polling the link's expiry
	}
	// Cookie tossing: the attacker's preview sets a cookie of the daemon's
	// name for the whole preview domain; the victim's preview still opens.
	status, info = atkCallToken(t, http.DefaultClient, linked.URL, token, "/api/playground/container?sessionId=victim")
	victimLink, _ := info["previewUrl"].(string)
	status2, info2 := atkCallToken(t, http.DefaultClient, linked.URL, token, "/api/playground/container?sessionId=attacker")
	attackerLink, _ := info2["previewUrl"].(string)
	if status != 200 || status2 != 200 || victimLink == "" || attackerLink == "" {
		t.Fatalf("preview links: %d %v; %d %v", status, info, status2, info2)
	}
	run("open the victim's preview", chromedp.Navigate(victimLink), chromedp.Poll[chromedp.Void](`document.readyState === "complete"`))
	run("open the attacker's preview", chromedp.Navigate(attackerLink), chromedp.Poll[chromedp.Void](`document.readyState === "complete"`))
	eval("toss cookies from the attacker's preview", tossCookies)
	victimA := victimLink[:strings.Index(victimLink, "?")] + "a"
	// What the browser will send the victim's page, in its order: the tossed
	// cookie (longer path) before the victim's own.
	cctx, cancelCookies := context.WithTimeout(browser, 20*time.Second)
	jar, err := chromedp.Run(cctx, chromedp.Action[network.GetCookiesResult](func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{victimA}})
	}))
	cancelCookies()
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	cookies := jar.Cookies
	var names []string
	for _, ck := range cookies {
		names = append(names, ck.Name+"="+ck.Value[:min(len(ck.Value), 8)]+"@"+ck.Domain+ck.Path)
	}
	if !slices.ContainsFunc(cookies, func(ck *network.Cookie) bool { return ck.Name == "servcraft_preview_3000" && ck.Value == "forged" }) {
		t.Fatalf("the browser did not take the tossed cookie (%v): the test does not test", names)
	}
	t.Logf("cookies for the victim's page: %v", names)
	run("open the victim's preview with the tossed cookies", chromedp.Navigate(victimA), chromedp.Poll[chromedp.Void](`document.readyState === "complete"`))
	if body := eval("the victim's page", `document.body.innerText`); !strings.Contains(body, "victim-secret") {
		t.Errorf("with a tossed cookie of the daemon's name, the victim's preview shows %.200q, want its page", body)
	}

	run("reload the framing page", chromedp.Navigate(top))
	eval("the expired link in an iframe", fmt.Sprintf(`new Promise(r => { const f = document.getElementById("f"); f.onload = () => r("loaded"); f.src = %q })`, link))
	mu.Lock()
	got := statuses[link]
	mu.Unlock()
	if got != http.StatusForbidden {
		t.Errorf("the expired link in an iframe answered %d, want 403", got)
	}
}

// tossCookies is one preview tossing cookies at every other preview of the
// site: document.cookie with Domain=<the preview domain> and a longer path
// than the victim's page, so that the browser sends them first.
const tossCookies = `document.cookie = "servcraft_preview_3000=forged; domain=preview.test; path=/a"; ` +
	`document.cookie = "tossed=1; domain=preview.test; path=/a"; document.cookie`

// atkCallToken is a GET with the API token.
func atkCallToken(t *testing.T, client *http.Client, base, token, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
