package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/api/apitest"
	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// ginParam is a path parameter as gin writes it (:name, *name).
var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	operations := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			if slices.Contains(operations, method) {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	registered := map[string]bool{}
	withPage := DefaultOptions()
	withPage.Page = http.NotFoundHandler()
	for _, r := range NewRouter(&fakeSessions{}, withPage).(*gin.Engine).Routes() {
		if r.Method == http.MethodConnect {
			continue // previews take every method; OpenAPI cannot describe CONNECT
		}
		registered[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	for route := range registered {
		if !documented[route] {
			t.Errorf("route %s is not in openapi.json", route)
		}
	}
	for route := range documented {
		if !registered[route] {
			t.Errorf("openapi.json documents %s, which the router does not have", route)
		}
	}
	if len(registered) < 20 {
		t.Fatalf("only %d routes walked", len(registered))
	}
}

func TestOpenAPIDocumentIsValidAndServedOpen(t *testing.T) {
	if _, err := apitest.NewValidator(openAPIDocument); err != nil {
		t.Fatal(err)
	}
	opt := DefaultOptions()
	opt.APIToken = testToken
	rec := send(NewRouter(&fakeSessions{}, opt), "GET", "/openapi.json", "")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), openAPIDocument) ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json without the token: %d %q", rec.Code, rec.Header())
	}
	if !bytes.Equal(OpenAPIDocument(), openAPIDocument) {
		t.Fatal("OpenAPIDocument differs from the served document")
	}
}

// TestHandlerAnswersFitTheOpenAPIDocument sends a request to every route, and
// a few that match none, and checks each answer against the document.
func TestHandlerAnswersFitTheOpenAPIDocument(t *testing.T) {
	opt := DefaultOptions()
	opt.CORSOrigins = []string{"https://app.example.com"}
	opt.Disk = fakeDisk{st: runtime.DiskStatus{TotalBytes: 10 << 30, FreeBytes: 1 << 30, ReserveBytes: 1 << 30, WorkspaceBytes: 1 << 30, Backend: workspace.BackendImage, Low: true}}
	open := NewRouter(&fakeSessions{}, opt)
	opt.APIToken = testToken
	guarded := NewRouter(&fakeSessions{}, opt)
	const pg = "/api/playground"
	for _, tc := range []struct {
		h                    http.Handler
		method, target, body string
		header               []string
	}{
		{open, "GET", "/healthz", "", nil},
		{open, "GET", "/readyz", "", nil},
		{open, "GET", "/openapi.json", "", nil},
		{open, "GET", "/metrics", "", nil},
		{open, "GET", "/status", "", nil},
		{open, "POST", "/api/admin/drain", "", nil},
		{open, "GET", "/readyz", "", nil},
		{open, "DELETE", "/api/admin/drain", "", nil},
		{open, "POST", pg + "/container", `{"sessionId":"a","projectType":"js"}`, nil},
		{open, "POST", pg + "/container", `{"sessionId":"a","projectType":"rust"}`, nil},
		{open, "GET", pg + "/container?sessionId=a", "", nil},
		{open, "GET", pg + "/container?sessionId=a&action=getFiles", "", nil},
		{open, "PATCH", pg + "/container", `{"sessionId":"a"}`, nil},
		{open, "DELETE", pg + "/container?sessionId=a", "", nil},
		{open, "POST", pg + "/execute", `{"sessionId":"a","code":"1"}`, nil},
		{open, "POST", pg + "/shell", `{"sessionId":"a","command":"ls"}`, nil},
		{open, "POST", pg + "/shell", `{"sessionId":"a","command":"sleep 9","background":true}`, nil},
		{open, "POST", pg + "/sync", `{"sessionId":"a","files":[{"name":"a.js","type":"file","content":"1"}]}`, nil},
		{open, "GET", pg + "/files?sessionId=a", "", nil},
		{open, "POST", pg + "/install", `{"sessionId":"a","packages":["fastify"]}`, nil},
		{open, "GET", pg + "/terminal?sessionId=a", "", nil},
		{open, "GET", pg + "/processes?sessionId=a", "", nil},
		{open, "GET", pg + "/processes/logs?sessionId=a&id=p1", "", nil},
		{open, "DELETE", pg + "/processes?sessionId=a&id=p1", "", nil},
		{open, "GET", pg + "/preview/a/x", "", nil},
		{open, "POST", "/p/a", "", nil},
		{open, "GET", "/p/a/deeper/page.html", "", nil},
		{open, "GET", "/nope", "", nil},
		{open, "PUT", pg + "/container", "", nil},
		{open, "OPTIONS", pg + "/execute", "", []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "POST"}},
		{guarded, "GET", "/metrics", "", nil},
		{guarded, "POST", pg + "/execute", `{"sessionId":"a","code":"1"}`, nil},
		{guarded, "GET", "/api/nope", "", nil},
		{guarded, "GET", "/openapi.json", "", nil},
	} {
		req := newRequest(tc.method, tc.target, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(tc.header); i += 2 {
			req.Header.Set(tc.header[i], tc.header[i+1])
		}
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(closeNotifier{rec}, req)
		apitest.Check(t, openAPIDocument, req, rec.Code, rec.Header(), rec.Body.Bytes())
	}
}

