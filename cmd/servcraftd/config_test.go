package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		{[]string{"--idle-timeout", "soon"}, nil, "idle-timeout"},
		{[]string{"--exec-timeout", "30s", "--max-exec-timeout", "10s"}, nil, "max-exec-timeout"},
		{[]string{"--log-format", "xml"}, nil, "log-format"},
		{[]string{"--exposed-port", "70000"}, nil, "exposed-port"},
		{[]string{"--output-limit", "10"}, nil, "output-limit"},
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
