package placement_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/servcraft/servcraftd/store/placement"
	"github.com/servcraft/servcraftd/store/placement/placementtest"
)

func TestPickNode(t *testing.T) {
	local := placement.Node{ID: "a", State: placement.Accepting, Capacity: 10, Sessions: 3}
	b := placement.Node{ID: "b", Addr: "http://b", State: placement.Accepting, Capacity: 10, Sessions: 1}
	c := placement.Node{ID: "c", Addr: "http://c", State: placement.Accepting, Capacity: 10, Sessions: 1}
	d := placement.Node{ID: "d", Addr: "http://d", State: placement.Draining, Capacity: 100}
	if n, ok := placement.PickNode(local, []placement.Node{local, b, c}); !ok || n.ID != "a" {
		t.Errorf("local with room: got %q %v, want a", n.ID, ok)
	}
	full := local
	full.Sessions = 10
	if n, ok := placement.PickNode(full, []placement.Node{full, c, b, d}); !ok || n.ID != "b" {
		t.Errorf("local full: got %q %v, want b (most free, lowest id; d drains)", n.ID, ok)
	}
	draining := local
	draining.State = placement.Draining
	c.Sessions = 0
	if n, ok := placement.PickNode(draining, []placement.Node{draining, b, c}); !ok || n.ID != "c" {
		t.Errorf("local draining: got %q %v, want c", n.ID, ok)
	}
	if _, ok := placement.PickNode(draining, []placement.Node{draining, d}); ok {
		t.Error("no accepting node: want none")
	}
	if (placement.Node{}).Free() != math.MaxInt {
		t.Error("no capacity limit: want unlimited free")
	}
}