// TestOpenAPICheckCatchesAWrongAnswer makes sure the check above can fail.
func TestOpenAPICheckCatchesAWrongAnswer(t *testing.T) {
	v, err := apitest.NewValidator(openAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	req := newRequest("POST", "/api/playground/execute", nil)
	hdr := http.Header{"Content-Type": {"application/json"}}
	if err := v.Check(req, 200, hdr, []byte(`{"success":true,"output":5}`)); err == nil {
		t.Error("an execute answer with output:5 and no exitCode passed")
	}
	if err := v.Check(req, 400, hdr, []byte(`{"success":false,"error":{"m":"x"},"code":"invalid_argument"}`)); err == nil {
		t.Error("an error body whose error is an object passed")
	}
	run := `{"success":true,"output":"","error":"","exitCode":0,"timedOut":false,"oomKilled":false,"truncated":false,"durationMs":1,"background":false}`
	if err := v.Check(req, 200, hdr, []byte(run)); err != nil {
		t.Fatalf("a documented execute answer failed: %v", err)
	}
	if err := v.Check(req, 200, hdr, []byte(run[:len(run)-1]+`,"undocumented":1}`)); err == nil {
		t.Error("an execute answer with an undocumented field passed")
	}
	if err := v.Check(req, 400, hdr, []byte(`{"success":false,"error":"x","code":"invalid_argument","undocumented":1}`)); err == nil {
		t.Error("an error body with an undocumented field passed")
	}
	get := newRequest("GET", "/api/playground/container?sessionId=a", nil)
	if err := v.Check(get, 404, hdr, []byte(`{"success":false,"error":"x","code":"not_found","exists":false,"undocumented":1}`)); err == nil {
		t.Error("a missing-container body with an undocumented field passed")
	}
	if err := v.Check(newRequest("GET", "/healthz/extra", nil), 200, hdr, []byte(`{"success":true}`)); err == nil {
		t.Error("a 200 from an undocumented path passed")
	}
}

// headerLiteral is a header name in the api package's source.
var headerLiteral = regexp.MustCompile(`"((?:X-[A-Za-z]+(?:-[A-Za-z]+)*)|Retry-After)"`)

// TestOpenAPIDeclaresEveryHeader reads the package's source for the header
// names it sets or reads and fails on any the document does not declare
// (components.headers for answers, components.parameters for requests).
func TestOpenAPIDeclaresEveryHeader(t *testing.T) {
	var doc struct {
		Components struct {
			Headers    map[string]json.RawMessage `json:"headers"`
			Parameters map[string]struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for name := range doc.Components.Headers {
		declared[name] = true
	}
	for _, p := range doc.Components.Parameters {
		if p.In == "header" {
			declared[p.Name] = true
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range headerLiteral.FindAllStringSubmatch(string(src), -1) {
			seen++
			if !declared[m[1]] {
				t.Errorf("%s uses header %s, which openapi.json does not declare", f, m[1])
			}
		}
	}
	if seen < 8 {
		t.Fatalf("only %d header names found in the source", seen)
	}
}
