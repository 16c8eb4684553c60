// Package placement keeps the cluster's shared state in etcd: which nodes are
// alive (each under its own lease, with its address, capacity and state) and
// which node owns each session (a create-if-absent record tied to the owner's
// lease, so that a lost node's records expire with it and one session id maps
// to at most one container in the whole cluster).
//
// It sits beside store/ in the dependency picture: it holds records and
// imports nothing of servcraftd's, so api/ (forwarding) and cmd/ (wiring) can
// use it without a cycle, and runtime/ never needs to know about it.
package placement

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is what a node does with new sessions.
type State string

// The states a node goes through.
const (
	Accepting State = "accepting" // takes new sessions
	Draining  State = "draining"  // serves its sessions, takes no new ones
	Drained   State = "drained"   // draining with no sessions left
)

// Node is one servcraftd's record.
type Node struct {
	ID        string    `json:"id"`
	Addr      string    `json:"addr"`     // base URL other nodes forward to, e.g. http://10.0.0.5:8080
	State     State     `json:"state"`    // accepting, draining, drained
	Capacity  int       `json:"capacity"` // sessions at once; 0 is no limit
	Sessions  int       `json:"sessions"` // sessions it holds now
	UpdatedAt time.Time `json:"updatedAt"`
	Sig       string    `json:"sig,omitempty"` // HMAC of the rest under the cluster secret (signed.go)
}

// Free is how many more sessions the node takes (math.MaxInt without a limit).
func (n Node) Free() int {
	if n.Capacity <= 0 {
		return math.MaxInt
	}
	return max(n.Capacity-n.Sessions, 0)
}

// Takes reports whether the node accepts a new session now.
func (n Node) Takes() bool { return n.State == Accepting && n.Free() > 0 }

// PickNode is the placement policy for a create: the local node when it takes
// new sessions (no hop, its own warm pool, and the load balancer in front
// already spreads creates), else the accepting node with the most free
// capacity (ties: the lowest id, so every node makes the same choice). The
// second result is false when no node takes new sessions.
func PickNode(local Node, nodes []Node) (Node, bool) {
	if local.Takes() {
		return local, true
	}
	sorted := append([]Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Free() != sorted[j].Free() {
			return sorted[i].Free() > sorted[j].Free()
		}
		return sorted[i].ID < sorted[j].ID
	})
	for _, n := range sorted {
		if n.ID != local.ID && n.Takes() && n.Addr != "" {
			return n, true
		}
	}
	return Node{}, false
}

// Config is how a node reaches etcd and how long its records outlive it.
type Config struct {
	Endpoints   []string      // etcd client URLs
	Prefix      string        // key prefix of this cluster
	LeaseTTL    time.Duration // a silent node's records expire after this
	DialTimeout time.Duration // connecting to etcd at start
	Secret      []byte        // the cluster secret: every record is signed with it, and trusted only so
	TLS         *tls.Config   // etcd over TLS (client certificates); nil: plain
	Username    string        // etcd authentication; "": none
	Password    string
}

// minSecret is the shortest cluster secret the records are signed with.
const minSecret = 16

// DefaultConfig is the placement's settings when none are given.
func DefaultConfig() Config {
	return Config{Prefix: "/servcraft/", LeaseTTL: 10 * time.Second, DialTimeout: 5 * time.Second}
}

// ErrNoNode marks a create that no node in the cluster can take.
var ErrNoNode = errors.New("no node accepts new sessions")

// Placement is one node's handle on the cluster records. Its methods are safe
// for concurrent use.
type Placement struct {
	cli *clientv3.Client
	cfg Config

	mu      sync.Mutex
	self    Node
	lease   clientv3.LeaseID
	claimed map[string]time.Time // claims of sessions still being created, kept from release by Sync

	stop chan struct{}
	done sync.WaitGroup
}

