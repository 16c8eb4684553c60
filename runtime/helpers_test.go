package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/servcraft/servcraftd/store"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstalledReadsResolvedVersions(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"package.json":                        `{"dependencies":{"a":"^1"},"devDependencies":{"@s/b":"2"}}`,
		"node_modules/a/package.json":         `{"version":"1.2.3"}`,
		"node_modules/@s/b/package.json":      `{"version":"2.0.0"}`,
		"node_modules/broken/package.json":    `{`,
		"node_modules/noversion/package.json": `{}`,
	})
	got := installed(dir, nil)
	if !slices.Equal(got, []Package{{"@s/b", "2.0.0"}, {"a", "1.2.3"}}) {
		t.Fatalf("from package.json: %v", got)
	}
	got = installed(dir, []string{"a@^1", "a@1", "broken", "noversion@latest", "missing"})
	if !slices.Equal(got, []Package{{"a", "1.2.3"}}) {
		t.Fatalf("requested: %v", got)
	}
	if err := readJSON(dir, "node_modules", new(any)); err == nil {
		t.Fatal("a folder is not a JSON file")
	}
}

func TestPackageNameAndNpmArgs(t *testing.T) {
	for spec, want := range map[string]string{"x": "x", "x@1": "x", "@s/x": "@s/x", "@s/x@^2": "@s/x"} {
		if got := PackageName(spec); got != want {
			t.Errorf("PackageName(%q) = %q", spec, got)
		}
	}
	args := npmArgs("/npm", "http://127.0.0.1:1/", []string{"a", "b"})
	if args[0] != "/npm" || args[1] != "install" || !slices.Contains(args, "http://127.0.0.1:1/") ||
		!slices.Equal(args[len(args)-2:], []string{"a", "b"}) {
		t.Fatalf("args %v", args)
	}
}

func TestDepLayerKey(t *testing.T) {
	m, _, _ := unitManager(t, func(c *Config) { c.DepCacheDir = t.TempDir(); c.NpmPath = "/npm" })
	m.deps.imageDigest = "sha256:abc"
	layers, err := openLayerCache(m.cfg.DepCacheDir, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	m.deps.cache = layers
	dir := t.TempDir()
	s := store.Session{Workspace: dir}
	if key, _ := m.deps.key(s, nil); key != "" {
		t.Fatal("no package.json: no layer")
	}
	writeFiles(t, dir, map[string]string{"package.json": `{"name":"p"}`})
	key, pkg := m.deps.key(s, []string{"a"})
	if key != layerKey(pkg, "sha256:abc", "/npm", []string{"a"}) || string(pkg) != `{"name":"p"}` {
		t.Fatalf("key %q of %q", key, pkg)
	}
	if m.deps.ready(key) {
		t.Fatal("not built yet")
	}
	tmp := t.TempDir()
	writeFiles(t, tmp, map[string]string{"package-lock.json": "{}"})
	if err := m.deps.cache.add(key, tmp); err != nil {
		t.Fatal(err)
	}
	if !m.deps.ready(key) {
		t.Fatal("built")
	}
	writeFiles(t, dir, map[string]string{"package-lock.json": "{}"})
	if key, _ := m.deps.key(s, []string{"a"}); key != "" {
		t.Fatal("a lock file shapes the result: no layer")
	}
	m.deps.cache = nil
	if key, _ := m.deps.key(store.Session{Workspace: t.TempDir()}, nil); key != "" {
		t.Fatal("no layer folder: no layer")
	}
}

func ociArchive(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"oci-layout", "index.json", "./index.json"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(data))
	}
	_ = tw.Close()
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestArchiveDigest(t *testing.T) {
	index := `{"manifests":[{"digest":"sha256:aaa","annotations":{"io.containerd.image.name":"node:20"}}]}`
	d, err := archiveDigest(ociArchive(t, map[string]string{"oci-layout": "{}", "index.json": index}), "node:20")
	if err != nil || d != "sha256:aaa" {
		t.Fatalf("digest %q %v", d, err)
	}
	if d, err := archiveDigest(ociArchive(t, map[string]string{"./index.json": index}), "node:20"); err != nil || d != "sha256:aaa" {
		t.Fatalf("./index.json: %q %v", d, err)
	}
	for name, archive := range map[string]string{
		"other ref":    ociArchive(t, map[string]string{"index.json": index}),
		"no index":     ociArchive(t, map[string]string{"oci-layout": "{}"}),
		"bad index":    ociArchive(t, map[string]string{"index.json": "{"}),
		"missing file": filepath.Join(t.TempDir(), "none.tar"),
	} {
		ref := "node:20"
		if name == "other ref" {
			ref = "node:22"
		}
		if _, err := archiveDigest(archive, ref); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestStripPrefix(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"echo then output", []string{"\r\n$ "}, "$ "},
		{"echo split", []string{"\r", "\n$ "}, "$ "},
		{"no echo", []string{"$ ls"}, "$ ls"},
		{"half an echo", []string{"\r", "x"}, "\rx"},
		{"only later", []string{"\r\n", "\r\n"}, "\r\n"},
	} {
		var out bytes.Buffer
		s := &stripPrefix{w: &out, prefix: gateEcho}
		for _, w := range tc.writes {
			if n, err := s.Write([]byte(w)); err != nil || n != len(w) {
				t.Fatalf("%s: write %d %v", tc.name, n, err)
			}
		}
		if out.String() != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, out.String(), tc.want)
		}
	}
}

