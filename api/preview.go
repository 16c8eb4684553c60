package api

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
)

// previewPortHeader picks another in-session port than exposedPort, like ?port=.
const previewPortHeader = "X-Servcraft-Port"

// preview proxies any request to a server the user runs in the session, on
// 127.0.0.1:<port> inside the session's network namespace. WebSocket
// upgrades pass through. Browsers see small HTML pages for the errors.
func (h *handlers) preview(c *gin.Context) {
	id, ok := h.previewSession(c, c.Param("sessionId"))
	if !ok {
		return
	}
	port := h.opt.ExposedPort
	q := c.Request.URL.Query()
	if p := c.GetHeader(previewPortHeader); p != "" || q.Get("port") != "" {
		if p == "" {
			p = q.Get("port")
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < h.opt.MinPreviewPort || n > 65535 {
			previewPage(c, http.StatusBadRequest, "Bad preview port",
				fmt.Sprintf("port %q: want a number from %d to 65535", p, h.opt.MinPreviewPort))
			return
		}
		port = n
		q.Del("port")
	}
	path := c.Param("path")
	if path == "" {
		path = "/"
	}
	target := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: path, RawQuery: q.Encode()}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header.Del(previewPortHeader)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return h.s.DialSession(ctx, id, port)
			},
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  h.opt.PreviewTimeout,
			MaxResponseHeaderBytes: 64 << 10,
		},
		FlushInterval: -1, // stream as it comes (server-sent events, chunked pages)
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode != http.StatusSwitchingProtocols {
				resp.Body = &limitedBody{ReadCloser: resp.Body, left: h.opt.MaxPreviewBytes}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case errdefs.IsNotFound(err):
				previewPage(c, http.StatusNotFound, "No such session",
					fmt.Sprintf("No live playground session is named %q or ends with \"-%s\": it does not exist or has ended.", id, runtime.ShortID(id)))
			case errors.Is(err, syscall.ECONNREFUSED):
				previewPage(c, http.StatusServiceUnavailable, "Service not ready",
					fmt.Sprintf("Nothing listens on port %d in this session yet — refresh in a few seconds.", port))
			case errors.Is(err, context.DeadlineExceeded):
				previewPage(c, http.StatusGatewayTimeout, "Preview timed out", "The server in this session took too long to answer.")
			default:
				slog.Warn("preview", "session", id, "port", port, "err", err)
				previewPage(c, http.StatusBadGateway, "Preview failed", "The server in this session could not be reached.")
			}
		},
	}
	if c.GetHeader("Upgrade") != "" {
		// A WebSocket lives longer than the server's write timeout.
		_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Time{})
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Time{})
	} else {
		// A previewed page may stream (server-sent events, a dev server's log):
		// give it an hour rather than the API's write timeout; MaxPreviewBytes bounds its size.
		_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(time.Hour))
	}
	rp.ServeHTTP(c.Writer, c.Request)
}

// previewSession finds the session a preview address names, the one way
// every form of preview address does: a full sessionId, or the last
// "-"-separated segment of exactly one live sessionId (runtime's
// PreviewSession). On a bad or ambiguous id it answers with an HTML page and
// returns false; an id no live session has comes back as it is, and the dial
// into the session answers 404 "No such session".
func (h *handlers) previewSession(c *gin.Context, id string) (string, bool) {
	if err := validSessionID(id); err != nil {
		previewPage(c, http.StatusBadRequest, "Bad preview address", err.Error())
		return "", false
	}
	sessionID, err := h.s.PreviewSession(id)
	if err != nil {
		previewPage(c, http.StatusNotFound, "Ambiguous preview address",
			fmt.Sprintf("More than one playground session ends with %q: open the preview by the full session id.", id))
		return "", false
	}
	return sessionID, true
}

// errPreviewTooLarge cuts a preview response over MaxPreviewBytes.
var errPreviewTooLarge = errors.New("preview response larger than the limit")

// limitedBody ends a preview response after its byte budget.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errPreviewTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.ReadCloser.Read(p)
	l.left -= int64(n)
	return n, err
}

func previewPage(c *gin.Context, status int, title, msg string) {
	c.Header("Cache-Control", "no-store")
	c.Data(status, "text/html; charset=utf-8", []byte(fmt.Sprintf(
		"<!doctype html><html><head><meta charset=\"utf-8\"><title>%[1]s</title>%[3]s</head>"+
			"<body style=\"font-family:sans-serif;margin:3em\"><h1>%[1]s</h1><p>%[2]s</p></body></html>",
		html.EscapeString(title), html.EscapeString(msg), refreshTag(status))))
}

// refreshTag makes a "not ready" page retry by itself.
func refreshTag(status int) string {
	if status == http.StatusServiceUnavailable {
		return `<meta http-equiv="refresh" content="3">`
	}
	return ""
}
