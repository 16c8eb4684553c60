package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/gin-gonic/gin"

	"github.com/servcraft/servcraftd/runtime"
	"github.com/servcraft/servcraftd/snapshots/disk"
	"github.com/servcraft/servcraftd/snapshots/workspace"
)

// errBodyTooLarge marks a request body over the limit.
var errBodyTooLarge = errors.New("request body too large")

// ToHTTP maps an error to its HTTP status and machine code. It is the only
// place that does.
func ToHTTP(err error) (int, string) {
	var maxBytes *http.MaxBytesError
	switch {
	case errors.Is(err, errBodyTooLarge), errors.As(err, &maxBytes):
		return http.StatusRequestEntityTooLarge, codeBodyTooLarge
	case errors.Is(err, workspace.ErrFull):
		// The session's own quota, used up by its own files: the client's to fix.
		return http.StatusRequestEntityTooLarge, codeWorkspaceFull
	case errors.Is(err, disk.ErrHostFull):
		// The host's own disk, short of room for a new session: no client can fix it by retrying soon.
		return http.StatusInsufficientStorage, codeHostDiskFull
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests, codeRateLimited
	case errdefs.IsUnauthorized(err):
		return http.StatusUnauthorized, codeUnauthorized
	case errors.Is(err, runtime.ErrUpstream):
		return http.StatusBadGateway, codeUpstreamFailed
	case errdefs.IsInvalidArgument(err):
		return http.StatusBadRequest, codeInvalidArgument
	case errdefs.IsNotFound(err):
		return http.StatusNotFound, codeNotFound
	case errdefs.IsAlreadyExists(err):
		return http.StatusConflict, codeAlreadyExists
	case errdefs.IsConflict(err):
		return http.StatusConflict, codeConflict
	case errdefs.IsFailedPrecondition(err):
		return http.StatusConflict, codeFailedPrecondition
	case errdefs.IsPermissionDenied(err):
		return http.StatusForbidden, codePermissionDenied
	case errdefs.IsResourceExhausted(err):
		return http.StatusTooManyRequests, codeResourceExhausted
	case errdefs.IsNotImplemented(err):
		return http.StatusNotImplemented, codeNotImplemented
	case errdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable, codeUnavailable
	case errdefs.IsDeadlineExceeded(err):
		return http.StatusGatewayTimeout, codeDeadlineExceeded
	case errdefs.IsCanceled(err):
		return 499, codeCanceled
	}
	return http.StatusInternalServerError, codeInternal
}

// errorMiddleware writes the body of the last error a handler attached with c.Error.
func errorMiddleware(c *gin.Context) {
	c.Next()
	if len(c.Errors) == 0 || c.Writer.Written() {
		return
	}
	err := c.Errors.Last().Err
	status, code := ToHTTP(err)
	msg := err.Error()
	switch {
	case status == http.StatusInternalServerError:
		slog.Error("request failed", "requestId", requestID(c), "method", c.Request.Method, "route", c.FullPath(), "status", status, "err", err)
		msg = "internal error: " + msg
	case status > 501:
		slog.Warn("request failed", "requestId", requestID(c), "method", c.Request.Method, "route", c.FullPath(), "status", status, "err", err)
	}
	renderError(c, status, code, msg)
}

// renderError writes an error answer and stops the chain: the one place an
// error body is written (errorMiddleware for the errors handlers attach,
// and the middleware that refuses a request before any handler).
func renderError(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, newErrorBody(msg, code))
}

// newErrorBody is an error body, for the answers that carry one inside
// another shape (the 404 of GET container, an install's error, an SSE
// error event).
func newErrorBody(msg, code string) errorBody {
	return errorBody{Success: false, Error: msg, Code: code}
}

// fail attaches err for errorMiddleware and stops the handler chain.
func fail(c *gin.Context, err error) {
	_ = c.Error(err)
	c.Abort()
}

// invalid is a client mistake described by format.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}
