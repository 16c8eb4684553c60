package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/store/placement"
)

func TestHopSignature(t *testing.T) {
	secret := []byte("cluster secret")
	now := time.Unix(1_700_000_000, 0)
	v := signHop(secret, "n1", "192.0.2.7", "POST", "/api/playground/execute", now)
	from, client, err := verifyHop(secret, v, "POST", "/api/playground/execute", now.Add(5*time.Second), 30*time.Second)
	if err != nil || from != "n1" || client != "192.0.2.7" {
		t.Fatalf("verify own hop: %q %q %v", from, client, err)
	}
	for name, tc := range map[string]struct {
		secret        []byte
		value, method string
		uri           string
		at            time.Time
	}{
		"other secret": {[]byte("guess"), v, "POST", "/api/playground/execute", now},
		"no secret":    {nil, v, "POST", "/api/playground/execute", now},
		"other method": {secret, v, "GET", "/api/playground/execute", now},
		"other path":   {secret, v, "POST", "/api/playground/shell", now},
		"too old":      {secret, v, "POST", "/api/playground/execute", now.Add(time.Minute)},
		"other client": {secret, strings.Replace(v, "192.0.2.7", "192.0.2.8", 1), "POST", "/api/playground/execute", now},
		"malformed":    {secret, "v1;n1", "POST", "/api/playground/execute", now},
		"made up":      {secret, "v1;n1;1700000000;192.0.2.7;00", "POST", "/api/playground/execute", now},
	} {
		if _, _, err := verifyHop(tc.secret, tc.value, tc.method, tc.uri, tc.at, 30*time.Second); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestRouteSession(t *testing.T) {
	code := strings.Repeat("x", 60<<10)
	for _, tc := range []struct {
		name, method, target, body, header, want string
		status                                   int
	}{
		{"query", "GET", "/api/playground/container?sessionId=s1", "", "", "s1", 0},
		{"body", "POST", "/api/playground/execute", `{"sessionId":"s2","code":"1"}`, "", "s2", 0},
		{"60 KiB body, id last", "POST", "/api/playground/execute", `{"code":"` + code + `","sessionId":"s3"}`, "", "s3", 0},
		{"header only", "GET", "/api/playground/processes", "", "s4", "s4", 0},
		{"header agrees", "POST", "/api/playground/shell", `{"sessionId":"s5"}`, "s5", "s5", 0},
		{"header contradicts body", "POST", "/api/playground/shell", `{"sessionId":"s5"}`, "s6", "", 400},
		{"header contradicts query", "GET", "/api/playground/files?sessionId=a", "", "b", "", 400},
		{"id not a string", "POST", "/api/playground/execute", `{"sessionId":5}`, "", "", 0},
		{"invalid id", "GET", "/api/playground/container?sessionId=..%2Fx", "", "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			var gotErr error
			r := newTestEngine(func(c *ginContext) {
				got, gotErr = routeSession(c, true)
				body, _ := readAll(c)
				if tc.body != "" && body != tc.body {
					t.Errorf("body not given back whole: %d bytes of %d", len(body), len(tc.body))
				}
			})
			req := newRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.header != "" {
				req.Header.Set(sessionIDHeader, tc.header)
			}
			r.ServeHTTP(httptest.NewRecorder(), req)
			if tc.status == 400 {
				if gotErr == nil {
					t.Fatalf("got %q, want a 400", got)
				}
				if status, _ := ToHTTP(gotErr); status != 400 {
					t.Fatalf("status %d, want 400", status)
				}
				return
			}
			if gotErr != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, gotErr, tc.want)
			}
		})
	}
	// A preview's body is the app's: never read for an id, and never consumed.
	r := newTestEngine(func(c *ginContext) {
		if id, err := routeSession(c, false); id != "" || err != nil {
			t.Errorf("a preview's body named its session: %q %v", id, err)
		}
		if body, _ := readAll(c); body != `{"sessionId":"s9"}` {
			t.Errorf("the preview's body was consumed: %q", body)
		}
	})
	r.ServeHTTP(httptest.NewRecorder(), newRequest("POST", "/p/x/api", strings.NewReader(`{"sessionId":"s9"}`)))
}

// fakePlacement is the cluster's records in memory.
type fakePlacement struct {
	self   placement.Node
	shared *fakeRecords
}

type fakeRecords struct {
	mu     sync.Mutex
	nodes  map[string]placement.Node
	owners map[string]string
}

