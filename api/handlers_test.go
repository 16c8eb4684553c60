package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// fakeSessions counts calls; bad input must never reach it.
type fakeSessions struct {
	instances map[string]string // PreviewInstance's answers; nil: no session is here
	calls     atomic.Int64
	lastExec  runtime.ExecRequest
	lastFile  string
	lastFork  [2]string // the last Fork's new session and its source
}

func (f *fakeSessions) Fork(_ context.Context, id, from string) (store.Session, bool, error) {
	f.calls.Add(1)
	f.lastFork = [2]string{id, from}
	return store.Session{SessionID: id, ContainerID: "servcraft-playground-f", ProjectType: "typescript"}, true, nil
}

func (f *fakeSessions) Create(_ context.Context, id, pt string) (store.Session, bool, error) {
	f.calls.Add(1)
	return store.Session{SessionID: id, ContainerID: "servcraft-playground-x", ProjectType: pt}, true, nil
}
func (f *fakeSessions) Get(_ context.Context, id string) (runtime.Info, error) {
	f.calls.Add(1)
	return runtime.Info{}, fmt.Errorf("session %q: %w", id, errdefs.ErrNotFound)
}
func (f *fakeSessions) Extend(_ context.Context, id string) (store.Session, error) {
	f.calls.Add(1)
	return store.Session{}, fmt.Errorf("session %q: %w", id, errdefs.ErrFailedPrecondition)
}
func (f *fakeSessions) Destroy(_ context.Context, id string) error {
	f.calls.Add(1)
	return fmt.Errorf("session %q: %w", id, errdefs.ErrNotFound)
}
func (f *fakeSessions) Exec(_ context.Context, _ string, req runtime.ExecRequest) (runtime.ExecResult, error) {
	f.calls.Add(1)
	f.lastExec = req
	return runtime.ExecResult{Stdout: "ok\n", ExitCode: 0, Duration: time.Millisecond}, nil
}
func (f *fakeSessions) WriteFileUnflushed(_ context.Context, _, rel string, _ []byte) (func() error, error) {
	f.calls.Add(1)
	f.lastFile = rel
	return func() error { return nil }, nil
}
func (f *fakeSessions) Sync(context.Context, string, []workspace.Entry, bool) (workspace.SyncResult, error) {
	f.calls.Add(1)
	return workspace.SyncResult{}, nil
}
func (f *fakeSessions) ListFiles(context.Context, string, string, workspace.ListLimits) ([]workspace.FileInfo, error) {
	f.calls.Add(1)
	return nil, nil
}
func (f *fakeSessions) Install(context.Context, string, runtime.InstallRequest) (runtime.InstallResult, error) {
	f.calls.Add(1)
	return runtime.InstallResult{}, nil
}
func (f *fakeSessions) DialSession(context.Context, string, int) (net.Conn, error) {
	f.calls.Add(1)
	return nil, errdefs.ErrNotFound
}
func (f *fakeSessions) PreviewInstance(id string) (string, bool) {
	if f.instances != nil {
		instance, ok := f.instances[id]
		return instance, ok
	}
	return "", false
}
func (f *fakeSessions) PreviewSession(id string) (string, error) {
	if id == "ambiguous" {
		return "", runtime.ErrAmbiguousPreview
	}
	return id, nil
}
func (f *fakeSessions) StartBackground(context.Context, string, string) (runtime.Process, error) {
	f.calls.Add(1)
	return runtime.Process{}, nil
}
func (f *fakeSessions) Processes(context.Context, string) ([]runtime.Process, error) {
	f.calls.Add(1)
	return nil, nil
}
func (f *fakeSessions) Logs(context.Context, string, string, bool) (runtime.ProcessLog, error) {
	f.calls.Add(1)
	return runtime.ProcessLog{}, nil
}
func (f *fakeSessions) Kill(context.Context, string, string) (runtime.Process, error) {
	f.calls.Add(1)
	return runtime.Process{}, nil
}
func (f *fakeSessions) OpenTerminal(context.Context, string, uint32, uint32) (*runtime.Terminal, error) {
	f.calls.Add(1)
	return nil, errdefs.ErrNotFound
}
func (f *fakeSessions) Touch(string)                {}
func (f *fakeSessions) Ready(context.Context) error { return nil }

func do(t *testing.T, h http.Handler, method, target, body string) (int, map[string]any) {
	t.Helper()
	req := newRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	apitest.Check(t, openAPIDocument, req, rec.Code, rec.Header(), rec.Body.Bytes())
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, target, rec.Body.String())
	}
	return rec.Code, out
}

