package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/servcraft/servcraftd/store/statedir"
)

func TestResolveNodeID(t *testing.T) {
	state := statedir.Dir(t.TempDir())
	if _, err := resolveNodeID(state, "bad/id"); err == nil {
		t.Fatal("invalid id accepted")
	}
	id, err := resolveNodeID(state, "node-a")
	if err != nil || id != "node-a" {
		t.Fatalf("first start: %q %v", id, err)
	}
	if id, err := resolveNodeID(state, ""); err != nil || id != "node-a" {
		t.Fatalf("restart without --node-id: %q %v, want the kept node-a", id, err)
	}
	if _, err := resolveNodeID(state, "node-b"); err == nil || !strings.Contains(err.Error(), `belongs to node "node-a"`) {
		t.Fatalf("another id on the same state: %v, want a refusal", err)
	}
	host, _ := os.Hostname()
	if id, err := resolveNodeID(statedir.Dir(t.TempDir()), ""); err != nil || id != host {
		t.Fatalf("default id %q %v, want the host name %q", id, err, host)
	}
}

func TestClusterConfigLoad(t *testing.T) {
	dir := t.TempDir()
	short, good := filepath.Join(dir, "short"), filepath.Join(dir, "good")
	os.WriteFile(short, []byte("tiny\n"), 0o600)
	os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600)
	base := defaultClusterConfig()
	base.Etcd = stringList{"http://127.0.0.1:2379"}
	for name, tc := range map[string]struct {
		change func(*clusterConfig)
		ok     bool
	}{
		"off":            {func(c *clusterConfig) { c.Etcd = nil }, true},
		"good":           {func(c *clusterConfig) { c.SecretFile = good }, true},
		"no secret":      {func(c *clusterConfig) {}, false},
		"short secret":   {func(c *clusterConfig) { c.SecretFile = short }, false},
		"missing secret": {func(c *clusterConfig) { c.SecretFile = filepath.Join(dir, "none") }, false},
		"bad etcd":       {func(c *clusterConfig) { c.SecretFile = good; c.Etcd = stringList{"127.0.0.1:2379"} }, false},
		"bad advertise":  {func(c *clusterConfig) { c.SecretFile = good; c.AdvertiseAddr = "10.0.0.1:80" }, false},
		"short ttl":      {func(c *clusterConfig) { c.SecretFile = good; c.LeaseTTL = 1 }, false},
		"sync past ttl":  {func(c *clusterConfig) { c.SecretFile = good; c.SyncInterval = c.LeaseTTL * 2 }, false},
	} {
		c := base
		tc.change(&c)
		if err := c.load(); (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", name, err, tc.ok)
		}
	}
}
