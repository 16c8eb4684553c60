package web_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"image/png"
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
	"github.com/chromedp/chromedp/kb"

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
// Stop, the terminal, keep-alive, reset, a session that is gone, and in a
// new TypeScript session its language server: a type error, completion, hover.
// Screenshots go to artifactDir on failure (and at every step with
// SERVCRAFT_TEST_ARTIFACTS set).
func TestPlaygroundPageInChromium(t *testing.T) {
	p := openPage(t)
	base, step, currentSession := p.base, p.step, p.currentSession
	var sessionID string
	p.onSession = func(id string) { sessionID = id }

	p.startJS(
		until(`document.querySelector('#tree [data-path="src/app.js"]') !== null`),
		until(`document.getElementById("terminal-state").dataset.state === "open"`),
		// Nothing serves yet: the preview says so and asks the session nothing.
		until(`document.getElementById("preview-status").dataset.status === "idle"`))
	if n := strings.Count(p.daemon.Log(), "route=/p/:sessionId"); n != 0 {
		t.Fatalf("the page asked the preview %d times before anything served", n)
	}
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

	step("run the file with Ctrl+Enter in the editor", 30*time.Second,
		chromedp.Click(chromedp.CSS(".cm-content")),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		outputHas("hello from the page 42"),
		outputHas("[exit 0"),
		until(`document.getElementById("sync-state").dataset.sync !== "pending"`))
	if got := fileContent(t, base, sessionID, "hello.js"); got != program {
		t.Fatalf("hello.js after Ctrl+Enter: %q, want %q (no line inserted)", got, program)
	}

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
	previewSrc := eval[string](p, `document.getElementById("preview").src`)
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
		until(`document.getElementById("stop").disabled && !document.getElementById("run-project").disabled`),
		until(`document.getElementById("preview-status").dataset.status === "idle" && document.getElementById("preview-status").textContent.startsWith("stopped")`))
	if _, procs := call(t, base, "GET", "/api/playground/processes?sessionId="+sessionID, nil); strings.Contains(fmt.Sprint(procs["processes"]), "running:true") {
		t.Fatalf("a process still runs after Stop: %v", procs)
	}

	// Run file on a file that serves runs it in the background, as npm start.
	step("Run file on the server file", 60*time.Second,
		chromedp.Click(chromedp.CSS(`#tree li[data-path="src/app.js"] .name`)),
		until(`document.getElementById("open-file").textContent === "src/app.js"`),
		chromedp.Click(chromedp.ID("run-file")),
		outputHas("$ node 'src/app.js'"),
		outputHas("Server listening"),
		until(`document.getElementById("preview-status").dataset.status === "200"`),
		chromedp.Sleep(11*time.Second), // past the default execute timeout: it still serves
		until(`!document.getElementById("stop").disabled`),
		chromedp.Click(chromedp.ID("stop")),
		outputHas("node 'src/app.js' stopped"),
		until(`document.getElementById("preview-status").textContent.startsWith("stopped")`))

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

	// The session's language server: a type error is underlined and counted
	// as it is typed, and goes when it is fixed.
	step("a type error shown as it is typed", 2*time.Minute,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "check.ts"),
		chromedp.Click(chromedp.ID("new-file")),
		until(`document.getElementById("open-file").textContent === "check.ts"`),
		chromedp.Click(chromedp.CSS(".cm-content")),
		insertText(`const n: number = "x";`+"\nexport {};\n"),
		until(`document.querySelector(".cm-lintRange-error") !== null`),
		until(`document.getElementById("problems").textContent === "1 type error"`),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		insertText("const n: number = 42;\nexport {};\n"),
		until(`document.querySelector(".cm-lintRange-error") === null && document.getElementById("problems").textContent === ""`))

	step("completion and hover from the language server", time.Minute,
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		insertText("const greeting = \"hi\";\nexport const loud = greeting."),
		until(`[...document.querySelectorAll(".cm-tooltip-autocomplete li")].some((e) => e.textContent.includes("toUpperCase"))`),
		chromedp.KeyEvent(kb.Escape),
		hoverOver("greeting"),
		until(`[...document.querySelectorAll(".cm-tooltip-hover .lsp-hover")].some((e) => e.textContent.includes("const greeting: \"hi\""))`))

	step("run the TypeScript file", time.Minute,
		chromedp.Click(chromedp.CSS(".cm-content")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		insertText("const n: number = 6 * 7;\nconsole.log(\"ts says\", n);\nexport {};\n"),
		until(`document.getElementById("problems").textContent === ""`),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		outputHas("ts says 42"),
		outputHas("[exit 0"))
}

