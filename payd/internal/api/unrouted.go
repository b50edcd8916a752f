package api

import (
	"fmt"
	"net/http"
	"path"
	"strings"
)

// answerUnrouted serves mux, and answers what mux has no route for in
// problem+json, as every other refusal: 404 route_not_found for a path
// it does not serve, 405 method_not_allowed, with mux's Allow header, for
// a method the path does not take (TestUnroutedRequestsGetProblems).
// A path that is not clean (a double slash, a dot segment), which mux
// would redirect, is a 404 too.
func answerUnrouted(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if !clean(r.URL.Path) {
			// The mux would redirect it, to be sent again: payd serves
			// clean paths only, as its document lists them.
			pattern = ""
			h = http.NotFoundHandler()
		}
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &captured{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusNotFound:
			fail(w, http.StatusNotFound, "route_not_found", "", fmt.Sprintf("payd serves no %s; see /openapi.json for its routes", r.URL.Path))
		case http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "", fmt.Sprintf("%s does not take %s; use %s", r.URL.Path, r.Method, allow))
		default:
			rec.writeTo(w)
		}
	})
}

// clean reports whether p is a clean path: absolute, without empty, "."
// or ".." segments.
func clean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}
