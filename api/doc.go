// Package api is servcraftd's HTTP surface: the Gin router, request and
// response types of the playground contract, input validation, and the one
// mapping from errors to HTTP statuses. Handlers are thin: decode, validate,
// call the runtime, encode.
package api
