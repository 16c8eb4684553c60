package npmproxy

import (
	"slices"
	"sync"
	"sync/atomic"
)

// maxRecorded bounds each list a Recorder keeps; later entries are dropped.
const maxRecorded = 100

// Recorder collects what happened while a handler served one install, so the
// caller can explain a failed `npm install`. It is safe for concurrent use;
// the zero value is ready.
type Recorder struct {
	mu             sync.Mutex
	notFound       []string
	upstreamErrors []error
	localErrors    []error

	hits, misses, bytesUp, bytesServed atomic.Int64
	budgetExceeded                     atomic.Bool
}

// BudgetExceeded reports whether a request was refused because the install
// had read its budget of bytes from upstream (ErrInstallBudget).
func (r *Recorder) BudgetExceeded() bool { return r.budgetExceeded.Load() }

// NotFound returns the package names upstream answered 404 (or 410) for, once each.
func (r *Recorder) NotFound() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notFound)
}

// UpstreamErrors returns the failures of the upstream: unreachable, 5xx and
// other unexpected answers, timeouts, oversize bodies, refused redirects and
// failed integrity checks. Classes are errdefs ones (errdefs.IsUnavailable,
// errdefs.IsDeadlineExceeded, errdefs.IsResourceExhausted, errdefs.IsDataLoss,
// errdefs.IsPermissionDenied).
func (r *Recorder) UpstreamErrors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.upstreamErrors)
}

// LocalErrors returns failures on this host, such as a full cache disk.
func (r *Recorder) LocalErrors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.localErrors)
}

// CacheHits is the number of tarballs served from the cache.
func (r *Recorder) CacheHits() int64 { return r.hits.Load() }

// CacheMisses is the number of tarballs that had to be downloaded.
func (r *Recorder) CacheMisses() int64 { return r.misses.Load() }

// BytesFromUpstream is the number of body bytes read from upstream.
func (r *Recorder) BytesFromUpstream() int64 { return r.bytesUp.Load() }

// BytesServed is the number of body bytes written to the client.
func (r *Recorder) BytesServed() int64 { return r.bytesServed.Load() }

func (r *Recorder) addNotFound(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.notFound) < maxRecorded && !slices.Contains(r.notFound, name) {
		r.notFound = append(r.notFound, name)
	}
}

func (r *Recorder) addUpstreamError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.upstreamErrors) < maxRecorded {
		r.upstreamErrors = append(r.upstreamErrors, err)
	}
}

func (r *Recorder) addLocalError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.localErrors) < maxRecorded {
		r.localErrors = append(r.localErrors, err)
	}
}
