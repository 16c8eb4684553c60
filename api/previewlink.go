package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// A preview link lets a browser open a session's preview without the API
// token (an <iframe> cannot send a bearer header): the API hands out
// previewUrl with ?servcraft_link=<token>, where the token is
// "<base64url(sessionId \n port \n expiry)>.<base64url(HMAC-SHA256)>" keyed
// with the daemon's preview key. The preview answers it with a 303 to the
// same address without the token and a cookie holding it, scoped to that
// preview: the host-form origin, or the path /p/{sessionId}/ in path form.
const (
	previewLinkParam  = "servcraft_link"
	previewCookieName = "servcraft_preview_" // + port
)

// signPreviewLink makes the token for id and port, valid until exp.
func signPreviewLink(key []byte, id string, port int, exp time.Time) string {
	payload := id + "\n" + strconv.Itoa(port) + "\n" + strconv.FormatInt(exp.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("preview-link-v1\n" + payload))
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(m.Sum(nil))
}

// verifyPreviewLink reports whether token is a link for id and port that has
// not expired at now, and its expiry.
func verifyPreviewLink(key []byte, token, id string, port int, now time.Time) (time.Time, bool) {
	if len(key) == 0 || len(token) > 512 {
		return time.Time{}, false
	}
	p, sig, ok := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil {
		return time.Time{}, false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("preview-link-v1\n"))
	m.Write(payload)
	if subtle.ConstantTimeCompare(got, m.Sum(nil)) != 1 {
		return time.Time{}, false
	}
	parts := strings.Split(string(payload), "\n")
	if len(parts) != 3 || parts[0] != id || parts[1] != strconv.Itoa(port) {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(parts[2], 10, 64)
	exp := time.Unix(sec, 0)
	if err != nil || !now.Before(exp) {
		return time.Time{}, false
	}
	return exp, true
}

// previewTarget is the session and port a preview request is for, and
// whether it came in host form.
func (h *handlers) previewTarget(c *gin.Context) (id string, port int, host bool, err error) {
	if ph, ok := hostForm(c.Request); ok {
		if ph.port < h.opt.MinPreviewPort {
			return "", 0, true, invalid("port %d: want a number from %d to 65535", ph.port, h.opt.MinPreviewPort)
		}
		id, err = h.previewSession(c)
		return id, ph.port, true, err
	}
	if id, err = h.previewSession(c); err != nil {
		return "", 0, false, err
	}
	port = h.opt.ExposedPort
	if p := c.GetHeader(previewPortHeader); p != "" || c.Query("port") != "" {
		if p == "" {
			p = c.Query("port")
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < h.opt.MinPreviewPort || n > 65535 {
			return "", 0, false, invalid("port %q: want a number from %d to 65535", p, h.opt.MinPreviewPort)
		}
		port = n
	}
	return id, port, false, nil
}

// previewAccess guards the previews: the API token as a bearer header, or a
// preview link (exchanged here for a cookie), or the cookie. Without an API
// token, or with PreviewPublic, every preview is open.
func (h *handlers) previewAccess(c *gin.Context) {
	if h.opt.APIToken == "" || h.opt.PreviewPublic || c.GetHeader(hopHeader) != "" {
		c.Next() // a hop was checked on the first node; the cluster middleware verifies it
		return
	}
	if got, ok := bearerToken(c.GetHeader("Authorization")); ok {
		a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(h.opt.APIToken))
		if subtle.ConstantTimeCompare(a[:], b[:]) == 1 {
			c.Next()
			return
		}
	}
	id, port, host, err := h.previewTarget(c)
	if err != nil {
		previewPage(c, http.StatusBadRequest, "Bad preview address", err.Error())
		c.Abort()
		return
	}
	now := time.Now()
	if link := c.Query(previewLinkParam); link != "" {
		if _, ok := verifyPreviewLink(h.opt.PreviewKey, link, id, port, now); !ok {
			previewPage(c, http.StatusForbidden, "Preview link expired", "This preview link is not valid any more: open the preview again from the playground.")
			c.Abort()
			return
		}
		path := "/"
		if !host {
			path = "/p/" + id + "/"
		}
		secure := c.Request.TLS != nil || c.GetHeader("X-Forwarded-Proto") == "https"
		// The cookie outlives the link (which is only to be opened once, soon)
		// by PreviewCookieTTL, and no more than that.
		exp := now.Add(h.opt.PreviewCookieTTL)
		ck := &http.Cookie{Name: previewCookieName + strconv.Itoa(port), Value: signPreviewLink(h.opt.PreviewKey, id, port, exp),
			Path: path, Expires: exp, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
		if secure { // a preview in another site's <iframe>: a partitioned third-party cookie
			ck.SameSite, ck.Partitioned = http.SameSiteNoneMode, true
		}
		http.SetCookie(c.Writer, ck)
		q := c.Request.URL.Query()
		q.Del(previewLinkParam)
		loc := c.Request.URL.Path
		if ph, ok := hostForm(c.Request); ok {
			loc = strings.TrimPrefix(loc, "/p/"+ph.id)
			if loc == "" {
				loc = "/"
			}
		}
		if len(q) > 0 {
			loc += "?" + q.Encode()
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusSeeOther, loc)
		c.Abort()
		return
	}
	if ck, err := c.Request.Cookie(previewCookieName + strconv.Itoa(port)); err == nil {
		if _, ok := verifyPreviewLink(h.opt.PreviewKey, ck.Value, id, port, now); ok {
			c.Next()
			return
		}
	}
	c.Header("WWW-Authenticate", `Bearer realm="servcraftd"`)
	fail(c, fmt.Errorf("%w, or open the preview's previewUrl (a short-lived link)", errUnauthorized))
}

// previewURL is the address of id's preview on the exposed port that the
// create and GET answers carry: host form with a preview domain (for ids a
// host name can hold), else the path form /p/{id}/; with a link when the
// previews need the API token.
func (h *handlers) previewURL(id string) string {
	port := h.opt.ExposedPort
	u := "/p/" + id + "/"
	if d, err := ParsePreviewDomain(h.opt.PreviewDomain); err == nil && d.Host != "" && hostFormID(id) {
		u = d.url(id, port)
	}
	if h.opt.APIToken != "" && !h.opt.PreviewPublic && len(h.opt.PreviewKey) > 0 {
		u += "?" + previewLinkParam + "=" + signPreviewLink(h.opt.PreviewKey, id, port, time.Now().Add(h.opt.PreviewLinkTTL))
	}
	return u
}
