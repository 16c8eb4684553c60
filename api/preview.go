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
	"strings"
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
// Nothing of the API's reaches the user's server (stripForPreview); a
// path-form preview, which shares the API's origin, is defused (defuse).
// maxPreviewHeaderBytes bounds the response headers of a preview.
const maxPreviewHeaderBytes = 64 << 10

func (h *handlers) preview(c *gin.Context) {
	id, port, host, err := h.previewTarget(c)
	if errors.Is(err, runtime.ErrAmbiguousPreview) {
		c.Set(sessionMissKey, true)
		previewPage(c, http.StatusNotFound, "Ambiguous preview address", err.Error())
		return
	}
	if err != nil {
		previewPage(c, http.StatusBadRequest, "Bad preview address", err.Error())
		return
	}
	sandboxed := !host && !h.opt.NoBrowserDefenses
	if sandboxed && c.GetHeader("Service-Worker") != "" {
		previewPage(c, http.StatusForbidden, "No service workers here",
			"A path-form preview shares the API's origin and cannot register a service worker; use the preview domain.")
		return
	}
	release, err := h.held.hold(c, id)
	if err != nil {
		previewPage(c, http.StatusTooManyRequests, "Too many connections", err.Error())
		return
	}
	defer release()
	// Nothing moving either way for PreviewIdleTimeout ends the exchange.
	watch := newIdleWatch(h.opt.PreviewIdleTimeout)
	q := c.Request.URL.Query()
	q.Del("port")
	q.Del(previewLinkParam)
	path := h.previewPath(c, host)
	target := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: path, RawQuery: q.Encode()}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			stripForPreview(pr.Out.Header, !host)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				conn, err := h.s.DialSession(ctx, id, port)
				if err != nil {
					return nil, err
				}
				return watch.conn(conn), nil
			},
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  h.opt.PreviewTimeout,
			MaxResponseHeaderBytes: maxPreviewHeaderBytes,
		},
		FlushInterval: -1, // stream as it comes (server-sent events, chunked pages)
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode != http.StatusSwitchingProtocols {
				resp.Body = &limitedBody{ReadCloser: resp.Body, left: h.opt.MaxPreviewBytes}
			}
			if sandboxed {
				defuse(resp.Header)
			} else {
				hostOnlyCookies(resp.Header)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case errdefs.IsNotFound(err):
				c.Set(sessionMissKey, true)
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
		// A WebSocket lives longer than the server's read timeout: once
		// hijacked, the watch keeps its deadlines.
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Time{})
	}
	// A previewed page may stream (server-sent events, a dev server's log)
	// for as long as bytes move: the watch moves the write deadline past the
	// API's; MaxPreviewBytes bounds its size.
	rp.ServeHTTP(newWatchedWriter(c.Writer, watch), c.Request)
}

// previewSession is the session a preview request names, the one way every
// form of preview address does (host-form requests are rewritten to the path
// form): a full sessionId, or the last "-"-separated segment of exactly one
// live sessionId (runtime's PreviewSession). An ambiguous segment is
// runtime.ErrAmbiguousPreview; an id no live session has comes back as it
// is, and the dial into the session answers 404 "No such session".
func (h *handlers) previewSession(c *gin.Context) (string, error) {
	id := c.Param("sessionId")
	if err := validSessionID(id); err != nil {
		return "", err
	}
	sessionID, err := h.s.PreviewSession(id)
	if err != nil {
		return "", fmt.Errorf("more than one playground session ends with %q: open the preview by the full session id: %w", id, err)
	}
	return sessionID, nil
}

// stripForPreview removes what the API's client sent for the API from a
// request to the user's server: its credentials (Authorization,
// Proxy-Authorization, the preview cookies, a Referer that may hold a
// path-form credential) and every X-Servcraft-* header.
// In path form every cookie is the API origin's, so none goes. Hop-by-hop
// headers (RFC 9110 §7.6.1: Connection and those it names, Keep-Alive, TE,
// Transfer-Encoding, Upgrade but for a WebSocket, Proxy-Connection) are
// removed by httputil.ReverseProxy.
func stripForPreview(hd http.Header, pathForm bool) {
	hd.Del("Authorization")
	hd.Del("Proxy-Authorization")
	for name := range hd {
		if strings.HasPrefix(name, "X-Servcraft-") {
			delete(hd, name)
		}
	}
	if strings.Contains(hd.Get("Referer"), pathLinkPrefix) { // a path-form page's credential
		hd.Del("Referer")
	}
	if pathForm {
		hd.Del("Cookie")
		return
	}
	var kept []string
	for _, line := range hd.Values("Cookie") {
		for _, part := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name != "" && !strings.HasPrefix(name, previewCookieName) {
				kept = append(kept, strings.TrimSpace(part))
			}
		}
	}
	hd.Del("Cookie")
	if len(kept) > 0 {
		hd.Set("Cookie", strings.Join(kept, "; "))
	}
}

// pathPreviewCSP runs a path-form preview in an opaque origin: scripts,
// forms and popups work, but the page cannot reach the API origin's
// cookies, storage or service workers.
const pathPreviewCSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads allow-pointer-lock allow-presentation"

// defuse makes a path-form preview's answer harmless to the API's origin.
func defuse(hd http.Header) {
	hd.Add("Content-Security-Policy", pathPreviewCSP)
	hd.Del("Service-Worker-Allowed")
	hd.Del("Set-Cookie")
	hd.Del("Clear-Site-Data")
}

// hostOnlyCookies keeps every cookie a preview's server sets to that
// preview's own host: it drops each Set-Cookie's Domain attribute, so that
// one preview cannot toss a cookie at every other preview of the preview
// domain, and drops any that would take one of the daemon's own names. A
// cookie set by the page's script (document.cookie) does not pass here: a
// preview domain on the Public Suffix List is what stops those
// (docs/security.md).
func hostOnlyCookies(hd http.Header) {
	lines := hd.Values("Set-Cookie")
	if len(lines) == 0 {
		return
	}
	hd.Del("Set-Cookie")
	for _, line := range lines {
		parts := strings.Split(line, ";")
		name, _, _ := strings.Cut(strings.TrimSpace(parts[0]), "=")
		if strings.HasPrefix(strings.TrimSpace(name), previewCookieName) {
			continue
		}
		kept := parts[:1]
		for _, attr := range parts[1:] {
			key, _, _ := strings.Cut(strings.TrimSpace(attr), "=")
			if !strings.EqualFold(strings.TrimSpace(key), "Domain") {
				kept = append(kept, attr)
			}
		}
		hd.Add("Set-Cookie", strings.Join(kept, ";"))
	}
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