// hoverOver moves the mouse onto the first occurrence of word in the editor.
func hoverOver(word string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		xy, err := chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
  const walk = document.createTreeWalker(document.querySelector(".cm-content"), NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode()); ) {
    const i = n.textContent.indexOf(%q);
    if (i < 0) continue;
    const r = document.createRange();
    r.setStart(n, i + 1);
    r.setEnd(n, i + 2);
    const b = r.getBoundingClientRect();
    return [b.x + b.width / 2, b.y + b.height / 2];
  }
  return [];
})()`, word))(ctx, tg)
		if err != nil || len(xy) != 2 {
			return chromedp.Void{}, fmt.Errorf("%q not in the editor (%v)", word, err)
		}
		for _, dx := range []float64{-1, 0} { // a move, then onto the spot: CodeMirror hovers on mousemove
			if _, err := cdp.Call(ctx, tg, input.DispatchMouseEvent, input.DispatchMouseEventParams{
				Type: input.DispatchMouseEventTypeMouseMoved, X: xy[0] + dx, Y: xy[1]}); err != nil {
				return chromedp.Void{}, err
			}
		}
		return chromedp.Void{}, nil
	}
}

// TestPlaygroundPageOutputAndFiles drives the page through a run that prints
// 300,000 lines (cut by the daemon at 1 MiB) with two targets measured in
// Chromium: the end of the output rendered within 1 s of the daemon's answer,
// and no long task over 100 ms from the click on Run to then; and through the
// file actions: a new folder and a file in it, an unsaved mark until the
// sync, two tabs, collapse and expand, rename, an uploaded PNG read back
// byte for byte, and delete; a file that runs for ever ended by Stop; and
// a program answered through its stdin.
func TestPlaygroundPageOutputAndFiles(t *testing.T) {
	p := openPage(t)
	base, step := p.base, p.step
	var sessionID string
	p.onSession = func(id string) { sessionID = id }

	p.startJS()

	bigOutput(t, p)

	exists := func(path string) int {
		code, _ := call(t, base, "GET", "/api/playground/files?sessionId="+url.QueryEscape(sessionID)+"&path="+url.QueryEscape(path), nil)
		return code
	}
	row := func(path string) string { return fmt.Sprintf(`document.querySelector('#tree li[data-path=%q]')`, path) }
	tab := func(path string) string {
		return fmt.Sprintf(`document.querySelector('#tabs .tab[data-path=%q]')`, path)
	}

	step("a new folder", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "lib"),
		chromedp.Click(chromedp.ID("new-folder")),
		until(row("lib")+` !== null && `+row("lib")+`.dataset.type === "folder"`),
		until(`document.getElementById("target-folder").textContent === "lib/"`))
	if code := exists("lib"); code != 200 {
		t.Fatalf("the new folder lib through the API: %d", code)
	}

	step("a new file in it", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "util.js"),
		chromedp.Click(chromedp.ID("new-file")),
		until(`document.getElementById("open-file").textContent === "lib/util.js"`),
		until(row("lib/util.js")+` !== null && `+tab("lib/util.js")+` !== null`))
	if got := fileContent(t, base, sessionID, "lib/util.js"); got != "" {
		t.Fatalf("the new file lib/util.js holds %q, want it empty", got)
	}

	const util = "module.exports = 6 * 7;\n"
	var marked bool
	step("type: the unsaved mark", 30*time.Second,
		chromedp.Click(chromedp.CSS(".cm-content")),
		insertText(util),
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			v, err := chromedp.Evaluate[bool](tab("lib/util.js")+`.dataset.unsaved === "true" && `+row("lib/util.js")+`.dataset.unsaved === "true"`)(ctx, tg)
			marked = v
			return chromedp.Void{}, err
		})
	if !marked {
		t.Fatalf("no unsaved mark on the tab and the tree's row right after typing")
	}
	step("synced: the mark is gone", 30*time.Second,
		until(`document.getElementById("sync-state").dataset.sync === "saved"`),
		until(`!`+tab("lib/util.js")+`.dataset.unsaved && !`+row("lib/util.js")+`.dataset.unsaved`))
	if got := fileContent(t, base, sessionID, "lib/util.js"); got != util {
		t.Fatalf("lib/util.js after the sync: %q, want %q", got, util)
	}

	tabList := `Array.from(document.querySelectorAll("#tabs .tab")).map((e) => e.dataset.path).join(" ")`
	step("tabs: switch by the tree and by a tab, close one", 30*time.Second,
		until(tabList+` === "src/app.js big.js lib/util.js"`),
		chromedp.Click(chromedp.CSS(`#tree li[data-path="src/app.js"] .name`)),
		until(tab("src/app.js")+`.classList.contains("active") && document.getElementById("open-file").textContent === "src/app.js"`),
		until(`document.querySelector(".cm-content").textContent.includes("fastify")`),
		until(tabList+` === "src/app.js big.js lib/util.js"`),
		chromedp.Click(chromedp.CSS(`#tabs .tab[data-path="lib/util.js"] .name`)),
		until(tab("lib/util.js")+`.classList.contains("active") && document.getElementById("open-file").textContent === "lib/util.js"`),
		until(`document.querySelector(".cm-content").textContent === "module.exports = 6 * 7;"`),
		chromedp.Click(chromedp.CSS(`#tabs .tab[data-path="src/app.js"] .close`)),
		until(tabList+` === "big.js lib/util.js"`),
		until(`document.getElementById("open-file").textContent === "lib/util.js"`))

	step("a reload reopens the tabs", 30*time.Second,
		chromedp.Reload(),
		ready,
		until(tabList+` === "big.js lib/util.js"`),
		until(tab("lib/util.js")+`.classList.contains("active") && document.querySelector(".cm-content").textContent === "module.exports = 6 * 7;"`))

	step("collapse and expand a folder", 15*time.Second,
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib"] .name`)),
		until(row("lib")+`.dataset.collapsed === "true" && `+row("lib/util.js")+` === null`),
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib"] .name`)),
		until(row("lib")+`.dataset.collapsed === "false" && `+row("lib/util.js")+` !== null`))

	step("rename", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib/util.js"] [data-act="rename"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#tree input.rename`)),
		chromedp.SetValue(chromedp.CSS(`#tree input.rename`), "lib/helper.js"),
		pressEnter,
		until(row("lib/helper.js")+` !== null && `+row("lib/util.js")+` === null`),
		until(tab("lib/helper.js")+` !== null && document.getElementById("open-file").textContent === "lib/helper.js"`))
	if code := exists("lib/util.js"); code != 404 {
		t.Fatalf("lib/util.js after the rename: %d, want 404", code)
	}
	if got := fileContent(t, base, sessionID, "lib/helper.js"); got != util {
		t.Fatalf("lib/helper.js after the rename: %q, want %q", got, util)
	}

	png := testPNG(t)
	file := filepath.Join(t.TempDir(), "pixel.png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	step("upload a PNG into lib", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib"] .name`)),
		until(`document.getElementById("target-folder").textContent === "lib/"`),
		chromedp.SetUploadFiles(chromedp.ID("upload-input"), []string{file}),
		until(row("lib/pixel.png")+` !== null`),
		outputHas(fmt.Sprintf("uploaded lib/pixel.png (%d bytes)", len(png))))
	sum := sha256.Sum256(png)
	if got := shellOutput(t, base, sessionID, "sha256sum lib/pixel.png && wc -c < lib/pixel.png"); got != fmt.Sprintf("%x  lib/pixel.png\n%d\n", sum, len(png)) {
		t.Fatalf("the uploaded PNG in the session: %q, want sha256 %x and %d bytes", got, sum, len(png))
	}

	step("delete a file", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib/pixel.png"] [data-act="delete"]`)),
		until(`document.querySelector('#tree li[data-path="lib/pixel.png"] [data-act="delete"]').dataset.armed === "true"`),
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib/pixel.png"] [data-act="delete"]`)),
		until(row("lib/pixel.png")+` === null`),
		outputHas("deleted lib/pixel.png"))
	if code := exists("lib/pixel.png"); code != 404 {
		t.Fatalf("lib/pixel.png after the delete: %d, want 404", code)
	}
	step("delete a folder with an open file", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib"] [data-act="delete"]`)),
		chromedp.Click(chromedp.CSS(`#tree li[data-path="lib"] [data-act="delete"]`)),
		until(row("lib")+` === null && `+row("lib/helper.js")+` === null && `+tab("lib/helper.js")+` === null`),
		outputHas("deleted lib"))
	if code := exists("lib"); code != 404 {
		t.Fatalf("lib after the delete: %d, want 404", code)
	}

	// Stop: a file that runs for ever, stopped by the Stop button.
	var stopClicked float64
	step("run a file that never ends and stop it", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "forever.js"),
		chromedp.Click(chromedp.ID("new-file")),
		until(`document.getElementById("open-file").textContent === "forever.js"`),
		chromedp.Click(chromedp.CSS(".cm-content")),
		insertText("let n = 0; setInterval(() => console.log('tick ' + n++), 100)\n"),
		until(`document.getElementById("sync-state").dataset.sync === "saved"`),
		chromedp.Click(chromedp.ID("run-file")),
		outputHas("tick 3"),
		until(`!document.getElementById("stop").disabled`),
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			v, err := chromedp.Evaluate[float64](`performance.now()`)(ctx, tg)
			stopClicked = v
			return chromedp.Void{}, err
		},
		chromedp.Click(chromedp.ID("stop")),
		outputHas("stopped"),
		until(`document.getElementById("stop").disabled && !document.getElementById("run-file").disabled`))
	if took := eval[float64](p, `performance.now()`) - stopClicked; took > 3000 {
		t.Fatalf("the run ended %.0f ms after Stop, want within 3 s", took)
	}

	// stdin: a program that asks, answered in the input under the output, ended by EOF.
	step("type into a running program's stdin", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "ask.js"),
		chromedp.Click(chromedp.ID("new-file")),
		until(`document.getElementById("open-file").textContent === "ask.js"`),
		chromedp.Click(chromedp.CSS(".cm-content")),
		insertText(`const rl = require("readline").createInterface({ input: process.stdin });
console.log("name?");
rl.on("line", (l) => console.log("hi " + l.toUpperCase()));
rl.on("close", () => console.log("input closed"));
`),
		until(`document.getElementById("sync-state").dataset.sync === "saved"`),
		chromedp.Click(chromedp.ID("clear-output")),
		chromedp.Click(chromedp.ID("run-file")),
		outputHas("name?"),
		until(`!document.getElementById("stdin-form").hidden`),
		chromedp.SendKeys(chromedp.ID("stdin"), "ann\r"),
		outputHas("hi ANN"),
		chromedp.Click(chromedp.ID("stdin-eof")),
		outputHas("input closed"),
		outputHas("[exit 0"),
		until(`document.getElementById("stdin-form").hidden`))
}

