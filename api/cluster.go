package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/store/placement"
)

// Placement is what forwarding needs of the cluster's records
// (store/placement.Placement).
type Placement interface {
	Self() placement.Node
	Nodes(ctx context.Context) ([]placement.Node, error)
	Claim(ctx context.Context, sessionID string) (string, error)
	Owner(ctx context.Context, sessionID string) (placement.Node, bool, error)
	Release(ctx context.Context, sessionID string) error
	LeaseTTL() time.Duration
}

// ClusterOptions turn cluster mode on (a nil Placement is single-host mode).
type ClusterOptions struct {
	Placement   Placement
	Secret      []byte        // signs the hop header; every node has the same
	DialTimeout time.Duration // connecting to an owner before answering 503
	HopSkew     time.Duration // how far a hop's signing time may be from now
}

// DefaultClusterOptions are the forwarding limits when none are configured.
var DefaultClusterOptions = ClusterOptions{DialTimeout: 3 * time.Second, HopSkew: 30 * time.Second}

// sessionIDHeader names the request's session for a load balancer that pins
// sessions to owners; it must agree with the body or query.
const sessionIDHeader = "X-Session-ID"

// hopKey marks a request that arrived over a verified hop.
const hopKey = "servcraft.hop"

// cluster routes requests to the owner of their session.
type cluster struct {
	p         Placement
	secret    []byte
	skew      time.Duration
	transport http.RoundTripper
	draining  *atomic.Bool
	exists    func(ctx context.Context, sessionID string) bool
}

func newCluster(opt ClusterOptions, draining *atomic.Bool, exists func(context.Context, string) bool) *cluster {
	def := DefaultClusterOptions
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = def.DialTimeout
	}
	if opt.HopSkew <= 0 {
		opt.HopSkew = def.HopSkew
	}
	dialer := &net.Dialer{Timeout: opt.DialTimeout, KeepAlive: 30 * time.Second}
	return &cluster{
		p: opt.Placement, secret: opt.Secret, skew: opt.HopSkew, draining: draining, exists: exists,
		transport: &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

func (cl *cluster) on() bool { return cl.p != nil }

// middleware is the hop of the routes of class: every route that gets it
// (access.chain) is about one session, named in its path, query, JSON body
// or X-Session-ID. A request is answered here or forwarded to its session's
// owner; a create is placed; after a destroy the owner releases the record.
// It runs after the body limit and before the per-client limits, which so
// count each request once, on the node that serves it, by the real client.
func (cl *cluster) middleware(class routeClass) gin.HandlerFunc {
	create, destroy := class == classCreate, class == classDestroy
	// A preview's body is the app's own: it is streamed, never read for an id.
	bodyNames := class != classPreview
	return func(c *gin.Context) { cl.hop(c, create, destroy, bodyNames) }
}

// acceptHop verifies a request's hop header, when it has one, before the
// token is checked: a node forwards without the client's Authorization (it
// never leaves the first node), so a verified hop stands for it (auth lets
// it through). A request with a hop header that does not verify is refused.
func (cl *cluster) acceptHop(c *gin.Context) {
	v := c.GetHeader(hopHeader)
	if v == "" {
		c.Next()
		return
	}
	_, client, err := verifyHop(cl.secret, v, c.Request.Method, c.Request.RequestURI, time.Now(), cl.skew)
	if err != nil {
		fail(c, fmt.Errorf("%w: %w", err, errdefs.ErrPermissionDenied))
		return
	}
	c.Request.RemoteAddr = net.JoinHostPort(client, "0")
	c.Request.Header.Del("X-Forwarded-For")
	c.Request.Header.Del("X-Real-IP")
	c.Request.Header.Del(hopHeader)
	c.Set(hopKey, true)
	c.Next()
}

func (cl *cluster) hop(c *gin.Context, create, destroy, bodyNames bool) {
	hopped := c.GetBool(hopKey)
	if !cl.on() && c.GetHeader(sessionIDHeader) == "" && !(create && cl.draining.Load()) {
		c.Next()
		return
	}
	id, err := routeSession(c, bodyNames)
	if err != nil {
		fail(c, err)
		return
	}
	switch {
	case id == "":
		c.Next()
	case !cl.on():
		if create && cl.draining.Load() && !cl.exists(c.Request.Context(), id) {
			unavailable(c, codeDraining, "this node is draining: it takes no new sessions", time.Minute)
			return
		}
		c.Next()
	case create:
		cl.create(c, id, hopped)
	case hopped:
		cl.local(c, id, destroy)
	default:
		owner, found, err := cl.p.Owner(c.Request.Context(), id)
		if err != nil {
			cl.storeDown(c, err)
			return
		}
		if !found || owner.ID == cl.p.Self().ID {
			cl.local(c, id, destroy)
			return
		}
		cl.forward(c, owner)
	}
}

// local serves the request here; a destroy releases the session's record.
func (cl *cluster) local(c *gin.Context, id string, destroy bool) {
	c.Next()
	if destroy && (c.Writer.Status() == http.StatusOK || c.Writer.Status() == http.StatusNotFound) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 5*time.Second)
		defer cancel()
		if err := cl.p.Release(ctx, id); err != nil {
			slog.Warn("release session record", "session", id, "err", err)
		}
	}
}

