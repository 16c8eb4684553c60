package api

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
)

// terminal upgrades to a WebSocket bound to an interactive shell on a PTY in
// the session. Closing the socket ends the shell and everything it started.
func (h *handlers) terminal(c *gin.Context) {
	id := c.Query("sessionId")
	if err := validSessionID(id); err != nil {
		fail(c, err)
		return
	}
	cols, _ := strconv.ParseUint(c.DefaultQuery("cols", "80"), 10, 16)
	rows, _ := strconv.ParseUint(c.DefaultQuery("rows", "24"), 10, 16)
	if cols == 0 || rows == 0 {
		fail(c, invalid("cols and rows must be 1 to %d", maxTerminalSize))
		return
	}
	open := func(ctx context.Context) (*runtime.Terminal, error) {
		return h.s.OpenTerminal(ctx, id, uint32(cols), uint32(rows))
	}
	attachSocket(c, h, id, maxTerminalMessage, open, func(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, term *runtime.Terminal) {
		serveTerminal(ctx, cancel, ws, term, func() { h.s.Touch(id) })
	})
}

// attachSocket holds a connection of session id (h.held), starts its
// process with open, upgrades to a WebSocket and pings it, then runs serve
// with both; when serve returns, or the pings go unanswered, both end.
// Same origin (the Host, which the allow-list checked) or a listed one only:
// a foreign page must not drive a session's process.
func attachSocket(c *gin.Context, h *handlers, id string, readLimit int64, open func(context.Context) (*runtime.Terminal, error),
	serve func(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, p *runtime.Terminal)) {
	release, err := h.held.hold(c, id)
	if err != nil {
		fail(c, err)
		return
	}
	defer release()
	p, err := open(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	defer p.Close()
	_ = setNoDeadlines(c)
	ws, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{
		OriginPatterns: wsOriginPatterns(h.opt.CORSOrigins), InsecureSkipVerify: h.opt.NoBrowserDefenses})
	if err != nil {
		return // Accept has answered the client
	}
	defer ws.CloseNow()
	ws.SetReadLimit(readLimit)
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Request.Context()))
	defer cancel()
	go pingTerminal(ctx, ws, cancel)
	serve(ctx, cancel, ws, p)
}

// serveTerminal carries a terminal's frames both ways (touch: on input).
func serveTerminal(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, term *runtime.Terminal, touch func()) {
	go func() { // socket → shell; when the socket goes, so does the shell
		defer cancel()
		defer term.Close()
		for {
			typ, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageBinary {
				if _, err := term.Write(data); err != nil {
					return
				}
				touch()
				continue
			}
			var msg terminalMessage
			if json.Unmarshal(data, &msg) != nil {
				continue
			}
			switch msg.Type {
			case "resize":
				if msg.Cols > 0 && msg.Rows > 0 {
					_ = term.Resize(ctx, msg.Cols, msg.Rows)
				}
			case "input":
				if _, err := term.Write([]byte(msg.Data)); err != nil {
					return
				}
				touch()
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for { // shell → socket
		n, err := term.Read(buf)
		if n > 0 {
			if werr := ws.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			break
		}
	}
	select {
	case code := <-term.Exit():
		msg, _ := json.Marshal(terminalMessage{Type: "exit", ExitCode: &code})
		_ = ws.Write(ctx, websocket.MessageText, msg)
		ws.Close(websocket.StatusNormalClosure, "shell exited")
	case <-ctx.Done():
	}
}

// terminalPing is how often an open terminal's socket is pinged, and
// terminalPingTimeout how long the pong may take: a peer that is gone
// without closing the socket ends its shell within the two.
const (
	maxTerminalMessage  = 1 << 20 // bytes of one WebSocket message from the client
	maxTerminalSize     = 65535   // most cols and rows
	terminalPing        = 30 * time.Second
	terminalPingTimeout = 15 * time.Second
)

// pingTerminal pings ws until ctx ends, and calls end when a pong does not come.
func pingTerminal(ctx context.Context, ws *websocket.Conn, end context.CancelFunc) {
	tick := time.NewTicker(terminalPing)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, terminalPingTimeout)
			err := ws.Ping(pctx)
			cancel()
			if err != nil {
				end()
				ws.CloseNow()
				return
			}
		}
	}
}

func setNoDeadlines(c *gin.Context) error {
	rc := httpResponseController(c)
	return errors.Join(rc.SetReadDeadline(timeZero), rc.SetWriteDeadline(timeZero))
}
