package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servcraft/servcraftd/api"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileLayers(t *testing.T) {
	file := writeFile(t, "servcraftd.json", `{
		"idle-timeout": "7m", "memory": "256MiB", "cpus": 0.25, "pull": false, "pids": 100,
		"cors-origins": ["https://a.example", "https://b.example:8443"], "exec-rate": "5/s:5",
		"max-concurrent-execs": 2, "preview-public": true
	}`)
	cfg, err := loadConfig([]string{"--config", file}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.IdleTimeout != 7*time.Minute || cfg.Runtime.Limits.MemoryBytes != 256<<20 || cfg.CPUs != 0.25 || cfg.Runtime.Image.Pull || cfg.Runtime.Limits.Pids != 100 ||
		!slices.Equal(cfg.API.CORSOrigins, []string{"https://a.example", "https://b.example:8443"}) ||
		cfg.API.ExecRate != (api.Rate{Events: 5, Per: time.Second, Burst: 5}) || cfg.API.MaxConcurrentExecs != 2 || !cfg.API.PreviewPublic {
		t.Fatalf("file not applied: %+v", cfg)
	}
	if cfg.Runtime.ExtendBy != 10*time.Minute || cfg.API.CreateRate != api.DefaultOptions().CreateRate {
		t.Fatalf("defaults lost: extend-by %v create-rate %v", cfg.Runtime.ExtendBy, cfg.API.CreateRate)
	}
	if cfg.ConfigFile != file {
		t.Errorf("ConfigFile %q", cfg.ConfigFile)
	}

	// The environment wins over the file, flags over the environment; the
	// file may also be named by SERVCRAFT_CONFIG.
	vars := map[string]string{"SERVCRAFT_CONFIG": file, "SERVCRAFT_MEMORY": "300MiB", "SERVCRAFT_IDLE_TIMEOUT": "8m", "SERVCRAFT_PIDS": "120"}
	cfg, err = loadConfig([]string{"--memory", "1GiB", "--pids=130"}, env(vars))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.Limits.MemoryBytes != 1<<30 || cfg.Runtime.Limits.Pids != 130 || cfg.Runtime.IdleTimeout != 8*time.Minute || cfg.CPUs != 0.25 || cfg.ConfigFile != file {
		t.Fatalf("precedence: memory %v pids %d idle %v cpus %v file %q", cfg.Runtime.Limits.MemoryBytes, cfg.Runtime.Limits.Pids, cfg.Runtime.IdleTimeout, cfg.CPUs, cfg.ConfigFile)
	}

	// --config wins over SERVCRAFT_CONFIG, also written -config=.
	other := writeFile(t, "other.json", `{"idle-timeout": "9m"}`)
	cfg, err = loadConfig([]string{"-config=" + other}, env(map[string]string{"SERVCRAFT_CONFIG": file}))
	if err != nil || cfg.Runtime.IdleTimeout != 9*time.Minute || cfg.Runtime.Limits.MemoryBytes != 512<<20 {
		t.Fatalf("--config over SERVCRAFT_CONFIG: %v idle %v memory %v", err, cfg.Runtime.IdleTimeout, cfg.Runtime.Limits.MemoryBytes)
	}
	// A flag value that looks like --config is a value, not the flag.
	cfg, err = loadConfig([]string{"--namespace", "--config"}, env(nil))
	if err != nil || cfg.Namespace != "--config" || cfg.ConfigFile != "" {
		t.Fatalf("--config as a value: %v namespace %q file %q", err, cfg.Namespace, cfg.ConfigFile)
	}
}

func TestConfigFileIsStrict(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"unknown keys", `{"idle-timout": "1m", "memory": "1GiB", "zzz": 1}`, []string{`"idle-timout"`, `"zzz"`, "unknown key"}},
		{"nested config", `{"config": "/etc/other.json"}`, []string{`"config"`, "unknown key"}},
		{"dashes", `{"--memory": "1GiB"}`, []string{`"--memory"`}},
		{"bad value", `{"memory": "lots"}`, []string{"memory", "not a size"}},
		{"object value", `{"memory": {"v": 1}}`, []string{"memory", "want a string"}},
		{"list of numbers", `{"cors-origins": [1]}`, []string{"cors-origins", "strings only"}},
		{"invalid value", `{"memory": "1MiB"}`, []string{"memory", "below 32MiB"}},
		{"not an object", `["memory"]`, []string{"JSON object"}},
		{"trailing", `{"memory": "1GiB"} {}`, []string{"trailing"}},
		{"broken", `{"memory": `, []string{"JSON object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "c.json", tc.content)
			_, err := loadConfig([]string{"--config", file}, env(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %s", err, w)
				}
			}
			if tc.name != "invalid value" && !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := loadConfig([]string{"--config", "/nonexistent/servcraftd.json"}, env(nil)); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("missing file: %v", err)
	}
}