func (f *fakePlacement) Self() placement.Node { return f.self }
func (f *fakePlacement) Nodes(context.Context) ([]placement.Node, error) {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	var out []placement.Node
	for _, n := range f.shared.nodes {
		out = append(out, n)
	}
	return out, nil
}
func (f *fakePlacement) Claim(_ context.Context, id string) (string, error) {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	if o, ok := f.shared.owners[id]; ok {
		return o, nil
	}
	f.shared.owners[id] = f.self.ID
	return f.self.ID, nil
}
func (f *fakePlacement) Owner(_ context.Context, id string) (placement.Node, bool, error) {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	o, ok := f.shared.owners[id]
	if !ok {
		return placement.Node{}, false, nil
	}
	return f.shared.nodes[o], true, nil
}
func (f *fakePlacement) Release(_ context.Context, id string) error {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	if f.shared.owners[id] == f.self.ID {
		delete(f.shared.owners, id)
	}
	return nil
}
func (f *fakePlacement) LeaseTTL() time.Duration { return 7 * time.Second }

// TestForwardToOwner: node a forwards to the owner b with the client's
// address (b's per-client create limit sees two clients), a forged hop is
// refused, and an owner that cannot be reached is 503 owner_unavailable with
// Retry-After, not 404.
func TestForwardToOwner(t *testing.T) {
	secret := []byte("s3cret")
	shared := &fakeRecords{nodes: map[string]placement.Node{}, owners: map[string]string{}}
	fb := &fakeSessions{}
	optB := DefaultOptions()
	optB.CreateRate = Rate{Events: 1, Per: time.Hour, Burst: 1}
	pb := &fakePlacement{self: placement.Node{ID: "b", State: placement.Accepting}, shared: shared}
	optB.Cluster = ClusterOptions{Placement: pb, Secret: secret}
	b := httptest.NewServer(NewRouter(fb, optB))
	defer b.Close()
	pb.self.Addr = b.URL
	shared.nodes["b"] = pb.self
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	shared.nodes["gone"] = placement.Node{ID: "gone", Addr: deadURL, State: placement.Accepting}
	shared.owners["lost"] = "gone"

	fa := &fakeSessions{}
	optA := DefaultOptions()
	optA.TrustedProxies = []string{"127.0.0.1"}
	pa := &fakePlacement{self: placement.Node{ID: "a", State: placement.Draining}, shared: shared}
	optA.Cluster = ClusterOptions{Placement: pa, Secret: secret}
	a := httptest.NewServer(NewRouter(fa, optA))
	defer a.Close()

	post := func(url, client, body string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// a drains: creates go to b; b's limit is per real client.
	for i, tc := range []struct {
		client string
		status int
	}{{"192.0.2.1", 201}, {"192.0.2.2", 201}, {"192.0.2.1", 429}} {
		resp := post(a.URL+"/api/playground/container", tc.client, `{"sessionId":"c`+string(rune('0'+i))+`"}`, nil)
		if resp.StatusCode != tc.status || (tc.status == 201 && resp.Header.Get("X-Servcraft-Forwarded-To") != "b") {
			t.Fatalf("create %d from %s through a: %d (forwarded to %q), want %d on b", i, tc.client, resp.StatusCode, resp.Header.Get("X-Servcraft-Forwarded-To"), tc.status)
		}
	}
	if fa.calls.Load() != 0 || fb.calls.Load() != 2 {
		t.Fatalf("calls a=%d b=%d, want 0 and 2", fa.calls.Load(), fb.calls.Load())
	}
	if shared.owners["c0"] != "b" {
		t.Fatalf("owner of c0 = %q, want b", shared.owners["c0"])
	}
	// Execute of b's session through a.
	before := fb.calls.Load()
	resp := post(a.URL+"/api/playground/execute", "192.0.2.3", `{"code":"`+strings.Repeat("y", 60<<10)+`","sessionId":"c0"}`, nil)
	if resp.StatusCode != 200 || fb.calls.Load() == before || fa.calls.Load() != 0 {
		t.Fatalf("execute through a: %d, b calls %d", resp.StatusCode, fb.calls.Load())
	}
	// Forged hop, straight to b.
	before = fb.calls.Load()
	resp = post(b.URL+"/api/playground/execute", "192.0.2.3", `{"sessionId":"c0","code":"1"}`,
		map[string]string{hopHeader: signHop([]byte("guess"), "a", "10.0.0.1", "POST", "/api/playground/execute", time.Now())})
	if resp.StatusCode != 403 || fb.calls.Load() != before {
		t.Fatalf("forged hop: %d, b calls %d; want 403 and no call", resp.StatusCode, fb.calls.Load())
	}
	// Owner listed, unreachable.
	resp = post(a.URL+"/api/playground/execute", "192.0.2.3", `{"sessionId":"lost","code":"1"}`, nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("unreachable owner: %d Retry-After %q; want 503 and 7", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// A verified hop is served where it lands, never forwarded again (no loop),
	// even for a session another node owns.
	before = fa.calls.Load()
	resp = post(a.URL+"/api/playground/execute", "192.0.2.3", `{"sessionId":"c1","code":"1"}`,
		map[string]string{hopHeader: signHop(secret, "b", "192.0.2.9", "POST", "/api/playground/execute", time.Now())})
	if resp.StatusCode != 200 || fa.calls.Load() == before || resp.Header.Get("X-Servcraft-Forwarded-To") != "" {
		t.Fatalf("hopped request: %d, a calls +%d, forwarded to %q; want served on a", resp.StatusCode, fa.calls.Load()-before, resp.Header.Get("X-Servcraft-Forwarded-To"))
	}
	// An X-Session-ID that contradicts the query is refused before any forward.
	before = fb.calls.Load()
	req0, _ := http.NewRequest("GET", a.URL+"/api/playground/processes?sessionId=c1", nil)
	req0.Header.Set(sessionIDHeader, "c0")
	if r, err := http.DefaultClient.Do(req0); err != nil || r.StatusCode != 400 {
		t.Fatalf("contradicting X-Session-ID: %v %v, want 400", r, err)
	}
	if fb.calls.Load() != before {
		t.Fatal("a contradicting X-Session-ID reached the runtime")
	}
	// Delete on the owner releases the record.
	req, _ := http.NewRequest("DELETE", a.URL+"/api/playground/container?sessionId=c0", nil)
	dresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	dresp.Body.Close()
	if _, ok := shared.owners["c0"]; ok {
		t.Fatalf("record of deleted c0 kept (delete answered %d)", dresp.StatusCode)
	}
}

type ginContext = gin.Context

func newTestEngine(h gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Any("/*path", h)
	return r
}

// TestForkIsMadeOnTheSourcesOwner: a fork copies a workspace only its owner
// has, so a create with "from" goes to the source's owner even when the node
// it reaches takes sessions itself; a fork of a session owned here, or of one
// no node owns, is placed as any create.
func TestForkIsMadeOnTheSourcesOwner(t *testing.T) {
	secret := []byte("s3cret")
	shared := &fakeRecords{nodes: map[string]placement.Node{}, owners: map[string]string{"src-b": "b", "src-a": "a"}}
	node := func(id string) (*fakeSessions, *fakePlacement) {
		fs := &fakeSessions{}
		opt := DefaultOptions()
		p := &fakePlacement{self: placement.Node{ID: id, State: placement.Accepting}, shared: shared}
		opt.Cluster = ClusterOptions{Placement: p, Secret: secret}
		srv := httptest.NewServer(NewRouter(fs, opt))
		t.Cleanup(srv.Close)
		p.self.Addr = srv.URL
		shared.nodes[id] = p.self
		return fs, p
	}
	fa, pa := node("a")
	fb, _ := node("b")
	create := func(body string) (int, string) {
		t.Helper()
		resp, err := http.Post(pa.self.Addr+"/api/playground/container", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Servcraft-Forwarded-To")
	}
	for _, tc := range []struct {
		body, node, forwardedTo string
		fork                    [2]string
	}{
		{`{"sessionId":"f1","from":"src-b"}`, "b", "b", [2]string{"f1", "src-b"}},
		{`{"sessionId":"f2","from":"src-a"}`, "a", "", [2]string{"f2", "src-a"}},
		{`{"sessionId":"f3","from":"nowhere"}`, "a", "", [2]string{"f3", "nowhere"}},
		{`{"sessionId":"plain"}`, "a", "", [2]string{}},
	} {
		fa.lastFork, fb.lastFork = [2]string{}, [2]string{}
		status, fwd := create(tc.body)
		if status != 201 || fwd != tc.forwardedTo || shared.owners[tc.fork[0]] != tc.node && tc.fork[0] != "" {
			t.Fatalf("create %s through a: %d, forwarded to %q, owner %q; want 201 on %s", tc.body, status, fwd, shared.owners[tc.fork[0]], tc.node)
		}
		made := map[string]*fakeSessions{"a": fa, "b": fb}[tc.node]
		if made.lastFork != tc.fork {
			t.Fatalf("create %s: node %s forked %q, want %q", tc.body, tc.node, made.lastFork, tc.fork)
		}
	}
}

func readAll(c *gin.Context) (string, error) {
	b, err := io.ReadAll(c.Request.Body)
	return string(b), err
}