// measureRun is installed on the page before Run is pressed: long tasks
// from then on (the Long Tasks API), the moment the daemon's answer to
// execute has fully arrived with its last output line (a copy of the
// response body read alongside the page's), and, at every change of the
// output pane, the time and the text of its last blocks.
const measureRun = `(() => {
  const m = window.__measure = { since: performance.now(), longTasks: [], answerAt: 0, lastLine: null, exit: null, renders: [] };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) m.longTasks.push({ start: e.startTime, duration: e.duration });
  }).observe({ entryTypes: ["longtask"] });
  const pageFetch = window.fetch;
  window.fetch = async (...args) => {
    const res = await pageFetch(...args);
    if (!String(args[0]).endsWith("/execute") || !res.body) return res;
    const [mine, theirs] = res.body.tee();
    (async () => {
      const reader = mine.pipeThrough(new TextDecoderStream()).getReader();
      const parts = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parts.push(value);
      }
      m.answerAt = performance.now();
      const text = parts.join("");
      const exit = text.slice(text.lastIndexOf("event: exit\n"));
      const data = JSON.parse(exit.slice(exit.indexOf("data: ") + 6));
      const out = data.output.replace(/\n$/, "");
      m.lastLine = out.slice(out.lastIndexOf("\n") + 1);
      m.exit = { exitCode: data.exitCode, truncated: data.truncated, outputBytes: new TextEncoder().encode(data.output).length, lastLineEnd: out.length };
    })();
    return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  const view = document.getElementById("output");
  new MutationObserver(() => {
    const tail = Array.from(view.children).slice(-3).map((e) => e.textContent).join("");
    m.renders.push({ t: performance.now(), tail: tail.slice(-300) });
  }).observe(view, { childList: true, subtree: true, characterData: true });
})()`

