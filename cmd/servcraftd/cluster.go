package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/servcraft/servcraftd/api"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/store"
	"github.com/servcraft/servcraftd/store/placement"
	"github.com/servcraft/servcraftd/store/statedir"
)

// clusterConfig is cluster mode's settings; without etcd endpoints the
// daemon is a single host, as before.
type clusterConfig struct {
	NodeID        string
	AdvertiseAddr string
	Etcd          stringList
	SecretFile    string
	Prefix        string
	LeaseTTL      time.Duration
	SyncInterval  time.Duration
	EtcdCAFile    string // etcd's CA: turns TLS on
	EtcdCertFile  string // this node's client certificate and key for etcd
	EtcdKeyFile   string
	EtcdUser      string // etcd authentication
	EtcdPassFile  string

	secret       []byte // read from SecretFile
	etcdPassword string // read from EtcdPassFile
}

func defaultClusterConfig() clusterConfig {
	def := placement.DefaultConfig()
	return clusterConfig{Prefix: def.Prefix, LeaseTTL: def.LeaseTTL, SyncInterval: 5 * time.Second}
}

func (c *clusterConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this node's `id` in the cluster ([A-Za-z0-9._-]{1,64}; default: the one kept in the state folder, else the host name); a state folder refuses another id")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", c.AdvertiseAddr, "`URL` other nodes forward to, e.g. http://10.0.0.5:8080 (default: http://<listen>)")
	fs.Var(&c.Etcd, "cluster-etcd", "etcd client `URLs` (comma-separated or repeated): turns cluster mode on")
	fs.StringVar(&c.SecretFile, "cluster-secret-file", c.SecretFile, "`file` holding the secret every node signs forwarded requests and its etcd records with (cluster mode needs it)")
	fs.StringVar(&c.Prefix, "cluster-prefix", c.Prefix, "etcd key prefix of this cluster")
	fs.DurationVar(&c.LeaseTTL, "cluster-lease-ttl", c.LeaseTTL, "how long a silent node's records outlive it (its sessions answer 503 meanwhile)")
	fs.DurationVar(&c.SyncInterval, "cluster-sync-interval", c.SyncInterval, "how often the node's records are brought in step with its sessions")
	fs.StringVar(&c.EtcdCAFile, "etcd-ca-file", c.EtcdCAFile, "`file` with the CA that signs etcd's certificate: etcd over TLS (https:// endpoints)")
	fs.StringVar(&c.EtcdCertFile, "etcd-cert-file", c.EtcdCertFile, "`file` with this node's client certificate for etcd (with --etcd-key-file)")
	fs.StringVar(&c.EtcdKeyFile, "etcd-key-file", c.EtcdKeyFile, "`file` with the key of --etcd-cert-file")
	fs.StringVar(&c.EtcdUser, "etcd-user", c.EtcdUser, "etcd user `name` (with --etcd-password-file)")
	fs.StringVar(&c.EtcdPassFile, "etcd-password-file", c.EtcdPassFile, "`file` holding the password of --etcd-user")
}

