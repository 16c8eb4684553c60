package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzRoutes are the routes that decode a request body.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/api/playground/container"},
	{"PATCH", "/api/playground/container"},
	{"POST", "/api/playground/execute"},
	{"POST", "/api/playground/shell"},
	{"POST", "/api/playground/sync"},
	{"POST", "/api/playground/install"},
}

// FuzzDecodeRequests sends arbitrary bodies to every route that decodes
// one: the answer is never a 5xx nor a panic, and always JSON.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `{"sessionId":"a"}`, `{"sessionId":"a","projectType":"js"}`,
		`{"sessionId":"a","code":"console.log(1)","filename":"src/a.js","timeoutMs":5}`,
		`{"sessionId":"a","command":"ls","background":true}`, `{"sessionId":"a","command":"a\u0000b"}`,
		`{"sessionId":"a","files":[{"name":"a","type":"folder","children":[{"name":"b.js","type":"file","content":"1"}]}],"mode":"replace"}`,
		`{"sessionId":"a","files":[{"name":"x","type":"file","encoding":"base64","content":"AAEC"}]}`,
		`{"sessionId":"a","packages":["fastify","@fastify/cors@^9","react@>=18 <19"]}`,
		`{"sessionId":"a","packages":["file:../x","git+ssh://x","a@npm:b"]}`,
		`{"sessionId":1}`, `{"sessionId":"a","timeoutMs":-1}`, `{"sessionId":"a","timeoutMs":1e400}`,
		`{"sessionId":"a","filename":"../../etc/passwd.js","code":"1"}`, `{"sessionId":"` + strings.Repeat("a", 200) + `"}`,
		strings.Repeat("[", 100) + strings.Repeat("]", 100), `{"sessionId":"a"} {}`, "\xff\xfe\x00", `{"sessionId":"\ud800"}`,
		`{"sessionId":"a","files":` + strings.Repeat(`[{"name":"d","type":"folder","children":`, 40) + `[]` + strings.Repeat(`}]`, 40) + `}`,
	} {
		for i := range fuzzRoutes {
			f.Add(uint8(i), []byte(seed))
		}
	}
	opt := DefaultOptions()
	opt.MaxBodyBytes = 1 << 20
	opt.CreateRate, opt.ClientExecRate, opt.ExecRate, opt.InstallRate, opt.MaxConcurrentExecs = Rate{}, Rate{}, Rate{}, Rate{}, 0
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		h := NewRouter(&fakeSessions{}, opt)
		req := newRequest(r.method, r.path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= http.StatusInternalServerError {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body.String())
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d, answer is not JSON: %q", r.method, r.path, body, rec.Code, rec.Body.String())
		}
	})
}