// runFigures is what measureRun saw, read after the run.
type runFigures struct {
	LastLine    string    `json:"lastLine"`
	AnswerMs    float64   `json:"answerMs"`    // from the click to the whole answer
	RenderedMs  float64   `json:"renderedMs"`  // from the click to the output's end on the page; -1 never
	LongestMs   float64   `json:"longestMs"`   // the longest long task from the click to the end
	LongTasks   []float64 `json:"longTasks"`   // each one's start (ms after the click) and duration
	ExitCode    int       `json:"exitCode"`    // of the run
	Truncated   bool      `json:"truncated"`   // the daemon cut its output
	OutputBytes int       `json:"outputBytes"` // of stdout, as the answer gave it
	LastLineEnd int       `json:"lastLineEnd"` // where stdout's last line ends (its newline left out)
	ShownLines  int       `json:"shownLines"`  // lines in the output pane
	Hidden      string    `json:"hidden"`      // the pane's "earlier lines not shown"
}

const readFigures = `(() => {
  const m = window.__measure;
  const want = "\n" + m.lastLine + "\n[exit ";
  const r = m.renders.find((r) => r.tail.includes(want));
  const end = r ? r.t : performance.now();
  const tasks = m.longTasks.filter((e) => e.start + e.duration >= m.since && e.start <= end);
  return {
    lastLine: m.lastLine, answerMs: m.answerAt - m.since, renderedMs: r ? r.t - m.since : -1,
    longestMs: Math.max(0, ...tasks.map((e) => e.duration)), longTasks: tasks.flatMap((e) => [e.start - m.since, e.duration]),
    exitCode: m.exit.exitCode, truncated: m.exit.truncated, outputBytes: m.exit.outputBytes, lastLineEnd: m.exit.lastLineEnd,
    shownLines: document.getElementById("output").textContent.split("\n").length - 1,
    hidden: document.getElementById("output-hidden").hidden ? "" : document.getElementById("output-hidden").textContent,
  };
})()`