// etcdTLS is the TLS configuration for etcd, nil without --etcd-ca-file.
func (c *clusterConfig) etcdTLS() (*tls.Config, error) {
	if c.EtcdCAFile == "" {
		return nil, nil
	}
	ca, err := os.ReadFile(c.EtcdCAFile)
	if err != nil {
		return nil, fmt.Errorf("etcd-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("etcd-ca-file: %s holds no PEM certificate", c.EtcdCAFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c.EtcdCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.EtcdCertFile, c.EtcdKeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd-cert-file, etcd-key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c *clusterConfig) on() bool { return len(c.Etcd) > 0 }

// load reads the secret file and checks the settings.
func (c *clusterConfig) load() error {
	if !c.on() {
		return nil
	}
	if c.SecretFile == "" {
		return errors.New("cluster-secret-file: cluster mode needs a secret shared by every node")
	}
	data, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return fmt.Errorf("cluster-secret-file: %w", err)
	}
	if c.secret = []byte(strings.TrimSpace(string(data))); len(c.secret) < 16 {
		return fmt.Errorf("cluster-secret-file: %s holds %d bytes, want at least 16", c.SecretFile, len(c.secret))
	}
	if c.LeaseTTL < 2*time.Second {
		return fmt.Errorf("cluster-lease-ttl: %s is below 2s", c.LeaseTTL)
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		return errors.New("etcd-cert-file, etcd-key-file: give both or neither")
	}
	if c.EtcdCertFile != "" && c.EtcdCAFile == "" {
		return errors.New("etcd-cert-file: a client certificate needs --etcd-ca-file (TLS)")
	}
	if _, err := c.etcdTLS(); err != nil {
		return err
	}
	if (c.EtcdUser == "") != (c.EtcdPassFile == "") {
		return errors.New("etcd-user, etcd-password-file: give both or neither")
	}
	if c.EtcdPassFile != "" {
		pass, err := os.ReadFile(c.EtcdPassFile)
		if err != nil {
			return fmt.Errorf("etcd-password-file: %w", err)
		}
		c.etcdPassword = strings.TrimSpace(string(pass))
	}
	if c.SyncInterval <= 0 || c.SyncInterval > c.LeaseTTL {
		return fmt.Errorf("cluster-sync-interval: %s is not within 0 and cluster-lease-ttl", c.SyncInterval)
	}
	for _, e := range c.Etcd {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("cluster-etcd: %q is not an http(s) URL", e)
		}
	}
	if c.AdvertiseAddr != "" {
		if u, err := url.Parse(c.AdvertiseAddr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("advertise-addr: %q is not an http(s) URL", c.AdvertiseAddr)
		}
	}
	return nil
}

// resolveNodeID is the node's id: the one kept in the state folder, which
// --node-id must match when both are set (the sessions there belong to that
// node); else --node-id, else the host name; kept for the next start.
func resolveNodeID(state statedir.Dir, flagID string) (string, error) {
	path := state.NodeID()
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		kept := strings.TrimSpace(string(data))
		if flagID != "" && flagID != kept {
			return "", fmt.Errorf("node-id: the state folder %s belongs to node %q, not %q (its sessions are that node's; use another state folder)", state, kept, flagID)
		}
		return kept, placement.ValidNodeID(kept)
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read node id: %w", err)
	}
	id := flagID
	if id == "" {
		if id, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("node-id: none given and no host name: %w", err)
		}
	}
	if err := placement.ValidNodeID(id); err != nil {
		return "", fmt.Errorf("node-id: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("keep node id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("keep node id: %w", err)
	}
	return id, nil
}

// localSessions is the node's sessions as placement.Sync reads them.
type localSessions struct {
	db          *store.DB
	mgr         *runtime.Manager
	maxSessions int
}

func (l localSessions) SessionIDs(context.Context) ([]string, error) {
	all, err := l.db.List()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(all))
	for _, s := range all {
		if !runtime.IsInternal(s.SessionID) {
			ids = append(ids, s.SessionID)
		}
	}
	return ids, nil
}

func (l localSessions) Capacity() (int, int) {
	st := l.mgr.Stats()
	return st.Active + st.Pooled, l.maxSessions
}

func (l localSessions) Destroy(ctx context.Context, id string) error { return l.mgr.Destroy(ctx, id) }

func (l localSessions) CreatedAt(ctx context.Context, id string) (time.Time, error) {
	info, err := l.mgr.Get(ctx, id)
	if err != nil {
		return time.Time{}, err
	}
	return info.CreatedAt, nil
}