// Open connects to etcd, registers self under a fresh lease and keeps the
// lease alive until Close; a lease that is lost (etcd unreachable longer than
// the TTL) is replaced and the node record written again.
func Open(ctx context.Context, cfg Config, self Node) (*Placement, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("placement: no etcd endpoints")
	}
	if len(cfg.Secret) < minSecret {
		return nil, fmt.Errorf("placement: a cluster secret of at least %d bytes signs the records", minSecret)
	}
	if err := ValidNodeID(self.ID); err != nil {
		return nil, err
	}
	def := DefaultConfig()
	if cfg.Prefix == "" {
		cfg.Prefix = def.Prefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.LeaseTTL < time.Second {
		cfg.LeaseTTL = def.LeaseTTL
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = def.DialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, Context: context.Background(),
		TLS: cfg.TLS, Username: cfg.Username, Password: cfg.Password})
	if err != nil {
		return nil, fmt.Errorf("placement: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	if self.State == "" {
		self.State = Accepting
	}
	p := &Placement{cli: cli, cfg: cfg, self: self, claimed: map[string]time.Time{}, stop: make(chan struct{})}
	ka, err := p.register(ctx)
	if err != nil {
		cli.Close()
		return nil, err
	}
	p.done.Add(1)
	go p.keepAlive(ka)
	return p, nil
}