// create places a new session: an existing owner keeps it; else this node
// when it takes sessions, else the accepting node with the most free
// capacity (placement.PickNode). The node that creates claims the id first,
// so concurrent creates of one id on several nodes make one container.
func (cl *cluster) create(c *gin.Context, id string, hopped bool) {
	ctx := c.Request.Context()
	self := cl.p.Self()
	if cl.draining.Load() {
		self.State = placement.Draining
	}
	owner, found, err := cl.p.Owner(ctx, id)
	if err != nil {
		cl.storeDown(c, err)
		return
	}
	if found {
		switch {
		case owner.ID == self.ID:
			c.Header("X-Servcraft-Node", self.ID)
			c.Next()
		case hopped:
			unavailable(c, codeOwnerUnavailable, fmt.Sprintf("session %s is being created on node %s: retry", id, owner.ID), time.Second)
		default:
			cl.forward(c, owner)
		}
		return
	}
	pick := !hopped // choose the node with the most room
	if from := bodyFrom(c); from != "" && !hopped {
		// A fork copies the source's workspace, which only its owner has:
		// the new session is made there.
		src, found, err := cl.p.Owner(ctx, from)
		if err != nil {
			cl.storeDown(c, err)
			return
		}
		if found && src.ID != self.ID {
			cl.forward(c, src)
			return
		}
		pick = !found // the source is here: so is its fork
	}
	if pick {
		nodes, err := cl.p.Nodes(ctx)
		if err != nil {
			cl.storeDown(c, err)
			return
		}
		target, ok := placement.PickNode(self, nodes)
		if !ok {
			unavailable(c, codeNoCapacity, "no node in the cluster takes new sessions", 10*time.Second)
			return
		}
		if target.ID != self.ID {
			cl.forward(c, target)
			return
		}
	} else if self.State != placement.Accepting {
		unavailable(c, codeDraining, "this node is draining: retry", time.Second)
		return
	}
	winner, err := cl.p.Claim(ctx, id)
	if err != nil {
		cl.storeDown(c, err)
		return
	}
	if winner != self.ID {
		if hopped {
			unavailable(c, codeOwnerUnavailable, fmt.Sprintf("session %s is being created on node %s: retry", id, winner), time.Second)
			return
		}
		n, ok, err := cl.p.Owner(ctx, id)
		if err != nil || !ok {
			unavailable(c, codeOwnerUnavailable, fmt.Sprintf("session %s is being created on node %s: retry", id, winner), time.Second)
			return
		}
		cl.forward(c, n)
		return
	}
	c.Header("X-Servcraft-Node", self.ID)
	c.Next()
	if c.Writer.Status() >= 400 { // nothing was made: free the id for another try
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := cl.p.Release(rctx, id); err != nil {
			slog.Warn("release failed create's record", "session", id, "err", err)
		}
	}
}

