package api

// The machine codes of error answers ("code" beside "error"). Every error
// body is written by renderError or built by newErrorBody with one of these
// (TestErrorBodiesHaveOneRenderer), and docs/api.md lists each
// (TestErrorCodesAreDocumented).
const (
	// From ToHTTP, by the error's class.
	codeBodyTooLarge       = "body_too_large"
	codeWorkspaceFull      = "workspace_full"
	codeHostDiskFull       = "host_disk_full"
	codeRateLimited        = "rate_limited"
	codeUnauthorized       = "unauthorized"
	codeUpstreamFailed     = "upstream_failed"
	codeInvalidArgument    = "invalid_argument"
	codeNotFound           = "not_found"
	codeAlreadyExists      = "already_exists"
	codeConflict           = "conflict"
	codeFailedPrecondition = "failed_precondition"
	codePermissionDenied   = "permission_denied"
	codeResourceExhausted  = "resource_exhausted"
	codeNotImplemented     = "not_implemented"
	codeUnavailable        = "unavailable"
	codeDeadlineExceeded   = "deadline_exceeded"
	codeCanceled           = "canceled"
	codeInternal           = "internal"

	// Written by the middleware that refuses a request before any handler.
	codeMethodNotImplemented = "method_not_implemented" // refuseUnknownMethods
	codeMethodNotAllowed     = "method_not_allowed"     // a method a path does not serve
	codeMisdirectedHost      = "misdirected_host"       // checkHost
	codeUnsupportedMediaType = "unsupported_media_type" // refuseForms
	codeOriginForbidden      = "origin_forbidden"       // checkOrigin

	// Readiness and the cluster (503 with Retry-After).
	codeNotReady             = "not_ready"             // /readyz
	codeDraining             = "draining"              // /readyz, creates on a draining node
	codeOwnerUnavailable     = "owner_unavailable"     // the session's owner cannot be reached, or is still creating it
	codePlacementUnavailable = "placement_unavailable" // etcd cannot be read
	codeNoCapacity           = "no_capacity"           // no node in the cluster takes new sessions
)

// errorCodes is every code above, for the documentation test.
var errorCodes = []string{
	codeBodyTooLarge, codeWorkspaceFull, codeHostDiskFull, codeRateLimited, codeUnauthorized,
	codeUpstreamFailed, codeInvalidArgument, codeNotFound, codeAlreadyExists, codeConflict,
	codeFailedPrecondition, codePermissionDenied, codeResourceExhausted, codeNotImplemented,
	codeUnavailable, codeDeadlineExceeded, codeCanceled, codeInternal,
	codeMethodNotImplemented, codeMethodNotAllowed, codeMisdirectedHost, codeUnsupportedMediaType,
	codeOriginForbidden, codeNotReady, codeDraining, codeOwnerUnavailable, codePlacementUnavailable,
	codeNoCapacity,
}
