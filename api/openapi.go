package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPIDocument is the OpenAPI 3.1 description of every route in routes.go
// and every body in wire.go. It is public, like /healthz: served without the
// token. Tests walk the router against it and validate real answers with it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3.1 document the API serves at /openapi.json.
func OpenAPIDocument() []byte { return append([]byte(nil), openAPIDocument...) }

func serveOpenAPI(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/json", openAPIDocument)
}
