package api

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"
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
	release, err := h.held.hold(c, id)
	if err != nil {
		fail(c, err)
		return
	}
	defer release()
	term, err := h.s.OpenTerminal(c.Request.Context(), id, uint32(cols), uint32(rows))
	if err != nil {
		fail(c, err)
		return
	}
	defer term.Close()
	_ = setNoDeadlines(c)
	// Same origin (the Host, which the allow-list checked) or a listed one
	// only: a foreign page must not drive a shell.
	ws, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{
		OriginPatterns: wsOriginPatterns(h.opt.CORSOrigins), InsecureSkipVerify: h.opt.NoBrowserDefenses})
	if err != nil {
		return // Accept has answered the client
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxTerminalMessage)
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Request.Context()))
	defer cancel()

	go pingTerminal(ctx, ws, cancel)
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
				h.s.Touch(id)
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
				h.s.Touch(id)
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
