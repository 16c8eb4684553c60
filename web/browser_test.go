package web_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
)

const (
	chromiumPath  = "/usr/bin/chromium"
	testNamespace = "servcraft-test-web"
)

// TestPlaygroundPageInChromium drives the page the daemon serves at / in a
// real headless Chromium against a real servcraftd and containerd: a js
// session, an edit synced and read back through the API, Run of a file,
// install, npm start with its log and the preview, a reload in the middle,
// Stop, the terminal, keep-alive, reset, and a session that is gone.
// Screenshots go to artifactDir on failure (and at every step with
// SERVCRAFT_TEST_ARTIFACTS set).
func TestPlaygroundPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped in -short mode")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		runtimetest.Unavailable(t, "%s missing (scripts/deps-browser.sh installs Debian's chromium)", chromiumPath)
	}
	if _, err := os.Stat(filepath.Join("dist", "index.html")); err != nil {
		runtimetest.Unavailable(t, "the page is not built (make web)")
	}
	env := runtimetest.Start(t, testNamespace)
	base := startDaemon(t, env)
	artifacts := artifactDir(t, env.RepoRoot)
	everyStep := os.Getenv("SERVCRAFT_TEST_ARTIFACTS") != ""

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	var mu sync.Mutex
	var pageErrors []string
	if err := chromedp.Listen(browser, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			mu.Lock()
			pageErrors = append(pageErrors, msg)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	shot := func(name string) {
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		file := filepath.Join(artifacts, name+".png")
		if err := os.MkdirAll(artifacts, 0o755); err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		t.Logf("screenshot: %s", file)
	}
	t.Cleanup(func() {
		if t.Failed() {
			shot("failure")
			ctx, cancel := context.WithTimeout(browser, 5*time.Second)
			defer cancel()
			if out, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("output"))); err == nil {
				t.Logf("the page's output pane:\n%s", out)
			}
		}
	})
	n := 0
	step := func(name string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		n++
		ctx, cancel := context.WithTimeout(browser, timeout)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("step %d, %s: %v", n, name, err)
		}
		mu.Lock()
		thrown := strings.Join(pageErrors, "; ")
		mu.Unlock()
		if thrown != "" {
			t.Fatalf("step %d, %s: the page threw: %s", n, name, thrown)
		}
		if everyStep {
			shot(fmt.Sprintf("%02d-%s", n, strings.ReplaceAll(name, " ", "-")))
		}
	}
	// until waits for a JavaScript condition on the page.
	until := func(cond string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0))
	}
	outputHas := func(s string) chromedp.Action[chromedp.Void] {
		return until(fmt.Sprintf(`document.getElementById("output").textContent.includes(%q)`, s))
	}
	ready := until(`document.body.dataset.state === "ready" && document.querySelector("#tree [data-path]") !== null`)
	var sessionID string
	currentSession := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		id, err := chromedp.Evaluate[string](`localStorage.getItem("servcraft.sessionId")`)(ctx, tg)
		sessionID = id
		return chromedp.Void{}, err
	}
	// pressEnter is the Enter key alone (a keydown without the character
	// event that would make xterm.js see it twice).
	pressEnter := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}); err != nil {
				return chromedp.Void{}, err
			}
		}
		return chromedp.Void{}, nil
	}
	insertText := func(text string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: text})
			return chromedp.Void{}, err
		}
	}

	step("start a js session", 60*time.Second,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("start-js")),
		chromedp.Click(chromedp.ID("start-js")),
		ready,
		until(`document.querySelector('#tree [data-path="src/app.js"]') !== null`),
		until(`document.getElementById("open-file").textContent === "src/app.js"`),
		until(`document.getElementById("terminal-state").dataset.state === "open"`),
		currentSession)
	if !strings.HasPrefix(sessionID, "session-") {
		t.Fatalf("sessionId in localStorage: %q", sessionID)
	}
	if code, info := call(t, base, "GET", "/api/playground/container?sessionId="+sessionID, nil); code != 200 || info["projectType"] != "js" {
		t.Fatalf("the page's session: %d %v", code, info)
	}

	const program = `console.log("hello from the page", 6 * 7)` + "\n"
	step("add and edit a file", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "hello.js"),
		chromedp.Click(chromedp.ID("new-file")),
		until(`document.getElementById("open-file").textContent === "hello.js"`),
		chromedp.Click(chromedp.CSS(".cm-content")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		insertText(program),
		until(`document.getElementById("sync-state").dataset.sync === "saved"`))
	if got := fileContent(t, base, sessionID, "hello.js"); got != program {
		t.Fatalf("hello.js read back through the API: %q, want %q", got, program)
	}

	step("run the file", 30*time.Second,
		chromedp.Click(chromedp.ID("run-file")),
		outputHas("hello from the page 42"),
		outputHas("[exit 0"))

	step("reload keeps the session and the edit", 30*time.Second,
		chromedp.Reload(),
		ready,
		until(`document.getElementById("open-file").textContent === "hello.js"`),
		until(`document.querySelector(".cm-content").textContent.includes("hello from the page")`),
		currentSession)
	if !strings.HasPrefix(sessionID, "session-") || fileContent(t, base, sessionID, "hello.js") != program {
		t.Fatalf("after the reload: session %q, hello.js changed", sessionID)
	}

	step("install the starter dependencies", 4*time.Minute,
		chromedp.Click(chromedp.ID("install")),
		outputHas("[installed fastify@"))

	step("npm start and the preview", 90*time.Second,
		chromedp.Click(chromedp.ID("run-project")),
		outputHas("$ npm start"),
		outputHas("Server listening"),
		until(`document.getElementById("preview-status").dataset.status === "200"`),
		until(`!document.getElementById("stop").disabled`))
	previewSrc, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.getElementById("preview").src`))
	if err != nil {
		t.Fatalf("read the preview's address: %v", err)
	}
	if body := get(t, previewSrc); !strings.Contains(body, `"hello":"world"`) {
		t.Fatalf("the preview pane's %s answers %q, want the starter's hello world", previewSrc, body)
	}

	step("reload while npm start runs", 30*time.Second,
		chromedp.Reload(),
		ready,
		outputHas("(following bg-"),
		outputHas("Server listening"),
		until(`!document.getElementById("stop").disabled`))

	step("stop npm start", 30*time.Second,
		chromedp.Click(chromedp.ID("stop")),
		outputHas("npm start stopped"),
		until(`document.getElementById("stop").disabled && !document.getElementById("run-project").disabled`))
	if _, procs := call(t, base, "GET", "/api/playground/processes?sessionId="+sessionID, nil); strings.Contains(fmt.Sprint(procs["processes"]), "running:true") {
		t.Fatalf("a process still runs after Stop: %v", procs)
	}

	step("a command in the terminal", 30*time.Second,
		until(`document.getElementById("terminal-state").dataset.state === "open"`),
		chromedp.Click(chromedp.ID("terminal")),
		insertText("echo term-$((6*7)) $(id -u)"),
		pressEnter,
		until(`document.querySelector("#terminal .xterm-rows").textContent.includes("term-42 1000")`))

	step("keep alive", 15*time.Second,
		chromedp.Click(chromedp.ID("extend")),
		until(`document.getElementById("extend").disabled`),
		outputHas("deadline extended"))
	if _, info := call(t, base, "GET", "/api/playground/container?sessionId="+sessionID, nil); info["isExtended"] != true {
		t.Fatalf("after keep alive: %v", info)
	}

	old := sessionID
	step("reset", 60*time.Second,
		chromedp.Click(chromedp.ID("reset")),
		until(fmt.Sprintf(`localStorage.getItem("servcraft.sessionId") !== %q && document.body.dataset.state === "ready"`, old)),
		ready,
		currentSession)
	if code, _ := call(t, base, "GET", "/api/playground/container?sessionId="+old, nil); code != 404 {
		t.Fatalf("the session before the reset answers %d, want 404", code)
	}
	if sessionID == old || !strings.HasPrefix(sessionID, "session-") {
		t.Fatalf("after reset: session %q (before %q)", sessionID, old)
	}

	if code, _ := call(t, base, "DELETE", "/api/playground/container?sessionId="+sessionID, nil); code != 200 {
		t.Fatalf("delete the session behind the page's back: %d", code)
	}
	step("a session that is gone", 30*time.Second,
		chromedp.Reload(),
		until(`document.body.dataset.state === "gone"`),
		until(`document.getElementById("overlay-message").textContent.includes("is gone")`))
	step("a new ts session after that", 60*time.Second,
		chromedp.Click(chromedp.ID("start-ts")),
		ready,
		until(`document.querySelector('#tree [data-path="src/app.ts"]') !== null`))
}

// startDaemon runs servcraftd (built once by apitest) on a loopback port
// against env's containerd until the test ends; every session it made is
// destroyed then.
func startDaemon(t *testing.T, env *runtimetest.Env) string {
	t.Helper()
	d := apitest.NewDaemon(t, apitest.Binary(t, env.RepoRoot), append(apitest.EnvArgs(env, testNamespace),
		"--state-dir", t.TempDir(), "--workspace-size", "256MiB", "--pool-size", "0", "--destroy-on-shutdown")...)
	d.Start()
	t.Cleanup(func() {
		if code := d.Stop(syscall.SIGTERM); code != 0 {
			t.Errorf("servcraftd did not stop cleanly at SIGTERM: exit code %d", code)
		}
		if t.Failed() {
			t.Logf("servcraftd log:\n%s", d.Log())
		}
	})
	return d.URL
}

// artifactDir is where screenshots go: $SERVCRAFT_TEST_ARTIFACTS, else
// .servcraft/test-artifacts/<test>-<time> in the repository (t.TempDir is
// deleted when the test ends). It is made when the first screenshot is taken.
func artifactDir(t *testing.T, repoRoot string) string {
	dir := os.Getenv("SERVCRAFT_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot, ".servcraft", "test-artifacts")
	}
	return filepath.Join(dir, t.Name()+"-"+time.Now().Format("20060102-150405"))
}

// call sends one API request through apitest's client, which checks the
// answer against the OpenAPI document the daemon serves.
func call(t *testing.T, base, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return apitest.NewClient(t, base, nil, api.OpenAPIDocument()).Call(method, path, body)
}

// fileContent reads one file of the session back through the API.
func fileContent(t *testing.T, base, sessionID, path string) string {
	t.Helper()
	code, out := call(t, base, "GET", "/api/playground/files?sessionId="+url.QueryEscape(sessionID)+"&path="+url.QueryEscape(path), nil)
	files, _ := out["files"].([]any)
	if code != 200 || len(files) != 1 {
		t.Fatalf("read %s back: %d %v", path, code, out)
	}
	content, _ := files[0].(map[string]any)["content"].(string)
	return content
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}
