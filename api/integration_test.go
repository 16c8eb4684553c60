package api_test

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/runtime/npmproxy"
	"github.com/servcraft/servcraftd/runtime/runtimetest"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// newServer serves the real router over the real runtime and containerd,
// installing from the registry the host's npm uses.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	return startServer(t, nil, nil, nil)
}

// startServer is newServer with a chosen registry upstream (nil: the host
// npm's, asked only once the environment is there, so -short needs no npm)
// and hooks that change the runtime's configuration and the API's options.
func startServer(t *testing.T, upstream *url.URL, tweak func(*runtime.Config), tweakOpt func(*api.Options)) *httptest.Server {
	t.Helper()
	m := startManager(t, upstream, tweak)
	opt := api.DefaultOptions()
	opt.TypeScript = m.HasToolchain()
	if tweakOpt != nil {
		tweakOpt(&opt)
	}
	srv := httptest.NewServer(api.NewRouter(m, opt))
	t.Cleanup(srv.Close)
	return srv
}

// startManager is the runtime under startServer's router, for tests that
// put several routers over the same sessions; its sessions are destroyed
// when the test ends.
func startManager(t *testing.T, upstream *url.URL, tweak func(*runtime.Config)) *runtime.Runtime {
	t.Helper()
	return startManagerOn(t, upstream, tweak, func(string) []workspace.Option {
		return []workspace.Option{workspace.WithBackend(workspace.BackendImage)}
	})
}

// startManagerOn is startManager with the workspace options volumes(state) gives.
func startManagerOn(t *testing.T, upstream *url.URL, tweak func(*runtime.Config), volumes func(state string) []workspace.Option) *runtime.Runtime {
	t.Helper()
	env := runtimetest.Start(t, "servcraft-test-api")
	if upstream == nil {
		upstream = npmRegistry(t)
	}
	state := t.TempDir()
	db, err := store.Open(filepath.Join(state, "servcraftd.db"))
	if err != nil {
		t.Fatal(err)
	}
	vols, err := workspace.NewVolumes(context.Background(), filepath.Join(state, "workspaces"), 64<<20, volumes(state)...)
	if err != nil {
		t.Fatal(err)
	}
	if vols.Backend() == workspace.BackendBtrfs {
		t.Cleanup(func() { _ = syscall.Unmount(vols.Root(), syscall.MNT_DETACH) }) // after the sessions are destroyed
	}
	registry, err := npmproxy.New(npmproxy.Config{Upstream: upstream, CacheDir: filepath.Join(state, "npm-cache")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := env.Config(state)
	cfg.Registry, cfg.DepCacheDir = registry, filepath.Join(state, "depcache")
	cfg.Limits.TmpBytes, cfg.Limits.FileBytes = 16<<20, 64<<20
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := runtime.New(env.Context(t), env.Client, db, vols, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		list, _ := db.List()
		for _, s := range list {
			if err := m.Destroy(env.Context(t), s.SessionID); err != nil {
				t.Errorf("cleanup %s: %v", s.SessionID, err)
			}
		}
		m.Close()
		db.Close()
	})
	return m
}

// npmRegistry is the registry the host's npm uses.
func npmRegistry(t *testing.T) *url.URL {
	t.Helper()
	out, err := exec.Command("npm", "config", "get", "registry").Output()
	if err != nil {
		runtimetest.Unavailable(t, "npm config get registry: %v", err)
	}
	upstream, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return upstream
}

// client calls srv; every answer is checked against the OpenAPI document.
func client(t *testing.T, srv *httptest.Server) *apitest.Client {
	t.Helper()
	return apitest.NewClient(t, srv.URL, srv.Client(), api.OpenAPIDocument())
}

func call(t *testing.T, srv *httptest.Server, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return client(t, srv).Call(method, path, body)
}

func TestPlaygroundContractEndToEnd(t *testing.T) {
	srv := newServer(t)
	id := "session-" + strings.ReplaceAll(t.Name(), "/", "-")

	status, created := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id, "projectType": "js"})
	if status != 201 || created["success"] != true || created["exposedPort"] != 3000.0 || created["projectType"] != "js" ||
		created["isExtended"] != false || created["timeout"] != 1800000.0 {
		t.Fatalf("create: %d %v", status, created)
	}
	cid, _ := created["containerId"].(string)
	if !strings.HasPrefix(cid, runtime.ContainerPrefix) {
		t.Fatalf("containerId %q", cid)
	}
	status, again := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id})
	if status != 200 || again["existing"] != true || again["containerId"] != cid {
		t.Fatalf("create again: %d %v", status, again)
	}

	status, run := call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id,
		"code": "console.log(require.main === module, process.argv[1]); console.error('warn'); process.exit(3)", "filename": "lib/run.js"})
	if status != 200 || run["success"] != false || run["exitCode"] != 3.0 || run["output"] != "true /workspace/lib/run.js\n" || run["error"] != "warn\n" {
		t.Fatalf("execute: %d %v", status, run)
	}
	status, run = call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "setInterval(()=>{},1000)", "timeoutMs": 500})
	if status != 200 || run["timedOut"] != true || run["success"] != false {
		t.Fatalf("timeout: %d %v", status, run)
	}
	status, sh := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "id -u; pwd; ls lib"})
	if status != 200 || sh["success"] != true || sh["output"] != "1000\n/workspace\nrun.js\n" || sh["exitCode"] != 0.0 {
		t.Fatalf("shell: %d %v", status, sh)
	}

	status, info := call(t, srv, "GET", "/api/playground/container?sessionId="+id, nil)
	usage, _ := info["usage"].(map[string]any)
	if status != 200 || info["exists"] != true || info["containerId"] != cid || info["status"] != "running" ||
		usage == nil || usage["memoryBytes"].(float64) <= 0 || usage["pids"] == nil {
		t.Fatalf("get: %d %v", status, info)
	}
	for _, f := range []string{"createdAt", "lastAccessed", "expiresAt", "isExtended", "projectType", "exposedPort"} {
		if _, ok := info[f]; !ok {
			t.Errorf("get lacks %q", f)
		}
	}

	status, ext := call(t, srv, "PATCH", "/api/playground/container", map[string]any{"sessionId": id})
	if status != 200 || ext["success"] != true || ext["isExtended"] != true {
		t.Fatalf("extend: %d %v", status, ext)
	}
	status, ext = call(t, srv, "PATCH", "/api/playground/container", map[string]any{"sessionId": id})
	if status != 409 || ext["success"] != false {
		t.Fatalf("extend twice: %d %v", status, ext)
	}

	status, del := call(t, srv, "DELETE", "/api/playground/container?sessionId="+id, nil)
	if status != 200 || del["success"] != true {
		t.Fatalf("delete: %d %v", status, del)
	}
	if status, got := call(t, srv, "GET", "/api/playground/container?sessionId="+id, nil); status != 404 || got["exists"] != false {
		t.Fatalf("get after delete: %d %v", status, got)
	}
	if status, _ := call(t, srv, "DELETE", "/api/playground/container?sessionId="+id, nil); status != 404 {
		t.Fatalf("delete twice: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "1"}); status != 404 {
		t.Fatalf("execute in deleted session: %d", status)
	}
}