func TestNextState(t *testing.T) {
	for _, tc := range []struct {
		in   placement.State
		n    int
		want placement.State
	}{
		{placement.Accepting, 0, placement.Accepting},
		{placement.Draining, 1, placement.Draining},
		{placement.Draining, 0, placement.Drained},
		{placement.Drained, 2, placement.Draining},
	} {
		if got := placement.NextState(tc.in, tc.n); got != tc.want {
			t.Errorf("NextState(%s, %d) = %s, want %s", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestValidNodeID(t *testing.T) {
	for _, ok := range []string{"node-1", "a.b_c"} {
		if err := placement.ValidNodeID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "x y", string(make([]byte, 65))} {
		if placement.ValidNodeID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// testSecret is the cluster secret of the tests' nodes.
var testSecret = []byte("0123456789abcdef-test-secret")

func open(t *testing.T, endpoint, id string, ttl time.Duration) *placement.Placement {
	t.Helper()
	cfg := placement.DefaultConfig()
	cfg.Endpoints, cfg.LeaseTTL, cfg.Prefix, cfg.Secret = []string{endpoint}, ttl, "/test-"+t.Name()+"/", testSecret
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := placement.Open(ctx, cfg, placement.Node{ID: id, Addr: "http://" + id, Capacity: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestClaimOnce races claims of one id from three nodes: exactly one wins and
// every node learns the same owner.
func TestClaimOnce(t *testing.T) {
	ep := placementtest.StartEtcd(t)
	nodes := []*placement.Placement{open(t, ep, "n1", 5*time.Second), open(t, ep, "n2", 5*time.Second), open(t, ep, "n3", 5*time.Second)}
	ctx := context.Background()
	for round := range 20 {
		id := fmt.Sprintf("session-%d", round)
		owners := make([]string, len(nodes))
		var wg sync.WaitGroup
		for i, p := range nodes {
			wg.Go(func() {
				o, err := p.Claim(ctx, id)
				if err != nil {
					t.Error(err)
				}
				owners[i] = o
			})
		}
		wg.Wait()
		wins := 0
		for i, p := range nodes {
			if owners[i] == p.NodeID() {
				wins++
			}
			if owners[i] != owners[0] {
				t.Fatalf("round %d: owners disagree: %v", round, owners)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1 (%v)", round, wins, owners)
		}
		o, found, err := nodes[1].Owner(ctx, id)
		if err != nil || !found || o.ID != owners[0] || o.Addr != "http://"+owners[0] {
			t.Fatalf("round %d: Owner = %+v %v %v, want %s", round, o, found, err, owners[0])
		}
	}
	ns, err := nodes[0].Nodes(ctx)
	if err != nil || len(ns) != 3 {
		t.Fatalf("Nodes = %v, %v; want 3", ns, err)
	}
}

// fakeLocal is a node's sessions for Sync.
type fakeLocal struct {
	mu        sync.Mutex
	ids       []string
	destroyed []string
	created   time.Time // when every local session was created
}

func (f *fakeLocal) CreatedAt(context.Context, string) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created, nil
}

func (f *fakeLocal) SessionIDs(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ids), nil
}
func (f *fakeLocal) Capacity() (int, int) { f.mu.Lock(); defer f.mu.Unlock(); return len(f.ids), 5 }
func (f *fakeLocal) Destroy(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = append(f.destroyed, id)
	f.ids = slices.DeleteFunc(f.ids, func(s string) bool { return s == id })
	return nil
}

// TestLeaseLifecycle: a node that stops keeping its lease loses its records
// after the TTL; another node can then claim its ids; on restart Sync takes
// back the sessions still free and destroys the local copy of the one taken.
// Release removes a record; drain reaches drained at zero sessions.
func TestLeaseLifecycle(t *testing.T) {
	ep := placementtest.StartEtcd(t)
	ctx := context.Background()
	ttl := 2 * time.Second
	a := open(t, ep, "a", ttl)
	b := open(t, ep, "b", ttl)
	created := time.Now() // a's sessions, before b claims one of them
	for _, id := range []string{"s1", "s2", "s3"} {
		if o, err := a.Claim(ctx, id); err != nil || o != "a" {
			t.Fatalf("claim %s: %q %v", id, o, err)
		}
	}
	a.Close() // kill: the lease is not revoked
	if _, found, _ := b.Owner(ctx, "s1"); !found {
		t.Fatal("record gone right after close: want it kept until the lease ends")
	}
	deadline := time.Now().Add(3 * ttl)
	for {
		_, found, err := b.Owner(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("records of a dead node outlived its lease")
		}
		time.Sleep(100 * time.Millisecond) // polling etcd for the lease's expiry
	}
	if o, err := b.Claim(ctx, "s3"); err != nil || o != "b" {
		t.Fatalf("claim of a dead node's id: %q %v", o, err)
	}
	a2 := open(t, ep, "a", ttl)
	local := &fakeLocal{ids: []string{"s1", "s2", "s3"}, created: created}
	if err := a2.Sync(ctx, local); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"s1": "a", "s2": "a", "s3": "b"} {
		o, found, err := b.Owner(ctx, id)
		if err != nil || !found || o.ID != want {
			t.Errorf("owner of %s after restart: %+v %v %v, want %s", id, o, found, err, want)
		}
	}
	if !slices.Equal(local.destroyed, []string{"s3"}) {
		t.Errorf("destroyed %v, want [s3] (taken by b)", local.destroyed)
	}
	// Reaped: the record goes at the next sync.
	local.Destroy(ctx, "s2")
	if err := a2.Sync(ctx, local); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := b.Owner(ctx, "s2"); found {
		t.Error("record of a reaped session kept")
	}
	if err := a2.Release(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := b.Owner(ctx, "s1"); found {
		t.Error("released record kept")
	}
	if err := b.Release(ctx, "s1"); err != nil { // nothing to release; and a's records are not b's
		t.Fatal(err)
	}
	// Drain: draining until the last session goes.
	if err := a2.Update(ctx, func(n *placement.Node) { n.State = placement.Draining }); err != nil {
		t.Fatal(err)
	}
	local.Destroy(ctx, "s1")
	if err := a2.Sync(ctx, local); err != nil {
		t.Fatal(err)
	}
	n, ok, err := b.Node(ctx, "a")
	if err != nil || !ok || n.State != placement.Drained || n.Sessions != 0 {
		t.Errorf("drained node record: %+v %v %v", n, ok, err)
	}
	if err := a2.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Node(ctx, "a"); ok {
		t.Error("node record kept after Leave")
	}
}

// TestForgedRecordsAreIgnored: whoever writes to etcd without the cluster
// secret adds no node anyone forwards to and takes no session from its
// owner; an owner record played back from an earlier claim destroys
// nothing either.
func TestForgedRecordsAreIgnored(t *testing.T) {
	ep := placementtest.StartEtcd(t)
	ctx := context.Background()
	a := open(t, ep, "a", 5*time.Second)
	b := open(t, ep, "b", 5*time.Second)
	raw, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	prefix := "/test-" + t.Name() + "/"
	put := func(key, value string) {
		t.Helper()
		if _, err := raw.Put(ctx, prefix+key, value); err != nil {
			t.Fatal(err)
		}
	}

	// A node record without a signature, with a made-up one, and one signed
	// with another cluster's secret.
	put("nodes/evil", `{"id":"evil","addr":"http://127.0.0.1:9","state":"accepting","capacity":100}`)
	put("nodes/evil2", `{"id":"evil2","addr":"http://127.0.0.1:9","state":"accepting","sig":"00ff"}`)
	other := placement.DefaultConfig()
	other.Endpoints, other.Prefix, other.Secret = []string{ep}, prefix, []byte("another-cluster-secret")
	foreign, err := placement.Open(ctx, other, placement.Node{ID: "foreign", Addr: "http://127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	nodes, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "b"}) {
		t.Errorf("nodes %v, want only the signed a and b", ids)
	}
	for _, id := range []string{"evil", "evil2", "foreign"} {
		if _, ok, err := a.Node(ctx, id); ok || err != nil {
			t.Errorf("forged node %s: found %v (%v)", id, ok, err)
		}
	}

	// An owner record rewritten to another node, unsigned, or pointing at a
	// forged node: nobody forwards there and the owner keeps its session.
	local := &fakeLocal{ids: []string{"s1"}, created: time.Now()}
	if o, err := a.Claim(ctx, "s1"); err != nil || o != "a" {
		t.Fatalf("claim: %q %v", o, err)
	}
	for _, forged := range []string{"b", `{"node":"b","at":"2030-01-01T00:00:00Z","sig":"00"}`, `{"node":"evil","at":"2030-01-01T00:00:00Z"}`} {
		put("sessions/s1", forged)
		if o, found, err := b.Owner(ctx, "s1"); found || err != nil {
			t.Errorf("forged owner %s: b sees owner %+v", forged, o)
		}
		if err := a.Sync(ctx, local); err != nil {
			t.Fatal(err)
		}
		if len(local.destroyed) > 0 {
			t.Fatalf("forged owner %s: the owner destroyed its session", forged)
		}
		if o, found, err := b.Owner(ctx, "s1"); !found || err != nil || o.ID != "a" || o.Addr != "http://a" {
			t.Errorf("after a's sync over forged owner %s: b sees %+v %v %v, want a", forged, o, found, err)
		}
	}

	// A signed record of an earlier claim (b's, since released), played
	// back over a's later session of the same id: a keeps it.
	if o, err := b.Claim(ctx, "s2"); err != nil || o != "b" {
		t.Fatalf("b claims s2: %q %v", o, err)
	}
	old, err := raw.Get(ctx, prefix+"sessions/s2")
	if err != nil || len(old.Kvs) != 1 {
		t.Fatalf("read b's record: %v", err)
	}
	if err := b.Release(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	local2 := &fakeLocal{ids: []string{"s2"}, created: time.Now()}
	if o, err := a.Claim(ctx, "s2"); err != nil || o != "a" {
		t.Fatalf("a claims s2: %q %v", o, err)
	}
	put("sessions/s2", string(old.Kvs[0].Value))
	if err := a.Sync(ctx, local2); err != nil {
		t.Fatal(err)
	}
	if len(local2.destroyed) > 0 {
		t.Error("a played-back record of an earlier claim destroyed the session")
	}
	// A signed record cannot be moved to another session either.
	put("sessions/s3", string(old.Kvs[0].Value))
	if _, found, _ := a.Owner(ctx, "s3"); found {
		t.Error("a record moved from s2 to s3 is trusted")
	}

	// No secret, no placement.
	nosecret := placement.DefaultConfig()
	nosecret.Endpoints = []string{ep}
	if _, err := placement.Open(ctx, nosecret, placement.Node{ID: "x"}); err == nil {
		t.Error("Open without a cluster secret")
	}
}

// TestEtcdOverTLS: a node reaches an etcd that takes only clients with a
// certificate of its CA; without one it is refused.
func TestEtcdOverTLS(t *testing.T) {
	ep, c := placementtest.StartEtcdTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := placement.DefaultConfig()
	cfg.Endpoints, cfg.Secret, cfg.TLS, cfg.DialTimeout = []string{ep}, testSecret, c.Config, 3*time.Second
	p, err := placement.Open(ctx, cfg, placement.Node{ID: "tls", Addr: "http://tls"})
	if err != nil {
		t.Fatalf("open over TLS with a client certificate: %v", err)
	}
	defer p.Close()
	if o, err := p.Claim(ctx, "s1"); err != nil || o != "tls" {
		t.Fatalf("claim over TLS: %q %v", o, err)
	}
	noCert := c.Config.Clone()
	noCert.Certificates = nil
	cfg.TLS = noCert
	short, cancelShort := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShort()
	if p2, err := placement.Open(short, cfg, placement.Node{ID: "nocert", Addr: "http://x"}); err == nil {
		p2.Close()
		t.Error("a client without a certificate registered")
	}
	cfg.TLS = nil
	if p3, err := placement.Open(short, cfg, placement.Node{ID: "plain", Addr: "http://x"}); err == nil {
		p3.Close()
		t.Error("a plain-HTTP client registered with a TLS etcd")
	}
}
