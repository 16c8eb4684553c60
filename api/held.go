package api

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Held connections are the requests that stay open for as long as a client
// or a session's server wants: previews in flight (pages, streams,
// WebSockets), log followers (server-sent events) and terminals. Each holds a
// goroutine or two and file descriptors in the daemon, so one client and
// one session may hold only so many at once (Options.MaxHeldPerClient,
// MaxHeldPerSession); past that they answer 429 at once. Each also has a
// way to notice a peer that is gone: previews an idle deadline
// (Options.PreviewIdleTimeout), log followers a heartbeat under the
// write deadline (sseHeartbeat), terminals a WebSocket ping (terminalPing).

// heldConns counts what each client and each session holds at once: held
// connections, or listings in progress (newListings).
type heldConns struct {
	perClient, perSession sessionSlots
	what                  string // what is counted, for the refusal
	limit                 string // the /metrics label of a refusal: <limit>_client, <limit>_session
	onLimited             func(limit string)
}

func newHeldConns(opt Options, onLimited func(string)) *heldConns {
	return newSlotCaps(opt.MaxHeldPerClient, opt.MaxHeldPerSession, "connections (previews, log streams, terminals)", "held", onLimited)
}

// newListings counts the file listings (GET files) in progress, each of
// which holds up to a listing's bytes in the daemon's memory.
func newListings(opt Options, onLimited func(string)) *heldConns {
	return newSlotCaps(opt.MaxConcurrentListings, opt.MaxConcurrentListings, "file listings", "listings", onLimited)
}

func newSlotCaps(perClient, perSession int, what, limit string, onLimited func(string)) *heldConns {
	return &heldConns{
		perClient:  sessionSlots{max: perClient, n: map[string]int{}},
		perSession: sessionSlots{max: perSession, n: map[string]int{}},
		what:       what,
		limit:      limit,
		onLimited:  onLimited,
	}
}

// heldRetry is the Retry-After of a refusal: a held connection ends when
// its client goes, at no set time.
const heldRetry = 5 * time.Second

// hold takes one of the client's and one of sessionID's slots for the
// connection c is about to hold, or explains, as an errRateLimited with
// Retry-After set, why not. release gives both back.
func (h *heldConns) hold(c *gin.Context, sessionID string) (release func(), err error) {
	client := clientKey(c.ClientIP())
	if !h.perClient.acquire(client) {
		return nil, h.refused(c, h.limit+"_client", "client %s holds %d %s already", client, h.perClient.max, h.what)
	}
	if !h.perSession.acquire(sessionID) {
		h.perClient.release(client)
		return nil, h.refused(c, h.limit+"_session", "session %q has %d %s open already", sessionID, h.perSession.max, h.what)
	}
	return func() {
		h.perSession.release(sessionID)
		h.perClient.release(client)
	}, nil
}

func (h *heldConns) refused(c *gin.Context, limit, format string, args ...any) error {
	return refusal(c, heldRetry, h.onLimited, limit, format, args...)
}

// idleWatch keeps the deadlines of a proxied exchange's connections at idle
// past the last byte that moved either way, so that an exchange on which
// nothing moves for idle fails its reads and writes, and ends, whichever
// side stalls: a client that never reads as well as a server that never
// answers. Deadlines move at most every idle/16, so a busy stream costs a
// clock read per read or write.
type idleWatch struct {
	idle    time.Duration
	mu      sync.Mutex
	last    time.Time
	setters []func(time.Time) error
}

func newIdleWatch(idle time.Duration) *idleWatch { return &idleWatch{idle: idle} }

// add watches one more connection through set, its deadline setter.
func (w *idleWatch) add(set func(time.Time) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setters = append(w.setters, set)
	_ = set(time.Now().Add(w.idle))
}

// touch records that bytes moved.
func (w *idleWatch) touch() {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.last) < w.idle/16 {
		return
	}
	w.last = now
	for _, set := range w.setters {
		_ = set(now.Add(w.idle))
	}
}

// conn is c watched by w: each read or write that moves bytes touches w.
func (w *idleWatch) conn(c net.Conn) net.Conn {
	w.add(c.SetDeadline)
	return &watchedConn{Conn: c, w: w}
}

type watchedConn struct {
	net.Conn
	w *idleWatch
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.touch()
	}
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	c.w.touch()
	return c.Conn.Write(p)
}

// watchedWriter is a preview's response writer: what it writes touches the
// watch, which also moves its write deadline; a hijack (a WebSocket) hands
// over the client's connection watched as a whole.
type watchedWriter struct {
	http.ResponseWriter
	w *idleWatch
}

func newWatchedWriter(rw http.ResponseWriter, w *idleWatch) *watchedWriter {
	rc := http.NewResponseController(rw)
	w.add(rc.SetWriteDeadline)
	return &watchedWriter{ResponseWriter: rw, w: w}
}

func (ww *watchedWriter) Write(p []byte) (int, error) {
	ww.w.touch()
	return ww.ResponseWriter.Write(p)
}

func (ww *watchedWriter) Flush() { _ = http.NewResponseController(ww.ResponseWriter).Flush() }

func (ww *watchedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(ww.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return ww.w.conn(conn), brw, nil
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (ww *watchedWriter) Unwrap() http.ResponseWriter { return ww.ResponseWriter }
