package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
)

// LanguageServers is what a Sessions that can start a TypeScript language
// server in a session has (runtime.Runs).
type LanguageServers interface {
	OpenLanguageServer(ctx context.Context, sessionID string) (*runtime.Terminal, error)
}

const (
	maxLSPMessage = 8 << 20          // bytes of one LSP message, either way
	lspIdle       = 10 * time.Minute // a socket that sends nothing this long ends its server
)

// languageServer is GET /api/playground/lsp?sessionId=: a WebSocket bound
// to a TypeScript language server started in the session for it (so a
// session without the page open runs none). Each text message is one LSP
// JSON-RPC message, without the Content-Length framing, both ways. Closing
// the socket, or sending nothing for lspIdle, ends the server. Origin-checked
// and limited like the terminal.
func languageServer(h *handlers) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.Query("sessionId")
		if err := validSessionID(id); err != nil {
			fail(c, err)
			return
		}
		servers, ok := h.s.(LanguageServers)
		if !ok {
			fail(c, fmt.Errorf("this server has no language server: %w", errdefs.ErrNotImplemented))
			return
		}
		attachSocket(c, h, id, maxLSPMessage, func(ctx context.Context) (*runtime.Terminal, error) {
			return servers.OpenLanguageServer(ctx, id)
		}, func(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, ls *runtime.Terminal) {
			serveLSP(ctx, cancel, ws, ls, func() { h.s.Touch(id) })
		})
	}
}

// serveLSP carries LSP messages both ways, framing the client's for the
// server and unframing the server's (touch: on a client message).
func serveLSP(ctx context.Context, cancel context.CancelFunc, ws *websocket.Conn, ls *runtime.Terminal, touch func()) {
	go func() { // socket → server, framed
		defer cancel()
		defer ls.Close()
		for {
			rctx, rcancel := context.WithTimeout(ctx, lspIdle)
			typ, data, err := ws.Read(rctx)
			rcancel()
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				continue
			}
			if _, err := fmt.Fprintf(ls, "Content-Length: %d\r\n\r\n%s", len(data), data); err != nil {
				return
			}
			touch()
		}
	}()
	r := bufio.NewReaderSize(ls, 64<<10)
	for { // server → socket, one message per frame
		msg, err := readLSPMessage(r)
		if err != nil {
			break
		}
		if werr := ws.Write(ctx, websocket.MessageText, msg); werr != nil {
			return
		}
	}
	if ctx.Err() == nil {
		ws.Close(websocket.StatusNormalClosure, "language server ended")
	}
}

// readLSPMessage reads one Content-Length framed message of the LSP base
// protocol.
func readLSPMessage(r *bufio.Reader) ([]byte, error) {
	hdr, err := textproto.NewReader(r).ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(hdr.Get("Content-Length"))
	if err != nil || n < 0 || n > maxLSPMessage {
		return nil, errors.New("language server: bad Content-Length")
	}
	msg := make([]byte, n)
	_, err = io.ReadFull(r, msg)
	return msg, err
}
