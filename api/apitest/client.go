package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Client calls servcraftd's API at a base URL. Every answer it receives is
// checked against the OpenAPI document: one that does not fit fails the test.
type Client struct {
	t    testing.TB
	base string
	hc   *http.Client
	v    *Validator
	// Header is sent with every request (Authorization, Origin, ...).
	Header http.Header
	// RetryLimited retries a 429 after its Retry-After, up to this many times.
	RetryLimited int
}

// NewClient returns a client of the API at base (http://host:port), sending
// through hc (nil: http.DefaultClient) and checking answers against doc.
func NewClient(t testing.TB, base string, hc *http.Client, doc []byte) *Client {
	t.Helper()
	v, err := NewValidator(doc)
	if err != nil {
		t.Fatal(err)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{t: t, base: base, hc: hc, v: v, Header: http.Header{}}
}

// URL is the client's base URL.
func (c *Client) URL() string { return c.base }

// Do sends one request with body as JSON (nil: none) and returns the answer's
// status, header and body. header is pairs of name and value.
func (c *Client) Do(method, path string, body []byte, header ...string) (int, http.Header, []byte) {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, c.base+path, r)
		if err != nil {
			c.t.Fatal(err)
		}
		req.Header = c.Header.Clone()
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			c.t.Fatalf("%s %s: read the answer: %v", method, path, err)
		}
		if err := c.v.Check(req, resp.StatusCode, resp.Header, data); err != nil {
			c.t.Error(err)
		}
		if resp.StatusCode == http.StatusTooManyRequests && attempt < c.RetryLimited {
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(secs, 1)) * time.Second) // the wait the server asked for
			continue
		}
		return resp.StatusCode, resp.Header, data
	}
}

// Call sends body as JSON (nil: none) and decodes the answer, which must be a JSON object.
func (c *Client) Call(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	status, _, data := c.Do(method, path, b)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		c.t.Fatalf("%s %s: %d, not a JSON object: %.300q", method, path, status, data)
	}
	return status, out
}

// Check validates an answer recorded by httptest to req against the document.
func Check(t testing.TB, doc []byte, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	v, err := NewValidator(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(req, status, header, body); err != nil {
		t.Error(err)
	}
}
