package api

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
	"github.com/servcraft/servcraftd/store"
)

// countingSessions is fakeSessions that keeps runtime.Stats the way the manager does.
type countingSessions struct {
	*fakeSessions
	mu sync.Mutex
	st runtime.Stats
}

func (c *countingSessions) Create(ctx context.Context, id, pt string) (store.Session, bool, error) {
	c.mu.Lock()
	c.st.Creates["ok"]++
	c.st.Active++
	c.mu.Unlock()
	return c.fakeSessions.Create(ctx, id, pt)
}

func (c *countingSessions) Exec(ctx context.Context, id string, req runtime.ExecRequest) (runtime.ExecResult, error) {
	c.mu.Lock()
	c.st.ExecResults["ok"]++
	c.mu.Unlock()
	return c.fakeSessions.Exec(ctx, id, req)
}

func (c *countingSessions) Stats() runtime.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.st
	s.Creates = map[string]uint64{"ok": c.st.Creates["ok"]}
	s.ExecResults = map[string]uint64{"ok": c.st.ExecResults["ok"]}
	return s
}

// metricValue finds series (name and labels, as exposed) in a scrape; -1 if absent.
func metricValue(t *testing.T, scrape, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

func TestMetricsCountRequestsAndRuntime(t *testing.T) {
	src := &countingSessions{fakeSessions: &fakeSessions{}, st: runtime.Stats{
		Creates: map[string]uint64{}, ExecResults: map[string]uint64{},
		Reaps: map[string]uint64{"idle": 2}, CacheHits: 5, CacheMisses: 1, CacheBytes: 4096,
	}}
	opt := DefaultOptions()
	opt.Metrics = src
	h := NewRouter(src, opt)
	scrape := func() string {
		rec := send(h, "GET", "/metrics", "")
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			t.Fatalf("/metrics: %d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		return rec.Body.String()
	}
	before := scrape()
	for _, s := range []string{
		`servcraft_http_requests_total{method="POST",route="/api/playground/container",status="201"}`,
		`servcraft_session_creates_total{outcome="ok"}`,
		`servcraft_operation_duration_seconds_count{operation="execute"}`,
	} {
		if v := metricValue(t, before, s); v > 0 {
			t.Fatalf("%s = %v before any request", s, v)
		}
	}

	send(h, "POST", "/api/playground/container", `{"sessionId":"m1"}`)
	send(h, "POST", "/api/playground/container", `{"sessionId":"m2"}`)
	send(h, "POST", "/api/playground/execute", `{"sessionId":"m1","code":"1"}`)
	send(h, "POST", "/api/playground/execute", `{"sessionId":"m1","code":"1","timeoutMs":-1}`) // 400
	send(h, "GET", "/api/playground/container?sessionId=m1", "")                               // the fake: 404
	send(h, "GET", "/some/random/path/1", "")
	send(h, "GET", "/some/random/path/2", "")
	after := scrape()

	for series, want := range map[string]float64{
		`servcraft_http_requests_total{method="POST",route="/api/playground/container",status="201"}`:  2,
		`servcraft_http_requests_total{method="POST",route="/api/playground/execute",status="200"}`:    1,
		`servcraft_http_requests_total{method="POST",route="/api/playground/execute",status="400"}`:    1,
		`servcraft_http_requests_total{method="GET",route="/api/playground/container",status="404"}`:   1,
		`servcraft_http_requests_total{method="GET",route="unmatched",status="404"}`:                   2,
		`servcraft_http_requests_total{method="GET",route="/metrics",status="200"}`:                    1,
		`servcraft_http_request_duration_seconds_count{method="POST",route="/api/playground/execute"}`: 2,
		`servcraft_operation_duration_seconds_count{operation="create"}`:                               2,
		`servcraft_operation_duration_seconds_count{operation="execute"}`:                              1, // the 400 is not an operation
		`servcraft_sessions_active`:                                       2,
		`servcraft_session_creates_total{outcome="ok"}`:                   2,
		`servcraft_exec_results_total{result="ok"}`:                       1,
		`servcraft_session_reaps_total{reason="idle"}`:                    2,
		`servcraft_registry_cache_hits_total`:                             5,
		`servcraft_registry_cache_misses_total`:                           1,
		`servcraft_registry_upstream_bytes_total`:                         4096,
		`servcraft_rate_limited_total{limit="create"}`:                    -1, // nothing refused
		`servcraft_operation_duration_seconds_count{operation="install"}`: -1,
	} {
		if got := metricValue(t, after, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, family := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(after, family) {
			t.Errorf("no %s in the scrape", family)
		}
	}
}

func TestMetricsWithoutRuntimeSource(t *testing.T) {
	h := NewRouter(&fakeSessions{}, DefaultOptions())
	send(h, "GET", "/healthz", "")
	body := send(h, "GET", "/metrics", "").Body.String()
	if metricValue(t, body, `servcraft_http_requests_total{method="GET",route="/healthz",status="200"}`) != 1 {
		t.Errorf("healthz not counted:\n%s", grepLines(body, "servcraft_http_requests_total"))
	}
	if strings.Contains(body, "servcraft_sessions_active") {
		t.Error("runtime metrics without a source")
	}
}

// fakeDisk reports a fixed state filesystem.
type fakeDisk struct {
	st  runtime.DiskStatus
	err error
}

func (f fakeDisk) DiskStatus() (runtime.DiskStatus, error) { return f.st, f.err }

func TestDiskRoomInReadyzAndMetrics(t *testing.T) {
	opt := DefaultOptions()
	opt.Disk = fakeDisk{st: runtime.DiskStatus{TotalBytes: 8 << 30, FreeBytes: 1 << 30, ReserveBytes: 1 << 30, WorkspaceBytes: 1 << 30, Backend: workspace.BackendImage, Low: true}}
	h := NewRouter(&fakeSessions{}, opt)
	rec := send(h, "GET", "/readyz", "")
	var body readyResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	// A low disk refuses new sessions, never the ones running: still ready.
	if rec.Code != 200 || !body.Ready || body.Disk == nil || !body.Disk.Low || body.Disk.FreeBytes != 1<<30 || body.Disk.ReserveBytes != 1<<30 {
		t.Fatalf("/readyz = %d %s", rec.Code, rec.Body)
	}
	scrape := send(h, "GET", "/metrics", "").Body.String()
	for series, want := range map[string]float64{
		"servcraft_state_disk_free_bytes":    1 << 30,
		"servcraft_state_disk_total_bytes":   8 << 30,
		"servcraft_state_disk_reserve_bytes": 1 << 30,
		"servcraft_state_disk_low":           1,
	} {
		if got := metricValue(t, scrape, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// The state filesystem unreadable (unmounted, gone): not ready.
	opt.Disk = fakeDisk{err: errors.New("statfs: no such file or directory")}
	if rec := send(NewRouter(&fakeSessions{}, opt), "GET", "/readyz", ""); rec.Code != 503 {
		t.Fatalf("/readyz with no state filesystem = %d %s", rec.Code, rec.Body)
	}
}
