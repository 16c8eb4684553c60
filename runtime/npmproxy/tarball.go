package npmproxy

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// checksum is a tarball's published digest. The zero value means the
// registry published none we can check.
type checksum struct {
	alg    string // "sha512", "sha384", "sha256" or "sha1"
	digest []byte
}

// algorithms, strongest first.
var algorithms = []struct {
	name string
	new  func() hash.Hash
	size int
}{
	{"sha512", sha512.New, sha512.Size},
	{"sha384", sha512.New384, sha512.Size384},
	{"sha256", sha256.New, sha256.Size},
	{"sha1", sha1.New, sha1.Size},
}

// parseChecksum picks the strongest hash of an SRI integrity string
// ("sha512-<base64> ..."), falling back to the hex sha1 shasum.
func parseChecksum(integrity, shasum string) checksum {
	found := map[string][]byte{}
	for _, f := range strings.Fields(integrity) {
		alg, b64, ok := strings.Cut(f, "-")
		if !ok {
			continue
		}
		b64, _, _ = strings.Cut(b64, "?") // SRI options
		if d, err := base64.StdEncoding.DecodeString(b64); err == nil {
			found[alg] = d
		}
	}
	if d, err := hex.DecodeString(shasum); err == nil && found["sha1"] == nil {
		found["sha1"] = d
	}
	for _, a := range algorithms {
		if d := found[a.name]; len(d) == a.size {
			return checksum{alg: a.name, digest: d}
		}
	}
	return checksum{}
}

func (c checksum) newHash() hash.Hash {
	for _, a := range algorithms {
		if a.name == c.alg {
			return a.new()
		}
	}
	panic("npmproxy: unknown hash " + c.alg)
}

// path is where the cache keeps the tarball with this digest. It depends on
// the digest alone, never on what the client asked for.
func (c checksum) path(cacheDir string) string {
	return filepath.Join(cacheDir, c.alg, hex.EncodeToString(c.digest))
}

// download fetches name@version from the upstream's standard tarball path
// into a temporary file while hashing it, and moves it into the cache only
// if it matches sum. n is the number of body bytes read; past budget (or the
// largest tarball) the download stops as ResourceExhausted. Concurrent
// downloads of one tarball each rename a complete, verified file over the
// same path, so readers always see a whole one.
func (p *Proxy) download(ctx context.Context, name, version string, sum checksum, budget int64) (n int64, retErr error) {
	id := name + "@" + version
	limit := min(p.maxTarball, budget)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	resp, err := p.get(ctx, p.base+"/"+tarballPath(name, version), "*/*")
	if err != nil {
		return 0, errorf(err, "tarball %s", id)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return 0, errorf(errdefs.ErrUnavailable, "tarball %s: upstream answered %s", id, resp.Status)
	case resp.ContentLength > limit:
		return 0, errorf(errdefs.ErrResourceExhausted, "tarball %s: %d bytes exceeds the limit of %d", id, resp.ContentLength, limit)
	}

	tmp, err := os.CreateTemp(p.tmpDir(), "dl-*")
	if err != nil {
		return 0, errorf(errdefs.ErrInternal, "tarball %s: create temporary file: %v", id, err)
	}
	defer func() {
		if retErr != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sum.newHash()
	out := &errWriter{w: io.MultiWriter(tmp, h)}
	n, err = io.Copy(out, io.LimitReader(resp.Body, limit+1))
	p.bytesUp.Add(n)
	switch {
	case out.err != nil:
		return n, errorf(errdefs.ErrInternal, "tarball %s: write temporary file: %v", id, out.err)
	case err != nil:
		return n, errorf(readError(err), "tarball %s: reading body", id)
	case n > limit:
		return n, errorf(errdefs.ErrResourceExhausted, "tarball %s: exceeds the limit of %d bytes", id, limit)
	case subtle.ConstantTimeCompare(h.Sum(nil), sum.digest) != 1:
		return n, errorf(errdefs.ErrDataLoss, "tarball %s: %s digest does not match the published integrity", id, sum.alg)
	}

	final := sum.path(p.cacheDir)
	if err := tmp.Chmod(0o644); err != nil {
		return n, errorf(errdefs.ErrInternal, "tarball %s: %v", id, err)
	}
	if err := tmp.Sync(); err != nil { // a crash must not leave a short file under a digest name
		return n, errorf(errdefs.ErrInternal, "tarball %s: %v", id, err)
	}
	if err := tmp.Close(); err != nil {
		return n, errorf(errdefs.ErrInternal, "tarball %s: %v", id, err)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return n, errorf(errdefs.ErrInternal, "tarball %s: %v", id, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return n, errorf(errdefs.ErrInternal, "tarball %s: move into cache: %v", id, err)
	}
	return n, nil
}

// get sends one GET to an upstream URL built by the caller from p.base.
// Transport failures are Unavailable (or DeadlineExceeded, from ctx);
// refused redirects keep their PermissionDenied.
func (p *Proxy) get(ctx context.Context, rawURL, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, errorf(errdefs.ErrInternal, "build upstream request: %v", err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "servcraftd-npmproxy")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, readError(err)
	}
	return resp, nil
}

// readError classes an error from talking to upstream.
func readError(err error) error {
	switch {
	case errdefs.IsDeadlineExceeded(err), errdefs.IsCanceled(err), errdefs.IsPermissionDenied(err):
		return err
	default:
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
}

// errWriter remembers the first write error, to tell a full disk from a
// broken upstream after io.Copy.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
