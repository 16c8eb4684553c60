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
		return http.StatusRequestEntityTooLarge, "body_too_large"
	case errors.Is(err, workspace.ErrFull):
		// The session's own quota, used up by its own files: the client's to fix.
		return http.StatusRequestEntityTooLarge, "workspace_full"
	case errors.Is(err, disk.ErrHostFull):
		// The host's own disk, short of room for a new session: no client can fix it by retrying soon.
		return http.StatusInsufficientStorage, "host_disk_full"
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests, "rate_limited"
	case errdefs.IsUnauthorized(err):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, runtime.ErrUpstream):
		return http.StatusBadGateway, "upstream_failed"
	case errdefs.IsInvalidArgument(err):
		return http.StatusBadRequest, "invalid_argument"
	case errdefs.IsNotFound(err):
		return http.StatusNotFound, "not_found"
	case errdefs.IsAlreadyExists(err):
		return http.StatusConflict, "already_exists"
	case errdefs.IsConflict(err):
		return http.StatusConflict, "conflict"
	case errdefs.IsFailedPrecondition(err):
		return http.StatusConflict, "failed_precondition"
	case errdefs.IsPermissionDenied(err):
		return http.StatusForbidden, "permission_denied"
	case errdefs.IsResourceExhausted(err):
		return http.StatusTooManyRequests, "resource_exhausted"
	case errdefs.IsNotImplemented(err):
		return http.StatusNotImplemented, "not_implemented"
	case errdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable, "unavailable"
	case errdefs.IsDeadlineExceeded(err):
		return http.StatusGatewayTimeout, "deadline_exceeded"
	case errdefs.IsCanceled(err):
		return 499, "canceled"
	}
	return http.StatusInternalServerError, "internal"
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
	c.JSON(status, errorBody{Success: false, Error: msg, Code: code})
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
