package api

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDocument is the OpenAPI 3.1 document of the public API: every
// route, parameter, header, status and problem code. The tests hold payd
// to it: every request they send and every response they get is checked
// against it (package openapitest), and every route is in it
// (TestEveryRouteIsDocumented).
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI document GET /openapi.json serves.
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

// openAPI serves the document, to anyone: it holds nothing secret.
func openAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
		w.Write(openAPIDocument)
	})
}