func TestAPITokenFile(t *testing.T) {
	tok := strings.Repeat("ab12", 8)
	file := writeFile(t, "token", "  "+tok+"\n")
	cfg, err := loadConfig([]string{"--api-token-file", file}, env(nil))
	if err != nil || cfg.API.APIToken != tok {
		t.Fatalf("token file: %v %q", err, cfg.API.APIToken)
	}
	cfg, err = loadConfig(nil, env(map[string]string{"SERVCRAFT_API_TOKEN_FILE": file}))
	if err != nil || cfg.API.APIToken != tok {
		t.Fatalf("token file from env: %v %q", err, cfg.API.APIToken)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--api-token-file", file, "--api-token", tok}, nil, "only one"},
		{[]string{"--api-token-file", file}, map[string]string{"SERVCRAFT_API_TOKEN": tok}, "only one"},
		{[]string{"--api-token-file", writeFile(t, "empty", " \n")}, nil, "empty"},
		{[]string{"--api-token-file", "/nonexistent/token"}, nil, "api-token-file"},
		{[]string{"--api-token", "short"}, nil, "api-token: 5 characters"},
		{[]string{"--api-token", tok + " x"}, nil, "white space"},
	} {
		if _, err := loadConfig(tc.args, env(tc.env)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestAccessAndLimitSettings(t *testing.T) {
	tok := strings.Repeat("x", 16)
	cfg, err := loadConfig([]string{"--cors-origins", " https://a.example , HTTP://LocalHost:3000/", "--trusted-proxies", "10.0.0.1,192.168.0.0/16,::1",
		"--create-rate", "100/h:20", "--client-exec-rate", "off", "--install-rate", "2/10m", "--max-concurrent-execs", "0"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.API.CORSOrigins, []string{"https://a.example", "http://localhost:3000"}) || len(cfg.API.TrustedProxies) != 3 ||
		cfg.API.CreateRate != (api.Rate{Events: 100, Per: time.Hour, Burst: 20}) || !cfg.API.ClientExecRate.Off() ||
		cfg.API.InstallRate != (api.Rate{Events: 2, Per: 10 * time.Minute, Burst: 2}) || cfg.API.MaxConcurrentExecs != 0 {
		t.Fatalf("%+v", cfg)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cors-origins", "*", "--api-token", tok}, "cors-origins"},
		{[]string{"--cors-origins", "app.example.com"}, "cors-origins"},
		{[]string{"--cors-origins", "https://app.example.com/path"}, "cors-origins"},
		{[]string{"--cors-origins", "ftp://app.example.com"}, "cors-origins"},
		{[]string{"--trusted-proxies", "proxy.local"}, "trusted-proxies"},
		{[]string{"--create-rate", "fast"}, "create-rate"},
		{[]string{"--exec-rate", "10/s:0"}, "exec-rate"},
		{[]string{"--install-rate", "-1/m"}, "install-rate"},
		{[]string{"--client-exec-rate", "1/fortnight"}, "client-exec-rate"},
		{[]string{"--max-concurrent-execs", "-1"}, "max-concurrent-execs"},
	} {
		if _, err := loadConfig(tc.args, env(nil)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v does not name %s", tc.args, err, tc.want)
		}
	}
	if _, err := loadConfig([]string{"--cors-origins", "*"}, env(nil)); err != nil {
		t.Errorf("* without a token: %v", err)
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want api.Rate
		ok   bool
	}{
		{"30/m:10", api.Rate{Events: 30, Per: time.Minute, Burst: 10}, true},
		{"10/s", api.Rate{Events: 10, Per: time.Second, Burst: 10}, true},
		{"0.5/s", api.Rate{Events: 0.5, Per: time.Second, Burst: 1}, true},
		{"6/1m30s:2", api.Rate{Events: 6, Per: 90 * time.Second, Burst: 2}, true},
		{" 1 / h : 1 ", api.Rate{Events: 1, Per: time.Hour, Burst: 1}, true},
		{"0", api.Rate{}, true},
		{"off", api.Rate{}, true},
		{"10", api.Rate{}, false},
		{"0/s", api.Rate{}, false},
		{"NaN/s", api.Rate{}, false},
		{"1/0s", api.Rate{}, false},
		{"1/s:x", api.Rate{}, false},
	} {
		got, err := parseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRate(%q) = %+v, %v", tc.in, got, err)
		}
		if tc.ok {
			if back, err := parseRate(got.String()); err != nil || back != got {
				t.Errorf("%q: String %q does not parse back: %+v %v", tc.in, got.String(), back, err)
			}
		}
	}
}