// bigOutput runs a program that prints 300,000 lines and checks the two
// targets, the bounded pane, and that the download holds the whole answer.
func bigOutput(t *testing.T, p *page) {
	const program = "for (let i = 0; i < 300000; i++) console.log('line ' + i)\n"
	p.step("a file printing 300,000 lines", 30*time.Second,
		chromedp.SendKeys(chromedp.ID("new-file-path"), "big.js"),
		chromedp.Click(chromedp.ID("new-file")),
		until(`document.getElementById("open-file").textContent === "big.js"`),
		chromedp.Click(chromedp.CSS(".cm-content")),
		insertText(program),
		until(`document.getElementById("sync-state").dataset.sync === "saved"`),
		chromedp.Evaluate[chromedp.Void](measureRun),
		chromedp.Click(chromedp.ID("run-file")),
		until(`window.__measure.exit !== null`),
		// the end rendered, or 5 s past the answer
		until(`window.__measure.renders.some((r) => r.tail.includes("\n" + window.__measure.lastLine + "\n[exit ")) ||
			performance.now() - window.__measure.answerAt > 5000`),
		chromedp.Sleep(300)) // long tasks are reported a little later
	f := eval[runFigures](p, readFigures)
	t.Logf("300,000-line run: stdout %d bytes (truncated %v, exit %d); the answer %.0f ms after the click; its last line %q rendered %.0f ms after the answer; "+
		"long tasks (start, ms) %.0f, the longest %.0f ms; the pane shows %d lines (%s)",
		f.OutputBytes, f.Truncated, f.ExitCode, f.AnswerMs, f.LastLine, f.RenderedMs-f.AnswerMs, f.LongTasks, f.LongestMs, f.ShownLines, f.Hidden)
	if !f.Truncated || f.OutputBytes != 1<<20 || f.LastLine == "" {
		t.Fatalf("the daemon's answer: truncated %v, %d bytes of stdout, last line %q; want the 1 MiB cap", f.Truncated, f.OutputBytes, f.LastLine)
	}
	if f.RenderedMs < 0 {
		t.Fatalf("the output's last line %q (then the exit line) never showed on the page", f.LastLine)
	}
	if d := f.RenderedMs - f.AnswerMs; d > 1000 {
		t.Errorf("the output's end rendered %.0f ms after the daemon's answer, want at most 1000", d)
	}
	if f.LongestMs > 100 {
		t.Errorf("a long task of %.0f ms between the click and the output's end, want none over 100", f.LongestMs)
	}
	if f.ShownLines > 2*5000+10 || !strings.HasSuffix(f.Hidden, "earlier lines not shown") {
		t.Errorf("the output pane shows %d lines (hidden: %q), want at most about 5,000 with the rest counted", f.ShownLines, f.Hidden)
	}

	// The download link gets the whole output: the Blob the page makes for it
	// is kept (the page's CSP lets it fetch no blob: address) and the
	// download itself cancelled.
	full := eval[string](p, `new Promise((resolve) => {
		const make = URL.createObjectURL;
		URL.createObjectURL = (blob) => { URL.createObjectURL = make; blob.text().then(resolve); return make(blob); };
		document.addEventListener("click", (e) => e.preventDefault(), { once: true });
		document.getElementById("output-download").click();
	})`)
	first := strings.Index(full, "line 0\nline 1\n")
	end := strings.Index(full, "\n"+f.LastLine+"\n[exit ")
	if first < 0 || end < 0 || end+1+len(f.LastLine)-first != f.LastLineEnd {
		t.Fatalf("the download (%d bytes): line 0 at %d, the last line %q at %d; want the %d bytes of stdout from one to the other",
			len(full), first, f.LastLine, end, f.LastLineEnd)
	}
}