func TestSmallPieces(t *testing.T) {
	r := newRingBuffer(4)
	r.Write([]byte("ab"))
	if b, cut := r.Bytes(); string(b) != "ab" || cut {
		t.Fatalf("ring %q %v", b, cut)
	}
	r.Write([]byte("cdef"))
	if b, cut := r.Bytes(); string(b) != "cdef" || !cut {
		t.Fatalf("ring %q %v", b, cut)
	}
	if signalOf(128+uint32(unix.SIGKILL)) != "SIGKILL" || signalOf(1) != "" || signalOf(128) != "" {
		t.Fatal("signal names")
	}
	for want, res := range map[string]ExecResult{
		"ok": {}, "nonzero": {ExitCode: 2}, "timeout": {TimedOut: true}, "oom": {OOMKilled: true}, "truncated": {Truncated: true},
	} {
		if got := execOutcome(res, nil); got != want {
			t.Errorf("outcome %q, want %q", got, want)
		}
	}
	if execOutcome(ExecResult{}, os.ErrClosed) != "error" {
		t.Error("an error is an error")
	}
	base := &specs.Process{User: specs.User{UID: 0}, Env: []string{"A=1"}}
	if p := userProcess(base); p.User.UID != SandboxUID || p.User.GID != SandboxUID || base.User.UID != 0 {
		t.Fatal("runs as the sandbox user, the base unchanged")
	}
	labels := sessionLabels(store.Session{SessionID: "s", UUID: "u", ProjectType: "js", CreatedAt: t0})
	if labels[LabelSession] != "s" || labels[LabelUUID] != "u" || labels[LabelProjectType] != "js" || labels[LabelCreatedAt] != "2026-01-02T03:04:05Z" {
		t.Fatalf("labels %v", labels)
	}
	var got []string
	out := newRunOutput(ExecRequest{OutputLimit: 3, OnOutput: func(stream string, chunk []byte) { got = append(got, stream+":"+string(chunk)) }})
	_, _ = out.stdout.Write([]byte("abcd"))
	_, _ = out.stderr.Write([]byte("e"))
	<-out.full
	if !slices.Equal(got, []string{"stdout:abc", "stderr:e"}) {
		t.Fatalf("streamed %v", got)
	}
	out.stream(nil)
	_, _ = out.stderr.Write([]byte("f"))
	if len(got) != 2 {
		t.Fatal("no one follows any more")
	}
	st := closedStatus(*containerd.NewExitStatus(3, t0, nil))
	if s := <-st; s.ExitCode() != 3 {
		t.Fatal("closed status hands over the status")
	}
}

// metricsTask is a task whose cgroup reports fixed metrics.
type metricsTask struct {
	containerd.Task
	data any
}

func (t metricsTask) ID() string { return "task" }

func (t metricsTask) Metrics(context.Context) (*types.Metric, error) {
	data, err := typeurl.MarshalAnyToProto(t.data)
	if err != nil {
		return nil, err
	}
	return &types.Metric{Data: data}, nil
}

func TestTaskUsage(t *testing.T) {
	ctx := context.Background()
	v2m := &v2.Metrics{Memory: &v2.MemoryStat{Usage: 10, UsageLimit: 20}, CPU: &v2.CPUStat{UsageUsec: 1500000}, Pids: &v2.PidsStat{Current: 3}}
	u, err := taskUsage(ctx, metricsTask{data: v2m})
	if err != nil || u != (Usage{MemoryBytes: 10, MemoryLimitBytes: 20, CPUSeconds: 1.5, Pids: 3}) {
		t.Fatalf("cgroup v2: %+v %v", u, err)
	}
	v1m := &v1.Metrics{Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 5, Limit: 6}}, CPU: &v1.CPUStat{Usage: &v1.CPUUsage{Total: 2e9}}, Pids: &v1.PidsStat{Current: 4}}
	u, err = taskUsage(ctx, metricsTask{data: v1m})
	if err != nil || u != (Usage{MemoryBytes: 5, MemoryLimitBytes: 6, CPUSeconds: 2, Pids: 4}) {
		t.Fatalf("cgroup v1: %+v %v", u, err)
	}
	if _, err := taskUsage(ctx, metricsTask{data: &v2.PidsStat{}}); err == nil {
		t.Fatal("metrics of another type")
	}
}