func TestBadInputIsRejectedBeforeTheRuntime(t *testing.T) {
	opt := DefaultOptions()
	opt.MaxBodyBytes = 4 << 10
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		name, method, target, body string
		status                     int
	}{
		{"malformed JSON", "POST", "/api/playground/container", `{"sessionId":`, 400},
		{"not an object", "POST", "/api/playground/container", `[1,2]`, 400},
		{"empty body", "POST", "/api/playground/container", ``, 400},
		{"trailing data", "POST", "/api/playground/container", `{"sessionId":"a"} {}`, 400},
		{"missing sessionId", "POST", "/api/playground/container", `{}`, 400},
		{"sessionId wrong type", "POST", "/api/playground/container", `{"sessionId":12}`, 400},
		{"sessionId too long", "POST", "/api/playground/container", `{"sessionId":"` + long + `"}`, 400},
		{"sessionId slash", "POST", "/api/playground/container", `{"sessionId":"a/b"}`, 400},
		{"sessionId space", "POST", "/api/playground/container", `{"sessionId":"a b"}`, 400},
		{"sessionId unicode", "POST", "/api/playground/container", `{"sessionId":"sé"}`, 400},
		{"bad projectType", "POST", "/api/playground/container", `{"sessionId":"a","projectType":"py"}`, 400},
		{"get without id", "GET", "/api/playground/container", ``, 400},
		{"get bad id", "GET", "/api/playground/container?sessionId=..%2F..", ``, 400},
		{"delete bad id", "DELETE", "/api/playground/container?sessionId=%00", ``, 400},
		{"patch bad id", "PATCH", "/api/playground/container", `{"sessionId":"$x"}`, 400},
		{"absolute filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"/etc/passwd.js"}`, 400},
		{"dotdot filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"../x.js"}`, 400},
		{"inner dotdot filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"src/../../x.js"}`, 400},
		{"backslash filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"..\\x.js"}`, 400},
		{"NUL filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"x\u0000.js"}`, 400},
		{"not runnable filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"x.sh"}`, 400},
		{"typescript without toolchain", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"x.ts"}`, 400},
		{"node_modules filename", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"node_modules/x.js"}`, 400},
		{"negative timeout", "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","timeoutMs":-5}`, 400},
		{"code wrong type", "POST", "/api/playground/execute", `{"sessionId":"a","code":{}}`, 400},
		{"empty command", "POST", "/api/playground/shell", `{"sessionId":"a","command":"  "}`, 400},
		{"terminal bad session", "GET", "/api/playground/terminal?sessionId=%2F", ``, 400},
		{"terminal bad size", "GET", "/api/playground/terminal?sessionId=a&cols=0", ``, 400},
		{"logs without id", "GET", "/api/playground/processes/logs?sessionId=a", ``, 400},
		{"kill without id", "DELETE", "/api/playground/processes?sessionId=a", ``, 400},
		{"processes bad session", "GET", "/api/playground/processes?sessionId=a%20b", ``, 400},
		{"over-large body", "POST", "/api/playground/execute", `{"sessionId":"a","code":"` + strings.Repeat("x", 5<<10) + `"}`, 413},
		{"unknown route", "GET", "/api/playground/nope", ``, 404},
		{"unknown action", "GET", "/api/playground/container?sessionId=a&action=rm", ``, 400},
		{"files without id", "GET", "/api/playground/files", ``, 400},
		{"files path escape", "GET", "/api/playground/files?sessionId=a&path=../etc", ``, 400},
		{"files absolute path", "GET", "/api/playground/files?sessionId=a&path=/etc", ``, 400},
		{"getFiles path escape", "GET", "/api/playground/container?sessionId=a&action=getFiles&path=a/../../b", ``, 400},
		{"sync bad mode", "POST", "/api/playground/sync", `{"sessionId":"a","files":[],"mode":"nuke"}`, 400},
		{"sync dotdot name", "POST", "/api/playground/sync", `{"sessionId":"a","files":[{"name":"..","type":"folder","children":[{"name":"x","type":"file","content":"1"}]}]}`, 400},
		{"sync slash in name", "POST", "/api/playground/sync", `{"sessionId":"a","files":[{"name":"a/../../x","type":"file","content":"1"}]}`, 400},
		{"sync bad base64", "POST", "/api/playground/sync", `{"sessionId":"a","files":[{"name":"x.bin","type":"file","content":"%%%","encoding":"base64"}]}`, 400},
		{"sync node_modules", "POST", "/api/playground/sync", `{"sessionId":"a","files":[{"name":"node_modules","type":"folder","children":[]}]}`, 400},
		{"sync files not a list", "POST", "/api/playground/sync", `{"sessionId":"a","files":{}}`, 400},
		{"install url", "POST", "/api/playground/install", `{"sessionId":"a","packages":["https://x.example/a.tgz"]}`, 400},
		{"install git", "POST", "/api/playground/install", `{"sessionId":"a","packages":["git+ssh://git@x/y.git"]}`, 400},
		{"install file", "POST", "/api/playground/install", `{"sessionId":"a","packages":["file:../../etc"]}`, 400},
		{"install alias", "POST", "/api/playground/install", `{"sessionId":"a","packages":["x@npm:evil"]}`, 400},
		{"install shell", "POST", "/api/playground/install", `{"sessionId":"a","packages":["a; curl x | sh"]}`, 400},
		{"install option", "POST", "/api/playground/install", `{"sessionId":"a","packages":["--registry=http://x"]}`, 400},
		{"install too many", "POST", "/api/playground/install", `{"sessionId":"a","packages":[` + strings.Repeat(`"a",`, 50) + `"a"]}`, 400},
		{"install not strings", "POST", "/api/playground/install", `{"sessionId":"a","packages":[1]}`, 400},
		{"wrong method", "PUT", "/api/playground/container", `{}`, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSessions{}
			status, body := do(t, NewRouter(f, opt), tc.method, tc.target, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %v", status, tc.status, body)
			}
			if body["success"] != false {
				t.Errorf("success = %v", body["success"])
			}
			if msg, ok := body["error"].(string); !ok || msg == "" {
				t.Errorf("error is not a message: %#v", body["error"])
			}
			if n := f.calls.Load(); n != 0 {
				t.Errorf("runtime called %d times for bad input", n)
			}
		})
	}
}

func TestOverLargeBodyWithoutContentLength(t *testing.T) {
	opt := DefaultOptions()
	opt.MaxBodyBytes = 1 << 10
	f := &fakeSessions{}
	req := newRequest("POST", "/api/playground/execute",
		strings.NewReader(`{"sessionId":"a","code":"`+strings.Repeat("x", 4<<10)+`"}`))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	NewRouter(f, opt).ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || f.calls.Load() != 0 {
		t.Fatalf("status %d, calls %d: %s", rec.Code, f.calls.Load(), rec.Body.String())
	}
}

func TestRuntimeErrorsMapToStatuses(t *testing.T) {
	f := &fakeSessions{}
	h := NewRouter(f, DefaultOptions())
	status, body := do(t, h, "GET", "/api/playground/container?sessionId=ghost", "")
	if status != 404 || body["exists"] != false {
		t.Errorf("get unknown: %d %v", status, body)
	}
	if status, body := do(t, h, "DELETE", "/api/playground/container?sessionId=ghost", ""); status != 404 || body["code"] != "not_found" {
		t.Errorf("delete unknown: %d %v", status, body)
	}
	if status, body := do(t, h, "PATCH", "/api/playground/container", `{"sessionId":"a"}`); status != 409 || body["success"] != false {
		t.Errorf("extend twice: %d %v", status, body)
	}
}

func TestExecuteBuildsArgvFromValidatedInput(t *testing.T) {
	f := &fakeSessions{}
	h := NewRouter(f, DefaultOptions())
	status, body := do(t, h, "POST", "/api/playground/execute", `{"sessionId":"a","code":"console.log(1)","filename":"src/main.mjs","timeoutMs":999999999}`)
	if status != 200 || body["success"] != true || body["output"] != "ok\n" {
		t.Fatalf("%d %v", status, body)
	}
	if f.lastExec.Script != "src/main.mjs" || len(f.lastExec.Args) != 0 || f.lastFile != "src/main.mjs" {
		t.Errorf("script %q args %v file %q", f.lastExec.Script, f.lastExec.Args, f.lastFile)
	}
	if f.lastExec.Timeout != DefaultOptions().MaxExecTimeout {
		t.Errorf("timeout %v not capped to %v", f.lastExec.Timeout, DefaultOptions().MaxExecTimeout)
	}
	status, _ = do(t, h, "POST", "/api/playground/execute", `{"sessionId":"a","code":"1"}`)
	if status != 200 || f.lastFile != "index.js" {
		t.Errorf("default filename: %d %q", status, f.lastFile)
	}
	opt := DefaultOptions()
	opt.TypeScript = true
	status, _ = do(t, NewRouter(f, opt), "POST", "/api/playground/execute", `{"sessionId":"a","code":"1","filename":"src/app.ts"}`)
	if status != 200 || f.lastExec.Script != "src/app.ts" || len(f.lastExec.Args) != 0 {
		t.Errorf("typescript: %d %q %v", status, f.lastExec.Script, f.lastExec.Args)
	}
}

func TestShellPassesTheCommandLineAsIs(t *testing.T) {
	f := &fakeSessions{}
	h := NewRouter(f, DefaultOptions())
	cmd := "printf '%s\\n' \"$0\"\nexit 3\n\n"
	body, _ := json.Marshal(map[string]any{"sessionId": "a", "command": cmd, "stdin": "in"})
	if status, res := do(t, h, "POST", "/api/playground/shell", string(body)); status != 200 || res["success"] != true {
		t.Fatalf("%d %v", status, res)
	}
	if f.lastExec.Shell != cmd || len(f.lastExec.Args) != 0 || string(f.lastExec.Stdin) != "in" {
		t.Errorf("shell %q args %v stdin %q", f.lastExec.Shell, f.lastExec.Args, f.lastExec.Stdin)
	}
}

func TestToHTTP(t *testing.T) {
	for _, tc := range []struct {
		cause  error
		status int
	}{
		{errdefs.ErrInvalidArgument, 400},
		{errdefs.ErrNotFound, 404},
		{errdefs.ErrAlreadyExists, 409},
		{errdefs.ErrFailedPrecondition, 409},
		{errdefs.ErrResourceExhausted, 429},
		{errdefs.ErrNotImplemented, 501},
		{errdefs.ErrUnavailable, 503},
		{errBodyTooLarge, 413},
		{fmt.Errorf("%w: %w", workspace.ErrFull, errdefs.ErrResourceExhausted), 413},
		{disk.ErrHostFull, 507},
		{fmt.Errorf("boom"), 500},
	} {
		if got, _ := ToHTTP(fmt.Errorf("wrapped: %w", tc.cause)); got != tc.status {
			t.Errorf("%v -> %d, want %d", tc.cause, got, tc.status)
		}
	}
}

func TestPreviewAddressPages(t *testing.T) {
	f := &fakeSessions{}
	h := NewRouter(f, Options{PreviewPublic: true})
	for _, tc := range []struct {
		target string
		status int
		title  string
		dials  int64
	}{
		{"/p/ambiguous/", http.StatusNotFound, "Ambiguous preview address", 0},
		{"/api/playground/preview/ambiguous", http.StatusNotFound, "Ambiguous preview address", 0},
		{"/p/bad%20id/", http.StatusBadRequest, "Bad preview address", 0},
		{"/p/t3ow5gbl26b/", http.StatusNotFound, "No such session", 1},
	} {
		before := f.calls.Load()
		rec := send(h, "GET", tc.target, "")
		body := rec.Body.String()
		if rec.Code != tc.status || !strings.Contains(body, "<h1>"+tc.title+"</h1>") || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %s", tc.target, rec.Code, body)
		}
		if got := f.calls.Load() - before; got != tc.dials {
			t.Errorf("%s: %d dials, want %d", tc.target, got, tc.dials)
		}
	}
}

func TestDefaultOptionsAreValidAndRangesAreChecked(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	bad := DefaultOptions()
	bad.MaxTerminals, bad.CORSOrigins = 1001, []string{"https://a.example/path"}
	err := bad.Validate()
	for _, setting := range []string{"max-terminals", "cors-origins"} {
		if err == nil || !strings.Contains(err.Error(), setting) {
			t.Errorf("err %v does not name %s", err, setting)
		}
	}
}

// A create's answer carries its phases too (the runtime marks its own:
// reserve, workspace, container, task, start, spawner, deps; adopt from the
// warm pool; snapshot and remount for a fork onto a warm container).
func TestCreateAnswersWithServerTiming(t *testing.T) {
	rec := send(NewRouter(&fakeSessions{}, DefaultOptions()), "POST", "/api/playground/container", `{"sessionId":"a","projectType":"js"}`)
	timing := rec.Header().Get("Server-Timing")
	if rec.Code != 201 || !strings.HasPrefix(timing, "parse;dur=") || !strings.Contains(timing, "answer;dur=") || !strings.Contains(timing, "total;dur=") {
		t.Fatalf("%d Server-Timing %q", rec.Code, timing)
	}
}
