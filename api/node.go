package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/store/placement"
)

// nodeState is the node's drain switch and what /status reports.
type nodeState struct {
	draining    atomic.Bool
	onDrain     func(ctx context.Context, draining bool) error
	maxSessions int
	token       bool // an API token guards /api/admin/*
}

// sessionsNow is the number of sessions held here (warm pool excluded).
func (h *handlers) sessionsNow() (sessions, pooled int) {
	if h.opt.Metrics == nil {
		return 0, 0
	}
	st := h.opt.Metrics.Stats()
	return st.Active, st.Pooled
}

// state is accepting, draining, or drained (draining with no sessions left).
func (h *handlers) state() placement.State {
	if !h.node.draining.Load() {
		return placement.Accepting
	}
	sessions, _ := h.sessionsNow()
	return placement.NextState(placement.Draining, sessions)
}

// ready is /readyz, for load balancers: 200 while the runtime is ready and
// the node takes new sessions; 503 (code not_ready or draining) otherwise. A
// draining node still serves its own sessions, directly and through the
// other nodes' forwards: a load balancer that stops sending it new requests
// loses nothing.
func (h *handlers) ready(c *gin.Context) {
	var dsk *diskStatus
	if h.opt.Disk != nil {
		st, err := h.opt.Disk.DiskStatus()
		if err != nil {
			c.JSON(http.StatusServiceUnavailable, readyResponse{Success: false, Ready: false, Error: err.Error(), Code: codeNotReady})
			return
		}
		dsk = newDiskStatus(st)
	}
	if err := h.s.Ready(c.Request.Context()); err != nil {
		c.JSON(http.StatusServiceUnavailable, readyResponse{Success: false, Ready: false, Error: err.Error(), Code: codeNotReady, Disk: dsk})
		return
	}
	if st := h.state(); st != placement.Accepting {
		c.JSON(http.StatusServiceUnavailable, readyResponse{Success: false, Ready: false, State: string(st), Disk: dsk,
			Error: "node is " + string(st) + ": it takes no new sessions", Code: codeDraining})
		return
	}
	c.JSON(http.StatusOK, readyResponse{Success: true, Ready: true, Disk: dsk})
}

func (h *handlers) status(c *gin.Context) {
	sessions, pooled := h.sessionsNow()
	r := statusResponse{Success: true, State: string(h.state()), Sessions: sessions, Pooled: pooled, Capacity: h.node.maxSessions}
	if h.node.maxSessions > 0 {
		free := max(h.node.maxSessions-sessions-pooled, 0)
		r.Free = &free
	}
	if h.cluster.on() {
		r.NodeID = h.cluster.p.Self().ID
		nodes, err := h.cluster.p.Nodes(c.Request.Context())
		if err != nil {
			r.Error = err.Error()
		}
		r.Cluster = toClusterNodes(nodes)
	}
	c.JSON(http.StatusOK, r)
}

// drain is POST /api/admin/drain (and DELETE to take sessions again): stop
// taking new sessions and filling the warm pool, keep serving the sessions
// here. Without an API token only a loopback client may drain.
func (h *handlers) drain(c *gin.Context) {
	if !h.node.token && !isLoopback(c.Request.RemoteAddr) {
		fail(c, fmt.Errorf("drain from %s: only loopback clients may drain a node without an API token: %w", c.ClientIP(), errdefs.ErrPermissionDenied))
		return
	}
	on := c.Request.Method != http.MethodDelete
	if h.node.onDrain != nil {
		if err := h.node.onDrain(c.Request.Context(), on); err != nil {
			fail(c, fmt.Errorf("drain: %w", err))
			return
		}
	}
	h.node.draining.Store(on)
	sessions, _ := h.sessionsNow()
	c.JSON(http.StatusOK, drainResponse{Success: true, State: string(h.state()), Sessions: sessions})
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