// joinCluster registers the node in etcd, keeps its records in step with its
// sessions, and returns the API's cluster options; stop ends both (the lease
// is revoked only when the node has no sessions left to come back to).
func joinCluster(ctx context.Context, cc clusterConfig, nodeID, listen string, local localSessions) (api.ClusterOptions, *placement.Placement, func(), error) {
	addr := cc.AdvertiseAddr
	if addr == "" {
		addr = "http://" + listen
	}
	sessions, most := local.Capacity()
	pcfg := placement.DefaultConfig()
	pcfg.Endpoints, pcfg.Prefix, pcfg.LeaseTTL, pcfg.Secret = cc.Etcd, cc.Prefix, cc.LeaseTTL, cc.secret
	var err error
	if pcfg.TLS, err = cc.etcdTLS(); err != nil {
		return api.ClusterOptions{}, nil, nil, err
	}
	pcfg.Username, pcfg.Password = cc.EtcdUser, cc.etcdPassword
	p, err := placement.Open(ctx, pcfg, placement.Node{ID: nodeID, Addr: strings.TrimSuffix(addr, "/"),
		State: placement.Accepting, Capacity: most, Sessions: sessions})
	if err != nil {
		return api.ClusterOptions{}, nil, nil, err
	}
	if err := p.Sync(ctx, local); err != nil { // this node's sessions answer here again
		slog.Warn("placement: first sync", "err", err)
	}
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); p.RunSync(syncCtx, local, cc.SyncInterval) }()
	slog.Info("cluster joined", "node", nodeID, "advertise", addr, "etcd", []string(cc.Etcd), "leaseTTL", cc.LeaseTTL)
	stop := func() {
		stopSync()
		<-done
		if ids, err := local.SessionIDs(context.Background()); err == nil && len(ids) == 0 {
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.Leave(lctx); err != nil {
				slog.Warn("placement: leave", "err", err)
			}
			return
		}
		p.Close()
	}
	opts := api.DefaultClusterOptions
	opts.Placement, opts.Secret = p, cc.secret
	return opts, p, stop, nil
}

// drainHook is what POST/DELETE /api/admin/drain does besides refusing new
// sessions: pause or resume the warm pool, and tell the cluster.
func drainHook(mgr *runtime.Manager, p *placement.Placement) func(context.Context, bool) error {
	return func(ctx context.Context, on bool) error {
		mgr.PausePool(on)
		if p == nil {
			return nil
		}
		return p.Update(ctx, func(n *placement.Node) {
			n.State = placement.Accepting
			if on {
				n.State = placement.Draining
			}
		})
	}
}

// drainCommand is `servcraftd drain`: ask the daemon on --listen to stop
// taking new sessions (--undo: take them again), and with --wait poll
// /status until it reports drained.
func drainCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := defaultConfig()
	fs := subcommandFlags("drain", "servcraftd drain [--wait] [--undo] [flags]: stop taking new sessions, keep serving the ones here", stderr, &cfg, "listen", "api-token", "api-token-file")
	wait := fs.Bool("wait", false, "wait until the node has no sessions left (state drained)")
	undo := fs.Bool("undo", false, "take new sessions again")
	timeout := fs.Duration("timeout", time.Hour, "how long --wait waits")
	if code := parseSubcommand(fs, args, getenv, stderr); code != nil {
		return *code
	}
	if err := cfg.readTokenFile(); err != nil {
		fmt.Fprintln(stderr, "drain:", err)
		return 2
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "drain: listen:", err)
		return 2
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, port)
	call := func(method, path string) (map[string]any, error) {
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			return nil, err
		}
		if cfg.API.APIToken != "" {
			req.Header.Set("Authorization", "Bearer "+cfg.API.APIToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, fmt.Errorf("%s %s: %s: %w", method, path, resp.Status, err)
		}
		if resp.StatusCode != http.StatusOK {
			return out, fmt.Errorf("%s %s: %s: %v", method, path, resp.Status, out["error"])
		}
		return out, nil
	}
	method := http.MethodPost
	if *undo {
		method = http.MethodDelete
	}
	out, err := call(method, "/api/admin/drain")
	if err != nil {
		fmt.Fprintln(stderr, "drain:", err)
		return 1
	}
	fmt.Fprintf(stdout, "state %v, %v sessions\n", out["state"], out["sessions"])
	if !*wait || *undo {
		return 0
	}
	deadline := time.Now().Add(*timeout)
	for out["state"] != string(placement.Drained) {
		if time.Now().After(deadline) {
			fmt.Fprintln(stderr, "drain: not drained after", *timeout)
			return 1
		}
		time.Sleep(2 * time.Second) // polling the daemon's status
		if out, err = call(http.MethodGet, "/status"); err != nil {
			fmt.Fprintln(stderr, "drain:", err)
			return 1
		}
		fmt.Fprintf(stdout, "state %v, %v sessions\n", out["state"], out["sessions"])
	}
	return 0
}