// page is a headless Chromium on the page of a servcraftd of its own, with
// the helpers the tests drive it by.
type page struct {
	t         *testing.T
	base      string // the daemon's address
	daemon    *apitest.Daemon
	browser   context.Context
	artifacts string
	everyStep bool
	n         int // steps taken
	mu        sync.Mutex
	thrown    []string // exceptions the page threw
	onSession func(string)
}

// openPage starts servcraftd and Chromium for one test; both end with it.
func openPage(t *testing.T) *page {
	t.Helper()
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
	d := startDaemon(t, env)
	p := &page{t: t, base: d.URL, daemon: d, artifacts: artifactDir(t, env.RepoRoot),
		everyStep: os.Getenv("SERVCRAFT_TEST_ARTIFACTS") != "", onSession: func(string) {}}

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
	p.browser = browser
	if err := chromedp.Listen(browser, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			p.mu.Lock()
			p.thrown = append(p.thrown, msg)
			p.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			p.shot("failure")
			ctx, cancel := context.WithTimeout(browser, 5*time.Second)
			defer cancel()
			if out, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("output"))); err == nil {
				if len(out) > 4000 {
					out = "…" + out[len(out)-4000:]
				}
				t.Logf("the page's output pane:\n%s", out)
			}
		}
	})
	return p
}

