// Package web serves the playground page: the browser front end built from
// web/src by `make web` (esbuild) into web/dist and embedded in the binary.
// It uses only servcraftd's public API. A binary built before the page was
// answers every page request with a 503 that says how to build it.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// pageCSP keeps the page to its own scripts and styles (CodeMirror sets
// inline styles) and its own API; previews may come from another origin.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self'; frame-src *; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// notBuilt is the answer when the binary was built without the page.
const notBuilt = `<!doctype html><html><head><meta charset="utf-8"><title>Page not built</title></head>` +
	`<body style="font-family:sans-serif;margin:3em"><h1>Page not built</h1>` +
	`<p>This servcraftd was built without its playground page: run <code>make web</code> (or <code>make build</code>), ` +
	`then build the binary again. The API under <code>/api/playground/</code> works without it.</p></body></html>`

// Handler serves the page: index.html at / (revalidated on every load) and
// its content-hashed assets under /assets/ (cached for good).
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: cannot happen
	}
	return handler(sub)
}

func handler(files fs.FS) http.Handler {
	assets := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		if name != "index.html" && !strings.HasPrefix(name, "assets/") {
			http.NotFound(w, r)
			return
		}
		if name == "index.html" {
			page, err := fs.ReadFile(files, name)
			if err != nil {
				h.Set("Content-Type", "text/html; charset=utf-8")
				h.Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(notBuilt))
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			h.Set("Content-Security-Policy", pageCSP)
			h.Set("Referrer-Policy", "no-referrer")
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				_, _ = w.Write(page)
			}
			return
		}
		if _, err := fs.Stat(files, name); err != nil {
			http.NotFound(w, r)
			return
		}
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		assets.ServeHTTP(w, r2)
	})
}
