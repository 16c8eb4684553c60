package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// routeClass says which access rules and limits a route gets. Every route is
// registered through routes() with its class, so a new route cannot miss them.
type routeClass int

const (
	// classOpen: health, readiness, the OpenAPI document and the playground page; no token, no CORS.
	classOpen routeClass = iota
	// classMetrics: /metrics; the Origin check and the token, no CORS.
	classMetrics
	// classAPI: an API call; CORS for the allowed origins, then the token.
	classAPI
	// classCreate: an API call that creates a session; creates per client are limited.
	classCreate
	// classRun: execute and shell; runs per client, per session and at once are limited.
	classRun
	// classInstall: classRun with the per-session install rate instead of the run rate.
	classInstall
	// classPreview: a page for an iframe, proxied to the session; the token
	// unless PreviewPublic, no API CORS (the answers are the session's own).
	classPreview
	// classAdmin: the node's own controls (drain); the Origin and form-type
	// checks and the token, no CORS.
	classAdmin
	// classLookup: classAPI reading one session (GET container, files); lookups per client are limited.
	classLookup
	// classTerminal: classAPI for the terminal; terminals per session at once and their opens are limited.
	classTerminal
	// classDestroy: classAPI that destroys a session; in a cluster its owner then releases its record.
	classDestroy
)

// anyMethod registers a route for every method gin knows (a proxied preview).
const anyMethod = "*"

// route is one registered route.
type route struct {
	method, path string
	class        routeClass
	operation    string // the operation /metrics times when it answers 2xx; "" none
	handle       gin.HandlerFunc
}

// routes is the whole HTTP surface; openapi.json documents each of these
// (TestOpenAPIDocumentsEveryRoute walks the router to check).
func (h *handlers) routes(metricsHandler http.Handler) []route {
	const pg = "/api/playground"
	rs := []route{
		{http.MethodGet, "/healthz", classOpen, "", func(c *gin.Context) {
			c.JSON(http.StatusOK, healthResponse{Success: true, Status: "ok"})
		}},
		{http.MethodGet, "/readyz", classOpen, "", h.ready},
		{http.MethodGet, "/openapi.json", classOpen, "", serveOpenAPI},
		{http.MethodGet, "/metrics", classMetrics, "", gin.WrapH(metricsHandler)},
		{http.MethodGet, "/status", classOpen, "", h.status},
		{http.MethodPost, "/api/admin/drain", classAdmin, "", h.drain},
		{http.MethodDelete, "/api/admin/drain", classAdmin, "", h.drain},

		{http.MethodPost, pg + "/container", classCreate, "create", h.createContainer},
		{http.MethodGet, pg + "/container", classLookup, "", h.getContainer},
		{http.MethodPatch, pg + "/container", classAPI, "", h.extendContainer},
		{http.MethodDelete, pg + "/container", classDestroy, "destroy", h.deleteContainer},
		{http.MethodPost, pg + "/execute", classRun, "execute", h.execute},
		{http.MethodPost, pg + "/shell", classRun, "shell", h.shell},
		{http.MethodDelete, pg + "/run", classAPI, "", stopRun(h.stops)},
		{http.MethodPost, pg + "/run/stdin", classAPI, "", writeStdin(h.stops)},
		{http.MethodPost, pg + "/sync", classAPI, "sync", h.sync},
		{http.MethodGet, pg + "/files", classLookup, "", h.files},
		{http.MethodPost, pg + "/install", classInstall, "install", h.install},
		{http.MethodGet, pg + "/terminal", classTerminal, "", h.terminal},
		{http.MethodGet, pg + "/lsp", classTerminal, "", languageServer(h)},
		{http.MethodGet, pg + "/processes", classAPI, "", h.processes},
		{http.MethodGet, pg + "/processes/logs", classAPI, "", h.processLogs},
		{http.MethodDelete, pg + "/processes", classAPI, "", h.killProcess},

		{anyMethod, pg + "/preview/:sessionId/*path", classPreview, "", h.preview},
		{anyMethod, pg + "/preview/:sessionId", classPreview, "", h.preview},
		{anyMethod, "/p/:sessionId/*path", classPreview, "", h.preview},
		{anyMethod, "/p/:sessionId", classPreview, "", h.preview},
	}
	if h.opt.Page != nil {
		page := gin.WrapH(h.opt.Page)
		rs = append(rs,
			route{http.MethodGet, "/", classOpen, "", page},
			route{http.MethodGet, "/assets/*file", classOpen, "", page})
	}
	return rs
}

// access is the middleware of each class of route.
type access struct {
	opt       Options
	lim       *limits
	acceptHop gin.HandlerFunc                  // verifies a forwarded request's hop, which stands for the token (cluster.go)
	cluster   func(routeClass) gin.HandlerFunc // answers here or forwards to the session's owner (cluster.go)
	preview   gin.HandlerFunc                  // the token, a preview link or its cookie (previewlink.go)
}

// chain is the middleware a route of class gets, in order, before its handler.
// Unmatched requests get the chain of classAPI: CORS, then the token.
func (a access) chain(class routeClass) []gin.HandlerFunc {
	// The cluster hop comes after the token and before the per-client limits,
	// which so count each request once, on the node that serves it, by the
	// real client.
	// A foreign page's request, and a form's body, reach neither the API nor
	// the node's controls (the Host allow-list is in front of every route).
	var browser []gin.HandlerFunc
	if !a.opt.NoBrowserDefenses {
		browser = []gin.HandlerFunc{checkOrigin(newOriginPolicy(a.opt.CORSOrigins, a.opt.APIToken)), refuseForms}
	}
	api := append([]gin.HandlerFunc{cors(a.opt.CORSOrigins, a.opt.APIToken)}, browser...)
	api = append(api, a.acceptHop, auth(a.opt.APIToken), a.cluster(class))
	switch class {
	case classOpen:
		return nil
	case classMetrics, classAdmin:
		return append(browser, auth(a.opt.APIToken))
	case classAPI, classDestroy:
		return append(api, a.lim.limitMisses)
	case classLookup:
		return append(api, a.lim.limitLookups)
	case classTerminal:
		return append(api, a.lim.limitTerminals)
	case classCreate:
		return append(api, a.lim.limitCreates)
	case classRun:
		return append(api, a.lim.limitRuns(runExec))
	case classInstall:
		return append(api, a.lim.limitRuns(runInstall))
	case classPreview:
		return []gin.HandlerFunc{a.acceptHop, a.preview, a.cluster(class), a.lim.limitMisses}
	}
	panic("api: route class without rules") // a programming error: caught by every test that builds a router
}

// register adds every route to r with its class's middleware.
func (a access) register(r *gin.Engine, routes []route) {
	for _, rt := range routes {
		handlers := a.chain(rt.class)
		if rt.operation != "" {
			op := rt.operation
			handlers = append(handlers, func(c *gin.Context) { c.Set(operationKey, op) })
		}
		handlers = append(handlers, rt.handle)
		if rt.method == anyMethod {
			r.Any(rt.path, handlers...)
		} else {
			r.Handle(rt.method, rt.path, handlers...)
		}
	}
}

// operationKey holds the route's operation name for /metrics.
const operationKey = "servcraft.operation"
