package api

import (
	"fmt"
	"net/http"
)

// answerUnrouted serves mux, and answers what mux has no route for in
// problem+json, as every other refusal: 404 route_not_found for a path
// it does not serve, 405 method_not_allowed, with mux's Allow header, for
// a method the path does not take (TestUnroutedRequestsGetProblems).
// Mux's other answers of its own, redirects to a cleaned path, pass
// through.
func answerUnrouted(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
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
