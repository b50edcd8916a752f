package api

import (
	"io"
	"net/http"
)

// healthz answers as long as the process serves HTTP.
func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
}

// readyz answers 200 when the database is reachable and migrated.
func (s *server) readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.Ready(r.Context()); err != nil {
			fail(w, http.StatusServiceUnavailable, "not_ready", "", err.Error())
			return
		}
		io.WriteString(w, "ready\n")
	})
}