// A symlink planted by user code must not lead a host-side write out of the workspace.
func TestExecuteThroughPlantedSymlinkStaysInside(t *testing.T) {
	srv := newServer(t)
	id := "symlink-" + t.Name()
	canaryDir := t.TempDir()
	if status, _ := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id}); status != 201 {
		t.Fatal("create failed")
	}
	status, sh := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": "ln -s " + canaryDir + " dir && ln -s " + canaryDir + "/file.js file.js && ln -s /etc etc"})
	if status != 200 || sh["success"] != true {
		t.Fatalf("plant: %v", sh)
	}
	for _, name := range []string{"dir/x.js", "file.js", "etc/passwd.js"} {
		status, body := call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": "pwned", "filename": name})
		if status != 400 {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	entries, _ := os.ReadDir(canaryDir)
	if len(entries) != 0 {
		t.Fatalf("host folder written through a symlink: %v", entries)
	}
	if _, err := os.Stat("/etc/passwd.js"); !os.IsNotExist(err) {
		t.Fatal("/etc/passwd.js created on the host")
	}
}

func TestTypeScriptStarterProject(t *testing.T) {
	srv := newServer(t)
	id := "ts-" + t.Name()
	status, created := call(t, srv, "POST", "/api/playground/container", map[string]any{"sessionId": id})
	if status != 201 || created["projectType"] != "ts" {
		t.Fatalf("create: %d %v", status, created)
	}
	status, sh := call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id,
		"command": "ls src && grep -c fastify package.json && stat -c %u src/app.ts"})
	if status != 200 || sh["output"] != "app.ts\n1\n1000\n" {
		t.Fatalf("seeded workspace: %d %v", status, sh)
	}
	code := "interface P { n: number }\nconst p: P = { n: 21 };\nconsole.log(p.n * 2, require.main === module);\n"
	status, run := call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id, "code": code, "filename": "src/calc.cts"})
	if status != 200 || run["output"] != "42 true\n" {
		t.Fatalf("execute .cts: %d %v", status, run)
	}
	status, run = call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id,
		"code": "const u: string = import.meta.url;\nconsole.log(u);\n", "filename": "src/esm.ts"})
	if status != 200 || run["output"] != "file:///workspace/src/esm.ts\n" {
		t.Fatalf("execute .ts: %d %v", status, run)
	}
	status, sh = call(t, srv, "POST", "/api/playground/shell", map[string]any{"sessionId": id, "command": "tsx src/esm.ts"})
	if status != 200 || sh["output"] != "file:///workspace/src/esm.ts\n" {
		t.Fatalf("tsx on PATH: %d %v", status, sh)
	}
	status, run = call(t, srv, "POST", "/api/playground/execute", map[string]any{"sessionId": id,
		"code": "const x: number = 'not a number' as unknown as number;\nthrow new Error('boom ' + x);\n", "filename": "src/fail.ts"})
	if status != 200 || run["success"] != false || run["exitCode"] != 1.0 || !strings.Contains(run["error"].(string), "boom not a number") {
		t.Fatalf("failing .ts: %d %v", status, run)
	}
}
