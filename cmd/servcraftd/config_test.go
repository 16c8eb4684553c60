package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/runtime/npmproxy"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512MiB", 512 << 20, true},
		{"1GiB", 1 << 30, true},
		{"64k", 64 << 10, true},
		{"1.5G", 3 << 29, true},
		{"1000", 1000, true},
		{"1MB", 1000000, true},
		{" 2 MiB ", 2 << 20, true},
		{"-1MiB", 0, false},
		{"lots", 0, false},
		{"", 0, false},
		{"NaN", 0, false},
		{"1e30GiB", 0, false},
	} {
		got, err := parseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigLayers(t *testing.T) {
	cfg, err := loadConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.Limits.MemoryBytes != 512<<20 || cfg.CPUs != 0.5 || cfg.Runtime.IdleTimeout != 30*time.Minute || cfg.Listen != "127.0.0.1:8080" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = loadConfig([]string{"--memory", "1GiB"}, env(map[string]string{
		"SERVCRAFT_MEMORY": "256MiB", "SERVCRAFT_IDLE_TIMEOUT": "5m"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.Limits.MemoryBytes != 1<<30 || cfg.Runtime.IdleTimeout != 5*time.Minute {
		t.Fatalf("flags must win over env, env over defaults: memory %d idle %v", cfg.Runtime.Limits.MemoryBytes, cfg.Runtime.IdleTimeout)
	}
	q, p := cfg.cpuQuota()
	if q != 50000 || p != 100000 {
		t.Fatalf("quota %d/%d", q, p)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		setting string
	}{
		{[]string{"--memory", "-5"}, nil, "memory"},
		{[]string{"--memory", "1MiB"}, nil, "memory"},
		{[]string{"--cpus", "0"}, nil, "cpus"},
		{[]string{"--runner-boot-cpus", "-1"}, nil, "runner-boot-cpus"},
		{[]string{"--runner-boot-cpus", "0.001"}, nil, "runner-boot-cpus"},
		{[]string{"--runner-depth", "0"}, nil, "runner-depth"},
		{[]string{"--runner-depth", "9"}, nil, "runner-depth"},
		{[]string{"--max-held-per-client", "-1"}, nil, "max-held-per-client"},
		{[]string{"--max-held-per-client", "100001"}, nil, "max-held-per-client"},
		{[]string{"--max-held-per-session", "-1"}, nil, "max-held-per-session"},
		{[]string{"--max-concurrent-listings", "1001"}, nil, "max-concurrent-listings"},
		{[]string{"--preview-idle-timeout", "500ms"}, nil, "preview-idle-timeout"},
		{[]string{"--preview-idle-timeout", "25h"}, nil, "preview-idle-timeout"},
		{[]string{"--idle-timeout", "soon"}, nil, "idle-timeout"},
		{[]string{"--exec-timeout", "30s", "--max-exec-timeout", "10s"}, nil, "max-exec-timeout"},
		{[]string{"--log-format", "xml"}, nil, "log-format"},
		{[]string{"--exposed-port", "70000"}, nil, "exposed-port"},
		{[]string{"--output-limit", "10"}, nil, "output-limit"},
		{[]string{"--install-upstream-bytes", "1KiB"}, nil, "install-upstream-bytes"},
		{[]string{"--npm-cache-size", "1MiB"}, nil, "npm-cache-size"},
		{[]string{"--dep-layer-max-size", "1KiB"}, nil, "dep-layer-max-size"},
		{[]string{"--dep-cache-size", "64MiB", "--dep-layer-max-size", "128MiB"}, nil, "dep-cache-size"},
		{nil, map[string]string{"SERVCRAFT_PIDS": "many"}, "SERVCRAFT_PIDS"},
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"stray"}, nil, "unexpected"},
	} {
		_, err := loadConfig(tc.args, env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%v %v: err %v does not name %s", tc.args, tc.env, err, tc.setting)
		}
	}
}

func TestRelativePathsAreTheWorkingDirectorys(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg, err := loadConfig([]string{"--containerd-address", ".servcraft/containerd/containerd.sock", "--state-dir", "state",
		"--init", "bin/tini-static", "--toolchain-dir", "./toolchain", "--fallback-archive", "../node20.tar"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ got, want string }{
		{cfg.ContainerdAddress, filepath.Join(dir, ".servcraft/containerd/containerd.sock")},
		{cfg.StateDir, filepath.Join(dir, "state")},
		{cfg.Runtime.StateDir, filepath.Join(dir, "state")},
		{cfg.Runtime.DepCacheDir, filepath.Join(dir, "state", "depcache")},
		{cfg.Runtime.InitPath, filepath.Join(dir, "bin/tini-static")},
		{cfg.Runtime.ToolchainDir, filepath.Join(dir, "toolchain")},
		{cfg.Runtime.Image.FallbackArchive, filepath.Join(filepath.Dir(dir), "node20.tar")},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	// Absolute paths and unset ones stay as they are; paths inside the image are not the host's.
	cfg, err = loadConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ContainerdAddress != "/run/containerd/containerd.sock" || cfg.Runtime.ToolchainDir != "" ||
		cfg.Runtime.NodePath != "/usr/local/bin/node" {
		t.Errorf("defaults changed: %q %q %q", cfg.ContainerdAddress, cfg.Runtime.ToolchainDir, cfg.Runtime.NodePath)
	}
}

func TestDerivedSettings(t *testing.T) {
	cfg, err := loadConfig([]string{"--cpus", "1.5", "--max-body", "8MiB", "--max-path-depth", "7", "--idle-timeout", "3m",
		"--max-exec-timeout", "45s", "--install-timeout", "90s", "--node-path", "/opt/node"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Runtime.Limits; l.CPUQuota != 150000 || l.CPUPeriod != 100000 {
		t.Errorf("cpus 1.5: quota %d/%d", l.CPUQuota, l.CPUPeriod)
	}
	o := cfg.API
	if o.SyncLimits.MaxTotalBytes != 8<<20 || o.SyncLimits.Path.MaxDepth != 7 || o.ListLimits.Path.MaxDepth != 7 ||
		o.IdleTimeout != 3*time.Minute || o.MaxExecTimeout != 45*time.Second || o.MaxInstallTimeout != 90*time.Second ||
		o.NodePath != "/opt/node" {
		t.Errorf("API options not derived: %+v", o)
	}
}

func TestSettingGroupsHoldEveryFlagOnce(t *testing.T) {
	seen := map[string]int{}
	for _, g := range settingGroups {
		for _, n := range g.names {
			seen[n]++
		}
	}
	fs := defaultFlags()
	fs.VisitAll(func(f *flag.Flag) {
		if seen[f.Name] != 1 {
			t.Errorf("--%s is in %d groups of settingGroups, want 1", f.Name, seen[f.Name])
		}
		delete(seen, f.Name)
	})
	for n := range seen {
		t.Errorf("settingGroups names %q, which is no flag", n)
	}
}

// TestConfigDocIsCurrent keeps docs/configuration.md what the flags say.
func TestConfigDocIsCurrent(t *testing.T) {
	var want bytes.Buffer
	if err := writeConfigDoc(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("docs/configuration.md does not match the flags: run make config-doc")
	}
}

// TestEnvExampleIsCurrent keeps deploy/servcraftd.env.example what the flags say.
func TestEnvExampleIsCurrent(t *testing.T) {
	var want bytes.Buffer
	if err := writeEnvExample(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../deploy/servcraftd.env.example")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("deploy/servcraftd.env.example does not match the flags: run make config-doc")
	}
}

func TestWrapWords(t *testing.T) {
	got := wrapWords("one two three averyveryverylongword four", 9)
	want := []string{"one two", "three", "averyveryverylongword", "four"}
	if !slices.Equal(got, want) {
		t.Fatalf("wrapWords: %q, want %q", got, want)
	}
}

// TestEnvExampleMatchesFlags checks deploy/servcraftd.env.example: every
// SERVCRAFT_* name in it is a flag's, every flag has a NAME= line, and a
// flag with a default shows it (in any spelling the flag reads the same).
func TestEnvExampleMatchesFlags(t *testing.T) {
	data, err := os.ReadFile("../../deploy/servcraftd.env.example")
	if err != nil {
		t.Fatal(err)
	}
	fs := defaultFlags()
	byEnv := map[string]*flag.Flag{}
	fs.VisitAll(func(f *flag.Flag) { byEnv[envName(f.Name)] = f })
	for _, name := range regexp.MustCompile(`SERVCRAFT_[A-Z0-9_]*[A-Z0-9]`).FindAllString(string(data), -1) {
		if byEnv[name] == nil {
			t.Errorf("the env example names %s, which is no flag's variable", name)
		}
	}
	values := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^#?(SERVCRAFT_[A-Z0-9_]+)=(.*)$`).FindAllStringSubmatch(string(data), -1) {
		values[m[1]] = append(values[m[1]], m[2])
	}
	for name, f := range byEnv {
		vs, ok := values[name]
		if !ok {
			t.Errorf("the env example has no %s= line (--%s)", name, f.Name)
			continue
		}
		if f.DefValue == "" {
			continue // an example value, or the unit's
		}
		shown := false
		for _, v := range vs {
			probe := defaultFlags()
			if probe.Set(f.Name, v) == nil && probe.Lookup(f.Name).Value.String() == f.DefValue {
				shown = true
			}
		}
		if !shown {
			t.Errorf("the env example does not show the default of %s: %s (it has %q)", name, f.DefValue, vs)
		}
	}
}

// defaultNearFlag finds a flag mention (`--name`) and the few words after it,
// up to the next flag mention or the end of the sentence.
var (
	flagMention  = regexp.MustCompile("--([a-z][a-z0-9-]*[a-z0-9])|SERVCRAFT_([A-Z0-9_]*[A-Z0-9])")
	valueWritten = regexp.MustCompile(`(?i)\b(\d+(?:\.\d+)?)(?:\s*(KiB|MiB|GiB|TiB|KB|MB|GB|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h|/[smh](?::\d+)?))?\b`)
	unitWords    = map[string]string{"second": "s", "seconds": "s", "sec": "s", "secs": "s",
		"minute": "m", "minutes": "m", "min": "m", "mins": "m", "hour": "h", "hours": "h"}
)

// wordsAfterFlag is how far after a flag's mention a written value counts as its restated default.
const wordsAfterFlag = 6

// TestDocsRestateNoDefault checks that README.md, docs/*.md, deploy/ and
// scripts/ (all but the generated docs/configuration.md and
// deploy/servcraftd.env.example) never write a flag's default by hand next
// to the flag or its SERVCRAFT_ variable: it is said once, in --help and
// the generated files.
func TestDocsRestateNoDefault(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	for _, root := range []string{"../../deploy", "../../scripts"} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, file := range files {
		if base := filepath.Base(file); base == "configuration.md" || base == "servcraftd.env.example" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range restatedDefaults(string(data)) {
			t.Errorf("%s:%d: --%s next to its default %q: name the flag and docs/configuration.md instead",
				strings.TrimPrefix(file, "../../"), r.line, r.flag, r.value)
		}
	}
}

type restated struct {
	line        int
	flag, value string
}

// restatedDefaults lists each flag mention in text followed within a few
// words by a value that the flag reads as its default.
func restatedDefaults(text string) []restated {
	fs := defaultFlags()
	var out []restated
	mentions := flagMention.FindAllStringSubmatchIndex(text, -1)
	for i, m := range mentions {
		name := ""
		if m[2] >= 0 {
			name = text[m[2]:m[3]]
		} else {
			name = strings.ToLower(strings.ReplaceAll(text[m[4]:m[5]], "_", "-"))
		}
		f := fs.Lookup(name)
		if f == nil || f.DefValue == "" || f.DefValue == "0" || f.DefValue == "false" || f.DefValue == "true" {
			continue // no default worth writing: a zero says "off", not the default
		}
		end := len(text)
		if i+1 < len(mentions) {
			end = mentions[i+1][0]
		}
		if s := strings.Index(text[m[1]:end], ". "); s >= 0 {
			end = m[1] + s
		}
		words := strings.Fields(text[m[1]:end])
		window := strings.Join(words[:min(len(words), wordsAfterFlag)], " ")
		for _, v := range valueWritten.FindAllStringSubmatch(window, -1) {
			written := v[1] + v[2]
			if u, ok := unitWords[strings.ToLower(v[2])]; ok {
				written = v[1] + u
			}
			if readsAsDefault(f.Name, written) {
				out = append(out, restated{line: strings.Count(text[:m[0]], "\n") + 1, flag: f.Name, value: v[0]})
			}
		}
	}
	return out
}

// readsAsDefault reports whether the flag name, set to written, holds its default.
func readsAsDefault(name, written string) bool {
	fs := defaultFlags()
	f := fs.Lookup(name)
	return fs.Set(name, written) == nil && f.Value.String() == f.DefValue
}

func TestSpawnerSetting(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(filepath.Join(dir, "spawner"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--spawner", "off"}, ""},
		{[]string{"--spawner", "spawner"}, filepath.Join(dir, "spawner")}, // relative to the working directory
		// auto: servcraft-spawner beside this executable, which a test binary has not.
		{nil, ""},
	} {
		cfg, err := loadConfig(tc.args, env(nil))
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.Runtime.SpawnerPath != tc.want {
			t.Errorf("%v: spawner %q, want %q", tc.args, cfg.Runtime.SpawnerPath, tc.want)
		}
	}
	if _, err := loadConfig([]string{"--spawner", "missing"}, env(nil)); err == nil || !strings.Contains(err.Error(), "spawner") {
		t.Errorf("a spawner that is not there: %v", err)
	}
	if _, err := loadConfig([]string{"--spawner", dir}, env(nil)); err == nil {
		t.Error("a folder as the spawner is accepted")
	}
}

// TestFixedServerLimitsInDocs checks the daemon's fixed limits that
// docs/api.md lists (the HTTP server's, the npm registry proxy's) against
// the constants the daemon uses.
func TestFixedServerLimitsInDocs(t *testing.T) {
	data, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	mib := func(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }
	secs := func(d time.Duration) string { return fmt.Sprintf("%d s", d/time.Second) }
	for _, phrase := range []string{
		fmt.Sprintf("%s to read headers, %s to read a request, the longer of max-exec-timeout and install-timeout + %s to write an answer",
			secs(serverReadHeaderTimeout), secs(serverReadTimeout), secs(serverWriteSlack)),
		fmt.Sprintf("%s idle keep-alive", secs(serverIdleTimeout)),
		fmt.Sprintf("headers %d KiB (fixed)", serverMaxHeaderBytes>>10),
		fmt.Sprintf("package documents ≤ %s, tarballs ≤ %s, %s per upstream request, documents remembered %d min (%s in all)",
			mib(npmproxy.DefaultMaxDocBytes), mib(npmproxy.DefaultMaxTarballBytes), secs(npmproxy.DefaultTimeout),
			npmproxy.DefaultDocTTL/time.Minute, mib(npmproxy.DefaultDocCacheBytes)),
	} {
		if !strings.Contains(string(data), phrase) {
			t.Errorf("docs/api.md does not say %q", phrase)
		}
	}
}
