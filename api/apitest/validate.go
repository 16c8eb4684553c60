// Package apitest is the test harness of servcraftd's HTTP API: a client
// that checks every answer it receives against the OpenAPI document, that
// check on its own for answers recorded by httptest, and a launcher of the
// servcraftd binary. It imports nothing of package api, so api's own tests
// can use it too; callers hand it the document (api.OpenAPIDocument()).
package apitest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
)

// Validator checks HTTP answers against an OpenAPI 3.1 document.
type Validator struct {
	mu sync.Mutex // the validator's caches are not documented as safe for concurrent use
	v  validator.Validator
	// catchAll are the path prefixes of routes whose last segment is a
	// catch-all in the router ({path} in the document stands for the rest of
	// the path, several segments, which OpenAPI cannot say).
	catchAll []string
}

var (
	validatorsMu sync.Mutex
	validators   = map[[32]byte]*Validator{}
)

// NewValidator parses and validates doc (an OpenAPI 3.1 document) and
// returns a Validator for it; the same document gives the same Validator.
func NewValidator(doc []byte) (*Validator, error) {
	key := sha256.Sum256(doc)
	validatorsMu.Lock()
	defer validatorsMu.Unlock()
	if v := validators[key]; v != nil {
		return v, nil
	}
	d, err := libopenapi.NewDocument(doc)
	if err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	if d.GetSpecInfo().VersionNumeric < 3.1 {
		return nil, fmt.Errorf("OpenAPI document is version %s, want 3.1", d.GetVersion())
	}
	v, errs := validator.NewValidator(d)
	if len(errs) > 0 {
		return nil, fmt.Errorf("build validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, fmt.Errorf("OpenAPI document is not valid: %s", describe(verrs...))
	}
	model, err := d.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build OpenAPI model: %w", err)
	}
	out := &Validator{v: v}
	for p := range model.Model.Paths.PathItems.KeysFromOldest() {
		if prefix, ok := strings.CutSuffix(p, "/{path}"); ok {
			out.catchAll = append(out.catchAll, prefix[:strings.LastIndex(prefix, "/")+1])
		}
	}
	validators[key] = out
	return out, nil
}

// Check validates one answer (status, header and body) to req against the
// document. Answers to paths the document does not hold are accepted only
// when they are what unmatched requests get: 401, 404 or 405, or a CORS
// preflight's 204.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	resp := &http.Response{StatusCode: status, Header: header.Clone(), Body: io.NopCloser(bytes.NewReader(body)), Request: req}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	if status == http.StatusSwitchingProtocols || status == http.StatusNoContent {
		resp.Header.Del("Content-Type")
	}
	// Match the request by its path alone: validate the answer, not what was asked.
	r := req.Clone(req.Context())
	r.Body = http.NoBody
	v.mu.Lock()
	ok, errs := v.v.ValidateHttpResponse(r, resp)
	v.mu.Unlock()
	if ok {
		return nil
	}
	var left []string
	for _, e := range errs {
		if e.ValidationType == helpers.PathValidation && (e.ValidationSubType == helpers.ValidationMissing || e.ValidationSubType == helpers.ValidationMissingOperation) {
			switch {
			case status == http.StatusUnauthorized || status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
				continue // no route: the router's own answer
			case status == http.StatusNoContent && req.Method == http.MethodOptions:
				continue // a CORS preflight
			case v.underCatchAll(req.URL.Path):
				continue // a preview's deeper path: the session's own answer, any content
			}
		}
		left = append(left, describe(e))
	}
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s answered %d against the OpenAPI document: %s\nbody: %.500s",
		req.Method, req.URL.RequestURI(), status, strings.Join(left, "; "), body)
}

func (v *Validator) underCatchAll(path string) bool {
	for _, p := range v.catchAll {
		if rest, ok := strings.CutPrefix(path, p); ok && strings.Count(rest, "/") >= 2 {
			return true
		}
	}
	return false
}

// describe writes validation errors with their schema failures.
func describe(errs ...*verrors.ValidationError) string {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s)", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, " [%s at %s]", f.Reason, f.FieldPath)
		}
	}
	return b.String()
}
