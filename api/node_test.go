package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/servcraft/servcraftd/runtime"
)

type fakeStats struct{ active int }

func (f fakeStats) Stats() runtime.Stats { return runtime.Stats{Active: f.active} }

// TestDrainSingleHost: only loopback may drain without a token; a draining
// node is not ready, refuses creates of new sessions with a retryable 503,
// reports drained at zero sessions, and takes sessions again after DELETE.
func TestDrainSingleHost(t *testing.T) {
	f := &fakeSessions{}
	opt := DefaultOptions()
	opt.MaxSessions = 10
	opt.Metrics = fakeStats{}
	var calls []bool
	opt.OnDrain = func(_ context.Context, on bool) error { calls = append(calls, on); return nil }
	h := NewRouter(f, opt)
	req := func(method, target, remote, body string) *httptest.ResponseRecorder {
		r := newRequest(method, target, strings.NewReader(body))
		r.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := req("POST", "/api/admin/drain", "192.0.2.1:5", ""); rec.Code != 403 {
		t.Fatalf("drain from outside: %d, want 403", rec.Code)
	}
	if rec := req("POST", "/api/admin/drain", "127.0.0.1:5", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"drained"`) {
		t.Fatalf("drain: %d %s", rec.Code, rec.Body)
	}
	if rec := req("GET", "/readyz", "192.0.2.1:5", ""); rec.Code != 503 || !strings.Contains(rec.Body.String(), `"draining"`) {
		t.Fatalf("readyz draining: %d %s", rec.Code, rec.Body)
	}
	before := f.calls.Load()
	rec := req("POST", "/api/playground/container", "192.0.2.1:5", `{"sessionId":"new"}`)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"code":"draining"`) {
		t.Fatalf("create while draining: %d %s", rec.Code, rec.Body)
	}
	if f.calls.Load() != before+1 { // the existence check only
		t.Fatalf("create while draining reached the runtime: %d calls", f.calls.Load()-before)
	}
	if rec := req("GET", "/status", "192.0.2.1:5", ""); !strings.Contains(rec.Body.String(), `"state":"drained"`) || !strings.Contains(rec.Body.String(), `"capacityFree":10`) {
		t.Fatalf("status: %s", rec.Body)
	}
	if rec := req("DELETE", "/api/admin/drain", "[::1]:5", ""); rec.Code != 200 {
		t.Fatalf("undrain: %d", rec.Code)
	}
	if rec := req("POST", "/api/playground/container", "192.0.2.1:5", `{"sessionId":"new"}`); rec.Code != 201 {
		t.Fatalf("create after undrain: %d %s", rec.Code, rec.Body)
	}
	if len(calls) != 2 || !calls[0] || calls[1] {
		t.Fatalf("OnDrain calls %v, want [true false]", calls)
	}
}