// ValidNodeID checks a node id: [A-Za-z0-9._-]{1,64}.
func ValidNodeID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("node id %q: want 1 to 64 characters", id)
	}
	for _, r := range []byte(id) {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("node id %q: only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// register grants a new lease and writes the node record under it.
func (p *Placement) register(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ttl := int64(p.cfg.LeaseTTL / time.Second)
	grant, err := p.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("placement: grant lease: %w", err)
	}
	p.mu.Lock()
	p.lease = grant.ID
	p.mu.Unlock()
	if err := p.putSelf(ctx); err != nil {
		return nil, err
	}
	kaCtx, cancel := context.WithCancel(context.Background())
	go func() { <-p.stop; cancel() }()
	ka, err := p.cli.KeepAlive(kaCtx, grant.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("placement: keep lease alive: %w", err)
	}
	return ka, nil
}

// keepAlive drains the keep-alive answers; when they stop (the lease is
// gone) it registers again, retrying once a second until Close.
func (p *Placement) keepAlive(ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer p.done.Done()
	for {
		for range ka {
		}
		select {
		case <-p.stop:
			return
		default:
		}
		slog.Warn("placement: lease lost, registering again", "node", p.NodeID())
		for {
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.LeaseTTL)
			next, err := p.register(ctx)
			cancel()
			if err == nil {
				ka = next
				break
			}
			slog.Warn("placement: register", "err", err)
			select {
			case <-p.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (p *Placement) nodeKey(id string) string    { return p.cfg.Prefix + "nodes/" + id }
func (p *Placement) sessionKey(id string) string { return p.cfg.Prefix + "sessions/" + id }

// NodeID is this node's id.
func (p *Placement) NodeID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.self.ID
}

// Self is this node's record as last written.
func (p *Placement) Self() Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.self
}

func (p *Placement) currentLease() clientv3.LeaseID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lease
}

// Update changes this node's record (state, sessions, capacity) and writes it.
func (p *Placement) Update(ctx context.Context, change func(*Node)) error {
	p.mu.Lock()
	change(&p.self)
	p.mu.Unlock()
	return p.putSelf(ctx)
}

func (p *Placement) putSelf(ctx context.Context) error {
	p.mu.Lock()
	p.self.UpdatedAt = time.Now().UTC()
	n, lease := p.self, p.lease
	p.mu.Unlock()
	data, err := json.Marshal(signNode(p.cfg.Secret, n))
	if err != nil {
		return fmt.Errorf("placement: encode node %s: %w", n.ID, err)
	}
	if _, err := p.cli.Put(ctx, p.nodeKey(n.ID), string(data), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("placement: write node %s: %w", n.ID, err)
	}
	return nil
}

// Nodes lists the live nodes (those whose lease holds), by id.
func (p *Placement) Nodes(ctx context.Context) ([]Node, error) {
	resp, err := p.cli.Get(ctx, p.cfg.Prefix+"nodes/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("placement: list nodes: %w", err)
	}
	nodes := make([]Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		n, err := decodeNode(p.cfg.Secret, kv.Value)
		if err != nil || p.nodeKey(n.ID) != string(kv.Key) {
			slog.Warn("placement: node record ignored", "key", string(kv.Key), "err", err)
			continue
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// Node reads one node's record; false when it is not live.
func (p *Placement) Node(ctx context.Context, id string) (Node, bool, error) {
	resp, err := p.cli.Get(ctx, p.nodeKey(id))
	if err != nil {
		return Node{}, false, fmt.Errorf("placement: read node %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Node{}, false, nil
	}
	n, err := decodeNode(p.cfg.Secret, resp.Kvs[0].Value)
	if err != nil || n.ID != id {
		slog.Warn("placement: node record ignored", "node", id, "err", err)
		return Node{}, false, nil
	}
	return n, true, nil
}

// Claim makes this node the owner of sessionID unless a node already is,
// in one transaction (create if absent, tied to this node's lease). It
// returns the owner's id: this node's when the claim holds. Call it before
// creating the session; Sync leaves a fresh claim alone while the create runs.
func (p *Placement) Claim(ctx context.Context, sessionID string) (string, error) {
	owner, err := p.claim(ctx, sessionID)
	if err == nil && owner == p.NodeID() {
		p.mu.Lock()
		p.claimed[sessionID] = time.Now()
		p.mu.Unlock()
	}
	return owner, err
}

func (p *Placement) claim(ctx context.Context, sessionID string) (string, error) {
	r, err := p.claimRecord(ctx, sessionID)
	return r.Node, err
}

// claimRecord claims sessionID for this node unless a signed record names a
// node already, and returns the record that holds. A record that is not
// signed is no claim: it is replaced.
func (p *Placement) claimRecord(ctx context.Context, sessionID string) (ownerRecord, error) {
	key := p.sessionKey(sessionID)
	self := p.NodeID()
	now := time.Now().UTC()
	mine := encodeOwner(p.cfg.Secret, sessionID, self, now)
	resp, err := p.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, mine, clientv3.WithLease(p.currentLease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return ownerRecord{}, fmt.Errorf("placement: claim session %s: %w", sessionID, err)
	}
	if resp.Succeeded {
		return ownerRecord{Node: self, At: now}, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 { // deleted between the compare and the get: cannot happen in one txn
		return ownerRecord{}, fmt.Errorf("placement: claim session %s: record vanished", sessionID)
	}
	r, err := decodeOwner(p.cfg.Secret, sessionID, kvs[0].Value)
	if err == nil {
		return r, nil
	}
	slog.Warn("placement: owner record ignored and replaced", "session", sessionID, "err", err)
	resp, err = p.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, mine, clientv3.WithLease(p.currentLease()))).
		Commit()
	if err != nil {
		return ownerRecord{}, fmt.Errorf("placement: claim session %s: %w", sessionID, err)
	}
	if !resp.Succeeded {
		return p.claimRecord(ctx, sessionID) // changed meanwhile: read it again
	}
	return ownerRecord{Node: self, At: now}, nil
}

// readOwner reads sessionID's record and its revision; found is false
// when there is none, or none signed.
func (p *Placement) readOwner(ctx context.Context, sessionID string) (r ownerRecord, rev int64, found bool, err error) {
	resp, err := p.cli.Get(ctx, p.sessionKey(sessionID))
	if err != nil {
		return ownerRecord{}, 0, false, fmt.Errorf("placement: read owner of %s: %w", sessionID, err)
	}
	if len(resp.Kvs) == 0 {
		return ownerRecord{}, 0, false, nil
	}
	r, err = decodeOwner(p.cfg.Secret, sessionID, resp.Kvs[0].Value)
	if err != nil {
		slog.Warn("placement: owner record ignored", "session", sessionID, "err", err)
		return ownerRecord{}, resp.Kvs[0].ModRevision, false, nil
	}
	return r, resp.Kvs[0].ModRevision, true, nil
}

// Reclaim keeps this node the owner of a session it holds: a record that
// names this node moves to the current lease, a missing one is claimed. It
// returns the owner's id, another node's when that one created the session
// while this node's record had expired.
func (p *Placement) Reclaim(ctx context.Context, sessionID string) (string, error) {
	r, err := p.reclaim(ctx, sessionID)
	return r.Node, err
}

// reclaim is Reclaim returning the whole record that holds.
func (p *Placement) reclaim(ctx context.Context, sessionID string) (ownerRecord, error) {
	key := p.sessionKey(sessionID)
	self := p.NodeID()
	r, rev, found, err := p.readOwner(ctx, sessionID)
	if err != nil {
		return ownerRecord{}, err
	}
	if !found || r.Node != self {
		if found {
			return r, nil
		}
		return p.claimRecord(ctx, sessionID)
	}
	resp, err := p.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, encodeOwner(p.cfg.Secret, sessionID, self, r.At), clientv3.WithLease(p.currentLease()))).
		Commit()
	if err != nil {
		return ownerRecord{}, fmt.Errorf("placement: reclaim session %s: %w", sessionID, err)
	}
	if !resp.Succeeded {
		return p.reclaim(ctx, sessionID) // changed meanwhile: read it again
	}
	return r, nil
}

// Owner reads which node owns sessionID. found is false when no live node
// does (or the record is not signed); a record whose node record is missing
// (or not signed) comes back with an empty Addr: nothing is forwarded to an
// address no signed node record gives.
func (p *Placement) Owner(ctx context.Context, sessionID string) (owner Node, found bool, err error) {
	r, _, found, err := p.readOwner(ctx, sessionID)
	if err != nil || !found {
		return Node{}, false, err
	}
	n, ok, err := p.Node(ctx, r.Node)
	if err != nil {
		return Node{}, false, err
	}
	if !ok {
		return Node{ID: r.Node}, true, nil
	}
	return n, true, nil
}

// Release removes this node's record of sessionID (after a destroy or a
// reap); a record naming another node is left alone.
func (p *Placement) Release(ctx context.Context, sessionID string) error {
	key := p.sessionKey(sessionID)
	p.mu.Lock()
	delete(p.claimed, sessionID)
	p.mu.Unlock()
	r, rev, found, err := p.readOwner(ctx, sessionID)
	if err != nil || !found || r.Node != p.NodeID() {
		return err
	}
	if _, err := p.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Commit(); err != nil {
		return fmt.Errorf("placement: release session %s: %w", sessionID, err)
	}
	return nil
}

// Owned lists the sessions whose signed record names this node.
func (p *Placement) Owned(ctx context.Context) ([]string, error) {
	resp, err := p.cli.Get(ctx, p.cfg.Prefix+"sessions/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("placement: list sessions: %w", err)
	}
	self := p.NodeID()
	prefix := p.cfg.Prefix + "sessions/"
	var ids []string
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), prefix)
		if r, err := decodeOwner(p.cfg.Secret, id, kv.Value); err == nil && r.Node == self {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// LeaseTTL is how long this node's records outlive it.
func (p *Placement) LeaseTTL() time.Duration { return p.cfg.LeaseTTL }

// Close stops keeping the lease alive and disconnects. The lease is not
// revoked: the node's records outlive a restart by up to the TTL, so that its
// sessions answer 503 (retry), not 404, while it is down. Leave revokes.
func (p *Placement) Close() error {
	select {
	case <-p.stop:
		return nil
	default:
	}
	close(p.stop)
	p.done.Wait()
	return p.cli.Close()
}

// Leave revokes the lease, removing this node's record and every session
// record it holds at once, then closes. Use it when the node has no sessions
// left to come back to (drained, or destroyed on shutdown).
func (p *Placement) Leave(ctx context.Context) error {
	if _, err := p.cli.Revoke(ctx, p.currentLease()); err != nil {
		return fmt.Errorf("placement: revoke lease: %w", err)
	}
	return p.Close()
}
