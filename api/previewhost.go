package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// PreviewDomain is where host-form previews live: {port}-{sessionId}.{Host},
// reached over Scheme, on Port when it is not the scheme's default.
type PreviewDomain struct {
	Scheme string // https unless the setting names http://
	Host   string // lower-case DNS name, no port
	Port   string // "" the scheme's default
}

// ParsePreviewDomain reads --preview-domain: "preview.example.com" (https),
// or a base such as "http://preview.test:8080". "" is no preview domain.
func ParsePreviewDomain(s string) (PreviewDomain, error) {
	if s == "" {
		return PreviewDomain{}, nil
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return PreviewDomain{}, fmt.Errorf("preview domain %q: want a DNS name such as preview.example.com, or http(s)://name[:port]", s)
	}
	host := strings.ToLower(u.Hostname())
	if net.ParseIP(host) != nil || !strings.Contains(host, ".") {
		return PreviewDomain{}, fmt.Errorf("preview domain %q: want a DNS name with a dot (wildcard DNS points *.name here), not %q", s, host)
	}
	return PreviewDomain{Scheme: u.Scheme, Host: host, Port: u.Port()}, nil
}

// maxHostIDLen keeps {port}-{sessionId} within a 63-byte DNS label.
const maxHostIDLen = 57

// hostFormID reports whether a sessionId can be written in a preview host
// name: a DNS label is case-insensitive and of a-z 0-9 and inner hyphens,
// so only ids of lower-case letters, digits and hyphens, not ending in a
// hyphen, up to 57 characters, have a host-form preview. Other ids are
// previewed in path form.
func hostFormID(id string) bool {
	if id == "" || len(id) > maxHostIDLen || strings.HasSuffix(id, "-") {
		return false
	}
	for _, r := range []byte(id) {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// previewHost is a request addressed to a host-form preview.
type previewHost struct {
	id   string
	port int
}

// parse reads Host "{port}-{sessionId}.{domain}[:port]".
func (d PreviewDomain) parse(host string) (previewHost, bool, bool) {
	if d.Host == "" {
		return previewHost{}, false, false
	}
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	label, ok := strings.CutSuffix(strings.TrimSuffix(host, "."), "."+d.Host)
	if !ok {
		return previewHost{}, false, host == d.Host // the apex: ours, but no preview
	}
	p, id, ok := strings.Cut(label, "-")
	port, err := strconv.Atoi(p)
	if !ok || err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != p || !hostFormID(id) {
		return previewHost{}, false, true
	}
	return previewHost{id: id, port: port}, true, true
}

// url is the base URL of the host-form preview of id on port.
func (d PreviewDomain) url(id string, port int) string {
	host := strconv.Itoa(port) + "-" + id + "." + d.Host
	if d.Port != "" {
		host = net.JoinHostPort(host, d.Port)
	}
	return d.Scheme + "://" + host + "/"
}

// previewHostKey is the context key of a request rewritten from host form.
type previewHostKey struct{}

// hostForm is the host-form preview a request was addressed to, if any.
func hostForm(r *http.Request) (previewHost, bool) {
	ph, ok := r.Context().Value(previewHostKey{}).(previewHost)
	return ph, ok
}

// previewHosts routes every request whose Host is under the preview domain
// to the preview: "/x?y" on 3000-abc.preview.example.com becomes
// "/p/abc/x?y" for port 3000, marked as host form. Nothing else of the
// daemon (the API, the page) answers on those names. A request forwarded by
// another node of the cluster arrives rewritten already (it carries the hop
// header, which the cluster middleware verifies).
func previewHosts(d PreviewDomain, next http.Handler) http.Handler {
	if d.Host == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ph, ok, ours := d.parse(r.Host)
		switch {
		case !ours:
			next.ServeHTTP(w, r)
			return
		case !ok:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, "<!doctype html><title>No such preview</title><h1>No such preview</h1>"+
				"<p>Preview addresses are {port}-{sessionId}."+d.Host+".</p>")
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), previewHostKey{}, ph))
		prefix := "/p/" + ph.id
		if r.Header.Get(hopHeader) == "" || !strings.HasPrefix(r.URL.Path, prefix+"/") && r.URL.Path != prefix {
			r.URL.Path = prefix + r.URL.Path
			if r.URL.RawPath != "" {
				r.URL.RawPath = prefix + r.URL.RawPath
			}
			r.RequestURI = r.URL.RequestURI()
		}
		next.ServeHTTP(w, r)
	})
}
