package api

import (
	"io"
	"log/slog"
	"net/http"
)

// healthz answers as long as the process serves HTTP.
func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
}

// readyz answers 200 when the process is not stopping and the database is
// reachable and migrated. The database's own error goes to the log, not to
// whoever asks.
func (s *server) readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining != nil && s.draining() {
			fail(w, http.StatusServiceUnavailable, "shutting_down", "", "payd is stopping; send requests to another replica")
			return
		}
		if err := s.store.Ready(r.Context()); err != nil {
			s.log.WarnContext(r.Context(), "payd: not ready: the database is unreachable or not migrated", slog.Any("error", err))
			fail(w, http.StatusServiceUnavailable, "not_ready", "", "the database is unreachable or not migrated; the log says why")
			return
		}
		io.WriteString(w, "ready\n")
	})
}
