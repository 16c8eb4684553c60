package main

import (
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
	if cfg.Memory != 512<<20 || cfg.CPUs != 0.5 || cfg.IdleTimeout != 30*time.Minute || cfg.Listen != "127.0.0.1:8080" {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg, err = loadConfig([]string{"--memory", "1GiB"}, env(map[string]string{
		"SERVCRAFT_MEMORY": "256MiB", "SERVCRAFT_IDLE_TIMEOUT": "5m"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Memory != 1<<30 || cfg.IdleTimeout != 5*time.Minute {
		t.Fatalf("flags must win over env, env over defaults: memory %d idle %v", cfg.Memory, cfg.IdleTimeout)
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
