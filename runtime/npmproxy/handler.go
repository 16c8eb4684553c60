package npmproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Handler serves one session's installs. base is the URL npm uses to reach
// the proxy (for example "http://127.0.0.1:4873"); tarball URLs in documents
// are rewritten to it. rec, if not nil, collects what happened.
func (p *Proxy) Handler(base string, rec *Recorder) http.Handler {
	if rec == nil {
		rec = new(Recorder)
	}
	return &handler{p: p, base: strings.TrimRight(base, "/"), rec: rec}
}

type handler struct {
	p    *Proxy
	base string
	rec  *Recorder
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	defer func() { h.rec.bytesServed.Add(cw.n) }()

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		cw.Header().Set("Allow", "GET, HEAD")
		http.Error(cw, "read-only registry: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	rt, err := parseRoute(r)
	if err != nil {
		h.fail(cw, r, err)
		return
	}
	if rt.file == "" {
		err = h.serveDoc(cw, r, rt.name)
	} else {
		err = h.serveTarball(cw, r, rt.name, rt.file)
	}
	if err != nil {
		h.fail(cw, r, err)
	}
}

// fail answers err with its status and records it: upstream trouble in
// UpstreamErrors, local trouble in LocalErrors. Bad requests and missing
// things are only answered (missing packages are recorded where found out).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if errors.Is(err, ErrInstallBudget) {
		// npm prints the "error" of a JSON body after the status line.
		body, _ := json.Marshal(map[string]string{"error": err.Error()})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	if r.Context().Err() == nil { // the client is still there; its leaving is no failure of ours
		switch status {
		case http.StatusBadGateway:
			h.rec.addUpstreamError(err)
		case http.StatusInternalServerError:
			h.rec.addLocalError(err)
		}
	}
	http.Error(w, err.Error(), status)
}

// statusOf maps an error class to the status npm sees.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInstallBudget):
		return http.StatusForbidden // not retried by npm
	case errdefs.IsInvalidArgument(err):
		return http.StatusBadRequest
	case errdefs.IsNotFound(err):
		return http.StatusNotFound
	case errdefs.IsInternal(err):
		return http.StatusInternalServerError
	default: // unavailable, timed out, too large, failed integrity, refused redirect
		return http.StatusBadGateway
	}
}

// serveDoc answers a package document with its tarball URLs pointing here.
func (h *handler) serveDoc(w http.ResponseWriter, r *http.Request, name string) error {
	d, err := h.p.document(r.Context(), name, false, h.rec)
	if err != nil {
		return err
	}
	body := d.render(h.p.token, h.base)
	w.Header().Set("Content-Type", d.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// serveTarball answers a tarball from the cache, downloading and verifying
// it first on a miss. Unverified bytes never reach the client.
func (h *handler) serveTarball(w http.ResponseWriter, r *http.Request, name, file string) error {
	ctx := r.Context()
	version, ok := versionFromFile(name, file)
	if !ok {
		return errorf(errdefs.ErrNotFound, "tarball %q of package %q: not a <name>-<version>.tgz", file, name)
	}
	sum, err := h.checksum(ctx, name, version)
	if err != nil {
		return err
	}
	path, key := sum.path(h.p.cacheDir), tarballKey(sum, h.p.cacheDir)
	f, err := os.Open(path)
	switch {
	case err == nil:
		h.p.hits.Add(1)
		h.rec.hits.Add(1)
		h.p.used(key)
	case errors.Is(err, fs.ErrNotExist):
		if err := h.p.overBudget(h.rec); err != nil {
			return err
		}
		h.p.misses.Add(1)
		h.rec.misses.Add(1)
		remaining := h.p.remaining(h.rec)
		n, err := h.p.download(ctx, name, version, sum, remaining)
		h.rec.bytesUp.Add(n)
		if errdefs.IsResourceExhausted(err) && remaining < h.p.maxTarball { // the budget was the tighter limit
			h.rec.budgetExceeded.Store(true)
			return fmt.Errorf("%w (%d bytes): %s@%s does not fit in what is left of it", ErrInstallBudget, h.p.install, name, version)
		}
		if err != nil {
			return err
		}
		h.p.cached(key)
		if f, err = os.Open(path); err != nil {
			return errorf(errdefs.ErrInternal, "%s@%s: open cached tarball: %v", name, version, err)
		}
	default:
		return errorf(errdefs.ErrInternal, "%s@%s: open cached tarball: %v", name, version, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return errorf(errdefs.ErrInternal, "%s@%s: stat cached tarball: %v", name, version, err)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, file, info.ModTime(), f)
	return nil
}

// checksum finds the published integrity of name@version, fetching the
// document again once if the remembered one does not list the version (it
// may have been published since).
func (h *handler) checksum(ctx context.Context, name, version string) (checksum, error) {
	d, err := h.p.document(ctx, name, false, h.rec)
	if err != nil {
		return checksum{}, err
	}
	sum, ok := d.sums[version]
	if !ok && d.remembered {
		if d, err = h.p.document(ctx, name, true, h.rec); err != nil {
			return checksum{}, err
		}
		sum, ok = d.sums[version]
	}
	if !ok {
		return checksum{}, errorf(errdefs.ErrNotFound, "%s@%s: no such version", name, version)
	}
	if sum.alg == "" {
		return checksum{}, errorf(errdefs.ErrDataLoss, "%s@%s: upstream publishes no usable integrity or shasum", name, version)
	}
	return sum, nil
}

// countingWriter counts the body bytes written to the client.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom keeps the server's fast path for files (sendfile).
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.ResponseWriter, r)
	c.n += n
	return n, err
}
