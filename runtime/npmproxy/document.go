package npmproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// document is a package document as served: its body has every tarball URL
// rewritten to token + "/" + <standard tarball path>; render puts a handler's
// base URL in place of the token.
type document struct {
	body        []byte
	contentType string
	sums        map[string]checksum // version → published integrity
	fetched     time.Time
	remembered  bool // came from memory, not from upstream just now
}

// render returns the body with tarball URLs pointing at base.
func (d *document) render(token, base string) []byte {
	b, _ := json.Marshal(base)
	return bytes.ReplaceAll(d.body, []byte(token), b[1:len(b)-1])
}

// document returns name's document from memory or from upstream; fresh
// skips the memory. An upstream 404 is recorded in rec.
func (p *Proxy) document(ctx context.Context, name string, fresh bool, rec *Recorder) (*document, error) {
	if !fresh {
		if d := p.docs.get(name); d != nil {
			return d, nil
		}
	}
	if err := p.overBudget(rec); err != nil {
		return nil, err
	}
	d, n, err := p.fetchDocument(ctx, name)
	rec.bytesUp.Add(n)
	if err != nil {
		if errdefs.IsNotFound(err) {
			rec.addNotFound(name)
		}
		return nil, err
	}
	p.docs.put(name, d)
	return d, nil
}

// fetchDocument gets name's abbreviated document from upstream and rewrites
// it. n is the number of body bytes read.
func (p *Proxy) fetchDocument(ctx context.Context, name string) (d *document, n int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.get(ctx, p.base+"/"+escapedName(name), docAccept)
	if err != nil {
		return nil, 0, errorf(err, "package %q", name)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, 0, errorf(errdefs.ErrNotFound, "package %q: upstream answered %s", name, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, 0, errorf(errdefs.ErrUnavailable, "package %q: upstream answered %s", name, resp.Status)
	case resp.ContentLength > p.maxDoc:
		return nil, 0, errorf(errdefs.ErrResourceExhausted, "package %q: document of %d bytes exceeds the limit of %d", name, resp.ContentLength, p.maxDoc)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.maxDoc+1))
	n = int64(len(body))
	p.bytesUp.Add(n)
	if err != nil {
		return nil, n, errorf(readError(err), "package %q: reading document", name)
	}
	if n > p.maxDoc {
		return nil, n, errorf(errdefs.ErrResourceExhausted, "package %q: document exceeds the limit of %d bytes", name, p.maxDoc)
	}
	d, err = rewrite(body, name, p.token)
	if err != nil {
		return nil, n, errorf(errdefs.ErrUnavailable, "package %q: upstream document: %v", name, err)
	}
	d.contentType = "application/json"
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil && mt == "application/vnd.npm.install-v1+json" {
		d.contentType = mt
	}
	d.fetched = time.Now()
	return d, n, nil
}

// rewrite points every versions[*].dist.tarball at token + the standard path
// and collects each version's integrity. Versions whose name could not be put
// in a path safely, or that have no dist, are dropped: they could not be
// installed through the proxy anyway.
func rewrite(body []byte, name, token string) (*document, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	var versions map[string]map[string]json.RawMessage
	if raw, ok := doc["versions"]; ok {
		if err := json.Unmarshal(raw, &versions); err != nil {
			return nil, fmt.Errorf("versions: %w", err)
		}
	}
	sums := make(map[string]checksum, len(versions))
	for v, manifest := range versions {
		var dist map[string]json.RawMessage
		if !validVersion(v) || json.Unmarshal(manifest["dist"], &dist) != nil || dist == nil {
			delete(versions, v)
			continue
		}
		var integrity, shasum string
		_ = json.Unmarshal(dist["integrity"], &integrity)
		_ = json.Unmarshal(dist["shasum"], &shasum)
		sums[v] = parseChecksum(integrity, shasum)
		dist["tarball"] = mustJSON(token + "/" + tarballPath(name, v))
		manifest["dist"] = mustJSON(dist)
	}
	if versions != nil {
		doc["versions"] = mustJSON(versions)
	}
	return &document{body: mustJSON(doc), sums: sums}, nil
}

// mustJSON encodes values that came out of json.Unmarshal (or strings), which
// cannot fail, without HTML escaping.
func mustJSON(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// docCache remembers documents for ttl, holding at most maxBytes of bodies.
type docCache struct {
	ttl      time.Duration
	maxBytes int64

	mu    sync.Mutex
	m     map[string]*document
	bytes int64
}

func newDocCache(ttl time.Duration, maxBytes int64) *docCache {
	return &docCache{ttl: ttl, maxBytes: maxBytes, m: make(map[string]*document)}
}

func (c *docCache) get(name string) *document {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[name]
	if d == nil {
		return nil
	}
	if time.Since(d.fetched) > c.ttl {
		c.removeLocked(name)
		return nil
	}
	cp := *d
	cp.remembered = true
	return &cp
}

func (c *docCache) put(name string, d *document) {
	size := int64(len(d.body))
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(name)
	for n, e := range c.m {
		if time.Since(e.fetched) > c.ttl {
			c.removeLocked(n)
		}
	}
	for c.bytes+size > c.maxBytes { // evict the oldest; expired ones are the oldest
		oldest := ""
		for n, e := range c.m {
			if oldest == "" || e.fetched.Before(c.m[oldest].fetched) {
				oldest = n
			}
		}
		c.removeLocked(oldest)
	}
	c.m[name] = d
	c.bytes += size
}

func (c *docCache) removeLocked(name string) {
	if d, ok := c.m[name]; ok {
		c.bytes -= int64(len(d.body))
		delete(c.m, name)
	}
}
