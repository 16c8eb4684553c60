package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The page is served at / and /assets/* only when Options.Page is set, and
// behind it the API answers as before.
func TestPageOption(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("page " + r.URL.Path)) })
	on := DefaultOptions()
	on.Page = page
	for _, tc := range []struct {
		opt          Options
		path         string
		status       int
		body, reason string
	}{
		{on, "/", 200, "page /", "page on"},
		{on, "/assets/main-X.js", 200, "page /assets/main-X.js", "page on"},
		{on, "/healthz", 200, "", "page on"},
		{DefaultOptions(), "/", 404, "", "page off"},
		{DefaultOptions(), "/assets/main-X.js", 404, "", "page off"},
	} {
		rec := httptest.NewRecorder()
		NewRouter(&fakeSessions{}, tc.opt).ServeHTTP(rec, newRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.status || tc.body != "" && rec.Body.String() != tc.body {
			t.Errorf("%s: GET %s: %d %q, want %d %q", tc.reason, tc.path, rec.Code, rec.Body, tc.status, tc.body)
		}
	}
}
