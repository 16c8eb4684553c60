package api

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Defenses against requests a browser makes on someone else's behalf (DESIGN
// §9): a page on another site, a page that rebinds its own name to this
// host, or a preview running a stranger's JavaScript.

// knownMethods are the HTTP methods servcraftd answers; any other is refused
// before it is logged or counted, so no client-chosen string becomes a
// metric label or a log field.
var knownMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// methodLabel is the method as /metrics and the log name it: one of
// knownMethods, else "other".
func methodLabel(m string) string {
	if slices.Contains(knownMethods, m) {
		return m
	}
	return "other"
}

// refuseUnknownMethods answers 501 to a method outside knownMethods.
func refuseUnknownMethods(c *gin.Context) {
	if !slices.Contains(knownMethods, c.Request.Method) {
		renderError(c, http.StatusNotImplemented, codeMethodNotImplemented, "method not implemented")
		return
	}
	c.Next()
}

// hostPolicy decides which Host headers this daemon answers (DNS
// rebinding: a foreign name pointed at this address must not reach the API).
type hostPolicy struct {
	any       bool
	names     map[string]bool // lower-case host names and IP literals, without port
	anyIP     bool            // listening on every address: any IP literal is this host
	preview   string          // the preview domain: it and its subdomains are allowed
	hopSecret []byte          // a verified hop header carries a Host the first node checked
	hopSkew   time.Duration
}

func newHostPolicy(opt Options) hostPolicy {
	p := hostPolicy{names: map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true},
		hopSecret: opt.Cluster.Secret, hopSkew: opt.Cluster.HopSkew}
	if p.hopSkew <= 0 {
		p.hopSkew = DefaultClusterOptions.HopSkew
	}
	if host, _, err := net.SplitHostPort(opt.ListenAddr); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			p.anyIP = true
		} else {
			p.names[strings.ToLower(host)] = true
		}
	}
	for _, h := range opt.AllowedHosts {
		if h == "*" {
			p.any = true
		}
		p.names[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	if d, err := ParsePreviewDomain(opt.PreviewDomain); err == nil && d.Host != "" {
		p.preview = d.Host
	}
	return p
}

// allows reports whether r's Host is one of this daemon's names.
func (p hostPolicy) allows(r *http.Request) bool {
	if p.any {
		return true
	}
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	switch {
	case host == "": // HTTP/1.0 without Host (a load balancer's health check): no browser sends that
		return true
	case p.names[host]:
		return true
	case p.anyIP && net.ParseIP(host) != nil:
		return true
	case p.preview != "" && (host == p.preview || strings.HasSuffix(host, "."+p.preview)):
		return true
	}
	// A forwarded request keeps its client's Host, which the first node checked.
	if v := r.Header.Get(hopHeader); v != "" {
		_, _, err := verifyHop(p.hopSecret, v, r.Method, r.RequestURI, time.Now(), p.hopSkew)
		return err == nil
	}
	return false
}

// checkHost answers 421 Misdirected Request to a Host not in the policy.
func checkHost(p hostPolicy) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !p.allows(c.Request) {
			renderError(c, http.StatusMisdirectedRequest, codeMisdirectedHost, "this server does not answer for that host name (add it to --allowed-hosts)")
			return
		}
		c.Next()
	}
}

// formTypes are the Content-Types a cross-site form or a no-cors fetch can
// send without a CORS preflight.
var formTypes = []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}

// refuseForms answers 415 to a state-changing API call whose body is of a
// type a foreign page could send without a preflight (or of no type).
func refuseForms(c *gin.Context) {
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		c.Next()
		return
	}
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	bodyless := c.Request.ContentLength == 0
	if ct == "" && !bodyless || ct != "" && (err != nil || slices.Contains(formTypes, strings.ToLower(mt))) {
		renderError(c, http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "send the request body as Content-Type: application/json")
		return
	}
	c.Next()
}

// originPolicy decides which browser origins may call the API: its own
// (the request's Host), and the --cors-origins.
type originPolicy struct {
	any     bool
	allowed map[string]bool
}

func newOriginPolicy(origins []string, token string) originPolicy {
	p := originPolicy{any: slices.Contains(origins, "*") && token == "", allowed: map[string]bool{}}
	for _, o := range origins {
		p.allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return p
}

// allows reports whether a request whose Origin header is origin may reach
// the API: no Origin (not a browser, or a same-origin GET), the API's own
// origin, or a listed one.
func (p originPolicy) allows(origin, host string) bool {
	if origin == "" || p.any {
		return true
	}
	o := strings.ToLower(origin)
	if p.allowed[o] {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == strings.ToLower(host)
}

// checkOrigin refuses (403) an API call from a foreign browser origin: an
// Origin header that is not the API's own nor listed, or Sec-Fetch-Site:
// cross-site without such an Origin. A sandboxed preview sends Origin: null.
func checkOrigin(p originPolicy) gin.HandlerFunc {
	return func(c *gin.Context) {
		origin := c.GetHeader("Origin")
		foreign := !p.allows(origin, c.Request.Host)
		if !foreign && c.GetHeader("Sec-Fetch-Site") == "cross-site" && !p.any {
			foreign = origin == "" || !p.allowed[strings.ToLower(origin)]
		}
		if foreign {
			renderError(c, http.StatusForbidden, codeOriginForbidden, "requests from this browser origin are not allowed (see --cors-origins)")
			return
		}
		c.Next()
	}
}