// forward proxies the request to node: streamed (every write flushed, for
// SSE and streamed execute), WebSocket upgrades passed through, with a signed
// hop header carrying the client's address. An owner that cannot be reached
// is a 503 owner_unavailable with Retry-After: its sessions still exist as
// far as the cluster knows, and a client must not re-create them.
func (cl *cluster) forward(c *gin.Context, node placement.Node) {
	retry := cl.p.LeaseTTL()
	target, err := url.Parse(node.Addr)
	if node.Addr == "" || err != nil || target.Host == "" {
		unavailable(c, codeOwnerUnavailable, fmt.Sprintf("node %s owns this session and has no usable address", node.ID), retry)
		return
	}
	if body, ok := c.Get(bodyKey); ok {
		b := body.([]byte)
		c.Request.Body = io.NopCloser(bytes.NewReader(b))
		c.Request.ContentLength = int64(len(b))
	}
	from, client := cl.p.Self().ID, c.ClientIP()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			// The client's credentials stay here: the hop's signature is the
			// owner's proof that this node checked them.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Proxy-Authorization")
			pr.Out.Header.Set(hopHeader, signHop(cl.secret, from, client, pr.In.Method, pr.In.RequestURI, time.Now()))
		},
		Transport:     cl.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil { // the client went away
				return
			}
			slog.Warn("forward to owner", "node", node.ID, "addr", node.Addr, "err", err)
			unavailable(c, codeOwnerUnavailable, fmt.Sprintf("node %s owns this session and cannot be reached: retry", node.ID), retry)
		},
	}
	c.Header("X-Servcraft-Forwarded-To", node.ID)
	// The owner bounds its answers (and lifts the bounds for streams and
	// WebSockets); this end of the hop must not cut them shorter.
	_ = setNoDeadlines(c)
	proxy.ServeHTTP(c.Writer, c.Request)
	c.Abort()
}

// storeDown answers when etcd cannot be read: a retryable 503.
func (cl *cluster) storeDown(c *gin.Context, err error) {
	slog.Warn("placement store", "err", err)
	unavailable(c, codePlacementUnavailable, "the cluster's placement store cannot be reached: retry", time.Second)
}

// unavailable writes a retryable 503 with Retry-After.
func unavailable(c *gin.Context, code, msg string, retry time.Duration) {
	c.Header("Retry-After", strconv.Itoa(int(math.Ceil(max(retry, time.Second).Seconds()))))
	renderError(c, http.StatusServiceUnavailable, code, msg)
}

// bodyKey holds a request body read to find its sessionId, for the forward.
const bodyKey = "servcraft.body"

// routeSession finds the request's sessionId: the route's path, the query,
// or (when bodyNames) the JSON body (read whole within the body limit, then
// given back to the handler), and the X-Session-ID header, which must agree
// with them (400). An id that is not valid is left to the handler to refuse;
// "" is no session.
func routeSession(c *gin.Context, bodyNames bool) (string, error) {
	id := c.Param("sessionId")
	if id == "" {
		id = c.Query("sessionId")
	}
	if id == "" && bodyNames && hasBody(c.Request) {
		data, err := io.ReadAll(c.Request.Body)
		if err != nil {
			var maxBytes *http.MaxBytesError
			if errors.As(err, &maxBytes) {
				return "", err
			}
			return "", invalid("read request body: %v", err)
		}
		c.Request.Body = io.NopCloser(bytes.NewReader(data))
		c.Set(bodyKey, data)
		id = bodySessionID(data)
	}
	if h := c.GetHeader(sessionIDHeader); h != "" {
		if id != "" && h != id {
			return "", invalid("%s %q contradicts the request's sessionId %q", sessionIDHeader, h, id)
		}
		id = h
	}
	if validSessionID(id) != nil {
		return "", nil
	}
	return id, nil
}

// bodyFrom is the "from" of a create's JSON body (the session a fork
// copies) when it is a valid session id, else "". routeSession has read the
// body by then.
func bodyFrom(c *gin.Context) string {
	data, ok := c.Get(bodyKey)
	if !ok {
		return ""
	}
	var v struct {
		From any `json:"from"`
	}
	if json.Unmarshal(data.([]byte), &v) != nil {
		return ""
	}
	if s, _ := v.From.(string); validSessionID(s) == nil {
		return s
	}
	return ""
}

// hasBody reports whether r may carry a JSON body naming its session.
func hasBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	return r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodDelete
}

// bodySessionID is the top-level "sessionId" string of a JSON object, or "".
func bodySessionID(data []byte) string {
	var v struct {
		SessionID any `json:"sessionId"`
	}
	if json.Unmarshal(data, &v) != nil {
		return ""
	}
	s, _ := v.SessionID.(string)
	return s
}