// shot saves a screenshot of the page in the artifacts folder.
func (p *page) shot(name string) {
	t := p.t
	ctx, cancel := context.WithTimeout(p.browser, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(p.artifacts, name+".png")
	if err := os.MkdirAll(p.artifacts, 0o755); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", file)
}

// step runs actions within timeout; it fails the test if one fails or the page threw.
func (p *page) step(name string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t := p.t
	t.Helper()
	p.n++
	ctx, cancel := context.WithTimeout(p.browser, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("step %d, %s: %v", p.n, name, err)
	}
	p.mu.Lock()
	thrown := strings.Join(p.thrown, "; ")
	p.mu.Unlock()
	if thrown != "" {
		t.Fatalf("step %d, %s: the page threw: %s", p.n, name, thrown)
	}
	if p.everyStep {
		p.shot(fmt.Sprintf("%02d-%s", p.n, strings.ReplaceAll(name, " ", "-")))
	}
}

// eval evaluates a JavaScript expression on the page (a promise is awaited).
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.browser, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// currentSession reads the page's sessionId and hands it to onSession.
// startJS is the step every walk begins with: open the page, start a js
// session, wait for its starter's file in the editor and take its id
// (onSession); more are the walk's own checks of that moment.
func (p *page) startJS(more ...chromedp.Action[chromedp.Void]) {
	actions := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(p.base + "/"),
		chromedp.WaitVisible(chromedp.ID("start-js")),
		chromedp.Click(chromedp.ID("start-js")),
		ready,
		until(`document.getElementById("open-file").textContent === "src/app.js"`),
	}
	p.step("start a js session", 60*time.Second, append(append(actions, more...), p.currentSession)...)
}

func (p *page) currentSession(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
	id, err := chromedp.Evaluate[string](`localStorage.getItem("servcraft.sessionId")`)(ctx, tg)
	p.onSession(id)
	return chromedp.Void{}, err
}

// until waits for a JavaScript condition on the page.
func until(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(0))
}

func outputHas(s string) chromedp.Action[chromedp.Void] {
	return until(fmt.Sprintf(`document.getElementById("output").textContent.includes(%q)`, s))
}

var ready = until(`document.body.dataset.state === "ready" && document.querySelector("#tree [data-path]") !== null`)

// pressEnter is the Enter key alone (a keydown without the character
// event that would make xterm.js see it twice).
func pressEnter(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := cdp.Call(ctx, tg, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}); err != nil {
			return chromedp.Void{}, err
		}
	}
	return chromedp.Void{}, nil
}

func insertText(text string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, input.InsertText, input.InsertTextParams{Text: text})
		return chromedp.Void{}, err
	}
}

// startDaemon runs servcraftd (built once by apitest) on a loopback port
// against env's containerd until the test ends; every session it made is
// destroyed then.
func startDaemon(t *testing.T, env *runtimetest.Env) *apitest.Daemon {
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
	return d
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

// shellOutput runs a command in the session through the API and gives its stdout.
func shellOutput(t *testing.T, base, sessionID, command string) string {
	t.Helper()
	code, out := call(t, base, "POST", "/api/playground/shell", map[string]any{"sessionId": sessionID, "command": command})
	if code != 200 || out["success"] != true {
		t.Fatalf("shell %q: %d %v", command, code, out)
	}
	s, _ := out["output"].(string)
	return s
}

// testPNG is a small PNG: its bytes hold NULs and bytes over 0x7f, as any binary file.
func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 37)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
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
