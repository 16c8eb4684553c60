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
// same address without the token, and a credential that lives
// PreviewCookieTTL:
//   - host form: a cookie holding a new token, scoped to that preview's origin;
//   - path form: the new token in the path, /p/{sessionId}/~<token>/…, so that
//     the page's relative subresources carry it. No cookie can: the page runs
//     sandboxed in an opaque origin, so the browser counts its requests as
//     cross-site and sends neither a SameSite=Lax cookie nor (third-party
//     cookies blocked, or a partition that does not match) a SameSite=None one.
const (
	previewLinkParam  = "servcraft_link"
	previewCookieName = "servcraft_preview_" // + port
	pathLinkPrefix    = "/~"                 // the path segment of a path-form credential: /~<token>
)

// previewLinks reports whether the previews need the API token and so hand
// out links.
func (h *handlers) previewLinks() bool {
	return h.opt.APIToken != "" && !h.opt.PreviewPublic && len(h.opt.PreviewKey) > 0
}

// pathLink splits a path-form preview's path "/~<token>/rest" into the token,
// the port it names (not yet verified) and the rest of the path ("/" at
// least); ok is false for a path that does not start with such a segment.
func pathLink(path string) (token string, port int, rest string, ok bool) {
	after, found := strings.CutPrefix(path, pathLinkPrefix)
	if !found {
		return "", 0, path, false
	}
	token, rest, _ = strings.Cut(after, "/")
	p, _, found := strings.Cut(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if !found || err != nil {
		return "", 0, path, false
	}
	parts := strings.Split(string(payload), "\n")
	if len(parts) != 4 {
		return "", 0, path, false
	}
	if port, err = strconv.Atoi(parts[1]); err != nil {
		return "", 0, path, false
	}
	return token, port, "/" + rest, true
}

// previewPath is the path a preview request asks the user's server for: the
// route's path without a path-form credential.
func (h *handlers) previewPath(c *gin.Context, host bool) string {
	path := c.Param("path")
	if !host && h.previewLinks() {
		if _, _, rest, ok := pathLink(path); ok {
			path = rest
		}
	}
	if path == "" {
		path = "/"
	}
	return path
}

// signPreviewLink makes the token for id's instance (its UUID: a later
// session of the same id is another) and port, valid until exp.
func signPreviewLink(key []byte, id, instance string, port int, exp time.Time) string {
	payload := id + "\n" + strconv.Itoa(port) + "\n" + strconv.FormatInt(exp.Unix(), 10) + "\n" + instance
	m := hmac.New(sha256.New, key)
	m.Write([]byte("preview-link-v2\n" + payload))
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(m.Sum(nil))
}

// verifyPreviewLink reports whether token is a link for id and port that has
// not expired at now, its expiry and the instance it was made for.
func verifyPreviewLink(key []byte, token, id string, port int, now time.Time) (time.Time, string, bool) {
	if len(key) == 0 || len(token) > 512 {
		return time.Time{}, "", false
	}
	p, sig, ok := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil {
		return time.Time{}, "", false
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("preview-link-v2\n"))
	m.Write(payload)
	if subtle.ConstantTimeCompare(got, m.Sum(nil)) != 1 {
		return time.Time{}, "", false
	}
	parts := strings.Split(string(payload), "\n")
	if len(parts) != 4 || parts[0] != id || parts[1] != strconv.Itoa(port) {
		return time.Time{}, "", false
	}
	sec, err := strconv.ParseInt(parts[2], 10, 64)
	exp := time.Unix(sec, 0)
	if err != nil || !now.Before(exp) {
		return time.Time{}, "", false
	}
	return exp, parts[3], true
}

// previewCredential reports whether token lets a request into id's preview
// on port now: a valid link for them, made for the instance of id that
// lives here. A session another node owns is not known here: its owner
// serves it, and the signature and expiry are what is checked.
func (h *handlers) previewCredential(token, id string, port int, now time.Time) (time.Time, string, bool) {
	exp, instance, ok := verifyPreviewLink(h.opt.PreviewKey, token, id, port, now)
	if !ok {
		return exp, instance, false
	}
	if live, here := h.s.PreviewInstance(id); here && live != instance {
		return exp, instance, false
	}
	return exp, instance, true
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
	if _, n, _, ok := pathLink(c.Param("path")); ok && h.previewLinks() {
		if n < h.opt.MinPreviewPort || n > 65535 {
			return "", 0, false, invalid("port %d: want a number from %d to 65535", n, h.opt.MinPreviewPort)
		}
		return id, n, false, nil // the link names the port: its subresources carry no ?port=
	}
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
	if h.opt.APIToken == "" || h.opt.PreviewPublic || c.GetBool(hopKey) {
		c.Next() // a verified hop (acceptHop): the first node checked the access
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
	expired := func() {
		previewPage(c, http.StatusForbidden, "Preview link expired", "This preview link is not valid any more: open the preview again from the playground.")
		c.Abort()
	}
	if link := c.Query(previewLinkParam); link != "" {
		_, instance, ok := h.previewCredential(link, id, port, now)
		if !ok {
			expired()
			return
		}
		// The credential outlives the link (which is only to be opened once,
		// soon) by PreviewCookieTTL, and no more than that.
		exp := now.Add(h.opt.PreviewCookieTTL)
		cred := signPreviewLink(h.opt.PreviewKey, id, instance, port, exp)
		q := c.Request.URL.Query()
		q.Del(previewLinkParam)
		var loc string
		if ph, ok := hostForm(c.Request); ok {
			secure := c.Request.TLS != nil || c.GetHeader("X-Forwarded-Proto") == "https"
			ck := &http.Cookie{Name: previewCookieName + strconv.Itoa(port), Value: cred,
				Path: "/", Expires: exp, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
			if secure { // a preview in another site's <iframe>: a partitioned third-party cookie
				ck.SameSite, ck.Partitioned = http.SameSiteNoneMode, true
			}
			http.SetCookie(c.Writer, ck)
			if loc = strings.TrimPrefix(c.Request.URL.Path, "/p/"+ph.id); loc == "" {
				loc = "/"
			}
		} else {
			rest := h.previewPath(c, false)
			prefix := strings.TrimSuffix(c.Request.URL.Path, c.Param("path"))
			loc = prefix + pathLinkPrefix + cred + rest
		}
		if len(q) > 0 {
			loc += "?" + q.Encode()
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusSeeOther, loc)
		c.Abort()
		return
	}
	if !host {
		if token, _, _, ok := pathLink(c.Param("path")); ok {
			if _, _, ok := h.previewCredential(token, id, port, now); !ok {
				expired()
				return
			}
			c.Next()
			return
		}
	}
	if host {
		// Any cookie of the name that is valid for this preview lets it in:
		// another preview of the same site may have tossed one of the name
		// (with a Domain, from its script), and the browser sends it first.
		name := previewCookieName + strconv.Itoa(port)
		for _, ck := range c.Request.Cookies() {
			if ck.Name != name {
				continue
			}
			if _, _, ok := h.previewCredential(ck.Value, id, port, now); ok {
				c.Next()
				return
			}
		}
	}
	c.Header("WWW-Authenticate", `Bearer realm="servcraftd"`)
	fail(c, fmt.Errorf("%w, or open the preview's previewUrl (a short-lived link)", errUnauthorized))
}

// previewURL is the address of id's preview on the exposed port that the
// create and GET answers carry: host form with a preview domain (for ids a
// host name can hold), else the path form /p/{id}/; with a link when the
// previews need the API token.
func (h *handlers) previewURL(id, instance string) string {
	port := h.opt.ExposedPort
	u := "/p/" + id + "/"
	if d, err := ParsePreviewDomain(h.opt.PreviewDomain); err == nil && d.Host != "" && hostFormID(id) {
		u = d.url(id, port)
	}
	if h.previewLinks() {
		u += "?" + previewLinkParam + "=" + signPreviewLink(h.opt.PreviewKey, id, instance, port, time.Now().Add(h.opt.PreviewLinkTTL))
	}
	return u
}
